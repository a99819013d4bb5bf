"""The `churn-platform` command line."""

from __future__ import annotations

import datetime as dt
import time

import click

from churn_platform.cli.errors import PlatformGroup
from churn_platform.settings import load_settings


@click.group(cls=PlatformGroup)
@click.option(
    "--debug",
    is_flag=True,
    envvar="CHURN_DEBUG",
    help="Show the traceback of a failure (also CHURN_DEBUG=1).",
)
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """churn_platform: customer-churn data platform on Dagster."""
    from churn_platform.cli.environment import load_dotenv

    ctx.obj = {"debug": debug}
    load_dotenv()


def _date(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


_days = click.option(
    "--days", default=120, show_default=True, type=click.IntRange(min=1), help="Days of data to generate."
)
_customers = click.option(
    "--customers", default=1000, show_default=True, type=click.IntRange(min=1), help="Number of customers."
)
_seed = click.option(
    "--seed",
    default=7,
    show_default=True,
    type=click.IntRange(min=0),
    help="Random seed (same seed, same data).",
)
_start = click.option(
    "--start-date",
    default=None,
    callback=_date,
    help="First day (default: the window ends the day before yesterday, UTC; yesterday is left for "
    "--append-day).",
)


@main.command()
@_days
@_customers
@_seed
@_start
@click.option("--force", is_flag=True, help="Replace what the landing zone holds (another dataset).")
@click.option(
    "--append-day",
    is_flag=True,
    help="Land the next day of the dataset the landing zone holds (same seed and customers).",
)
def generate(
    days: int, customers: int, seed: int, start_date: dt.date | None, force: bool, append_day: bool
) -> None:
    """Write synthetic interaction logs and CRM tickets into the landing zone (any CHURN_ENV). The
    landing zone remembers the dataset it holds: another one is refused unless --force."""
    from churn_platform.cli.generate import append_next_day, land_dataset

    if append_day and force:
        raise click.UsageError("--append-day extends the dataset the landing zone holds; --force replaces it")
    settings = load_settings()
    if append_day:
        stats = append_next_day(settings)
    else:
        stats = land_dataset(settings, days, customers, seed, start_date, force=force)
    click.echo(" ".join(f"{k}={v}" for k, v in stats.items()))


@main.command()
@_days
@_customers
@_seed
@_start
def demo(days: int, customers: int, seed: int, start_date: dt.date | None) -> None:
    """Generate current data (ending the day before yesterday) and materialize the whole asset graph
    on local storage, quietly: Dagster's log goes to a file the summary names."""
    from churn_platform.cli.demo import run_demo_command

    run_demo_command(days, customers, seed, start_date)


@main.command("crm-simulator")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True)
@click.option(
    "--export", "export_path", default=None, help="Ticket export to serve (default: the generated one)."
)
@click.option(
    "--oauth-token-env",
    default="ZENDESK_OAUTH_TOKEN",
    show_default=True,
    help="Environment variable holding the bearer token clients must send.",
)
@click.option("--email", default=None, help="Accept API-token auth for this agent email ...")
@click.option(
    "--api-token-env",
    default="ZENDESK_API_TOKEN",
    show_default=True,
    help="... with the token in this variable.",
)
@click.option(
    "--faults",
    default="",
    help="e.g. rate_limit=0.1,retry_after_seconds=1,server_error=0.05,slow=0.02,"
    "slow_seconds=2,malformed=0.05,empty_page=0.1,duplicates=0.2,seed=3",
)
@click.option(
    "--webhook-url",
    default=None,
    help="Send every ticket change to this URL as a signed Zendesk webhook (event subscription).",
)
@click.option(
    "--webhook-secret-env",
    default="CHURN_CRM_WEBHOOK_SECRET",
    show_default=True,
    help="Environment variable holding the webhook signing secret (required with --webhook-url).",
)
def crm_simulator(
    host: str,
    port: int,
    export_path: str | None,
    oauth_token_env: str,
    email: str | None,
    api_token_env: str,
    faults: str,
    webhook_url: str | None,
    webhook_secret_env: str,
) -> None:
    """Serve the Zendesk Support API over the generated tickets (incremental export, list, show,
    create, update, comments); created and updated tickets are written back to the export, and with
    --webhook-url every change is also sent as a signed webhook."""
    import os

    from churn_platform.crm.export import read_export, write_export
    from churn_platform.crm.simulator import FaultConfig, ZendeskSimulator

    settings = load_settings()
    path = export_path or settings.storage.crm_export_path
    oauth, api_token = os.environ.get(oauth_token_env), os.environ.get(api_token_env)
    if not oauth and not (email and api_token):
        raise click.UsageError(
            f"set {oauth_token_env}, or --email and {api_token_env}, for clients to authenticate with"
        )
    webhook_secret = os.environ.get(webhook_secret_env) if webhook_url else None
    if webhook_url and not webhook_secret:
        raise click.UsageError(f"--webhook-url needs the signing secret: set {webhook_secret_env}")
    simulator = ZendeskSimulator(
        read_export(path),
        oauth_token=oauth,
        email=email,
        api_token=api_token,
        faults=FaultConfig.parse(faults),
        host=host,
        port=port,
        on_change=lambda tickets: write_export(path, tickets),
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
    )
    simulator.start()
    click.echo(f"Zendesk API simulator on {simulator.url} serving {path} (Ctrl-C to stop)")
    if webhook_url:
        from urllib.parse import urlparse

        target = urlparse(webhook_url)  # the path is not echoed: some receivers put a token there
        click.echo(f"  ticket changes are sent as signed webhooks to {target.scheme}://{target.netloc}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        simulator.stop()


@main.command()
def doctor() -> None:
    """Connect to each configured service (storage, backups, the Dagster instance, MLflow, the CRM,
    Spark, Slack) and report what is unreachable or misconfigured, naming the setting; exit 1 if
    anything is. Nothing is written except a probe file in local directories; no secret is printed."""
    from churn_platform.cli.doctor import format_report, run_checks, settings_error_results
    from churn_platform.settings import SettingsError

    try:
        settings = load_settings()
    except SettingsError as exc:
        results = settings_error_results(exc)
    else:
        results = run_checks(settings)
    click.echo(format_report(results))
    failed = [r for r in results if not r.ok]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(results)} checks failed")


