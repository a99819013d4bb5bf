"""raw/inference_logs: the predictions the scoring service answered on a day, from the landing zone."""

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from churn_platform.contracts.inference_logs import INFERENCE_LOGS
from churn_platform.contracts.verify import build_contract_check
from churn_platform.inference.log import InferenceLogError, list_day_files, read_inference_files
from churn_platform.inference.resources import InferenceLogStore
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration.partitions import PlatformPartitions
from churn_platform.orchestration.retries import EXTERNAL_CALL_RETRY
from churn_platform.storage.materializations import SOURCE_FILES_METADATA
from churn_platform.storage.parquet_io_manager import to_json_metadata

# The service flushes its log every few seconds; a day is read once it is over and the last
# flush of a service that answered until midnight has landed.
INGEST_CRON = "30 0 * * *"


def build_inference_assets(partitions: PlatformPartitions) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=keys.INFERENCE_LOGS,
        group_name="raw",
        partitions_def=partitions.daily,
        # A range (a backfill) is one run, like the other raw assets; the IO manager splits the
        # output into days by the answer time.
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=dg.AutomationCondition.on_cron(INGEST_CRON, "UTC"),
        retry_policy=EXTERNAL_CALL_RETRY,
        kinds={"parquet"},
        metadata={"partition_column": "answered_at", **INFERENCE_LOGS.definition_metadata()},
    )
    def inference_logs(context: dg.AssetExecutionContext, inference_log_store: InferenceLogStore) -> pa.Table:
        """Every prediction `churn-platform serve` answered on the day (request id, customer, model
        version, features date, probability, latency, caller), typed and checked. A day without
        files is an empty table (the service may not run); a malformed line fails the run naming
        the file and line."""
        root = inference_log_store.root()
        tables, read_by_day = [], {}
        try:
            for day in context.partition_keys:
                table, read_by_day[day] = read_inference_files(day, list_day_files(root, day))
                tables.append(table)
        except InferenceLogError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from None  # a bad file stays bad
        table = pa.concat_tables(tables)
        latency = table.column("latency_ms")
        context.add_output_metadata(
            {
                "inference_files": sum(len(read) for read in read_by_day.values()),
                # By day (a range's metadata is attached to each of its days): what
                # backups/inference_logs copies, and checks it copies unchanged.
                SOURCE_FILES_METADATA: to_json_metadata(read_by_day),
                "predictions": table.num_rows,
                "customers": len(pc.unique(table.column("customer_id")).drop_null()),
                "model_versions": sorted(set(table.column("model_version").to_pylist())),
                "latency_p99_ms": round(float(pc.quantile(latency, 0.99)[0].as_py()), 2)
                if table.num_rows
                else 0.0,
            }
        )
        return table

    return [inference_logs]


def build_inference_checks(partitions: PlatformPartitions) -> list[dg.AssetChecksDefinition]:
    return [build_contract_check(keys.INFERENCE_LOGS, INFERENCE_LOGS, partitions.daily)]
