"""The local run launcher: Dagster's default one, plus the worker health check that run monitoring
needs. Without it, run monitoring can only time out runs that never start; a run whose worker died
after starting (killed by the kernel's OOM killer, or orphaned when `dagster dev` was stopped
mid-run) stays STARTED and holds its partition's slot until the code server that started it
notices, if it is still there. Production uses dagster-k8s's K8sRunLauncher, whose health check
reads the Kubernetes Job's status instead.
"""

import dagster as dg
import psutil
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher

WORKER_STARTED = "Started process for run"  # the run worker's first engine event names its pid


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        if WORKER_STARTED in (record.message or "") and event is not None:
            pid = event.engine_event_data.metadata.get("pid")
            if pid is not None:
                return int(pid.value)
    return None


def process_alive(pid: int) -> bool:
    """A zombie (dead, not yet reaped by a stopped parent) is not alive."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose run workers run monitoring can check (on this machine: the
    worker's process id, from its first engine event)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        pid = run_worker_pid(self._instance, run.run_id)
        if pid is None:  # not started yet, or not on this machine: leave it to the start timeout
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no run worker process recorded yet")
        if process_alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker process {pid} is gone (killed, or its machine stopped)"
        )