@main.command()
@click.option("--host", default=None, help="Address to listen on (default: CHURN_SERVING_HOST).")
@click.option("--port", default=None, type=int, help="Port (default: CHURN_SERVING_PORT).")
def serve(host: str | None, port: int | None) -> None:
    """Serve the champion model over HTTP (README, "Real-time scoring"): scores from the online
    features in Redis, following the `champion` alias without restarts; callers send X-API-Key."""
    from churn_platform.cli.serve import run
    from churn_platform.settings import SettingsError

    settings = load_settings()
    try:
        run(settings, host or settings.serving.host, port or settings.serving.port)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--from", "first", required=True, help="First partition (YYYY-MM-DD).")
@click.option("--to", "last", required=True, help="Last partition (YYYY-MM-DD), inclusive.")
@click.option(
    "--group",
    "groups",
    multiple=True,
    default=("raw", "enriched", "features"),
    show_default=True,
    help="Asset groups to backfill (daily-partitioned assets only); repeat for several.",
)
@click.option("--url", default=None, help="Dagster webserver (default: CHURN_DAGSTER_UI_URL).")
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait until the backfill has finished."
)
@click.option("--timeout", default=3600, show_default=True, help="Seconds to wait.")
def backfill(
    first: str, last: str, groups: tuple[str, ...], url: str | None, wait: bool, timeout: int
) -> None:
    """Backfill a date range through the running Dagster deployment (as the UI does), honouring the
    assets' backfill policies: a year of single-run assets is one run, not 365."""
    from churn_platform.definitions import build_assets
    from churn_platform.orchestration.backfills import launch_backfill, wait_for_backfill
    from churn_platform.orchestration.graphql import GraphQLError
    from churn_platform.orchestration.partitions import build_partitions

    settings = load_settings()
    url = url or settings.alerts.dagster_ui_url
    partitions_defs = build_partitions(settings)
    daily_partitions = partitions_defs.daily
    existing = daily_partitions.get_partition_keys()
    partitions = backfill_range(first, last, existing)
    daily_assets = [
        asset for asset in build_assets(partitions_defs) if asset.partitions_def == daily_partitions
    ]
    valid_groups = sorted({group for asset in daily_assets for group in asset.group_names_by_key.values()})
    unknown = sorted(set(groups) - set(valid_groups))
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)} is not a group of daily-partitioned assets; valid: {', '.join(valid_groups)}",
            param_hint="--group",
        )
    keys = sorted(
        (key for asset in daily_assets for key, group in asset.group_names_by_key.items() if group in groups),
        key=lambda k: k.to_user_string(),
    )
    try:
        backfill_id = launch_backfill(url, keys, first, last)
        click.echo(
            f"backfill {backfill_id}: {len(partitions)} partitions of {', '.join(k.to_user_string() for k in keys)}"
        )
        click.echo(f"  {url.rstrip('/')}/runs/b/{backfill_id}")
        if wait:
            click.echo(f"  {wait_for_backfill(url, backfill_id, timeout)}")
    except GraphQLError as exc:
        raise click.ClickException(str(exc)) from None


