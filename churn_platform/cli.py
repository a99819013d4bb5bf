"""The `churn-platform` command line."""

from __future__ import annotations

import datetime as dt
import time

import click

from churn_platform.settings import load_settings


@click.group()
def main() -> None:
    """churn_platform: customer-churn data platform on Dagster."""


def _generate(days: int, customers: int, seed: int, start_date: str | None) -> dict[str, int]:
    from churn_platform.resources import build_resources
    from churn_platform.synthetic.generator import generate
    from churn_platform.synthetic.writer import write_generated

    settings = load_settings()
    resources = build_resources(settings)
    start = dt.date.fromisoformat(start_date or settings.start_date)
    data = generate(start, days=days, customers=customers, seed=seed)
    stats = write_generated(data, resources["landing_zone"], settings.crm_export_path, resources["landing_zone"].connection)
    stats["first_day"], stats["last_day"] = data.start_date.isoformat(), data.end_date.isoformat()
    return stats


_days = click.option("--days", default=120, show_default=True, help="Days of data to generate.")
_customers = click.option("--customers", default=1000, show_default=True, help="Number of customers.")
_seed = click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same data).")


@main.command()
@_days
@_customers
@_seed
@click.option("--start-date", default=None, help="First day (default: CHURN_START_DATE, 2026-01-01).")
def generate(days: int, customers: int, seed: int, start_date: str | None) -> None:
    """Write synthetic interaction logs and CRM tickets into the landing zone (any CHURN_ENV)."""
    stats = _generate(days, customers, seed, start_date)
    click.echo(" ".join(f"{k}={v}" for k, v in stats.items()))


@main.command()
@_days
@_customers
@_seed
def demo(days: int, customers: int, seed: int) -> None:
    """Generate data and materialize the whole asset graph on local storage."""
    from churn_platform.demo import DemoPlan, ensure_dagster_home, run_demo, summarize

    ensure_dagster_home()
    import dagster as dg

    from churn_platform.definitions import defs

    settings = load_settings()
    started = time.perf_counter()
    click.echo(f"Generating {days} days for {customers} customers (seed {seed}) into {settings.data_root} ...")
    stats = _generate(days, customers, seed, None)
    click.echo("  " + " ".join(f"{k}={v}" for k, v in stats.items()))
    plan = DemoPlan.for_days(dt.date.fromisoformat(settings.start_date), days)
    with dg.DagsterInstance.get() as instance:
        click.echo("Materializing the asset graph ...")
        timings = run_demo(defs, instance, plan, log=click.echo)
        for line in summarize(instance, defs, settings):
            click.echo(line)
    click.echo("")
    click.echo("Timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
               + f"; total {time.perf_counter() - started:.1f}s")
