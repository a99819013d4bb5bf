"""The container image (Dockerfile) and the Helm values (deploy/helm/values.yaml), checked without a
container engine or a cluster: hadolint and yamllint lint them, and the facts the deployment relies on
are asserted where Dagster's chart (dagster/dagster 1.13.x) reads them, consistent with the settings
the platform declares and with the production instance in deploy/dagster.yaml."""

import shlex
import subprocess
import sys
from pathlib import Path
from shutil import which
from typing import Any

import dagster as dg
import yaml

from churn_platform.definitions import build_definitions
from churn_platform.settings import load_settings
from churn_platform.settings.declare import declared
from churn_platform.settings.platform import SECTIONS, declared_secrets

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
VALUES = DEPLOY / "helm" / "values.yaml"
INSTANCE = DEPLOY / "dagster.yaml"
YAMLLINT_CONFIG = ROOT / ".yamllint.yaml"

MODULE = "churn_platform.definitions"
PORT = 3030
SECRET = "churn-platform-secrets"
# Secrets the platform reads besides its declared ones: the instance's database password.
OTHER_SECRETS = {"DAGSTER_PG_PASSWORD"}


def tool(name: str) -> str:
    """An executable installed with the dev extras: from this interpreter's environment (the venv's
    bin directory, also when the venv is not activated), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = which(name)
    assert found, f"{name} is not installed: pip install -c constraints.txt -e '.[dev]'"
    return found


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments) pairs: continuation lines joined, comments dropped."""
    parsed: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        parsed.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation line"
    return parsed


def arguments_of(keyword: str) -> list[str]:
    return [arguments for instruction, arguments in instructions() if instruction == keyword]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) CMD/HEALTHCHECK argument list."""
    return yaml.safe_load(arguments)


def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def instance() -> dict[str, Any]:
    assert INSTANCE.is_file(), f"{INSTANCE} is the production instance the chart values must match"
    return yaml.safe_load(INSTANCE.read_text())


def deployment() -> dict[str, Any]:
    """The chart's user deployment for our code location."""
    user_deployments = values()["dagster-user-deployments"]
    assert user_deployments["enabled"] is True
    (only,) = user_deployments["deployments"]
    return only


def env_of(spec: dict[str, Any]) -> dict[str, str]:
    """A deployment's `env` (the chart takes a name/value list or a mapping) as a mapping."""
    env = spec.get("env") or {}
    if isinstance(env, dict):
        return {str(name): str(value) for name, value in env.items()}
    for entry in env:
        assert set(entry) == {"name", "value"}, f"{entry}: settings are plain values (secrets: envSecrets)"
    return {entry["name"]: entry["value"] for entry in env}


def setting_names() -> set[str]:
    """Every environment variable the platform's settings declare (churn_platform/settings)."""
    return {field.metadata["env"] for section in SECTIONS.values() for field in declared(section)}


def secret_names() -> set[str]:
    return set(declared_secrets()) | OTHER_SECRETS


def secret_refs(entries: list[dict[str, Any]]) -> list[str]:
    return [entry["name"] for entry in entries]


# The image


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_base_is_python_3_11_slim_on_a_named_debian_release():
    (base,) = arguments_of("FROM")
    image, _, tag = base.partition(":")
    assert image == "python"
    assert tag.startswith("3.11") and "slim" in tag and tag.endswith("-bookworm"), base
    assert "latest" not in tag


def test_java_17_is_installed_for_spark():
    installs = [run for run in arguments_of("RUN") if "apt-get install" in run]
    assert any("openjdk-17-jre-headless" in run and "--no-install-recommends" in run for run in installs)


def test_dependencies_are_pinned_and_the_package_is_installed_not_editable():
    pip_installs = [run for run in arguments_of("RUN") if "pip install" in run]
    assert pip_installs
    for run in pip_installs:
        words = shlex.split(run.partition("pip install")[2].split("&&")[0])
        assert "-e" not in words and "--editable" not in words, run
        assert "--no-cache-dir" in words, run
        assert words[words.index("-c") + 1] == "constraints.txt", run
        assert words[-1] == ".", run
    # The files declaring the dependencies are copied (and installed from) before the source, so the
    # dependency layer is rebuilt only when they change.
    copies = arguments_of("COPY")
    declaring = next(i for i, c in enumerate(copies) if "constraints.txt" in c.split())
    assert {"setup.py", "pyproject.toml", "constraints.txt"} <= set(copies[declaring].split())
    source = next(i for i, c in enumerate(copies) if c.split()[0].rstrip("/") == "churn_platform")
    assert declaring < source


