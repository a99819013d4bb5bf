"""The Dagster UI end to end, in headless Chromium, on a real `dagster dev` (webserver + daemon) over
a small platform of its own (35 days ending yesterday, 50 customers; yesterday's log files held back):

1. the global lineage, every group expanded, draws every asset of the definitions in its group;
2. one partition of raw/interaction_logs materialized from its page (Materialize, partition
   dialog, "Launch 1 run") succeeds;
3. a backfill of three partitions launched from the same dialog materializes all three (one run:
   single-run backfill policy);
4. the landing sensor, switched on in the UI, requests a run for a day whose files land, and the
   run appears on the sensor's page;
5. the asset's Checks tab lists its data-quality checks (the contract's), the contract passing; an
   asset's freshness policy and state, where the definitions declare one.

Screenshots of every step go to $CHURN_TEST_ARTIFACTS (default test-artifacts/ui/). Skipped only
when no Chromium is installed (`make ui-tools` installs Debian's; Playwright never downloads one).
Steps 3 and 4 overlap: the backfill daemon picks new backfills up every 30 s, so the sensor step
runs meanwhile and the backfill's partitions are checked after it; the checks come last, once
every run is over. State is awaited through the UI or its GraphQL API, never with fixed sleeps.
"""

import contextlib
import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from churn_platform.definitions import build_definitions
from churn_platform.orchestration import asset_keys as keys
from churn_platform.settings import load_settings
from churn_platform_tests.ui.dagster_ui import (
    DETAILED_NODE_SCALE,
    DagsterUI,
    artifacts_dir,
    find_chromium,
    prepare_state,
)

pytestmark = pytest.mark.slow

DAYS, CUSTOMERS = 35, 50
ASSET = keys.INTERACTION_LOGS  # a daily asset with contract checks, the landing sensor's target
ASSET_PATH = "/".join(ASSET.path)
SENSOR = "interaction_logs_landing_sensor"
RUN_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    if find_chromium() is None:
        pytest.skip(
            "no Chromium at /usr/bin/chromium ($CHURN_CHROMIUM to point elsewhere): `make ui-tools` "
            "installs Debian's package; Playwright is never allowed to download a browser here"
        )
    artifacts = artifacts_dir()
    for old in artifacts.glob("[0-9][0-9]_*.png"):
        old.unlink()
    with timed("0 generate data"):
        state = prepare_state(tmp_path_factory.mktemp("ui"), days=DAYS, customers=CUSTOMERS, hold_back=1)
    with contextlib.ExitStack() as stack:
        with timed("0 start dagster dev and chromium"):
            driver = stack.enter_context(DagsterUI(state, artifacts))
        yield driver


def test_dagster_ui_end_to_end(ui: DagsterUI) -> None:
    with ui.failure_evidence():
        run_steps(ui, build_definitions(load_settings(ui.state.env)))


def run_steps(ui: DagsterUI, defs) -> None:
    with timed("1 lineage"):
        check_lineage(ui, defs)
    with timed("2 materialize one partition"):
        check_materialize_one_partition(ui, ui.state.day(-1))
    with timed("3 launch backfill"):
        backfill_id, backfilled = launch_backfill(ui, [ui.state.day(-4), ui.state.day(-2)])
    with timed("4 landing sensor"):
        check_landing_sensor(ui, ui.state.day(0))
        ui.wait(  # the sensor's run succeeds too
            lambda: ui.state.day(0) in ui.materialized_partitions(ASSET.path),
            RUN_TIMEOUT_S,
            f"the sensor's run to materialize {ui.state.day(0)}",
        )

    with timed("3 backfill materialized"):
        # The backfill's one run (single-run backfill policy) materializes all three partitions. (Its
        # status turns "completed" only at the backfill daemon's next look, every 30 s: not waited for.)
        ui.wait(
            lambda: set(backfilled) <= ui.materialized_partitions(ASSET.path),
            RUN_TIMEOUT_S,
            f"the backfill to materialize {backfilled}",
            interval=1,
        )
        backfill = ui.backfill(backfill_id)
        assert [r["status"] for r in backfill["runs"]] == ["SUCCESS"], backfill
        page = ui.open(f"/runs/b/{backfill_id}")
        expect(page.get_by_text(f"{backfilled[0]}...{backfilled[-1]}").first).to_be_visible()
        page.get_by_role("tab", name="Runs").click()  # the backfill's run, succeeded
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()
        ui.shot("backfill_run")
        # Every partition launched from the UI or by the sensor shows as materialized.
        page = ui.open(f"/assets/{ASSET_PATH}?view=partitions")
        expect(page.get_by_text(f"Materialized ({len(backfilled) + 2})")).to_be_visible()
        ui.shot("partitions")

    with timed("5 checks and freshness"):  # last: every run is over, so check results are final
        check_asset_checks_and_freshness(ui, defs, ui.state.day(-1))


