"""How the `churn-platform` command line reports a failure: one actionable line, exit code 2 for a
usage mistake (click's) and 1 for a failure, the traceback only with ``--debug`` (or CHURN_DEBUG=1)."""

from __future__ import annotations

import click

# Dagster wraps the user code's exception in these; the user's own is the message worth showing.
_WRAPPERS = ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError", "DagsterRunFailedError")


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception a wrapper carries (Dagster's user-code wrappers, ``raise ... from``)."""
    seen = {id(exc)}
    while True:
        inner = getattr(exc, "user_exception", None) if type(exc).__name__ in _WRAPPERS else None
        inner = inner or (exc.__cause__ if type(exc).__name__ in _WRAPPERS else None)
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of the root cause (messages here name the file, partition
    or setting at fault in their first line)."""
    cause = root_cause(exc)
    message = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {message[0]}" if message else type(cause).__name__


class PlatformGroup(click.Group):
    """A click group whose subcommands fail with one line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            raise click.ClickException(f"{one_line(exc)}  (run with --debug for the traceback)") from None
