"""The Kubernetes Jobs the production run launcher creates, without a cluster.

The instance is deploy/dagster.yaml (its Postgres storage swapped for a temporary SQLite one), so
its ``run_launcher`` is dagster-k8s's ``K8sRunLauncher`` built by Dagster from that file. Each run
is launched through ``DagsterInstance.launch_run`` -> ``K8sRunLauncher.launch_run``, all of it
dagster-k8s's own code, up to the Kubernetes API call, which is replaced by one that keeps the Job.
The Jobs are then checked, and validated against Kubernetes' JSON schema (kubernetes-validate,
which ships the schemas: offline).
"""

import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster._cli.api import ExecuteRunArgs
from dagster._config import process_config
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.instance.config import PoolGranularity, dagster_instance_config
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import ConfigurableClassData, deserialize_value
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import sanitize_k8s_label
from dagster_postgres import DagsterPostgresStorage
from kubernetes.utils import parse_quantity

from churn_platform.definitions import defs
from churn_platform.orchestration import asset_keys as keys
from churn_platform.orchestration import kubernetes as profiles
from churn_platform.orchestration import pools
from churn_platform.orchestration.jobs import ALL_JOBS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSION = "1.33"
IMAGE = "registry.example.com/churn-platform:1.2.3"
NAMESPACE = "churn-platform"
SECRETS = {
    "DAGSTER_PG_PASSWORD": "pg-password-that-must-not-leak",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-that-must-not-leak",
    "ZENDESK_API_TOKEN": "zendesk-token-that-must-not-leak",
    "ZENDESK_OAUTH_TOKEN": "zendesk-oauth-that-must-not-leak",
}
ENVIRONMENT = {
    "DAGSTER_K8S_NAMESPACE": NAMESPACE,
    "DAGSTER_PG_HOST": "postgres.churn-platform.svc",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_DB": "dagster",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    **SECRETS,
}
# The code location as the daemon sees it: the image the code server runs from.
REPOSITORY = ReconstructableRepository.for_module(
    "churn_platform.definitions", "defs", working_directory="/opt/dagster/app", container_image=IMAGE
)


def deploy_config() -> dict:
    return yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


@dataclass
class Cluster:
    """The production instance's run launcher, and the Jobs it asked Kubernetes to create."""

    instance: dg.DagsterInstance
    production_ref: InstanceRef
    monkeypatch: pytest.MonkeyPatch
    created: list[tuple[str, kubernetes.client.V1Job]] = field(default_factory=list)

    def launch(self, job_def: dg.JobDefinition, tags=None, asset_selection=None, repository=REPOSITORY):
        """Create a run as the daemon does (the job's run tags, then the request's) and launch it;
        returns the namespace and the Job manifest (as `kubectl apply` would send it)."""
        origin = repository.get_reconstructable_job(job_def.name).get_python_origin()
        run = self.instance.create_run_for_job(
            job_def,
            asset_selection=asset_selection,
            job_code_origin=origin,
            tags={**job_def.run_tags, **(tags or {})},
        )
        # The run worker's command carries the instance ref: in production, the one from deploy/dagster.yaml.
        with self.monkeypatch.context() as patch:
            patch.setattr(self.instance, "get_ref", lambda: self.production_ref)
            self.instance.launch_run(run.run_id, workspace=None)
        [(namespace, job)] = self.created
        self.created.clear()
        return namespace, kubernetes.client.ApiClient().sanitize_for_serialization(job)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    config = deploy_config()
    home = tmp_path_factory.mktemp("deploy_home")
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ENVIRONMENT.items():
            patch.setenv(name, value)
        # The launcher runs inside the cluster; here there is no service-account token to load.
        patch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
        created = []
        patch.setattr(
            kubernetes.client.BatchV1Api,
            "create_namespaced_job",
            lambda _api, body, namespace, **_: created.append((namespace, body)),
        )
        overrides = {name: value for name, value in config.items() if name != "storage"}
        with dg.instance_for_test(overrides=overrides) as instance:
            yield Cluster(instance, InstanceRef.from_dir(str(home)), patch, created)


def env_references(value) -> set[str]:
    """The environment variables a config (or an instance ref, all of its parts) reads: `{env: NAME}`."""
    if isinstance(value, ConfigurableClassData):
        return env_references(yaml.safe_load(value.config_yaml))
    if isinstance(value, Mapping):
        if set(value) == {"env"}:
            return {value["env"]}
        return set().union(*map(env_references, value.values()))
    if isinstance(value, list | tuple):
        return set().union(*map(env_references, value))
    return set()


