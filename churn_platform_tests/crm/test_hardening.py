"""CRM hardening over real HTTP (the simulator): versions ordered by parsed time, the window read
from parsed times, malformed tickets quarantined (or failing the partition without retries), the
platform's own tickets left out, and export links that leave the CRM's host refused."""

import datetime as dt
import json
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from churn_platform.contracts.quarantine import QuarantineStore
from churn_platform.crm.assets import build_crm_assets
from churn_platform.crm.resources import ZendeskCRMResource
from churn_platform.crm.simulator import ZendeskSimulator
from churn_platform.crm.tickets import PLATFORM_TICKET_TAG
from churn_platform.crm.zendesk_api import CRMForeignLink
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import build_partitions
from churn_platform.settings import CRMSettings, load_settings
from churn_platform.storage.parquet_io_manager import ParquetIOManager

UTC = dt.UTC
TOKEN = "oauth-hardening-token-5e1d"
DAY = "2026-01-12"
DAY_START = dt.datetime(2026, 1, 12, tzinfo=UTC)
NOON = int(dt.datetime(2026, 1, 12, 12, tzinfo=UTC).timestamp())
PARTITIONS = build_partitions(load_settings({}))

# The quarantine store's layout under the test's data folder.
CRM_TICKETS_QUARANTINE = dg.AssetKey(["quarantine", "raw", "crm_tickets"])


def ticket(ticket_id: int, **overrides: Any) -> dict[str, Any]:
    """A ticket of DAY; ``generated_timestamp`` (Zendesk's change time, the export's order) is set
    per id so that the simulator's export order is known."""
    record = {
        "id": ticket_id,
        "subject": f"Question {ticket_id}",
        "description": "How do I export?",
        "status": "open",
        "requester_id": 1000 + ticket_id,
        "created_at": "2026-01-12T08:00:00Z",
        "updated_at": "2026-01-12T10:00:00Z",
        "satisfaction_rating": None,
        "priority": "normal",
        "tags": [],
        "generated_timestamp": NOON + ticket_id,
    }
    record.update(overrides)
    return record


def crm(url: str, **overrides: Any) -> ZendeskCRMResource:
    settings = {"base_url": url, "oauth_token": TOKEN, "page_size": 2, "max_attempts": 3}
    settings.update({"backoff_base_seconds": 0.001, "backoff_max_seconds": 0.01} | overrides)
    return ZendeskCRMResource(**settings)


def materialize(url: str, tmp_path, settings: CRMSettings | None = None) -> dg.ExecuteInProcessResult:
    crm_tickets, _ = build_crm_assets(PARTITIONS, settings)
    return dg.materialize(
        [crm_tickets],
        partition_key=DAY,
        raise_on_error=False,
        resources={
            "crm": crm(url),
            "io_manager": ParquetIOManager(base_path=str(tmp_path)),
            "quarantine": QuarantineStore(base_path=str(tmp_path / "quarantine")),
        },
    )


def stored(tmp_path, key: dg.AssetKey = keys.CRM_TICKETS) -> pd.DataFrame:
    return pd.read_parquet(UPath(tmp_path).joinpath(*key.path, f"{DAY}.parquet"))


