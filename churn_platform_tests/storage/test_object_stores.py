"""The platform on S3 (moto's server) and GCS (an emulator), over real HTTP."""

import json

import dagster as dg
import pandas as pd
import pytest

from churn_platform.cli.demo import DemoPlan, run_demo
from churn_platform.definitions import build_definitions
from churn_platform.orchestration import asset_keys as keys
from churn_platform.resources import build_connection
from churn_platform.storage.connection import ObjectStoreConnection, open_path
from churn_platform.storage.files import sha256_hex
from churn_platform.storage.parquet_io_manager import ParquetIOManager
from churn_platform_tests.support import servers
from churn_platform_tests.support.data import (
    START,
    gcs_settings,
    generate_into,
    s3_settings,
    settings_for,
)
from churn_platform_tests.support.stack import PERMISSIVE_GATE

pytestmark = pytest.mark.slow
DAYS, CUSTOMERS = 45, 200


def run_platform(settings):
    generate_into(settings, days=DAYS, customers=CUSTOMERS, seed=5)
    with dg.instance_for_test() as instance:
        # Small data makes a weak model; the gate is not what these tests are about.
        run_demo(
            build_definitions(settings),
            instance,
            DemoPlan.for_days(START, DAYS),
            gate=PERMISSIVE_GATE,
        )
        model = instance.get_latest_materialization_event(keys.CHURN_MODEL).asset_materialization
        return model.metadata


def warehouse_hashes(settings) -> dict[str, str]:
    """SHA-256 of every table file; scores by content without the model version, whose hash
    covers the model's lineage and so its storage URIs."""
    root = open_path(settings.storage.warehouse_dir, build_connection(settings))
    hashes = {}
    for path in root.rglob("*.parquet"):
        name = str(path)[len(str(root)) :].lstrip("/")
        if name.startswith("/".join(keys.CHURN_SCORES.path) + "/"):
            frame = pd.read_parquet(path.open("rb")).drop(columns=["model_version"])
            hashes[name] = str(pd.util.hash_pandas_object(frame).sum())
        else:
            hashes[name] = sha256_hex(path.read_bytes())
    return hashes


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    settings = settings_for(str(tmp_path_factory.mktemp("local") / "data"))
    metadata = run_platform(settings)
    return warehouse_hashes(settings), metadata


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_whole_graph_on_an_object_store_equals_the_local_run(
    store, local_run, request, monkeypatch, tmp_path
):
    if store == "s3":
        settings = s3_settings(
            request.getfixturevalue("s3_server"), monkeypatch, str(tmp_path), versioned=True
        )
    else:
        settings = gcs_settings(request.getfixturevalue("gcs_server"), str(tmp_path))
    model_metadata = run_platform(settings)
    local_hashes, local_model = local_run
    remote_hashes = warehouse_hashes(settings)
    assert (
        len(local_hashes) == DAYS * 5 + (DAYS - 30) + 1 + 7 + 7
    )  # daily, labels, training set, scores, drift
    assert remote_hashes == local_hashes
    assert model_metadata["roc_auc"].value == local_model["roc_auc"].value
    # The backup on the object store holds the registered version's files and the manifest.
    assert settings.storage.backup_root.startswith({"s3": "s3://", "gcs": "gs://"}[store])
    backups = open_path(settings.storage.backup_root, build_connection(settings))
    backed_up = sorted(p.name for p in backups.rglob("*") if p.is_file())
    assert {"manifest.json", "MLmodel", "model.skops"} <= set(backed_up)
    assert backed_up.count("manifest.json") == 2  # the model snapshot and the metadata backup
    if store == "s3":  # every backup object was written under Object Lock
        bucket, prefix = settings.storage.backup_root[len("s3://") :].split("/", 1)
        client = request.getfixturevalue("s3_server").client()
        objects = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
        assert len(objects) == len(backed_up)
        assert {client.head_object(Bucket=bucket, Key=k).get("ObjectLockMode") for k in objects} == {
            "GOVERNANCE"
        }


def test_versioned_bucket_versions_are_recorded(s3_server, monkeypatch, tmp_path):
    settings = s3_settings(s3_server, monkeypatch, str(tmp_path), versioned=True)
    manager = ParquetIOManager(
        base_path=settings.storage.warehouse_dir, connection=build_connection(settings)
    )

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
    def things() -> pd.DataFrame:
        return pd.DataFrame({"x": [1, 2]})

    versions = []
    for _ in range(2):
        result = dg.materialize([things], partition_key="2026-01-02", resources={"io_manager": manager})
        versions.append(
            result.get_asset_materialization_events()[0].materialization.metadata["object_version"].value
        )
    bucket, key = settings.storage.warehouse_dir[len("s3://") :].split("/", 1)
    listed = s3_server.client().list_object_versions(Bucket=bucket, Prefix=f"{key}/things/2026-01-02.parquet")
    assert (
        sorted(versions) == sorted(v["VersionId"] for v in listed["Versions"]) and versions[0] != versions[1]
    )