def container_of(manifest: dict) -> dict:
    [container] = manifest["spec"]["template"]["spec"]["containers"]
    return container


def assert_valid_run_pod(manifest: dict, namespace: str, job_name: str):
    """What every run pod needs, whichever job: checked on the manifest Kubernetes would receive."""
    assert kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert namespace == NAMESPACE
    assert manifest["kind"] == "Job" and manifest["apiVersion"] == "batch/v1"
    pod = manifest["spec"]["template"]["spec"]
    container = container_of(manifest)
    assert container["image"] == IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert pod["serviceAccountName"] == "churn-platform-runs"
    assert pod["restartPolicy"] == "Never"
    # The run worker: `dagster api execute_run <args>` (the image's entrypoint, no command override).
    assert "command" not in container
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    worker_args = deserialize_value(container["args"][3], ExecuteRunArgs)
    assert worker_args.job_origin.job_name == job_name
    assert worker_args.job_origin.repository_origin.container_image == IMAGE
    assert worker_args.set_exit_code_on_failure is True  # fail_pod_on_run_failure
    assert manifest["spec"]["template"]["metadata"]["labels"]["dagster/job"] == sanitize_k8s_label(job_name)
    # Settings from the ConfigMap, secrets from the Secret, the Postgres password from its own Secret.
    assert {"configMapRef": {"name": "churn-platform-settings"}} in container["envFrom"]
    assert {"secretRef": {"name": "churn-platform-secrets"}} in container["envFrom"]
    env = {item["name"]: item for item in container["env"]}
    assert env["DAGSTER_PG_PASSWORD"] == {
        "name": "DAGSTER_PG_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "dagster-postgresql-secret", "key": "postgresql-password"}},
    }
    assert env["DAGSTER_HOME"]["value"] == "/opt/dagster/dagster_home"
    # The instance the worker opens is production's, its password by reference only.
    storage = worker_args.instance_ref.storage_data
    assert storage.module_name == "dagster_postgres" and storage.class_name == "DagsterPostgresStorage"
    assert yaml.safe_load(storage.config_yaml)["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    # No secret's value anywhere: the launcher's own environment must not leak into the Job.
    text = json.dumps(manifest)
    for name, value in SECRETS.items():
        assert value not in text, f"the value of {name} is in the Job manifest"
    resources = container["resources"]
    for kind, limit in resources.get("limits", {}).items():
        assert parse_quantity(resources["requests"][kind]) <= parse_quantity(limit), resources


def test_deploy_instance_config_is_valid_without_a_database():
    config, custom_class = dagster_instance_config(str(DEPLOY))
    assert custom_class is None
    assert set(config["storage"]) == {"postgres"}
    assert config["run_launcher"]["module"] == "dagster_k8s"
    assert config["run_launcher"]["class"] == "K8sRunLauncher"


def test_deploy_run_launcher_and_storage_config_match_their_classes(monkeypatch):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    config = deploy_config()
    launcher = process_config(K8sRunLauncher.config_type(), config["run_launcher"]["config"])
    assert launcher.success, launcher.errors
    assert launcher.value["job_namespace"] == NAMESPACE
    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors


def test_the_instance_builds_the_kubernetes_run_launcher_and_one_slot_pools(cluster):
    launcher = cluster.instance.run_launcher
    assert isinstance(launcher, K8sRunLauncher)
    assert launcher.job_namespace == NAMESPACE
    pool_config = cluster.instance.get_concurrency_config().pool_config
    assert pool_config.default_pool_limit == 1
    assert pool_config.pool_granularity == PoolGranularity.OP


def test_pools_are_on_the_steps_that_share_outside_capacity():
    pool_of = {key: defs.resolve_assets_def(key).op.pool for key in keys.ALL}
    assert {key: pool for key, pool in pool_of.items() if pool} == {
        keys.CRM_TICKETS: pools.CRM_API,
        keys.CUSTOMER_DAILY_ACTIVITY: pools.FEATURE_ENGINE,
        keys.CUSTOMER_FEATURES: pools.FEATURE_ENGINE,
        keys.CHURN_LABELS: pools.FEATURE_ENGINE,
        keys.CHURN_MODEL: pools.TRAINING,
    }
    assert set(pools.ALL) == set(filter(None, pool_of.values()))


def test_every_asset_has_a_profile_and_every_profile_sets_what_the_floor_sets():
    assert set(profiles.ASSET_PROFILES) == set(keys.ALL)
    assert set(profiles.ASSET_PROFILES.values()) <= set(profiles.PROFILES)
    floor = deploy_config()["run_launcher"]["config"]["resources"]
    for name, resources in profiles.PROFILES.items():
        # Deep-merged over the floor: a key left out would keep the floor's value (2Gi under 8Gi).
        for kind, values in floor.items():
            assert set(values) <= set(resources.get(kind, {})), (name, kind)
    # Lightest first, by memory request.
    memory = [parse_quantity(p["requests"]["memory"]) for p in profiles.PROFILES.values()]
    assert memory == sorted(memory)


def test_each_job_is_sized_by_its_heaviest_asset():
    assert {job.name for job in ALL_JOBS} == set(profiles.JOB_PROFILES)
    for job in ALL_JOBS:
        selected = defs.resolve_job_def(job.name).asset_layer.selected_asset_keys
        assert profiles.JOB_PROFILES[job.name] == profiles.profile_for_assets(selected), job.name


def test_each_jobs_run_pod(cluster):
    requested = {}
    for job in ALL_JOBS:
        job_def = defs.resolve_job_def(job.name)
        namespace, manifest = cluster.launch(job_def)
        assert_valid_run_pod(manifest, namespace, job.name)
        requested[job.name] = container_of(manifest)["resources"]
        assert requested[job.name] == profiles.PROFILES[profiles.JOB_PROFILES[job.name]]
    memory = lambda job: parse_quantity(requested[job]["limits"]["memory"])
    assert memory("training_job") > memory("daily_ingestion_job") > memory("metadata_backup_job")
    assert requested["metadata_backup_job"] == deploy_config()["run_launcher"]["config"]["resources"]


def test_what_the_run_pod_must_get_from_the_settings_config_map(cluster):
    """The run worker opens the instance from the ref in its arguments (dagster-k8s mounts no
    `instance_config_map` into run pods): the variables that ref reads and the Job does not set
    itself must come from `churn-platform-settings` (or `churn-platform-secrets`)."""
    _, manifest = cluster.launch(defs.resolve_job_def("labels_job"))
    container = container_of(manifest)
    worker_args = deserialize_value(container["args"][3], ExecuteRunArgs)
    set_by_the_job = {item["name"] for item in container["env"]}
    assert env_references(worker_args.instance_ref) - set_by_the_job == {
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_USERNAME",
        "DAGSTER_PG_DB",
        "DAGSTER_K8S_NAMESPACE",
    }
    volumes = manifest["spec"]["template"]["spec"].get("volumes", [])
    assert "dagster-instance" not in {volume.get("configMap", {}).get("name") for volume in volumes}


def test_ad_hoc_asset_runs_get_the_floor_unless_the_request_tags_them(cluster):
    """A materialization outside the jobs (UI, asset backfill, automation sensor) runs as the implicit
    asset job: no job tags, so the instance's floor, unless its request carries the tag."""
    floor = deploy_config()["run_launcher"]["config"]["resources"]
    asset_job = defs.resolve_implicit_global_asset_job_def()
    for key in keys.ALL:
        namespace, manifest = cluster.launch(asset_job, asset_selection={key})
        assert_valid_run_pod(manifest, namespace, asset_job.name)
        assert container_of(manifest)["resources"] == floor, key

        tags = profiles.run_tags_for_assets([key])
        namespace, manifest = cluster.launch(asset_job, tags=tags, asset_selection={key})
        assert_valid_run_pod(manifest, namespace, asset_job.name)
        assert container_of(manifest)["resources"] == profiles.PROFILES[profiles.ASSET_PROFILES[key]]


def test_the_run_launcher_ignores_an_assets_op_tags(cluster):
    """Why the sizes are job tags: op_tags reach only the k8s_job_executor's step pods."""

    @dg.asset(op_tags={profiles.K8S_CONFIG_TAG: profiles.k8s_config("training")})
    def heavy() -> None: ...

    job = dg.Definitions(assets=[heavy]).resolve_implicit_global_asset_job_def()
    repository = ReconstructableRepository.for_module("heavy_module", "defs", container_image=IMAGE)
    namespace, manifest = cluster.launch(job, repository=repository)
    assert_valid_run_pod(manifest, namespace, job.name)
    assert container_of(manifest)["resources"] == deploy_config()["run_launcher"]["config"]["resources"]
