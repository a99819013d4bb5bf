"""Drive the real Dagster UI in headless Chromium (Playwright): the browser test and `make screenshots`.

1. ``prepare_state(root, ...)``: a small platform isolated in ``root``: its own DAGSTER_HOME (the
   repository's dagster.yaml copied in), data, backup and MLflow directories, every CHURN_* setting
   that matters explicit (daily partitions from ``days`` days before yesterday UTC to yesterday),
   filled by `churn-platform generate --start-date ...`. Commands run from ``root``, so a ``.env``
   in the repository (what `churn-platform demo` writes) is never read and none is written there.
   The newest days' landing files can be held back, for a test to land them later.
2. ``DagsterUI(state)``: `dagster dev -w workspace.yaml` (webserver, daemon, code server) on a free
   loopback port in its own process group, stopped with everything it started; headless Chromium
   (Debian's ``/usr/bin/chromium``: Playwright never downloads a browser here) on pages of it, with
   helpers for the flows the README describes (lineage, the Materialize dialog, sensors) and
   screenshots kept in the artifacts folder.

The UI has few test ids: selectors are roles and visible text where the UI has them, and the
stable attributes it renders (``data-tooltip`` holds an asset's or group's full name in the graph).
"""

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from churn_platform_tests.support.stack import BIN, REPO_ROOT, DagsterDev, wait_until

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DEFAULT_ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
VIEWPORT = {"width": 1600, "height": 1000}
LOGS_FOLDER = Path("landing") / "interaction_logs"
# The asset graph draws a node with its details (name, checks, partitions) from this zoom on, and
# only the (middle-truncated) name below it (Dagster 1.13's asset graph); nodes outside the
# viewport are not drawn at all.
DETAILED_NODE_SCALE = 0.6


def find_chromium() -> str | None:
    """A Chromium to launch: ``$CHURN_CHROMIUM``, else Debian's (``make ui-tools`` installs it)."""
    candidates = [os.environ.get("CHURN_CHROMIUM", ""), *CHROMIUM_CANDIDATES]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def artifacts_dir() -> Path:
    """Where screenshots are kept: ``$CHURN_TEST_ARTIFACTS``, default ``test-artifacts/ui/``."""
    path = Path(os.environ.get("CHURN_TEST_ARTIFACTS") or DEFAULT_ARTIFACTS)
    path.mkdir(parents=True, exist_ok=True)
    return path


