"""Automation end to end with real processes: `dagster dev` (webserver + daemon) on moto's S3
server, the Zendesk simulator and a Slack-style webhook receiver over HTTP.

1. log files landing for a day start a landing-sensor run, and the automation brings the day's
   activity, features and scores (and the label that became computable) up to date;
2. `churn-platform backfill` (GraphQL, what the UI's "Materialize" dialog sends) materializes
   every partition of a date range, in one run (single-run backfill policies);
3. a malformed file makes a run fail; the alert reaches the webhook and opens a CRM ticket.
"""

import datetime as dt
import subprocess
import time

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from churn_platform.crm.export import read_export
from churn_platform.crm.simulator import ZendeskSimulator
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import LABEL_HORIZON_DAYS
from churn_platform.resources import build_resources
from churn_platform.settings import load_settings
from churn_platform.synthetic.generator import generate
from churn_platform.synthetic.writer import write_generated
from churn_platform_tests.support.data import S3_TEST_ENV
from churn_platform_tests.support.servers import WebhookReceiver
from churn_platform_tests.support.stack import BIN, DagsterDev, run_seed, wait_until

pytestmark = pytest.mark.slow

DAYS, CUSTOMERS = 45, 200
TODAY = dt.datetime.now(dt.UTC).date()
LAST = TODAY - dt.timedelta(days=1)  # the newest closed daily partition
FIRST = LAST - dt.timedelta(days=DAYS - 1)
EMAIL, TOKEN = "ops@example.com", "e2e-token"
LANDING_SENSOR = "interaction_logs_landing_sensor"


def day(offset: int) -> str:
    return (LAST + dt.timedelta(days=offset)).isoformat()


class Deployment:
    def __init__(
        self, dev: DagsterDev, settings, webhook: WebhookReceiver, simulator: ZendeskSimulator, held: dict
    ):
        self.dev, self.settings, self.webhook, self.simulator, self.held = (
            dev,
            settings,
            webhook,
            simulator,
            held,
        )
        self.instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dev.home)))
        self.zone = build_resources(settings)["landing_zone"]

    def materializations(self, asset: dg.AssetKey, partition: str) -> list[dg.EventLogRecord]:
        return list(
            self.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition]), limit=100
            ).records
        )

    def runs(self, **tags: str) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(filters=dg.RunsFilter(tags=tags)))

    def wait_materialized_after(
        self, asset: dg.AssetKey, partition: str, since: float, timeout: float = 180
    ) -> None:
        wait_until(
            lambda: any(r.timestamp > since for r in self.materializations(asset, partition)),
            timeout,
            f"{asset.to_user_string()} partition {partition} to be materialized",
        )