def backfill_range(first: str, last: str, existing: list[str]) -> list[str]:
    """The daily partitions ``first``..``last``, or a usage error saying what is valid."""
    if not existing:
        raise click.BadParameter("no daily partition has ended yet (they start at CHURN_START_DATE)")
    for option, value in (("--from", first), ("--to", last)):
        try:
            canonical = dt.date.fromisoformat(value).isoformat()
        except ValueError:
            canonical = None
        if canonical != value:  # fromisoformat also takes 20260105, which would compare wrongly
            raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option)
        if value < existing[0]:
            raise click.BadParameter(
                f"{value} is before the first daily partition, {existing[0]} (CHURN_START_DATE)",
                param_hint=option,
            )
        if value > existing[-1]:
            raise click.BadParameter(
                f"{value} has no partition yet: the last is {existing[-1]} (a day's partition exists once it "
                "has ended, UTC)",
                param_hint=option,
            )
    if first > last:
        raise click.BadParameter(f"--from {first} is after --to {last}")
    return existing[existing.index(first) : existing.index(last) + 1]


def _backup_store():
    from churn_platform.resources import build_resources

    return build_resources(load_settings())["backup_store"]


@main.group()
def backups() -> None:
    """Snapshots in the backup store (CHURN_BACKUP_DIR, or the backup bucket)."""


@backups.command("list")
def backups_list() -> None:
    """Every snapshot: when, what kind, how many objects and bytes, oldest first."""
    from churn_platform.backups.catalog import list_snapshots

    store = _backup_store()
    snapshots = list_snapshots(store)
    click.echo(f"{len(snapshots)} snapshot(s) in {store.uri('')}")
    for s in snapshots:
        click.echo(
            f"  {s.created[:19]:19}  {s.kind:8}  {len(s.objects):4} objects  {s.bytes:>12,} B  {s.prefix}"
        )


@backups.command("verify")
@click.argument("snapshot", required=False)
def backups_verify(snapshot: str | None) -> None:
    """Re-read every object of SNAPSHOT (default: all) and check it against its manifest's SHA-256."""
    from churn_platform.backups.catalog import find_snapshot, list_snapshots, verify_snapshot

    store = _backup_store()
    snapshots = [find_snapshot(store, snapshot)] if snapshot else list_snapshots(store)
    problems = [p for s in snapshots for p in verify_snapshot(store, s)]
    objects = sum(len(s.objects) for s in snapshots)
    if problems:
        click.echo("\n".join(problems))
        raise click.ClickException(
            f"{len(problems)} of {objects} objects in {len(snapshots)} snapshot(s) damaged"
        )
    click.echo(f"{len(snapshots)} snapshot(s), {objects} objects: all objects match their manifests")