def test_the_container_runs_as_a_fixed_non_root_user():
    user = arguments_of("USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: numeric, so runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) != 0, user
    assert any(f"--uid {uid}" in run for run in arguments_of("RUN")), "the user is created with that UID"
    security = deployment()["podSecurityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))


def test_the_image_serves_the_code_location_over_grpc_and_checks_its_health():
    assert arguments_of("EXPOSE") == [str(PORT)]
    (healthcheck,) = arguments_of("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options
    assert exec_form(command) == ["dagster", "api", "grpc-health-check", "-p", str(PORT)]
    (cmd,) = arguments_of("CMD")
    assert exec_form(cmd) == ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", str(PORT), "-m", MODULE]
    # The chart sets the container's args only: an ENTRYPOINT would be prepended to them.
    assert not arguments_of("ENTRYPOINT")


def test_dagster_home_is_the_one_the_chart_uses():
    homes = [
        env.split("=", 1)[1]
        for env in " ".join(arguments_of("ENV")).split()
        if env.startswith("DAGSTER_HOME=")
    ]
    assert homes == [values()["global"]["dagsterHome"]]
    assert any("chown" in run and "$DAGSTER_HOME" in run for run in arguments_of("RUN"))


def test_no_secret_is_baked_into_the_image():
    declared_in_image = " ".join(arguments_of("ENV") + arguments_of("ARG"))
    for secret in secret_names():
        assert secret not in declared_in_image, secret
    ignored = set(DOCKERIGNORE.read_text().split())
    assert {".env", ".git", ".venv", "data", "data_backups", ".dagster_home"} <= ignored


# The chart values


def test_yamllint_passes_strictly_on_every_deployment_file():
    files = sorted(str(path) for path in DEPLOY.rglob("*.y*ml")) + [str(YAMLLINT_CONFIG)]
    assert str(VALUES) in files
    result = subprocess.run(
        [tool("yamllint"), "--strict", "--format", "parsable", "-c", str(YAMLLINT_CONFIG), *files],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_key_set_in_the_values_says_why():
    lines = VALUES.read_text().splitlines()

    def documented(line: int) -> bool:
        previous = next((lines[i].strip() for i in range(line - 1, -1, -1) if lines[i].strip()), "")
        return "#" in lines[line] or previous.startswith("#")

    undocumented = []

    def visit(node: yaml.Node, in_list_item: bool = False) -> None:
        if isinstance(node, yaml.MappingNode):
            # In a list item (an env entry, a tag limit) the comment on its first key covers the item.
            keys = node.value[:1] if in_list_item else node.value
            for key, _ in keys:
                if not documented(key.start_mark.line):
                    undocumented.append(f"line {key.start_mark.line + 1}: {key.value}")
            for _, child in node.value:
                visit(child)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                visit(item, in_list_item=True)

    visit(yaml.compose(VALUES.read_text()))
    assert not undocumented, "keys without a comment saying why:\n" + "\n".join(undocumented)


def test_the_user_deployment_runs_our_image_and_module():
    spec = deployment()
    assert spec["name"] == "churn-platform"
    image = spec["image"]
    assert image["repository"] and "/" in image["repository"]
    assert isinstance(image["tag"], str) and image["tag"] and image["tag"] != "latest"
    assert image["pullPolicy"] in {"IfNotPresent", "Always"}
    # The chart runs `dagster api grpc -h 0.0.0.0 -p <port>` followed by these arguments.
    assert spec["dagsterApiGrpcArgs"] == ["-m", MODULE]
    assert "codeServerArgs" not in spec, "the chart takes one of dagsterApiGrpcArgs / codeServerArgs"
    assert spec["port"] == PORT
    assert spec["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert secret_refs(spec["envSecrets"]) == [SECRET]


def test_every_env_variable_of_the_deployment_is_a_platform_setting():
    env = env_of(deployment())
    unknown = set(env) - setting_names()
    assert not unknown, f"not declared in churn_platform/settings: {sorted(unknown)}"


def test_no_secret_is_a_plain_env_value():
    leaked = set(env_of(deployment())) & secret_names()
    assert not leaked, f"secrets come from envSecrets (the Secret), never from env: {sorted(leaked)}"
    assert declared_secrets(), "the settings declare their secrets (SECRETS)"


def test_the_deployment_env_is_a_valid_production_configuration():
    env = env_of(deployment())
    # The Secret's keys are set in the pods (values do not matter here, only that they are set).
    secrets = dict.fromkeys(secret_names(), "set-in-the-secret")
    # Raises SettingsError naming a missing or malformed variable, or what production needs.
    settings = load_settings({**env, **secrets})
    assert settings.storage.env == "production-s3" and settings.storage.production
    assert settings.storage.s3_bucket and settings.storage.s3_backup_bucket
    assert settings.storage.s3_bucket != settings.storage.s3_backup_bucket
    assert settings.engine.feature_engine == "spark"
    assert env["CHURN_SPARK_MASTER"] and settings.engine.spark_master != "local[*]"
    assert settings.mlflow.tracking_uri.startswith(("http://", "https://")), "an MLflow server"
    assert settings.crm.url and settings.crm.url.startswith("https://")
    assert settings.automation.running is True


def test_the_code_location_loads_with_the_deployment_env():
    """What the code server does at start-up, without contacting S3, Spark, MLflow or the CRM."""
    secrets = dict.fromkeys(secret_names(), "set-in-the-secret")
    defs = build_definitions(load_settings({**env_of(deployment()), **secrets}))
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_all_asset_specs()


def test_runs_launch_as_kubernetes_jobs_with_the_secrets():
    launcher = values()["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    config = launcher["config"]["k8sRunLauncher"]
    assert secret_refs(config["envSecrets"]) == [SECRET]
    assert config["imagePullPolicy"] in {"IfNotPresent", "Always"}
    # includeConfigInLaunchedRuns passes the deployment's resources to its runs, over the launcher's
    # floor: the two must agree or the floor silently changes.
    assert deployment()["resources"] == config["resources"]


def test_the_instance_is_an_external_postgres():
    chart = values()
    postgres = chart["postgresql"]
    assert postgres["enabled"] is False
    assert postgres["postgresqlHost"] and "." in postgres["postgresqlHost"]
    assert postgres["postgresqlUsername"] and postgres["postgresqlDatabase"]
    assert postgres["service"]["port"] == 5432
    assert "postgresqlPassword" not in postgres, "the password comes from the Secret"
    assert chart["generatePostgresqlPasswordSecret"] is False
    assert chart["global"]["postgresqlSecretName"]


def test_the_daemon_monitors_queues_and_retries_runs():
    chart = values()
    daemon = chart["dagsterDaemon"]
    monitoring = daemon["runMonitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["startTimeoutSeconds"] > 0 and monitoring["cancelTimeoutSeconds"] > 0
    assert monitoring["maxResumeRunAttempts"] >= 0
    retries = daemon["runRetries"]
    assert retries["enabled"] is True and retries["maxRetries"] > 0
    assert retries["retryOnAssetOrOpFailure"] is False
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] is True and coordinator["type"] == "QueuedRunCoordinator"
    # The run limits live in `concurrency.runs`; the chart refuses them in both places at once.
    queued = coordinator.get("config", {}).get("queuedRunCoordinator", {})
    assert "maxConcurrentRuns" not in queued and "tagConcurrencyLimits" not in queued
    runs = chart["concurrency"]["runs"]
    assert chart["concurrency"]["enabled"] is True
    assert runs["maxConcurrentRuns"] > 0
    assert {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    } in runs["tagConcurrencyLimits"]
    assert chart["telemetry"]["enabled"] is False


def test_the_chart_generates_the_production_instance():
    """What the chart renders into dagster.yaml from these values equals deploy/dagster.yaml."""
    chart, production = values(), instance()
    daemon = chart["dagsterDaemon"]
    assert production["telemetry"]["enabled"] is chart["telemetry"]["enabled"]
    assert set(production["storage"]) == {"postgres"}

    launcher, production_launcher = (
        chart["runLauncher"]["config"]["k8sRunLauncher"],
        production["run_launcher"],
    )
    assert production_launcher["class"] == chart["runLauncher"]["type"]
    production_launcher = production_launcher["config"]
    assert production_launcher["env_secrets"] == secret_refs(launcher["envSecrets"])
    assert production_launcher["image_pull_policy"] == launcher["imagePullPolicy"]
    assert production_launcher["resources"] == launcher["resources"]
    assert production_launcher["fail_pod_on_run_failure"] is launcher["failPodOnRunFailure"]
    assert production_launcher["postgres_password_secret"] == chart["global"]["postgresqlSecretName"]
    assert production_launcher["dagster_home"] == chart["global"]["dagsterHome"]
    # Runs take the code location's service account (includeConfigInLaunchedRuns).
    service_account = chart["dagster-user-deployments"]["serviceAccount"]["name"]
    assert production_launcher["service_account_name"] == service_account

    monitoring = daemon["runMonitoring"]
    assert production["run_monitoring"] == {
        "enabled": monitoring["enabled"],
        "start_timeout_seconds": monitoring["startTimeoutSeconds"],
        "cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"],
        "max_resume_run_attempts": monitoring["maxResumeRunAttempts"],
        "poll_interval_seconds": monitoring["pollIntervalSeconds"],
        "max_runtime_seconds": monitoring["maxRuntimeSeconds"],
    }
    retries = daemon["runRetries"]
    assert production["run_retries"] == {
        "enabled": retries["enabled"],
        "max_retries": retries["maxRetries"],
        "retry_on_asset_or_op_failure": retries["retryOnAssetOrOpFailure"],
    }

    concurrency = chart["concurrency"]
    assert production["concurrency"] == {
        "runs": {
            "max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"],
            "tag_concurrency_limits": concurrency["runs"]["tagConcurrencyLimits"],
        },
        "pools": {
            "default_limit": concurrency["pools"]["defaultLimit"],
            "granularity": concurrency["pools"]["granularity"],
        },
    }

    retention = chart["retention"]
    assert retention["enabled"] is True
    assert production["retention"]["schedule"]["purge_after_days"] == retention["schedule"]["purgeAfterDays"]
    # The chart requires every tick status; `started: -1` is Dagster's default, which deploy/dagster.yaml
    # leaves unset.
    sensor_days = dict(retention["sensor"]["purgeAfterDays"])
    assert sensor_days.pop("started") == -1
    assert production["retention"]["sensor"]["purge_after_days"] == sensor_days

    for kind in ("sensors", "schedules"):
        assert production[kind] == {
            "use_threads": daemon[kind]["useThreads"],
            "num_workers": daemon[kind]["numWorkers"],
        }