@pytest.fixture(scope="module")
def deployment(s3_server, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        for name, value in S3_TEST_ENV.items():  # the test process reads and writes the bucket too
            patch.setenv(name, value)
        yield from _deployment(s3_server, tmp_path_factory)


def _deployment(s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    env = {
        **S3_TEST_ENV,
        "CHURN_ENV": "s3",
        "CHURN_S3_BUCKET": s3_server.new_bucket(),
        "CHURN_S3_BACKUP_BUCKET": s3_server.new_bucket(versioned=True, object_lock=True),
        "CHURN_S3_ENDPOINT_URL": s3_server.endpoint,
        "CHURN_START_DATE": FIRST.isoformat(),
        "CHURN_MLFLOW_DIR": str(root / "mlflow"),
        "CHURN_TRAINING_WINDOW_DAYS": "14",
        "CHURN_AUTOMATION_RUNNING": "1",
        "CHURN_ONLINE_KEY_PREFIX": f"e2e-{dt.datetime.now().timestamp():.0f}",  # the automation loads Redis too
        "CHURN_ALERT_CRM_TICKETS": "1",
        "CHURN_LANDING_SENSOR_INTERVAL": "1",
        "CHURN_AUTOMATION_INTERVAL": "5",
        "CHURN_CRM_EMAIL": EMAIL,
        "ZENDESK_API_TOKEN": TOKEN,
    }
    settings = load_settings(env)
    data = generate(FIRST, days=DAYS, customers=CUSTOMERS, seed=11)
    zone = build_resources(settings)["landing_zone"]
    write_generated(data, zone, settings.storage.crm_export_path, zone.connection)
    # Hold back the newest day's log files: the test lands them itself.
    held = {}
    for path in zone.files_for(LAST.isoformat()):
        held[path.name] = path.read_text()
        path.unlink()

    simulator = ZendeskSimulator(
        read_export(settings.storage.crm_export_path, zone.connection), email=EMAIL, api_token=TOKEN
    ).start()
    webhook = WebhookReceiver()
    env.update({"CHURN_CRM_URL": simulator.url, "SLACK_WEBHOOK_URL": webhook.url})
    dev = DagsterDev(root / "dagster_home", env)
    try:
        run_seed(dev.env, FIRST.isoformat(), LAST.isoformat(), dev.home)
        env["CHURN_DAGSTER_UI_URL"] = dev.url
        dev.env["CHURN_DAGSTER_UI_URL"] = dev.url
        dev.start()
        yield Deployment(dev, settings, webhook, simulator, held)
    except BaseException:
        print(dev.log_tail() if dev.log_path.exists() else "dagster dev did not start")
        raise
    finally:
        dev.stop()
        webhook.stop()
        simulator.stop()


AUTOMATION_IN_UI = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name sensorState { status } } schedules { name scheduleState { status } } } } } }"""


def test_sensors_and_schedules_are_running_in_the_deployment(deployment):
    """What the UI's Automation page lists, through the same GraphQL API."""
    repository = deployment.dev.graphql(AUTOMATION_IN_UI)["repositoriesOrError"]["nodes"][0]
    sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
    assert sensors == {
        "interaction_logs_landing_sensor": "RUNNING",
        "churn_automation": "RUNNING",
        "drift_retraining": "RUNNING",
        "run_failure_alert": "RUNNING",
        "alert_outbox": "RUNNING",
        "retraining_notice": "RUNNING",
        "metadata_backup_after_training": "RUNNING",
        "partition_freshness": "RUNNING",
        "check_failure_alert": "RUNNING",
    }
    assert schedules == {
        "daily_ingestion_schedule": "RUNNING",
        "weekly_retraining_schedule": "RUNNING",
        "metadata_backup_schedule": "RUNNING",
    }


def test_landed_files_start_a_sensor_run_and_automation_updates_downstream(deployment):
    d, last = deployment, LAST.isoformat()
    unchanged_before = len(d.materializations(keys.CUSTOMER_DAILY_ACTIVITY, day(-5)))
    started = time.time()
    for name, content in d.held.items():  # several files for one day
        d.zone.write_file(last, name, content)

    run = wait_until(
        lambda: d.runs(**{"dagster/sensor_name": LANDING_SENSOR, "dagster/partition": last}),
        120,
        f"a landing-sensor run for {last}",
    )[0]
    d.wait_materialized_after(keys.INTERACTION_LOGS, last, started)
    for asset in (
        keys.CUSTOMER_DAILY_ACTIVITY,
        keys.CUSTOMER_FEATURES,
        keys.CHURN_SCORES,
        keys.FEATURE_DRIFT,
    ):
        d.wait_materialized_after(asset, last, started)
    # The label whose 30-day outcome window the new day completed.
    d.wait_materialized_after(
        keys.CHURN_LABELS, (LAST - dt.timedelta(days=LABEL_HORIZON_DAYS)).isoformat(), started
    )

    assert d.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
    # One run for the day however many files, and the partitions that did not change were not re-run.
    time.sleep(3)
    assert len(d.runs(**{"dagster/sensor_name": LANDING_SENSOR, "dagster/partition": last})) == 1
    assert len(d.materializations(keys.CUSTOMER_DAILY_ACTIVITY, day(-5))) == unchanged_before
    scores = d.materializations(keys.CHURN_SCORES, last)[0].asset_materialization.metadata
    assert str(scores["model_version"].value) == "1"  # the champion seeded before the day landed