def metadata_of(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (materialization,) = result.asset_materializations_for_node("raw__crm_tickets")
    return {name: getattr(value, "value", value) for name, value in materialization.metadata.items()}


# -- versions of one ticket: the newest by parsed time wins --------------------------------------
@pytest.mark.parametrize(
    "versions, kept",  # versions in export order: (status, updated_at)
    [
        # the case: compared as strings, "...00.500Z" < "...00Z" kept the older version
        ([("open", "2026-01-12T10:00:00Z"), ("solved", "2026-01-12T10:00:00.500Z")], "solved"),
        ([("solved", "2026-01-12T10:00:00.500Z"), ("open", "2026-01-12T10:00:00Z")], "solved"),
        ([("solved", "2026-01-12T12:00:00+02:00"), ("open", "2026-01-12T09:59:59Z")], "solved"),
        ([("open", "2026-01-12T10:00:00"), ("solved", "2026-01-12T10:30:00+00:00")], "solved"),
        ([("open", "2026-01-12T10:00:00Z"), ("pending", "2026-01-12T12:00:00+02:00")], "pending"),  # tie
        ([("open", "2026-01-12T10:00:00Z"), ("hold", "garbled")], "hold"),  # quarantined downstream
    ],
)
def test_export_keeps_the_newest_version_by_parsed_time(versions, kept):
    # Each version on its own page (page_size=1), in this order (generated_timestamp).
    tickets = [
        ticket(7, status=status, updated_at=when, generated_timestamp=NOON + i)
        for i, (status, when) in enumerate(versions)
    ]
    with ZendeskSimulator([ticket(1), *tickets], oauth_token=TOKEN, export_delay_seconds=0).running() as sim:
        with crm(sim.url, page_size=1).api() as api:
            exported = api.export_tickets(DAY_START)
    assert [t["status"] for t in exported if t["id"] == 7] == [kept]


# -- the partition's window reads parsed times ----------------------------------------------------
@pytest.mark.parametrize(
    "updated_at, in_window",
    [
        ("2026-01-12T00:00:00Z", True),
        ("2026-01-12T23:59:59.999999Z", True),
        ("2026-01-12T10:00:00", True),  # no zone: UTC
        ("2026-01-13T01:00:00+02:00", True),  # 2026-01-12 23:00 UTC
        ("2026-01-12T23:30:00-01:00", False),  # 2026-01-13 00:30 UTC
        ("2026-01-11T23:59:59.5Z", False),
        ("2026-01-13T00:00:00Z", False),
    ],
)
def test_the_window_filter_compares_parsed_times(updated_at, in_window):
    # Both tickets are exported (generated_timestamp on DAY); updated_at alone decides the window.
    records = [ticket(1), ticket(2, updated_at=updated_at)]
    with ZendeskSimulator(records, oauth_token=TOKEN).running() as sim:
        window = crm(sim.url).fetch_updated_tickets(DAY_START, DAY_START + dt.timedelta(days=1))
        assert sim.requests >= 1
    assert sorted(t["id"] for t in window) == ([1, 2] if in_window else [1])


# -- raw/crm_tickets: kept, quarantined or excluded, one row per case -----------------------------
CASES = [  # (overrides of a DAY ticket, expected: "kept" | "excluded" | [(field, rule)])
    ({}, "kept"),
    ({"updated_at": "2026-01-12T10:00:00"}, "kept"),  # no zone: UTC, not a TypeError
    ({"updated_at": "2026-01-12T10:00:00.500+00:00"}, "kept"),
    ({"requester_id": "1042"}, "kept"),
    ({"requester_id": "12.7"}, [("requester_id", "not_an_id")]),  # not customer 12 or 13
    ({"requester_id": 12.7}, [("requester_id", "not_an_id")]),
    ({"requester_id": "abc"}, [("requester_id", "not_an_id")]),  # not a bare ValueError
    ({"requester_id": None}, [("requester_id", "missing")]),  # not the whole day failing
    ({"updated_at": "2099-01-01T00:00:00Z"}, [("updated_at", "in_the_future")]),  # not dropped
    ({"updated_at": "last tuesday"}, [("updated_at", "not_a_time")]),
    ({"id": "T-9"}, [("id", "not_an_id")]),
    ({"subject": ["a", "list"]}, [("subject", "not_text")]),
    ({"tags": "vip billing"}, [("tags", "not_a_tag_list")]),
    ({"tags": [PLATFORM_TICKET_TAG], "requester_id": None}, "excluded"),  # a failure alert
    ({"external_id": "churn_platform_alert:5c2e", "requester_id": None}, "excluded"),
]


def test_raw_crm_tickets_keeps_good_rows_quarantines_bad_ones_and_excludes_its_own(tmp_path):
    records = [ticket(100 + i, **overrides) for i, (overrides, _) in enumerate(CASES)]
    records.append(ticket(300, updated_at="2026-01-13T10:00:00Z", generated_timestamp=NOON + 86400))
    with ZendeskSimulator(records, oauth_token=TOKEN).running() as sim:
        result = materialize(sim.url, tmp_path, CRMSettings(max_quarantine_percent=100))
    assert result.success

    kept = [100 + i for i, (_, outcome) in enumerate(CASES) if outcome == "kept"]
    frame = stored(tmp_path)
    assert sorted(frame["ticket_id"]) == kept  # ticket 300 belongs to the next day
    assert frame.set_index("ticket_id").loc[103, "customer_id"] == 1042
    assert frame.set_index("ticket_id").loc[101, "updated_at"] == pd.Timestamp("2026-01-12T10:00:00Z")

    expected = [  # in export order
        (None if case[0].get("id") == "T-9" else 100 + i, field, rule)
        for i, case in enumerate(CASES)
        if isinstance(case[1], list)
        for field, rule in case[1]
    ]
    quarantine = stored(tmp_path, CRM_TICKETS_QUARANTINE)
    found = [
        (None if pd.isna(t) else int(t), f, r)
        for t, f, r in zip(quarantine.ticket_id, quarantine.field, quarantine.rule, strict=True)
    ]
    assert found == sorted(expected, key=lambda row: row[0] is None)  # tickets without an id come last
    assert set(quarantine["partition"]) == {DAY}
    assert json.loads(quarantine["record"].iloc[0])["requester_id"] == "12.7"  # the ticket as exported
    assert quarantine.loc[quarantine.field == "requester_id", "value"].tolist()[:2] == ['"12.7"', "12.7"]

    metadata = metadata_of(result)
    assert metadata["quarantined_rows"] == len(expected)
    assert metadata["quarantine_problems"] == len(expected)
    assert metadata["excluded_platform_tickets"] == 2
    assert metadata["quarantined_by_rule"]["requester_id: not_an_id"] == 3
    assert len(metadata["quarantine_preview"]) == min(10, len(expected))
    assert set(metadata["quarantine_preview"][0]) == {"ticket_id", "field", "rule", "value"}
    assert metadata["quarantine"][DAY].endswith(f"quarantine/raw/crm_tickets/{DAY}.parquet")


def test_a_clean_run_removes_the_partitions_quarantine(tmp_path):
    with ZendeskSimulator([ticket(1), ticket(2, requester_id="x")], oauth_token=TOKEN).running() as sim:
        assert materialize(sim.url, tmp_path, CRMSettings(max_quarantine_percent=50)).success
    assert len(stored(tmp_path, CRM_TICKETS_QUARANTINE)) == 1
    with ZendeskSimulator([ticket(1), ticket(2)], oauth_token=TOKEN).running() as sim:
        result = materialize(sim.url, tmp_path)
    assert result.success and metadata_of(result)["quarantined_rows"] == 0
    assert "quarantine" not in metadata_of(result) and sorted(stored(tmp_path).ticket_id) == [1, 2]
    assert not UPath(tmp_path).joinpath(*CRM_TICKETS_QUARANTINE.path, f"{DAY}.parquet").exists()


def step_attempts(result: dg.ExecuteInProcessResult) -> int:
    return [e.event_type for e in result.all_events].count(dg.DagsterEventType.STEP_START)


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(e.event_specific_data.error.to_string() for e in result.get_step_failure_events())


def test_too_many_malformed_tickets_fail_the_partition_once_without_retries(tmp_path):
    records = [ticket(i) for i in range(1, 20)] + [
        ticket(50, requester_id="12.7"),
        ticket(51, requester_id=None),
    ]
    with ZendeskSimulator(records, oauth_token=TOKEN).running() as sim:
        result = materialize(sim.url, tmp_path)  # the default: at most 5 %
    assert not result.success
    assert step_attempts(result) == 1
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in [e.event_type for e in result.all_events]
    error = failure_text(result)
    assert "2 of 21 tickets (9.5 %) are malformed, more than CHURN_CRM_MAX_QUARANTINE_PERCENT (5 %)" in error
    assert "requester_id not_an_id (tickets [50]" in error and "requester_id missing (tickets [51]" in error
    assert not UPath(tmp_path).joinpath(*keys.CRM_TICKETS.path).exists()  # no output written
    assert len(stored(tmp_path, CRM_TICKETS_QUARANTINE)) == 2  # but the findings are kept


# -- after_url must stay on the configured CRM ----------------------------------------------------
class ForeignAfterURL(ZendeskSimulator):
    """A CRM whose export pages link to another host (``foreign_url``)."""

    foreign_url = ""

    def _export(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        status, body = super()._export(query)
        if body.get("after_url"):
            body["after_url"] = body["after_url"].replace(self.url, self.foreign_url)
        return status, body


def test_an_after_url_to_another_host_stops_the_export_without_sending_credentials(tmp_path, leak_scan):
    records = [ticket(i) for i in range(1, 6)]
    with ZendeskSimulator(records, oauth_token=TOKEN).running() as elsewhere:
        port = elsewhere.url.rsplit(":", 1)[1]
        sim = ForeignAfterURL(records, oauth_token=TOKEN)
        sim.foreign_url = f"http://localhost:{port}"  # reachable, so following it would be seen
        with sim.running():
            with pytest.raises(CRMForeignLink, match=f"after_url leads to http://localhost:{port}"):
                crm(sim.url).fetch_updated_tickets(DAY_START, DAY_START + dt.timedelta(days=1))
            with dg.instance_for_test() as instance:
                crm_tickets, _ = build_crm_assets(PARTITIONS)
                result = dg.materialize(
                    [crm_tickets],
                    instance=instance,
                    partition_key=DAY,
                    raise_on_error=False,
                    resources={
                        "crm": crm(sim.url),
                        "io_manager": ParquetIOManager(base_path=str(tmp_path)),
                        "quarantine": QuarantineStore(base_path=str(tmp_path / "quarantine")),
                    },
                )
                assert not result.success and step_attempts(result) == 1  # not retried
                error = failure_text(result)
                assert f"http://localhost:{port}" in error and sim.url in error
                leak_scan.assert_absent([TOKEN], error=error, instance=instance, run_id=result.run_id)
        assert elsewhere.requests == 0  # the foreign host never saw a request (nor the token)


def test_missing_credentials_fail_once_without_retries(tmp_path):
    crm_tickets, _ = build_crm_assets(PARTITIONS)
    result = dg.materialize(
        [crm_tickets],
        partition_key=DAY,
        raise_on_error=False,
        resources={
            "crm": ZendeskCRMResource(base_url="http://127.0.0.1:9"),
            "io_manager": ParquetIOManager(base_path=str(tmp_path)),
            "quarantine": QuarantineStore(base_path=str(tmp_path / "quarantine")),
        },
    )
    assert not result.success and step_attempts(result) == 1
    assert "CRM credentials missing" in failure_text(result)


def test_a_range_run_files_each_problem_under_the_day_its_ticket_was_placed_in(tmp_path):
    next_day = "2026-01-13"
    records = [
        *(ticket(i) for i in range(1, 5)),
        *(
            ticket(i, updated_at=f"{next_day}T10:00:00Z", generated_timestamp=NOON + 86400 + i)
            for i in range(5, 9)
        ),
        ticket(20, requester_id="x"),  # DAY, by updated_at
        ticket(
            21, requester_id="x", updated_at=f"{next_day}T09:00:00Z", generated_timestamp=NOON + 86400 + 21
        ),
        ticket(
            22, updated_at="garbled", generated_timestamp=NOON + 86400 + 22
        ),  # next day, by generated_timestamp
    ]
    crm_tickets, _ = build_crm_assets(PARTITIONS, CRMSettings(max_quarantine_percent=50))
    with ZendeskSimulator(records, oauth_token=TOKEN).running() as sim:
        result = dg.materialize(
            [crm_tickets],
            raise_on_error=False,
            tags={"dagster/asset_partition_range_start": DAY, "dagster/asset_partition_range_end": next_day},
            resources={
                "crm": crm(sim.url),
                "io_manager": ParquetIOManager(base_path=str(tmp_path)),
                "quarantine": QuarantineStore(base_path=str(tmp_path / "quarantine")),
            },
        )
    assert result.success
    folder = UPath(tmp_path).joinpath(*CRM_TICKETS_QUARANTINE.path)
    by_day = {day: pd.read_parquet(folder / f"{day}.parquet") for day in (DAY, next_day)}
    assert by_day[DAY]["ticket_id"].tolist() == [20]
    assert sorted(by_day[next_day]["ticket_id"]) == [21, 22]
    assert sorted(stored(tmp_path).ticket_id) == [1, 2, 3, 4]