def test_server_outage_fails_clearly_keeps_the_previous_object_and_a_retry_succeeds(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = servers.start_s3()
    port = int(server.endpoint.rsplit(":", 1)[1])
    bucket = server.new_bucket()
    connection = ObjectStoreConnection(
        endpoint_url=server.endpoint,
        region="us-east-1",
        retries=1,
        access_key_id="testing",
        secret_access_key="testing",
    )
    manager = ParquetIOManager(base_path=f"s3://{bucket}/wh", connection=connection)
    value = {"x": 1}

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
    def things() -> pd.DataFrame:
        return pd.DataFrame({"x": [value["x"]] * 1000})

    assert dg.materialize([things], partition_key="2026-01-02", resources={"io_manager": manager}).success
    before = server.client().get_object(Bucket=bucket, Key="wh/things/2026-01-02.parquet")["Body"].read()

    server.server.stop()  # the store goes away mid-operation
    value["x"] = 2
    result = dg.materialize(
        [things], partition_key="2026-01-02", resources={"io_manager": manager}, raise_on_error=False
    )
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert f"could not write s3://{bucket}/wh/things/2026-01-02.parquet" in error
    assert "previous version, if any, is intact" in error

    from moto.server import ThreadedMotoServer

    restarted = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    restarted.start()
    try:
        servers.wait_for_port(port)
        after_failure = (
            server.client().get_object(Bucket=bucket, Key="wh/things/2026-01-02.parquet")["Body"].read()
        )
        assert after_failure == before
        assert dg.materialize([things], partition_key="2026-01-02", resources={"io_manager": manager}).success
        final = pd.read_parquet(
            open_path(f"s3://{bucket}/wh/things/2026-01-02.parquet", connection).open("rb")
        )
        assert set(final["x"]) == {2}
    finally:
        restarted.stop()


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_missing_bucket_names_the_uri(store, request, monkeypatch, tmp_path):
    if store == "s3":
        settings = s3_settings(request.getfixturevalue("s3_server"), monkeypatch, str(tmp_path))
        base = "s3://no-such-bucket/wh"
    else:
        settings = gcs_settings(request.getfixturevalue("gcs_server"), str(tmp_path))
        base = "gs://no-such-bucket/wh"
    manager = ParquetIOManager(base_path=base, connection=build_connection(settings))

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
    def things() -> pd.DataFrame:
        return pd.DataFrame({"x": [1]})

    result = dg.materialize(
        [things], partition_key="2026-01-02", resources={"io_manager": manager}, raise_on_error=False
    )
    error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert f"could not write {base}/things/2026-01-02.parquet" in error
    assert "does not exist" in error or "NotFound" in error or "404" in error


def test_wrong_credentials_are_reported_with_what_to_check():
    endpoint, process = servers.start_s3_with_auth()
    try:
        connection = ObjectStoreConnection(
            endpoint_url=endpoint,
            region="us-east-1",
            retries=1,
            access_key_id="AKIAWRONG",
            secret_access_key="wrong",
        )
        manager = ParquetIOManager(base_path="s3://any-bucket/wh", connection=connection)

        @dg.asset
        def things() -> pd.DataFrame:
            return pd.DataFrame({"x": [1]})

        result = dg.materialize([things], resources={"io_manager": manager}, raise_on_error=False)
        error = result.get_step_failure_events()[0].event_specific_data.error.to_string()
        assert "access denied write s3://any-bucket/wh/things.parquet" in error
        assert "check the credentials" in error
        assert "wrong" not in error.split("access denied", 1)[1].split("\n")[0]  # the secret is not echoed
    finally:
        process.terminate()
        process.wait(timeout=10)


def write_fails(manager, instance) -> tuple[str, str]:
    """Materialize one partition through ``manager``; it must fail. Returns the run id and the error."""

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-01-01"))
    def things() -> pd.DataFrame:
        return pd.DataFrame({"x": [1, 2]})

    result = dg.materialize(
        [things],
        instance=instance,
        partition_key="2026-01-02",
        resources={"io_manager": manager},
        raise_on_error=False,
    )
    assert not result.success
    return result.run_id, "\n".join(
        e.event_specific_data.error.to_string() for e in result.get_step_failure_events()
    )


@pytest.fixture(scope="module")
def s3_with_iam():
    """moto enforcing IAM auth, with a bucket and a user whose keys are valid but allowed nothing."""
    endpoint, process = servers.start_s3_with_auth(initial_no_auth_actions=3)
    try:
        yield endpoint, servers.s3_user_without_permissions(endpoint, "guarded")
    finally:
        process.terminate()
        process.wait(timeout=10)


S3_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSECRETKEY"


@pytest.mark.parametrize(
    "failure", ["unknown key (403)", "wrong secret (403)", "access denied", "retries exhausted"]
)
def test_s3_failures_keep_the_secret_key_out_of_errors_logs_and_the_event_log(
    failure, s3_with_iam, monkeypatch, leak_scan
):
    endpoint, user = s3_with_iam
    key_id, secret = {
        "unknown key (403)": ("AKIAUNKNOWN000000000", S3_SECRET),
        "wrong secret (403)": (user.access_key_id, S3_SECRET),
        "access denied": (user.access_key_id, user.secret_access_key),
        "retries exhausted": (user.access_key_id, S3_SECRET),
    }[failure]
    if failure == "retries exhausted":
        endpoint = f"http://127.0.0.1:{servers.free_port()}"  # nothing listens there
    # As in production: the keys reach the resources as environment variables (dg.EnvVar).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    connection = ObjectStoreConnection(
        endpoint_url=endpoint,
        region="us-east-1",
        retries=2,
        access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"),
        secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
    )
    manager = ParquetIOManager(base_path="s3://guarded/wh", connection=connection)
    with dg.instance_for_test() as instance:
        run_id, error = write_fails(manager, instance)
        assert "could not write s3://guarded/wh/things/2026-01-02.parquet" in error or (
            "access denied write s3://guarded/wh/things/2026-01-02.parquet" in error
        )
        if failure == "retries exhausted":
            assert "Could not connect" in error or "EndpointConnectionError" in error
        else:
            assert "access denied" in error and "check the credentials" in error
        leak_scan.assert_absent([secret], error=error, instance=instance, run_id=run_id)


