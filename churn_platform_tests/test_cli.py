"""`churn-platform generate` and `churn-platform demo`, run as a user runs them."""

import os
import subprocess
import sys

import pytest

from churn_platform.orchestration import asset_keys as keys

pytestmark = pytest.mark.slow
CLI = os.path.join(os.path.dirname(sys.executable), "churn-platform")


def test_demo_prints_the_summary(tmp_path):
    env = {**os.environ, "CHURN_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [CLI, "demo", "--days", "75", "--customers", "400", "--seed", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"{keys.INTERACTION_LOGS.to_user_string():34s}   75 partitions" in out
    assert f"{keys.CHURN_LABELS.to_user_string():34s}   45 partitions" in out
    assert "roc_auc" in out and "Open them in the Dagster UI" in out
    assert "promotion gate: passed - promoted version 1 to champion" in out and "MLflow UI:" in out
    assert (tmp_path / "home" / "dagster.yaml").exists()  # the instance `dagster dev` will show


def test_generate_writes_the_landing_zone_and_crm_export(tmp_path):
    env = {**os.environ, "CHURN_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [CLI, "generate", "--days", "3", "--customers", "20", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    assert "days=3 customers=20" in result.stdout
    days = sorted(p.name for p in (tmp_path / "landing" / "interaction_logs").iterdir())
    assert days == ["date=2026-01-01", "date=2026-01-02", "date=2026-01-03"]
    assert (tmp_path / "crm" / "tickets.jsonl").exists()


def test_crm_simulator_command_serves_the_export(tmp_path):
    import httpx

    from churn_platform_tests.support.servers import free_port, wait_for_port

    env = {**os.environ, "CHURN_DATA_DIR": str(tmp_path), "ZENDESK_OAUTH_TOKEN": "tok"}
    subprocess.run(
        [CLI, "generate", "--days", "3", "--customers", "200", "--seed", "1"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    server = subprocess.Popen(
        [CLI, "crm-simulator", "--port", str(port), "--faults", "server_error=0.0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, timeout=60)
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v2/incremental/tickets/cursor.json",
            params={"start_time": 0},
            headers={"Authorization": "Bearer tok"},
        )
        assert response.status_code == 200 and response.json()["end_of_stream"] is True
        assert len(response.json()["tickets"]) > 0
        assert httpx.get(f"http://127.0.0.1:{port}/api/v2/tickets.json").status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=10)
