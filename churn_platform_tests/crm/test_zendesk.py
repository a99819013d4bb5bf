"""The Zendesk client against the simulator, over real HTTP."""

import datetime as dt
import logging
import time

import dagster as dg
import httpx
import pytest
from upath import UPath

from churn_platform.contracts.quarantine import QuarantineStore
from churn_platform.crm.assets import build_crm_assets
from churn_platform.crm.resources import ZendeskCRMResource
from churn_platform.crm.simulator import FaultConfig, ZendeskSimulator
from churn_platform.crm.tickets import PLATFORM_EXTERNAL_ID_PREFIX, PLATFORM_TICKET_TAG
from churn_platform.crm.zendesk_api import CRMAPIError, RetrySettings, ZendeskAPI, basic_auth_header
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import build_partitions
from churn_platform.settings import load_settings
from churn_platform.storage.parquet_io_manager import ParquetIOManager
from churn_platform.synthetic.generator import generate

UTC = dt.UTC
TOKEN = "oauth-test-token-8c1f"
START = dt.datetime(2026, 1, 10, tzinfo=UTC)
END = dt.datetime(2026, 1, 17, tzinfo=UTC)


@pytest.fixture(scope="module")
def tickets():
    return generate(dt.date(2026, 1, 1), days=30, customers=400, seed=4).tickets


crm_tickets, _ = build_crm_assets(build_partitions(load_settings({})))


def expected_ids(tickets, start=START, end=END):
    def updated(t):
        return dt.datetime.fromisoformat(t["updated_at"].replace("Z", "+00:00"))

    return sorted(t["id"] for t in tickets if start <= updated(t) < end)


def client(url, **overrides):
    settings = {
        "base_url": url,
        "oauth_token": TOKEN,
        "page_size": 25,
        "timeout_seconds": 5.0,
        "max_attempts": 8,
        "backoff_base_seconds": 0.001,
        "backoff_max_seconds": 0.01,
    }
    settings.update(overrides)
    return ZendeskCRMResource(**settings)


def test_export_follows_the_cursor_and_keeps_the_window(tickets):
    with ZendeskSimulator(tickets, oauth_token=TOKEN).running() as sim:
        fetched = client(sim.url).fetch_updated_tickets(START, END)
        assert sorted(t["id"] for t in fetched) == expected_ids(tickets)
        assert sim.requests > len(tickets) // 25 // 3  # several pages were followed


def test_api_token_auth_and_a_wrong_token_fails_without_echoing_it(tickets):
    with ZendeskSimulator(tickets, email="ops@example.com", api_token="api-tok-123").running() as sim:
        ok = client(sim.url, oauth_token=None, email="ops@example.com", api_token="api-tok-123")
        assert sorted(t["id"] for t in ok.fetch_updated_tickets(START, END)) == expected_ids(tickets)
        with pytest.raises(CRMAPIError, match="authentication failed") as failure:
            client(
                sim.url, oauth_token=None, email="ops@example.com", api_token="api-tok-WRONG"
            ).fetch_updated_tickets(START, END)
        assert "WRONG" not in str(failure.value)


def test_fifty_randomized_fault_schedules_lose_and_duplicate_nothing(tickets, monkeypatch):
    expected = expected_ids(tickets)
    with ZendeskSimulator(tickets, oauth_token=TOKEN).running() as clean:
        assert sorted(t["id"] for t in client(clean.url).fetch_updated_tickets(START, END)) == expected
        pages = clean.requests  # what the export costs without faults
    # Every wait the client asks for (recorded, not timed): Retry-After is 0 here, backoff <= 0.01 s.
    waits = []
    real_wait = ZendeskAPI._wait
    monkeypatch.setattr(
        ZendeskAPI, "_wait", lambda self, state: waits.append(real_wait(self, state)) or waits[-1]
    )
    injected = refused_total = wasted_total = 0
    for seed in range(50):
        faults = FaultConfig(
            rate_limit=0.12,
            retry_after_seconds=0,
            server_error=0.1,
            malformed=0.08,
            empty_page=0.15,
            duplicates=0.3,
            slow=0.02,
            slow_seconds=0.4,
            seed=seed,
        )
        with ZendeskSimulator(tickets, oauth_token=TOKEN, faults=faults).running() as sim:
            fetched = client(sim.url, timeout_seconds=0.25, max_attempts=12).fetch_updated_tickets(START, END)
            ids = [t["id"] for t in fetched]
            assert len(ids) == len(set(ids)), f"seed {seed}: duplicates"
            assert sorted(ids) == expected, f"seed {seed}: lost tickets"
            injected += sum(sim.served.values())
            # Each refused response costs exactly one more request; a truncated or empty page or a
            # timeout at most one: nothing is fetched again without a fault, the export never restarts.
            served = sim.served
            refused = served["rate_limit"] + served["server_error"]
            wasted_at_most = refused + served["malformed"] + served["empty_page"] + served["slow"]
            assert pages + refused <= sim.requests <= pages + wasted_at_most, f"seed {seed}: {sim.requests}"
            refused_total += refused
            wasted_total += sim.requests - pages
    assert injected > 300  # the schedules really did inject faults (450 with these seeds)
    # One wait before each retry (every refused response is retried), never a long one.
    assert refused_total <= len(waits) <= wasted_total and max(waits) <= 0.01