@main.command()
@click.argument("snapshot")
@click.option("--model-dir", default=None, help="Where a model snapshot's model files go.")
@click.option(
    "--training-data", is_flag=True, help="Put a model snapshot's training data back into the warehouse."
)
@click.option("--force", is_flag=True, help="Overwrite files and databases that hold data (live data).")
@click.option("--relocate", is_flag=True, help="Restore the MLflow store somewhere else than it was.")
def restore(snapshot: str, model_dir: str | None, training_data: bool, force: bool, relocate: bool) -> None:
    """Restore SNAPSHOT (a prefix from `churn-platform backups list`): a metadata snapshot into
    DAGSTER_HOME's instance (its SQLite files, or its PostgreSQL database) and the configured MLflow
    store (local, or the server's database in CHURN_MLFLOW_DATABASE_URL); a model snapshot's model
    into --model-dir and/or its training data into the warehouse (--training-data). Every object is
    verified first; nothing is written if any is damaged or, without --force, a file or database to
    restore into holds other data."""
    from pathlib import Path

    from churn_platform.backups.catalog import (
        RestoreRefused,
        find_snapshot,
        restore_snapshot,
        restore_training_data,
    )
    from churn_platform.backups.metadata import MetadataBackupError, redacted
    from churn_platform.resources import build_resources

    settings = load_settings()
    store = _backup_store()
    try:
        found = find_snapshot(store, snapshot)
        databases: dict[str, str] = {}
        targets: dict[str, Path] = {}
        written: list = []
        if found.kind == "model":
            if not model_dir and not training_data:
                raise click.UsageError("a model snapshot needs --model-dir and/or --training-data")
            if training_data:
                warehouse = build_resources(settings)["io_manager"]
                written += restore_training_data(store, found, warehouse.path_for, overwrite=force)
                click.echo(f"  training data     -> {settings.storage.warehouse_dir}")
            if model_dir:
                targets = {"model": Path(model_dir)}
                written += restore_snapshot(store, found, targets, overwrite=force)
        else:
            targets, databases = _metadata_targets(settings, store, found, relocate)
            written = restore_snapshot(store, found, targets, overwrite=force, databases=databases)
    except (RestoreRefused, MetadataBackupError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {len(written)} files and databases from {found.prefix} (all verified)")
    for folder, path in targets.items():
        click.echo(f"  {folder:17} -> {path}")
    for folder, url in databases.items():
        click.echo(f"  {folder:17} -> {redacted(url)}")


def _metadata_targets(settings, store, found, relocate: bool) -> tuple[dict, dict[str, str]]:
    """Where a metadata snapshot's folders go: files into DAGSTER_HOME and the local MLflow store,
    pg_dump archives into the instance's and the MLflow server's databases."""
    import json
    import os
    from pathlib import Path

    import dagster as dg

    from churn_platform.backups.metadata import postgres_url_of
    from churn_platform.storage.credentials import env_secret, reveal

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise click.UsageError("set DAGSTER_HOME to the instance directory to restore into")
    folders = {name.rsplit("/", 1)[0] for name in found.objects}
    targets: dict[str, Path] = {"dagster": Path(home)}
    databases: dict[str, str] = {}
    if "dagster/postgres" in folders:
        with dg.DagsterInstance.get() as instance:
            instance_url = postgres_url_of(instance)
        if instance_url is None:
            raise click.UsageError(
                "the snapshot holds a PostgreSQL instance and DAGSTER_HOME's instance is not on PostgreSQL: "
                "configure its storage as deploy/dagster.yaml does"
            )
        databases["dagster/postgres"] = instance_url
    mlflow = settings.mlflow
    if "mlflow/postgres" in folders:
        secret = reveal(env_secret("CHURN_MLFLOW_DATABASE_URL", settings.secrets_set))
        url = mlflow.tracking_uri if mlflow.tracking_uri.startswith("postgresql") else secret
        if not url:
            raise click.UsageError(
                "the snapshot holds the MLflow server's database: set CHURN_MLFLOW_DATABASE_URL to the "
                "(empty) database to restore it into"
            )
        databases["mlflow/postgres"] = url
        return targets, databases
    if not mlflow.tracking_uri.startswith("sqlite:///") or "://" in (mlflow.artifact_location or "://"):
        raise click.UsageError(
            "the snapshot holds a local MLflow store and the configured one is not a local SQLite store "
            "with local artifacts"
        )
    targets["mlflow/db"] = Path(mlflow.tracking_uri[len("sqlite:///") :]).parent
    targets["mlflow/artifacts"] = Path(mlflow.artifact_location)
    sources = json.loads(store.read(f"{found.prefix}/manifest.json")).get("sources", {})
    moved = {
        folder: (sources[folder], str(path))
        for folder, path in targets.items()
        if folder.startswith("mlflow/") and folder in sources and Path(sources[folder]) != path.absolute()
    }
    if moved and not relocate:
        raise click.UsageError(
            "the MLflow store would move ("
            + "; ".join(f"{f}: {a} -> {b}" for f, (a, b) in moved.items())
            + "): its database records absolute artifact paths, so the restored registry would "
            "point at the old place. Set CHURN_MLFLOW_DIR to where it was, or pass --relocate"
        )
    return targets, databases


@main.command("rebuild-model")
@click.argument("snapshot")
def rebuild_model(snapshot: str) -> None:
    """Retrain the model of SNAPSHOT from the training data in the snapshot and check that its
    metrics equal the recorded ones (exit 1 naming each that differs)."""
    from churn_platform.backups.catalog import RestoreRefused
    from churn_platform.cli.rebuild import rebuild_from_snapshot

    try:
        report = rebuild_from_snapshot(_backup_store(), snapshot)
    except RestoreRefused as exc:
        raise click.ClickException(str(exc)) from None
    for name, value in report.rebuilt.items():
        click.echo(f"  {name:22} recorded {report.recorded.get(name)!r:24} rebuilt {value!r}")
    if report.mismatches:
        raise click.ClickException("rebuilt model differs: " + "; ".join(report.mismatches))
    click.echo(f"rebuilt {report.prefix}: every metric equals the recorded one")


@main.group()
def metrics() -> None:
    """Prometheus metrics of the platform (README, "Observability")."""


def _metrics_collector():
    """The collector over the Dagster instance of DAGSTER_HOME, the MLflow registry and the warehouse
    the settings name, reporting on the definitions' jobs, assets and checks."""
    import dagster as dg

    from churn_platform.definitions import build_definitions
    from churn_platform.observability import PlatformCollector, Scope
    from churn_platform.resources import build_resources

    settings = load_settings()
    resources = build_resources(settings)
    observability = settings.observability
    try:
        instance = dg.DagsterInstance.get()
    except dg.DagsterError as exc:  # DAGSTER_HOME unset, not a directory, or its dagster.yaml wrong
        raise click.ClickException(str(exc)) from None
    return settings, PlatformCollector(
        instance,
        Scope.from_definitions(build_definitions(settings)),
        tracking=resources["mlflow_tracking"],
        warehouse=resources["io_manager"],
        timeout_seconds=observability.scrape_timeout_seconds,
        max_run_seconds=observability.max_run_seconds,
    )


@metrics.command("serve")
@click.option("--host", default=None, help="Address to listen on (default: CHURN_METRICS_HOST).")
@click.option("--port", default=None, type=int, help="Port (default: CHURN_METRICS_PORT).")
def metrics_serve(host: str | None, port: int | None) -> None:
    """Serve /metrics for Prometheus: runs, assets, checks, the champion and drift, read from the
    Dagster instance (DAGSTER_HOME) and the MLflow registry at every scrape."""
    import logging

    from churn_platform.observability.exporter import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings, collector = _metrics_collector()
    serve(collector, host or settings.observability.metrics_host, port or settings.observability.metrics_port)


@metrics.command("print")
def metrics_print() -> None:
    """Print one scrape of the metrics (what Prometheus would read) and exit."""
    from churn_platform.observability.exporter import render

    _, collector = _metrics_collector()
    try:
        click.echo(render(collector).decode(), nl=False)
    finally:
        collector.close()
