"""Check-failure alerts: the platform's own contract check, run for real on a table that breaks the
customer-features contract, fails (blocking) and reaches a real Slack-style receiver exactly once,
however many ticks follow; a non-blocking failure also opens a CRM ticket (simulator); warnings,
the promotion gate and `partitions_on_time` are left to the paths that own them."""

import dagster as dg
import pyarrow as pa
import pytest

from churn_platform.alerts.check_alerts import alerted_checks, build_check_failure_sensor
from churn_platform.alerts.resources import SlackWebhook
from churn_platform.contracts.features import CUSTOMER_FEATURES
from churn_platform.contracts.verify import build_contract_check
from churn_platform.crm.resources import ZendeskCRMResource
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.freshness import PARTITIONS_ON_TIME
from churn_platform.settings import AlertSettings, SettingsError, load_settings
from churn_platform.storage.parquet_io_manager import ParquetIOManager
from churn_platform_tests.support.sensors import sensor_ticker

DAY = "2026-01-05"
UI = "http://dagster.example:3000"
DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")
CONTRACT = dg.AssetCheckKey(keys.CUSTOMER_FEATURES, "contract")


def broken_features() -> pa.Table:
    """One day of customer features with a duplicated key and a null customer id."""
    good = {
        c.name: (0 if c.type == "int64" else 0.0 if c.type == "float64" else None)
        for c in CUSTOMER_FEATURES.columns
    }
    rows = [
        {**good, "customer_id": 1, "as_of_date": DAY, "plan": "pro", "is_active": True},
        {**good, "customer_id": 1, "as_of_date": DAY, "plan": "pro", "is_active": True},  # duplicate key
        {**good, "customer_id": None, "as_of_date": DAY, "plan": "pro", "is_active": True},
    ]
    return pa.table({c.name: [row[c.name] for row in rows] for c in CUSTOMER_FEATURES.columns})


@pytest.fixture
def platform(tmp_path):
    """The customer-features contract check of the platform (the same factory) over a stand-in
    asset written by the platform's Parquet IO manager, on a real instance."""

    @dg.asset(key=keys.CUSTOMER_FEATURES, partitions_def=DAILY)
    def customer_features() -> pa.Table:
        return broken_features()

    check = build_contract_check(keys.CUSTOMER_FEATURES, CUSTOMER_FEATURES, DAILY)
    resources = {"io_manager": ParquetIOManager(base_path=str(tmp_path / "warehouse"))}
    defs = dg.Definitions(assets=[customer_features], asset_checks=[check], resources=resources)
    with dg.instance_for_test() as instance:
        yield defs, instance, [customer_features, check], resources


def ticker(defs, instance, slack_url, crm_url, settings):
    sensor = build_check_failure_sensor(settings, running=False)
    resources = {
        "slack": SlackWebhook(webhook_url=slack_url),
        "crm": ZendeskCRMResource(base_url=crm_url, email="ops@example.com", api_token="s3cret"),
    }
    return sensor_ticker(sensor, instance, resources, defs)


def test_a_failed_contract_check_is_alerted_exactly_once(platform, simulator, webhook):
    defs, instance, definitions, resources = platform
    settings = AlertSettings(dagster_ui_url=UI, crm_tickets=True)
    tick = ticker(defs, instance, webhook.url, simulator.url, settings)
    assert "0 new" in tick()

    result = dg.materialize(
        definitions, instance=instance, partition_key=DAY, resources=resources, raise_on_error=False
    )
    assert not result.success  # the blocking contract check failed its step, hence the run
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.asset_check_key == CONTRACT

    assert "1 new failed check evaluation(s) alerted; delivered 1" in tick()
    for _ in range(3):
        assert "0 new" in tick()
    assert len(webhook.bodies) == 1
    posted = webhook.bodies[0]
    assert "features/customer_features:contract" in posted["text"] and DAY in posted["text"]
    assert "appear more than once" in posted["blocks"][2]["text"]["text"]
    fields = " ".join(field["text"] for field in posted["blocks"][1]["fields"])
    assert result.run_id in fields and "blocking: its run failed" in fields
    # The run failed on it: run_failure_alert opens the ticket for that run, not this sensor.
    assert simulator.created == []

    # The same check failing without a run (and without blocking anything) also opens a ticket.
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=keys.CUSTOMER_FEATURES,
            check_name="contract",
            passed=False,
            description="reported by an external validator",
            partition=DAY,
        )
    )
    assert "1 new" in tick() and "0 new" in tick()
    assert len(webhook.bodies) == 2 and len(simulator.created) == 1
    ticket = simulator.created[0]
    assert "features/customer_features:contract" in ticket["subject"] and "check_failure" in ticket["tags"]
    assert "reported by an external validator" in ticket["description"]


def test_warnings_are_alerted_only_when_asked(platform, simulator, webhook):
    defs, instance, _, _ = platform
    warning = dg.AssetCheckEvaluation(
        asset_key=keys.CUSTOMER_FEATURES,
        check_name="contract",
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description="3 rows quarantined",
    )
    instance.report_runless_asset_event(warning)
    errors_only = ticker(defs, instance, webhook.url, simulator.url, AlertSettings(dagster_ui_url=UI))
    assert "0 new" in errors_only() and webhook.bodies == []
    settings = load_settings({"CHURN_CHECK_ALERT_SEVERITY": "warn", "CHURN_DAGSTER_UI_URL": UI})
    with_warnings = ticker(defs, instance, webhook.url, simulator.url, settings.alerts)
    assert "1 new" in with_warnings() and len(webhook.bodies) == 1
    assert "3 rows quarantined" in webhook.bodies[0]["text"]
    off = load_settings({"CHURN_CHECK_ALERT_SEVERITY": "off"}).alerts
    assert "off" in ticker(defs, instance, webhook.url, simulator.url, off)()


def test_the_gate_and_the_deadline_checks_are_not_alerted_here():
    checks = [
        keys.PROMOTION_GATE,
        CONTRACT,
        dg.AssetCheckKey(keys.CRM_TICKETS, PARTITIONS_ON_TIME),
        keys.RECOVERY_OBJECTIVES,
    ]
    assert alerted_checks(checks, AlertSettings()) == [keys.RECOVERY_OBJECTIVES, CONTRACT]
    everything = load_settings({"CHURN_CHECK_ALERT_IGNORE": "none"}).alerts
    assert keys.PROMOTION_GATE in alerted_checks(checks, everything)
    with pytest.raises(SettingsError, match="CHURN_CHECK_ALERT_IGNORE: 'promotion_gate' is not"):
        load_settings({"CHURN_CHECK_ALERT_IGNORE": "promotion_gate"})