def service_account_file(path, token_uri: str) -> dict:
    """A service-account key file like Google's, whose token endpoint is ``token_uri``; returns it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "5e3c1b7a9d2f4e6a8c0b1d3f5a7c9e1b3d5f7a9c",
        "private_key": pem,
        "client_email": "writer@test.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))
    return info


GCS_ACCESS_TOKEN = "ya29.c.SECRET-access-token-4f1e2d3c"


@pytest.mark.parametrize("failure", ["bad credentials (401)", "access denied (403)", "retries exhausted"])
def test_gcs_failures_keep_the_key_and_token_out_of_errors_logs_and_the_event_log(
    failure, gcs_server, tmp_path, monkeypatch, leak_scan
):
    import gcsfs.retry

    # gcsfs makes 6 attempts 1, 2, 4, 8 and 16 s apart (not configurable): keep the attempts, not the waits.
    monkeypatch.setattr(gcsfs.retry, "min", lambda *_: 0, raising=False)
    if failure == "bad credentials (401)":
        token_endpoint = servers.StubHTTPServer(
            401, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        )
    else:
        token_endpoint = servers.StubHTTPServer(
            200, {"access_token": GCS_ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}
        )
    refusing = servers.StubHTTPServer(
        403,
        {"error": {"code": 403, "message": "writer@test.iam.gserviceaccount.com does not have access"}},
    )
    emulator = servers.start_gcs() if failure == "retries exhausted" else None
    try:
        if failure == "access denied (403)":
            endpoint, bucket = refusing.url, "guarded"
        elif emulator is not None:
            endpoint, bucket = emulator.endpoint, emulator.new_bucket()
            emulator.server.stop()  # the store goes away: connection refused, retried
        else:
            endpoint, bucket = gcs_server.endpoint, gcs_server.new_bucket()
        info = service_account_file(tmp_path / "key.json", f"{token_endpoint.url}/token")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "key.json"))
        connection = ObjectStoreConnection(
            endpoint_url=endpoint, gcs_project="test", gcs_token=dg.EnvVar("GOOGLE_APPLICATION_CREDENTIALS")
        )
        manager = ParquetIOManager(base_path=f"gs://{bucket}/wh", connection=connection)
        with dg.instance_for_test() as instance:
            run_id, error = write_fails(manager, instance)
            assert f"could not write gs://{bucket}/wh/things/2026-01-02.parquet" in error
            if failure == "bad credentials (401)":
                assert "invalid_grant" in error and len(token_endpoint.requests) >= 6  # retried, gave up
            elif failure == "access denied (403)":
                assert "Forbidden" in error and len(refusing.requests) >= 1
            else:
                assert len(token_endpoint.requests) >= 1  # it had a token, the store was gone
            key_lines = [line for line in info["private_key"].splitlines() if "PRIVATE KEY" not in line]
            leak_scan.assert_absent(
                [info["private_key_id"], GCS_ACCESS_TOKEN, *key_lines],
                error=error,
                instance=instance,
                run_id=run_id,
            )
    finally:
        token_endpoint.stop()
        refusing.stop()
