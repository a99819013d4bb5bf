"""Launch an asset backfill through the Dagster webserver's GraphQL API, exactly as the UI's
"Materialize" dialog does: the backfill daemon then honours each asset's BackfillPolicy (one run
for the whole range where the policy is single-run). Used by `churn-platform backfill`."""

import time
from collections.abc import Sequence

import dagster as dg

from churn_platform.orchestration import kubernetes
from churn_platform.orchestration.graphql import GraphQLError, graphql

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on BackfillNotFoundError { message }
    ... on PythonError { message }
  }
}"""
BACKFILL_FAILURES = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill {
      error { message }
      runs(limit: 1000) { runId status tags { key value } }
    }
  }
}"""
RUN_FAILURES = """
query($runId: ID!) {
  logsForRun(runId: $runId, limit: 100000) {
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey error { message cause { message cause { message cause { message } } } } }
        ... on RunFailureEvent { message }
      }
    }
  }
}"""
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
SUCCEEDED = {"COMPLETED", "COMPLETED_SUCCESS"}


class BackfillError(GraphQLError):
    """The backfill was refused or did not succeed (unreachable webserver: GraphQLError)."""


def launch_backfill(url: str, asset_keys: Sequence[dg.AssetKey], first: str, last: str) -> str:
    """Start a backfill of the partitions ``first``..``last`` of each of ``asset_keys``; returns its id.

    Exactly that range of each asset: given partition names and an asset selection instead, Dagster
    would extend the backfill to every downstream partition that reads the range, e.g. 29 more days
    of rolling features, whose windows then reach days after the range that may not exist yet."""
    result = graphql(
        url,
        LAUNCH_BACKFILL,
        {
            "params": {
                "fromFailure": False,
                # Sizes the run pod under the Kubernetes run launcher (by the heaviest asset).
                "tags": [
                    {"key": k, "value": v} for k, v in kubernetes.run_tags_for_assets(asset_keys).items()
                ],
                "partitionsByAssets": [
                    {
                        "assetKey": {"path": list(key.path)},
                        "partitions": {"range": {"start": first, "end": last}},
                    }
                    for key in asset_keys
                ],
            }
        },
    )["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"backfill not launched: {result.get('message', result['__typename'])}")
    return result["backfillId"]


def backfill_status(url: str, backfill_id: str) -> str:
    result = graphql(url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    if result["__typename"] != "PartitionBackfill":
        raise BackfillError(f"backfill {backfill_id}: {result.get('message', result['__typename'])}")
    return result["status"]


def _partitions_of(tags: list[dict]) -> str:
    by_key = {t["key"]: t["value"] for t in tags}
    if "dagster/partition" in by_key:
        return by_key["dagster/partition"]
    start, end = (
        by_key.get("dagster/asset_partition_range_start"),
        by_key.get("dagster/asset_partition_range_end"),
    )
    if start and start == end:
        return start
    return f"{start}..{end}" if start else "unpartitioned"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def explain_failure(url: str, backfill_id: str) -> list[str]:
    """One line per failed step of the backfill's failed runs: step, partition(s) and the root
    cause (the innermost error's first line), or the backfill's own error."""
    result = graphql(url, BACKFILL_FAILURES, {"id": backfill_id})["partitionBackfillOrError"]
    lines = []
    if result.get("error"):
        lines.append(f"backfill error: {_first_line(result['error']['message'])}")
    for run in result.get("runs") or []:
        if run["status"] != "FAILURE":
            continue
        events = graphql(url, RUN_FAILURES, {"runId": run["runId"]})["logsForRun"].get("events") or []
        partitions = _partitions_of(run["tags"])
        steps = [e for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
        for event in steps:
            error = event.get("error") or {}
            while error.get("cause"):
                error = error["cause"]
            lines.append(
                f"step {event['stepKey']} failed for {partitions}: {_first_line(error.get('message'))}"
            )
        if not steps:  # the run failed outside a step (e.g. its worker died)
            messages = [e.get("message") for e in events if e["__typename"] == "RunFailureEvent"]
            lines.append(
                f"run {run['runId'][:8]} failed for {partitions}: {_first_line(messages[-1] if messages else '')}"
            )
    return lines


def wait_for_backfill(url: str, backfill_id: str, timeout_seconds: float, poll_seconds: float = 2.0) -> str:
    """Poll until the backfill finishes; raises unless it succeeded."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        status = backfill_status(url, backfill_id)
        if status in FINISHED:
            if status not in SUCCEEDED:
                causes = explain_failure(url, backfill_id)
                raise BackfillError(
                    f"backfill {backfill_id} ended {status}"
                    + (": " + "; ".join(causes) if causes else "")
                    + f" (details: {url}/runs/b/{backfill_id})"
                )
            return status
        time.sleep(poll_seconds)
    raise BackfillError(
        f"backfill {backfill_id} still running after {timeout_seconds:.0f}s: see {url}/runs/b/{backfill_id}"
    )