@contextlib.contextmanager
def timed(step: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    print(f"step {step}: {time.perf_counter() - started:.1f}s")


def check_lineage(ui: DagsterUI, defs) -> None:
    """1. Every asset key of the definitions is drawn in the expanded global lineage, in its group."""
    graph = defs.resolve_asset_graph()
    expected = {(graph.get(key).group_name, key.path[-1]) for key in graph.get_all_asset_keys()}
    page = ui.new_page()
    # Zoomed in far enough that each node shows its full name (the graph truncates names below).
    ui.open_lineage(page, scale=DETAILED_NODE_SCALE + 0.1)
    shown = {(node.group, node.name) for node in ui.graph_nodes(page)}
    ui.shot("lineage_expanded", page=page)
    assert shown == expected, f"missing: {sorted(expected - shown)}; unexpected: {sorted(shown - expected)}"
    page.context.close()


def check_materialize_one_partition(ui: DagsterUI, day: str) -> None:
    """2. Materialize one partition from the asset's page; its run succeeds."""
    dialog = ui.materialize_dialog(ASSET_PATH, day)
    assert re.search(r"\b1 partition\b", dialog.inner_text())
    ui.shot("materialize_dialog")
    run_path = ui.launch(dialog, "Launch 1 run", toast="Launched run")
    status = ui.wait_for_run_page_status(run_path, timeout_ms=RUN_TIMEOUT_S * 1000)
    ui.shot("run_succeeded")
    assert status == "Success"
    expect(ui.page.get_by_text(f"partition: {day}").first).to_be_visible()
    assert day in ui.materialized_partitions(ASSET.path)  # the instance agrees


def launch_backfill(ui: DagsterUI, day_range: list[str]) -> tuple[str, list[str]]:
    """3. Launch a backfill of a few partitions from the partition dialog (checked at the end)."""
    first, last = day_range
    days = [d for d in ui.state.days if first <= d <= last]
    dialog = ui.materialize_dialog(ASSET_PATH, f"[{first}...{last}]")
    assert re.search(rf"\b{len(days)} partitions\b", dialog.inner_text())
    ui.shot("backfill_dialog")
    backfill_path = ui.launch(dialog, "Launch backfill", toast="Created backfill")
    backfill_id = backfill_path.rstrip("/").rsplit("/", 1)[-1]
    assert sorted(ui.backfill(backfill_id)["partitionNames"]) == days
    return backfill_id, days


def check_landing_sensor(ui: DagsterUI, day: str) -> None:
    """4. Switch the landing sensor on in the UI, land a day's files, see the sensor's run."""
    ui.turn_on_sensor(SENSOR)
    assert ui.sensor_status(SENSOR) == "RUNNING"
    ui.state.land(day)
    sensor_runs = lambda: [
        r for r in ui.runs({"dagster/sensor_name": SENSOR}) if r["tags"].get("dagster/partition") == day
    ]
    (run,) = ui.wait(sensor_runs, 90, f"the landing sensor to request a run for {day}")
    page = ui.open(ui.sensor_path(SENSOR))
    page.get_by_role("button", name="Runs", exact=True).click()
    # The run the sensor requested, listed on the sensor's page (short id) with its partition.
    expect(page.get_by_text(run["runId"][:8], exact=True).first).to_be_visible()
    expect(page.get_by_text(f"partition: {day}").first).to_be_visible()
    ui.shot("sensor_run")


def check_asset_checks_and_freshness(ui: DagsterUI, defs, day: str) -> None:
    """5. The asset's Checks tab lists every check the definitions give it (the contract's among
    them) and the contract passed for ``day``; an asset's freshness policy and its state, where the
    definitions declare one."""
    graph = defs.resolve_asset_graph()
    expected_checks = sorted(k.name for k in graph.asset_check_keys if k.asset_key == ASSET)
    assert "contract" in expected_checks  # churn_platform/contracts: every raw asset has one
    page = ui.open(f"/assets/{ASSET_PATH}?view=checks")
    expect(page.get_by_text(f"Checks ({len(expected_checks)})")).to_be_visible()
    for name in expected_checks:
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    page.get_by_text("contract", exact=True).first.click()
    ui.shot("asset_checks")
    # The contract's result for the partition materialized from the UI (the "latest execution" may
    # be the backfill's range run, which Dagster shows as not evaluated per partition).
    page.get_by_role("tab", name="Execution history").click()
    expect(page.get_by_role("row").filter(has_text=day).filter(has_text="Passed").first).to_be_visible()
    ui.shot("contract_history")

    # Freshness: another change gives the daily assets Dagster's FreshnessPolicy (a cron deadline).
    # For an asset that declares one, the asset page shows "Freshness policy" with the state the
    # instance evaluated (Passing, Warning, Failed, Not evaluated); this asserts that for this
    # asset, or the first asset with a policy, and otherwise that the page claims no policy.
    freshness = ui.freshness()
    with_policy = sorted(
        (path != tuple(ASSET.path), path) for path, (policy, _) in freshness.items() if policy
    )
    if not with_policy:
        page = ui.open(f"/assets/{ASSET_PATH}")
        expect(page.get_by_text("Latest materialization").first).to_be_visible()
        assert page.get_by_text("Freshness policy", exact=True).count() == 0
        return
    path = with_policy[0][1]
    policy, status = freshness[path]
    assert policy["__typename"] in (
        "CronFreshnessPolicy",
        "TimeWindowFreshnessPolicy",
        "LegacyFreshnessPolicy",
    )
    page = ui.open(f"/assets/{'/'.join(path)}")
    heading = page.get_by_text("Freshness policy", exact=True).first  # in the Status section
    expect(heading).to_be_visible()
    states = re.compile("^(" + "|".join(FRESHNESS_TEXT.values()) + ")$")
    badge = heading.locator("xpath=..").get_by_text(states).first  # the state, under the heading
    expect(badge).to_be_visible()
    ui.shot(f"freshness_{path[-1]}")
    # The state shown is the one the instance evaluated (the daemon may evaluate in between).
    assert badge.inner_text() in {FRESHNESS_TEXT[status], FRESHNESS_TEXT[ui.freshness()[path][1]]}


# What the asset page's freshness badge says for each state (Dagster 1.13); None: not evaluated yet.
FRESHNESS_TEXT = {
    "HEALTHY": "Passing",
    "WARNING": "Warning",
    "DEGRADED": "Failed",
    "UNKNOWN": "Not evaluated",
    "NOT_APPLICABLE": "None set",
    None: "No data",
}
