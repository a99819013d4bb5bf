"""`make screenshots`: the README's pictures of the Dagster UI, regenerated from a small platform
built from scratch in a temporary directory, through the browser test's driver.

    python -m churn_platform_tests.ui.screenshots [OUTPUT_DIR]   # default docs/screenshots

writes ``lineage.png`` (the global lineage, every group expanded), ``asset_page.png`` (a daily
asset's page: newest partition, check results, freshness, metadata) and ``asset_partitions.png``
(its Partitions tab: every day's state, the newest one's metadata). The platform: 45 days ending
yesterday for 80 customers, its history materialized (ingestion, labels, a model, scores), then
the newest day's interaction logs from the UI's Materialize dialog, as a user would, and that
day's features.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from churn_platform_tests.support.stack import REPO_ROOT
from churn_platform_tests.ui.dagster_ui import DagsterUI, find_chromium, prepare_state

DAYS, CUSTOMERS = 45, 80
ASSET_PATH = "raw/interaction_logs"
FEATURES_RUN = ("dagster", "asset", "materialize", "-m", "churn_platform.definitions")
FEATURES_RUN += ("--select", "features/customer_daily_activity,features/customer_features")
ASSET_VIEWPORT = {"width": 1600, "height": 1120}
LINEAGE_SCALE = 0.5  # names stay readable; below 0.6 the graph draws names only, not details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", nargs="?", default=str(REPO_ROOT / "docs" / "screenshots"))
    parser.add_argument(
        "--keep", action="store_true", help="Keep the temporary platform (its path is printed)."
    )
    args = parser.parse_args()
    if find_chromium() is None:
        sys.exit("no Chromium at /usr/bin/chromium: run `make ui-tools` (Debian's chromium)")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="churn-ui-screenshots-"))
    started = time.perf_counter()
    try:
        print(f"Generating {DAYS} days for {CUSTOMERS} customers in {root} ...", flush=True)
        state = prepare_state(root, days=DAYS, customers=CUSTOMERS, seed=7)
        print("Materializing the history (ingestion, labels, model, scores) ...", flush=True)
        seed = ["-m", "churn_platform_tests.support.stack", "seed", state.days[0], state.days[-1]]
        seeded = subprocess.run(  # the end-to-end tests' seeding: everything but the newest day's logs
            [sys.executable, *seed], cwd=REPO_ROOT, env=state.process_env, capture_output=True, text=True
        )
        if seeded.returncode != 0:
            sys.exit(f"materializing the history failed:\n{seeded.stderr[-5000:]}")
        print("Starting dagster dev and Chromium ...", flush=True)
        with DagsterUI(state) as ui:  # a failure leaves its screenshot in test-artifacts/ui/
            take(ui, output)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"Done in {time.perf_counter() - started:.0f}s")


def take(ui: DagsterUI, output: Path) -> None:
    from playwright.sync_api import expect

    newest = ui.state.day(0)
    # The newest day's logs, materialized from the UI: a single-partition run, whose metadata (rows,
    # file URI, SHA-256, fingerprints) the asset page then shows for that partition.
    dialog = ui.materialize_dialog(ASSET_PATH, newest)
    status = ui.wait_for_run_page_status(ui.launch(dialog, "Launch 1 run", toast="Launched run"))
    if status != "Success":
        raise RuntimeError(f"materializing {ASSET_PATH} {newest} from the UI: {status}")
    # ... and the day's features after it (as the automation would), so that the lineage shows the
    # daily groups complete.
    ui.state.run(*FEATURES_RUN, "--partition", newest)

    page = ui.new_page({"width": 1600, "height": 1000})
    ui.open_lineage(page, scale=LINEAGE_SCALE)
    ui.shot("lineage", page=page, path=output / "lineage.png")
    print(f"  {output / 'lineage.png'}")

    # The asset's page: the newest partition's materialization, check results, freshness and
    # metadata (the column list folded so the metadata fits).
    page = ui.open(f"/assets/{ASSET_PATH}", ui.new_page(ASSET_VIEWPORT))
    expect(page.get_by_text(newest, exact=True).first).to_be_visible()
    expect(page.get_by_text("Freshness policy", exact=True).first).to_be_visible()
    columns = page.get_by_role("button", name=re.compile(r"^view_column Columns"))
    columns.click()
    expect(columns).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_text("sha256", exact=True)).to_be_in_viewport()
    page.wait_for_timeout(500)  # the folding arrow's animation
    ui.shot("asset_page", page=page, path=output / "asset_page.png")
    print(f"  {output / 'asset_page.png'}")

    # Its Partitions tab: every daily partition's state, and the newest one's metadata.
    page = ui.open(f"/assets/{ASSET_PATH}?view=partitions&partition={newest}", page)
    expect(page.get_by_text(f"Materialized ({len(ui.state.days)})")).to_be_visible()
    expect(page.get_by_text("sha256", exact=True)).to_be_in_viewport()
    ui.shot("asset_partitions", page=page, path=output / "asset_partitions.png")
    print(f"  {output / 'asset_partitions.png'}")


if __name__ == "__main__":
    main()