def test_backfill_of_a_date_range_through_the_cli(deployment):
    """`churn-platform backfill` launches an asset backfill over the webserver's GraphQL API (what
    the UI sends); the daemon runs the whole range of single-run assets in one run."""
    d = deployment
    first, last = day(-20), day(-16)
    started = time.time()
    result = subprocess.run(
        [
            str(BIN / "churn-platform"),
            "backfill",
            "--from",
            first,
            "--to",
            last,
            "--group",
            "raw",
            "--group",
            "features",
            "--url",
            d.dev.url,
            "--timeout",
            "240",
        ],
        env=d.dev.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    backfill_id = result.stdout.split()[1].rstrip(":")
    assert "COMPLETED" in result.stdout
    partitions = [day(n) for n in range(-20, -15)]
    for asset in (
        keys.CRM_TICKETS,
        keys.INTERACTION_LOGS,
        keys.CUSTOMER_DAILY_ACTIVITY,
        keys.CUSTOMER_FEATURES,
    ):
        for partition in partitions:
            assert any(r.timestamp > started for r in d.materializations(asset, partition)), (
                asset,
                partition,
            )
    # Exactly the range: the features of later days were not touched.
    assert not any(r.timestamp > started for r in d.materializations(keys.CUSTOMER_FEATURES, day(-15)))
    # Single-run backfill policies: the whole range in one run, not one per day.
    runs = d.runs(**{"dagster/backfill": backfill_id})
    assert len(runs) == 1
    assert (
        runs[0].tags["dagster/asset_partition_range_start"],
        runs[0].tags["dagster/asset_partition_range_end"],
    ) == (first, last)


def test_a_failed_run_alerts_slack_and_opens_a_crm_ticket(deployment):
    d = deployment
    broken_day = day(-2)
    d.zone.write_file(broken_day, "zz-broken.jsonl", "this is not JSON\n")
    run = wait_until(
        lambda: [
            r
            for r in d.runs(**{"dagster/sensor_name": LANDING_SENSOR, "dagster/partition": broken_day})
            if r.status == dg.DagsterRunStatus.FAILURE
        ],
        120,
        f"the landing-sensor run for {broken_day} to fail",
    )[0]
    posted = wait_until(
        lambda: [b for b in d.webhook.bodies if run.run_id in b.get("text", "")],
        90,
        "the failure alert at the webhook",
    )
    assert keys.INTERACTION_LOGS.to_user_string() in posted[0]["text"] and broken_day in posted[0]["text"]
    assert f"{d.dev.url}/runs/{run.run_id}" in str(posted[0]["blocks"])
    ticket = wait_until(
        lambda: [t for t in d.simulator.created if run.run_id in t["description"]],
        90,
        "a CRM ticket for the failed run",
    )[0]
    assert broken_day in ticket["subject"] and "zz-broken.jsonl" in ticket["description"]
    # The bad file did not overwrite the day's good data.
    good = d.materializations(keys.INTERACTION_LOGS, broken_day)
    assert good and all(r.run_id != run.run_id for r in good)


def test_a_failed_backfill_names_the_step_partition_and_cause(deployment):
    """`churn-platform backfill` over a day with a malformed file fails with one line per failed
    step: the step, the partitions and the root cause (the file and line), exit code 1."""
    d = deployment
    broken_day = day(-3)
    d.zone.write_file(broken_day, "zz-broken.jsonl", "this is not JSON\n")
    result = subprocess.run(
        [str(BIN / "churn-platform"), "backfill", "--from", broken_day, "--to", broken_day, "--group", "raw"]
        + ["--url", d.dev.url, "--timeout", "240"],
        env=d.dev.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "ended COMPLETED_FAILED" in error[0] or "ended FAILED" in error[0], error[0]
    step = keys.INTERACTION_LOGS.to_python_identifier()
    assert f"step {step} failed for {broken_day}" in error[0], error[0]
    assert "zz-broken.jsonl" in error[0] and "line 1" in error[0], error[0]