def test_rate_limits_wait_for_retry_after(tickets):
    faults = FaultConfig(rate_limit=0.5, retry_after_seconds=1, seed=1)
    with ZendeskSimulator(tickets, oauth_token=TOKEN, faults=faults).running() as sim:
        started = time.monotonic()
        fetched = client(sim.url, page_size=200).fetch_updated_tickets(START, END)
        elapsed = time.monotonic() - started
        assert sorted(t["id"] for t in fetched) == expected_ids(tickets)
        assert sim.served["rate_limit"] >= 1 and elapsed >= sim.served["rate_limit"] * 1.0


def test_pages_that_never_recover_fail_naming_url_and_problem(tickets):
    with ZendeskSimulator(tickets, oauth_token=TOKEN, faults=FaultConfig(malformed=1.0)).running() as sim:
        with pytest.raises(CRMAPIError) as failure:
            client(sim.url, max_attempts=3).fetch_updated_tickets(START, END)
        message = str(failure.value)
        assert f"{sim.url}/api/v2/incremental/tickets/cursor.json" in message
        assert "not valid JSON" in message and "gave up after 3 attempts" in message


def test_export_start_time_must_be_a_minute_in_the_past(tickets):
    with ZendeskSimulator(tickets, oauth_token=TOKEN).running() as sim:
        with pytest.raises(ValueError, match="at least one minute in the past"):
            client(sim.url).fetch_updated_tickets(dt.datetime.now(UTC), dt.datetime.now(UTC))
        response = httpx.get(
            f"{sim.url}/api/v2/incremental/tickets/cursor.json",
            params={"start_time": int(time.time())},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert response.status_code == 400


def test_created_tickets_appear_in_the_cursor_paginated_list(tickets):
    with ZendeskSimulator(tickets[:5], oauth_token=TOKEN).running() as sim:
        new_id = client(sim.url).create_ticket(
            "churn_platform run failed", f"asset {keys.CHURN_MODEL.to_user_string()}", ["alert"]
        )
        assert new_id == max(t["id"] for t in tickets[:5]) + 1
        headers = {"Authorization": f"Bearer {TOKEN}"}
        seen, url = [], f"{sim.url}/api/v2/tickets.json?page[size]=2"
        while url:
            page = httpx.get(url, headers=headers).json()
            seen += [t["id"] for t in page["tickets"]]
            assert page["meta"]["has_more"] == (page["links"]["next"] is not None)
            url = page["links"]["next"]
        assert seen == sorted(t["id"] for t in tickets[:5]) + [new_id]
        assert sim.created[0]["subject"] == "churn_platform run failed"
        # The platform's own tickets carry its mark, so raw/crm_tickets leaves them out.
        assert sim.created[0]["tags"] == ["alert", PLATFORM_TICKET_TAG]
        assert sim.created[0]["external_id"].startswith(PLATFORM_EXTERNAL_ID_PREFIX)


def test_asset_ingests_through_http_and_secrets_stay_out_of_logs_and_metadata(
    tickets, tmp_path, monkeypatch, caplog, leak_scan
):
    secret = "zd-api-token-9f8e7d6c5b4a"
    monkeypatch.setenv("ZENDESK_API_TOKEN", secret)
    faults = FaultConfig(rate_limit=0.1, retry_after_seconds=0, server_error=0.1, malformed=0.1, seed=7)
    caplog.set_level(logging.DEBUG)
    with ZendeskSimulator(tickets, email="ops@example.com", api_token=secret, faults=faults).running() as sim:
        crm = client(
            sim.url, oauth_token=None, email="ops@example.com", api_token=dg.EnvVar("ZENDESK_API_TOKEN")
        )
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [crm_tickets],
                instance=instance,
                partition_key="2026-01-12",
                resources={
                    "crm": crm,
                    "io_manager": ParquetIOManager(base_path=str(tmp_path)),
                    "quarantine": QuarantineStore(base_path=str(tmp_path / "quarantine")),
                },
            )
            assert result.success
            text = "\n".join(str(e) for e in instance.all_logs(result.run_id))
            assert sum(sim.served.values()) > 0  # faults were injected, and retried away
            leak_scan.assert_absent(
                [secret, basic_auth_header("ops@example.com", secret).split()[1]],
                instance=instance,
                run_id=result.run_id,
            )
    stored = UPath(tmp_path).joinpath(*keys.CRM_TICKETS.path, "2026-01-12.parquet")
    import pandas as pd

    assert sorted(pd.read_parquet(stored)["ticket_id"]) == expected_ids(
        tickets, dt.datetime(2026, 1, 12, tzinfo=UTC), dt.datetime(2026, 1, 13, tzinfo=UTC)
    )
    assert secret not in text and secret not in caplog.text
    assert basic_auth_header("ops@example.com", secret).split()[1] not in text + caplog.text