def isolated_environ(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the caller's platform or instance settings, plus ``env``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_") and k != "DAGSTER_HOME"}
    return {**inherited, **env}


@dataclass
class UIState:
    """A small platform in a directory of its own: instance, data, settings (``env``) and dates."""

    root: Path
    home: Path
    data_dir: Path
    first_day: dt.date
    last_day: dt.date
    env: dict[str, str]
    held_back: dict[str, str] = field(default_factory=dict)  # days not generated yet (landed by `land`)

    @property
    def days(self) -> list[str]:
        count = (self.last_day - self.first_day).days + 1
        return [(self.first_day + dt.timedelta(days=i)).isoformat() for i in range(count)]

    def day(self, offset: int) -> str:
        """``day(0)`` is the newest daily partition (yesterday), ``day(-1)`` the one before, ..."""
        return (self.last_day + dt.timedelta(days=offset)).isoformat()

    @property
    def process_env(self) -> dict[str, str]:
        return isolated_environ({**self.env, "DAGSTER_HOME": str(self.home)})

    def landing_folder(self, day: str) -> Path:
        return self.data_dir / LOGS_FOLDER / f"date={day}"

    def land(self, day: str) -> list[Path]:
        """Land the next day of the generated dataset as a user does, with the README's one-liner
        `churn-platform generate --append-day` (the files appear atomically, with new mtimes)."""
        assert self.held_back.pop(day) == day, f"{day} is not the held-back day"
        self.run("churn-platform", "generate", "--append-day")
        return sorted(self.landing_folder(day).iterdir())

    def run(self, *args: str, timeout: float = 300) -> str:
        """``churn-platform ...`` or ``dagster ...`` from the virtualenv, on this state, from ``root``."""
        done = subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            cwd=self.root,
            env=self.process_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} exited with {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout


def prepare_state(
    root: Path,
    days: int = 35,
    customers: int = 50,
    seed: int = 5,
    hold_back: int = 0,
    extra_env: Mapping[str, str] | None = None,
) -> UIState:
    """A platform in ``root`` whose daily partitions are the ``days`` days ending yesterday (UTC),
    with as many days of generated data but the newest ``hold_back``, which ``state.land(day)``
    lands with `churn-platform generate --append-day`."""
    last = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    first = last - dt.timedelta(days=days - 1)
    root.mkdir(parents=True, exist_ok=True)
    home, data_dir = root / "dagster_home", root / "data"
    home.mkdir(exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        "CHURN_ENV": "local",
        "CHURN_DATA_DIR": str(data_dir),
        "CHURN_BACKUP_DIR": str(root / "backups"),
        "CHURN_MLFLOW_DIR": str(root / "mlflow"),
        "CHURN_START_DATE": first.isoformat(),
        "CHURN_TRAINING_WINDOW_DAYS": "14",
        # Sensors and schedules start stopped; the test turns on the one it watches.
        "CHURN_AUTOMATION_RUNNING": "0",
        "CHURN_LANDING_SENSOR_INTERVAL": "1",
        "CHURN_LANDING_QUIET_SECONDS": "1",
        # The landing sensor watches the two newest days only: turned on, it requests nothing older.
        "CHURN_LANDING_LOOKBACK_DAYS": "2",
        "CHURN_ONLINE_KEY_PREFIX": f"ui-{os.getpid()}-{time.time_ns()}",
        "CHURN_DAGSTER_UI_URL": "http://127.0.0.1:3000",  # replaced by the real address once started
        **(extra_env or {}),
    }
    state = UIState(root, home, data_dir, first, last, env)
    # The dataset ends `hold_back` days early; `state.land(day)` appends those days one at a time.
    state.run(
        "churn-platform",
        "generate",
        "--days",
        str(days - hold_back),
        "--customers",
        str(customers),
        "--seed",
        str(seed),
        "--start-date",
        first.isoformat(),
    )
    state.held_back.update({day: day for day in state.days[len(state.days) - hold_back :]})
    return state


@dataclass(frozen=True)
class GraphNode:
    group: str
    name: str


class DagsterUI:
    """`dagster dev` on ``state`` and headless Chromium on it; a context manager.

    ``page`` is a Playwright ``Page`` (``new_page()`` opens another one, with its own storage);
    ``shot(name)`` keeps a screenshot in ``artifacts``, numbered in the order taken.
    """

    def __init__(
        self,
        state: UIState,
        artifacts: Path | None = None,
        viewport: Mapping[str, int] = VIEWPORT,
        timeout_ms: float = 30_000,
    ) -> None:
        self.state = state
        self.artifacts = artifacts or artifacts_dir()
        self.viewport = dict(viewport)
        self.timeout_ms = timeout_ms
        self.dev = DagsterDev(state.home, state.env)
        self.dev.env = {**state.process_env, "CHURN_DAGSTER_UI_URL": self.dev.url}
        self._stack = contextlib.ExitStack()
        self._browser: Any = None
        self.page: Any = None
        self.shots: list[Path] = []

    @property
    def url(self) -> str:
        return self.dev.url

    def __enter__(self) -> "DagsterUI":
        from playwright.sync_api import sync_playwright

        chromium = find_chromium()
        if chromium is None:
            raise RuntimeError("no Chromium: `make ui-tools` installs Debian's chromium")
        try:
            self._stack.callback(self._stop_dev)
            self.dev.start(timeout=180)
            # The community sign-up dialog, shown once per instance on 127.0.0.1, would cover the page.
            self.graphql("mutation { setNuxSeen }")
            playwright = self._stack.enter_context(sync_playwright())
            self._browser = playwright.chromium.launch(
                executable_path=chromium, headless=True, args=["--disable-gpu", "--disable-dev-shm-usage"]
            )
            self._stack.callback(self._browser.close)
            self.page = self.new_page()
        except BaseException:
            self._print_log()
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._record_failure()
        self._stack.close()

    @contextlib.contextmanager
    def failure_evidence(self) -> Iterator[None]:
        """A screenshot of the page and the tail of the `dagster dev` log when the block fails (a
        test's failure does not reach the fixture that holds this driver)."""
        try:
            yield
        except BaseException:
            self._record_failure()
            raise

    def _record_failure(self) -> None:
        with contextlib.suppress(Exception):
            print(f"failure screenshot: {self.shot('failure')}")
        self._print_log()

    def _stop_dev(self, grace_seconds: float = 3) -> None:
        """SIGTERM to the whole process group, SIGKILL to whatever is left after a few seconds: the
        state is a throwaway directory, and a graceful `dagster dev` shutdown can take 30 s or more."""
        process = self.dev.process
        if process is None or process.poll() is not None:
            return
        pgid = os.getpgid(process.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_seconds)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait(timeout=10)

    def _print_log(self) -> None:
        if self.dev.log_path.exists():
            print(f"--- dagster dev log (tail) ---\n{self.dev.log_tail(80)}")

    # --- the browser ---------------------------------------------------------------------------

    def new_page(self, viewport: Mapping[str, int] | None = None) -> Any:
        """A page in a new browser context (its own local storage, e.g. a hidden navigation)."""
        context = self._browser.new_context(viewport=dict(viewport or self.viewport), device_scale_factor=1)
        context.set_default_timeout(self.timeout_ms)
        self._stack.callback(context.close)
        return context.new_page()

    def open(self, path: str, page: Any = None) -> Any:
        page = page or self.page
        page.goto(f"{self.url}{path}", wait_until="domcontentloaded")
        page.wait_for_load_state("networkidle", timeout=self.timeout_ms)
        return page

    def shot(self, name: str, page: Any = None, path: Path | None = None) -> Path:
        target = path or self.artifacts / f"{len(self.shots) + 1:02d}_{name}.png"
        (page or self.page).screenshot(path=str(target))
        self.shots.append(target)
        return target

    # --- the global asset lineage ----------------------------------------------------------------

    def open_lineage(self, page: Any, scale: float, hide_chrome: bool = True) -> None:
        """The global asset lineage with every group expanded, fitted to the page at ``scale``
        (the page's viewport is resized so the whole graph fits at that zoom)."""
        from playwright.sync_api import expect

        self.open("/asset-groups", page)
        if hide_chrome:
            page.get_by_role("button", name="Hide navigation").click()
            # The "Jump to..." asset tree beside the graph: its toggle sits left of the search box.
            page.locator("button:has([aria-label=panel_show_right])").last.click()
        page.locator("#zoom-slider-container button:has([aria-label=settings])").click()
        page.get_by_role("menuitem", name=re.compile("Expand all groups")).click()
        page.keyboard.press("Escape")
        page.wait_for_url(re.compile(r"[?&]expanded="))
        # Laid out again: expanded group boxes drawn, no folded group left.
        page.locator("foreignObject [class*=ExpandedGroupNode_groupNodeHeaderBox]").first.wait_for()
        expect(page.locator("[class*=CollapsedGroupNode_]")).to_have_count(0)
        svg = page.locator("[data-svg-viewport] svg").first
        graph_width, graph_height = float(svg.get_attribute("width")), float(svg.get_attribute("height"))
        box = page.locator("[data-svg-viewport]").bounding_box()
        viewport = page.viewport_size
        page.set_viewport_size(
            {
                "width": int(viewport["width"] - box["width"] + scale * graph_width),
                "height": int(viewport["height"] - box["height"] + scale * graph_height + 24),
            }
        )
        self.fit_graph(page)

    def fit_graph(self, page: Any) -> None:
        """Zoom to fit (a double click on the graph's background), then wait for it to settle."""
        viewport = page.locator("[data-svg-viewport]")
        viewport.dblclick(position={"x": 8, "y": viewport.bounding_box()["height"] - 8})
        slider = page.locator("#zoom-slider-container [role=slider]")
        last = None
        for _ in range(40):  # the zoom animates: wait until two readings agree
            page.wait_for_timeout(100)
            now = slider.get_attribute("aria-valuenow")
            if now == last:
                break
            last = now

    def graph_nodes(self, page: Any) -> set[GraphNode]:
        """Every asset drawn in detail in the graph, with the expanded group box it sits in."""
        groups = []
        for header in page.locator("foreignObject [class*=ExpandedGroupNode_groupNodeHeaderBox]").all():
            name = header.locator("[data-tooltip]").first.get_attribute("data-tooltip")
            box = header.locator("xpath=ancestor::*[local-name()='foreignObject'][1]").bounding_box()
            groups.append((name, box))
        nodes = set()
        for label in page.locator("foreignObject [class*=AssetNode_assetName] [data-tooltip]").all():
            box = label.bounding_box()
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            inside = [
                (g["width"] * g["height"], name)
                for name, g in groups
                if g["x"] <= x <= g["x"] + g["width"] and g["y"] <= y <= g["y"] + g["height"]
            ]
            group = min(inside)[1] if inside else ""  # the innermost box, were boxes ever nested
            nodes.add(GraphNode(group, label.get_attribute("data-tooltip")))
        return nodes

    # --- launching from an asset page --------------------------------------------------------------

    def materialize_dialog(self, asset_path: str, partitions: str) -> Any:
        """Open the asset's page, press Materialize and type ``partitions`` ("2026-01-02" or a range
        "[2026-01-02...2026-01-04]") in the dialog's partition selection; returns the dialog."""
        page = self.open(f"/assets/{asset_path}")
        page.get_by_role("button").filter(has_text="Materialize…").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text(re.compile(r"^Launch runs to materialize")).wait_for()
        selection = dialog.locator("input[type=text]").first
        selection.fill(partitions)
        selection.press("Enter")
        return dialog

    def launch(self, dialog: Any, button: str | re.Pattern[str], toast: str) -> str:
        """Press the dialog's launch button; returns the link of the toast that confirms it
        (``/runs/<id>`` for a run, ``/runs/b/<id>`` for a backfill)."""
        dialog.get_by_role("button", name=button).click()
        message = self.page.locator("[data-sonner-toast]").filter(has_text=toast)
        return message.locator("a[href*='/runs/']").first.get_attribute("href")

    def wait_for_run_page_status(self, run_path: str, timeout_ms: float = 120_000) -> str:
        """Open a run's page and wait until its header shows a final status (the page follows the
        run live); returns it."""
        page = self.open(run_path)
        status = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$")).first
        status.wait_for(timeout=timeout_ms)
        return status.inner_text()

    # --- automation ---------------------------------------------------------------------------------

    def sensor_path(self, name: str, location: str = "churn_platform") -> str:
        return f"/locations/{location}/sensors/{name}"

    def turn_on_sensor(self, name: str) -> None:
        """Open the sensor's page and switch "Running" on."""
        from playwright.sync_api import expect

        page = self.open(self.sensor_path(name))
        row = page.locator("tr").filter(has_text=re.compile(r"^\s*Running"))
        switch = row.get_by_role("checkbox")
        if not switch.is_checked():
            row.locator("label:has(input[type=checkbox])").click()
        expect(switch).to_be_checked()

    # --- state, through the webserver's GraphQL API (what the UI itself reads) ---------------------

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.dev.graphql(query, variables)

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
        return wait_until(predicate, timeout, what, interval)

    def runs(self, tags: Mapping[str, str] | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest runs (optionally with these tags): id, status and tags (a dict)."""
        run_filter = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        data = self.graphql(RUNS_QUERY, {"filter": run_filter, "limit": limit})
        runs = data["runsOrError"]["results"]
        for run in runs:
            run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
        return runs

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        return self.graphql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]

    def sensor_status(self, name: str, location: str = "churn_platform") -> str:
        selector = {
            "repositoryLocationName": location,
            "repositoryName": "__repository__",
            "sensorName": name,
        }
        data = self.graphql(SENSOR_QUERY, {"selector": selector})
        return data["sensorOrError"]["sensorState"]["status"]

    def materialized_partitions(self, asset_path: list[str]) -> set[str]:
        data = self.graphql(PARTITIONS_QUERY, {"path": asset_path})
        status = (data["assetNodeOrError"] or {}).get("assetPartitionStatuses") or {}
        materialized = set(status.get("materializedPartitions") or [])
        for time_range in status.get("ranges") or []:
            if time_range["status"] == "MATERIALIZED":
                materialized.update(_days_between(time_range["startKey"], time_range["endKey"]))
        return materialized

    def freshness(self) -> dict[tuple[str, ...], tuple[dict[str, Any] | None, str | None]]:
        """Per asset key path: its freshness policy (None without one) and the state the instance
        evaluated (None before the first evaluation)."""
        result = {}
        for node in self.graphql(FRESHNESS_QUERY)["assetNodes"]:
            policy = node["internalFreshnessPolicy"]
            if policy is None and node["freshnessPolicy"]:
                policy = {"__typename": "LegacyFreshnessPolicy", **node["freshnessPolicy"]}
            status = (node["freshnessStatusInfo"] or {}).get("freshnessStatus")
            result[tuple(node["assetKey"]["path"])] = (policy, status)
        return result


def _days_between(first: str, last: str) -> Iterator[str]:
    day, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    while day <= end:
        yield day.isoformat()
        day += dt.timedelta(days=1)


RUNS_QUERY = """
query Runs($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    ... on Runs { results { runId status tags { key value } } }
  }
}"""

BACKFILL_QUERY = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { id status numPartitions partitionNames runs(limit: 20) { runId status } }
  }
}"""

SENSOR_QUERY = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { ... on Sensor { sensorState { status } } }
}"""

PARTITIONS_QUERY = """
query Partitions($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode {
      assetPartitionStatuses {
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions }
      }
    }
  }
}"""

FRESHNESS_QUERY = """
query Freshness {
  assetNodes {
    assetKey { path }
    freshnessPolicy { maximumLagMinutes }
    internalFreshnessPolicy {
      __typename
      ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds }
      ... on CronFreshnessPolicy { deadlineCron lowerBoundDeltaSeconds timezone }
    }
    freshnessStatusInfo { freshnessStatus }
  }
}"""