@pytest.mark.parametrize("failure", ["wrong api token (401)", "wrong oauth token (401)", "retries exhausted"])
def test_failed_crm_runs_keep_the_secret_out_of_errors_logs_and_the_event_log(
    failure, tickets, tmp_path, monkeypatch, leak_scan
):
    """The failure paths report the URL and the problem, never the credential that was sent."""
    configured = {
        "wrong api token (401)": "zd-api-token-WRONG-51f0c2",
        "wrong oauth token (401)": "oauth-token-WRONG-77a9e3",
        "retries exhausted": "oauth-token-RIGHT-3b8d41",
    }[failure]
    if failure == "wrong api token (401)":
        monkeypatch.setenv("ZENDESK_API_TOKEN", configured)
        auth = {"oauth_token": None, "email": "ops@example.com", "api_token": dg.EnvVar("ZENDESK_API_TOKEN")}
        sent = [configured, basic_auth_header("ops@example.com", configured).split()[1]]
    else:
        monkeypatch.setenv("ZENDESK_OAUTH_TOKEN", configured)
        auth = {"oauth_token": dg.EnvVar("ZENDESK_OAUTH_TOKEN")}
        sent = [configured]
    server_token = "oauth-token-RIGHT-3b8d41"
    faults = FaultConfig(server_error=1.0) if failure == "retries exhausted" else FaultConfig()
    simulator = ZendeskSimulator(
        tickets,
        oauth_token=server_token,
        email="ops@example.com",
        api_token="zd-api-token-RIGHT-0d2e",
        faults=faults,
    )
    with simulator.running() as sim, dg.instance_for_test() as instance:
        result = dg.materialize(
            [crm_tickets],
            instance=instance,
            partition_key="2026-01-12",
            raise_on_error=False,
            resources={
                "crm": client(sim.url, max_attempts=3, **auth),
                "io_manager": ParquetIOManager(base_path=str(tmp_path)),
                "quarantine": QuarantineStore(base_path=str(tmp_path / "quarantine")),
            },
        )
        assert not result.success
        errors = [e.event_specific_data.error for e in result.get_step_failure_events()]
        error = "\n".join(e.to_string() for e in errors)
        if failure == "retries exhausted":
            assert "gave up after 3 attempts" in error and sim.served["server_error"] >= 3
            # The step's own retries (each logs the error again) are in the scanned event log too.
            kinds = [e.event_type for e in result.all_events]
            assert dg.DagsterEventType.STEP_UP_FOR_RETRY in kinds
        else:
            assert "authentication failed (401)" in error
            # Refused credentials stay refused: one attempt of the step, no step retries.
            kinds = [e.event_type for e in result.all_events]
            assert kinds.count(dg.DagsterEventType.STEP_START) == 1
            assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds
        leak_scan.assert_absent(sent, error=error, instance=instance, run_id=result.run_id)
        assert leak_scan.scanned["run's event log"] > 0 and leak_scan.scanned["captured logs"] > 0


def test_a_crm_that_stays_broken_fails_the_asset_and_writes_nothing(tickets, tmp_path):
    with ZendeskSimulator(tickets, oauth_token=TOKEN, faults=FaultConfig(server_error=1.0)).running() as sim:
        result = dg.materialize(
            [crm_tickets],
            partition_key="2026-01-12",
            raise_on_error=False,
            resources={
                "crm": client(sim.url, max_attempts=3),
                "io_manager": ParquetIOManager(base_path=str(tmp_path)),
                "quarantine": QuarantineStore(base_path=str(tmp_path / "quarantine")),
            },
        )
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "server error 50" in error and "gave up after 3 attempts" in error
    assert not (tmp_path / keys.CRM_TICKETS.path[0]).exists()


def test_low_level_client_retries_connection_errors_then_names_the_url():
    api = ZendeskAPI(
        "http://127.0.0.1:9",
        "Bearer x",
        timeout_seconds=0.5,
        retry=RetrySettings(max_attempts=2, backoff_base_seconds=0.001, backoff_max_seconds=0.01),
    )
    with pytest.raises(
        CRMAPIError, match=r"http://127.0.0.1:9/api/v2/incremental/tickets/cursor.json: connection failed"
    ):
        api.export_tickets(START)


def test_fault_spec_parses_for_the_cli():
    assert FaultConfig.parse("rate_limit=0.2,seed=3") == FaultConfig(rate_limit=0.2, seed=3)
    with pytest.raises(ValueError, match="unknown fault 'nope'"):
        FaultConfig.parse("nope=1")
