"""`churn-platform doctor`: connect to each configured service and say what is unreachable or
misconfigured, naming the setting to change.

One small function per service, each with short timeouts and bounded as a whole by
``CHECK_DEADLINE_SECONDS`` (a library stuck past its own timeouts is reported, not waited for). The
checks only read: the one write is a probe file in a local data or backup directory. Secrets
(AWS keys, Zendesk tokens, the Slack URL, passwords in URLs, the service's API key) are never printed: details are built
without them and every line is scrubbed of their values before it is shown.
"""

import contextlib
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from churn_platform.settings import PlatformSettings, SettingsError
from churn_platform.settings.platform import declared_secrets

TIMEOUT_SECONDS = 5  # each connection or request
MLFLOW_TIMEOUT_SECONDS = 10  # a registry query (a Python server reading its database: allow it more)
CHECK_DEADLINE_SECONDS = 30.0  # each check as a whole
CRM_EXPORT_WINDOW_SECONDS = 120  # the doctor's export asks for the tickets of the last two minutes
# Secrets beyond the platform's declared ones that a deployment sets and a library may echo.
OTHER_SECRETS = ("DAGSTER_PG_PASSWORD", "PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
SLACK_PATH = re.compile(r"^/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+$")
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


@dataclass(frozen=True)
class CheckResult:
    """One line of the report: a service, the setting that decides it, and what was found."""

    service: str
    setting: str
    ok: bool
    detail: str

    @property
    def status(self) -> str:
        return "ok" if self.ok else "FAIL"


def _ok(service: str, setting: str, detail: str) -> CheckResult:
    return CheckResult(service, setting, True, detail)


def _fail(service: str, setting: str, detail: str) -> CheckResult:
    return CheckResult(service, setting, False, detail)


# -- secrets ------------------------------------------------------------------------------------------
def without_userinfo(url: str | None) -> str:
    """``scheme://user:password@host/...`` -> ``scheme://host/...`` (also inside longer text)."""
    return _USERINFO.sub(r"\g<scheme>", url or "")


def _secret_values(settings: PlatformSettings) -> set[str]:
    values = {os.environ.get(name, "") for name in (*declared_secrets(), *OTHER_SECRETS)}
    slack = os.environ.get("SLACK_WEBHOOK_URL", "")
    values.add(slack.rstrip("/").rsplit("/", 1)[-1])  # the webhook's token, wherever it is shown
    urls = [value for value in values if "://" in value]  # e.g. CHURN_MLFLOW_DATABASE_URL
    for url in (
        *urls,
        settings.mlflow.tracking_uri,
        settings.crm.url,
        settings.storage.endpoint_url,
        settings.engine.spark_master,
    ):
        with contextlib.suppress(ValueError):
            values.add(urlsplit(url or "").password or "")
    return {value for value in values if len(value) >= 4}


def redact(text: str, secrets: set[str]) -> str:
    text = without_userinfo(text)
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


# -- helpers ------------------------------------------------------------------------------------------
def _first_line(exc: BaseException, limit: int = 240) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(exc).__name__}: {line}"[:limit]


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_connection_error(exc: BaseException) -> bool:
    names = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ClientConnectorError"}
    return any(
        isinstance(e, ConnectionError | TimeoutError | socket.gaierror) or type(e).__name__ in names
        for e in _causes(exc)
    )


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the block, restoring what was there."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# -- storage: the warehouse and the backups ----------------------------------------------------------
@dataclass(frozen=True)
class _Location:
    service: str
    root: str  # a local directory, s3://bucket/prefix or gs://bucket/prefix
    setting: str  # the variable naming the bucket or directory
    credentials: str  # the variables holding its credentials
    endpoint: str | None  # the variable of a custom endpoint, when one is set


def _location(settings: PlatformSettings, backups: bool) -> _Location:
    storage, secrets = settings.storage, settings.secrets_set
    service, root = ("backups", storage.backup_root) if backups else ("warehouse", storage.data_root)
    if storage.store == "s3":
        own_keys = backups and "CHURN_BACKUP_AWS_ACCESS_KEY_ID" in secrets
        prefix = "CHURN_BACKUP_AWS" if own_keys else "AWS"
        return _Location(
            service,
            root,
            "CHURN_S3_BACKUP_BUCKET" if backups else "CHURN_S3_BUCKET",
            f"{prefix}_ACCESS_KEY_ID/{prefix}_SECRET_ACCESS_KEY",
            "CHURN_S3_ENDPOINT_URL" if storage.s3_endpoint_url else None,
        )
    if storage.store == "gcs":
        return _Location(
            service,
            root,
            "CHURN_GCS_BACKUP_BUCKET" if backups else "CHURN_GCS_BUCKET",
            "GOOGLE_APPLICATION_CREDENTIALS/CHURN_GCS_TOKEN",
            "CHURN_GCS_ENDPOINT_URL" if storage.gcs_endpoint_url else None,
        )
    return _Location(service, root, "CHURN_BACKUP_DIR" if backups else "CHURN_DATA_DIR", "", None)


def _check_directory(location: _Location) -> CheckResult:
    """A local directory the platform writes: writable, or creatable under a writable parent."""
    path = Path(location.root)
    if path.exists() and not path.is_dir():
        return _fail(location.service, location.setting, f"{path} exists and is not a directory")
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is None or not os.access(parent, os.W_OK | os.X_OK):
            return _fail(
                location.service, location.setting, f"{path} does not exist and {parent} is not writable"
            )
        return _ok(location.service, location.setting, f"{path} does not exist yet; {parent} is writable")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-", suffix=".probe"):
            pass
    except OSError as exc:
        return _fail(location.service, location.setting, f"{path} is not writable ({exc.strerror or exc})")
    return _ok(location.service, location.setting, f"{path} is writable")


def _list_prefix(root: str, connection: Any) -> int:
    """List at most one object under the bucket's prefix (the bucket exists, the credentials may
    list it); returns how many objects were seen (0 or 1). No retries, short timeouts."""
    import fsspec

    from churn_platform.storage.connection import ObjectStoreConnection

    protocol, _, path = root.partition("://")
    bucket, _, prefix = path.partition("/")
    prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    options = (connection or ObjectStoreConnection()).storage_options(protocol)
    if protocol in ("s3", "s3a"):
        options["config_kwargs"] = {
            **options.get("config_kwargs", {}),
            "retries": {"max_attempts": 1, "mode": "standard"},
            "connect_timeout": TIMEOUT_SECONDS,
            "read_timeout": TIMEOUT_SECONDS,
        }
        fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
        answer = fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
        return int(answer.get("KeyCount", len(answer.get("Contents", []))))
    fs = fsspec.filesystem("gcs", skip_instance_cache=True, requests_timeout=TIMEOUT_SECONDS, **options)
    answer = fs.call("GET", "b/{}/o", bucket, prefix=prefix, maxResults=1, json_out=True)
    return len(answer.get("items", []))


def _store_failure(location: _Location, exc: BaseException, endpoint_url: str | None) -> CheckResult:
    bucket = location.root.partition("://")[2].partition("/")[0]
    text = " ".join(str(e) for e in _causes(exc))
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text:
        return _fail(location.service, location.setting, f"bucket {bucket!r} does not exist")
    if _is_connection_error(exc):
        where = without_userinfo(endpoint_url) if endpoint_url else "the storage service"
        return _fail(
            location.service,
            location.endpoint or location.setting,
            f"cannot reach {where} for bucket {bucket!r}: {_first_line(exc)}",
        )
    if (
        isinstance(exc, PermissionError)
        or type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError")
        or re.search(r"AccessDenied|Forbidden|InvalidAccessKeyId|SignatureDoesNotMatch|\b401\b", text)
    ):
        return _fail(
            location.service,
            location.credentials,
            f"access to bucket {bucket!r} refused or no credentials: {_first_line(exc)}",
        )
    return _fail(location.service, location.setting, f"listing {location.root} failed: {_first_line(exc)}")


def _check_bucket(location: _Location, connection: Any, endpoint_url: str | None) -> CheckResult | None:
    """None when the prefix could be listed; otherwise the finding."""
    try:
        _list_prefix(location.root, connection)
    except Exception as exc:
        return _store_failure(location, exc, endpoint_url)
    return None


def check_warehouse(settings: PlatformSettings) -> CheckResult:
    """The store of the landing zone, CRM export and warehouse: a writable local directory, or a
    bucket whose prefix these credentials can list."""
    from churn_platform.resources import build_connection

    location = _location(settings, backups=False)
    if settings.storage.store == "local":
        return _check_directory(location)
    connection = build_connection(settings)
    endpoint = settings.storage.endpoint_url
    failure = _check_bucket(location, connection, endpoint)
    if failure is not None:
        return failure
    via = f" (endpoint {without_userinfo(endpoint)})" if endpoint else ""
    return _ok(location.service, location.setting, f"{location.root} can be listed{via}")


def check_backups(settings: PlatformSettings) -> CheckResult:
    """The backup location, reachable, and protected as the backup store requires before it
    writes (BackupStore.ensure_protected): on S3 versioning and Object Lock unless
    CHURN_BACKUP_LOCK_MODE=none; on GCS a retention policy it can set (not one locked shorter)."""
    from churn_platform.resources import build_backup_store, build_connection

    location = _location(settings, backups=True)
    if settings.storage.store == "local":
        return _check_directory(location)
    store = build_backup_store(settings, build_connection(settings))
    if store.connection is not None:  # no retry storm against a bucket that is not there
        store = store.model_copy(update={"connection": store.connection.model_copy(update={"retries": 1})})
    endpoint = settings.storage.endpoint_url
    failure = _check_bucket(location, store.connection, endpoint)
    if failure is not None:
        return failure
    try:
        state = store.protection()
    except Exception as exc:
        return _store_failure(location, exc, endpoint)
    lock, problem = store.lock_mode, store.protection_problem(state)
    if problem:  # what the backup asset would refuse, in its own words
        setting = location.setting if state["store"] == "s3" else "CHURN_BACKUP_LOCK_DAYS"
        return _fail(location.service, setting, problem)
    if state["store"] == "s3":
        protection = (
            f"versioning {state['versioning']}, Object Lock {state['object_lock']} ({lock}, {store.lock_days} days)"
            if lock
            else f"versioning {state['versioning']}, unprotected (CHURN_BACKUP_LOCK_MODE=none)"
        )
    else:
        wanted = store.lock_days * 86_400
        protection = (
            f"retention {state['retention_seconds']} s"
            + (" (locked)" if state["retention_locked"] else "")
            + (
                f"; set to {wanted} s on the first backup"
                if lock and state["retention_seconds"] < wanted
                else ""
            )
        )
    return _ok(location.service, location.setting, f"{location.root} can be listed; {protection}")


# -- the Dagster instance ----------------------------------------------------------------------------
def _config_value(value: Any) -> tuple[Any, str | None]:
    """A dagster.yaml value (a literal or ``{env: NAME}``): (value, the variable it comes from)."""
    if isinstance(value, dict) and "env" in value:
        return os.environ.get(value["env"]), value["env"]
    return value, None


def _postgres_precheck(home: str, postgres: dict[str, Any]) -> CheckResult | None:
    """Connect once to the database dagster.yaml configures (dagster-postgres itself retries for
    ~12 s and then reports only "too many retries"): the finding names the variables to fix."""
    import sqlalchemy
    from dagster_postgres.utils import pg_url_from_config
    from sqlalchemy.pool import NullPool

    yaml_path = f"{home}/dagster.yaml"
    if "postgres_url" in postgres:
        url, variable = _config_value(postgres["postgres_url"])
        names = dict.fromkeys(("hostname", "port", "db_name", "username", "password"), variable)
        config: dict[str, Any] = {"postgres_url": url}
        missing = [variable] if variable and not url else []
    else:
        resolved, names, missing = {}, {}, []
        for key, raw in (postgres.get("postgres_db") or {}).items():
            value, variable = _config_value(raw)
            names[key] = variable
            if variable and value is None:
                missing.append(variable)
            resolved[key] = value
        config = {"postgres_db": resolved}
    if missing:
        return _fail(
            "dagster", "/".join(missing), f"not set ({yaml_path} reads the Postgres connection from it)"
        )

    def named(*keys: str) -> str:
        return "/".join(names.get(k) or f"dagster.yaml {k}" for k in keys)

    try:
        engine = sqlalchemy.create_engine(
            pg_url_from_config(config), poolclass=NullPool, connect_args={"connect_timeout": TIMEOUT_SECONDS}
        )
        with engine.connect():
            pass
    except Exception as exc:
        cause = getattr(exc, "orig", None) or exc
        message = _first_line(cause)
        if "does not exist" in message and "database" in message:
            setting = named("db_name")
        elif any(w in message for w in ("password", "authentication", "role ")):
            setting = named("username", "password")
        else:
            setting = named("hostname", "port")
        return _fail("dagster", setting, f"cannot connect to the instance's Postgres: {message}")
    return None


def check_dagster(settings: PlatformSettings) -> CheckResult:
    """The instance in DAGSTER_HOME: opened as the deployment opens it, one run read back, its
    storage kind reported; production profiles expect Postgres (deploy/dagster.yaml)."""
    import dagster as dg
    import yaml

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return _fail(
            "dagster", "DAGSTER_HOME", "not set: Dagster finds its instance (deploy/dagster.yaml) there"
        )
    if not Path(home).is_dir():
        return _fail("dagster", "DAGSTER_HOME", f"{home} is not a directory")
    config_path = Path(home) / "dagster.yaml"
    try:
        config = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
    except (OSError, yaml.YAMLError) as exc:
        return _fail("dagster", "DAGSTER_HOME", f"{config_path} cannot be read: {_first_line(exc)}")
    postgres = ((config or {}).get("storage") or {}).get("postgres")
    if isinstance(postgres, dict):
        failure = _postgres_precheck(home, postgres)
        if failure is not None:
            return failure
    try:
        with dg.DagsterInstance.get() as instance:
            instance.get_runs(limit=1)
            kind = type(instance.run_storage).__name__.removesuffix("RunStorage").lower()
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next(
            (f"{line} {lines[i + 1]}" for i, line in enumerate(lines[:-1]) if line.startswith("Error 1")),
            None,
        )
        return _fail(
            "dagster",
            "DAGSTER_HOME",
            f"the instance in {home} cannot be opened: {detail or _first_line(exc)}",
        )
    if settings.storage.production and kind != "postgres":
        return _fail(
            "dagster",
            "DAGSTER_HOME",
            f"{home}: {kind} storage; production expects Postgres: deploy/dagster.yaml "
            "(with DAGSTER_PG_HOST/DAGSTER_PG_DB ...)",
        )
    return _ok("dagster", "DAGSTER_HOME", f"{home}: {kind} storage answered")


# -- MLflow --------------------------------------------------------------------------------------------
def _database_precheck(uri: str) -> str | None:
    """A problem connecting to the tracking database (no retries), or None."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    scheme = uri.split(":", 1)[0].lower()
    connect_args = {"connect_timeout": TIMEOUT_SECONDS} if scheme.startswith(("postgresql", "mysql")) else {}
    try:
        engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=connect_args)
        with engine.connect():
            pass
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as exc:
        return f"no database driver for {scheme} ({_first_line(exc)}); e.g. write postgresql+psycopg2://"
    except sqlalchemy.exc.ArgumentError as exc:
        return f"not a database URL: {_first_line(exc)}"
    except Exception as exc:
        return f"cannot connect to the tracking database: {_first_line(getattr(exc, 'orig', None) or exc)}"
    return None


def _mlflow_problem(exc: BaseException) -> str:
    text = " ".join(str(e) for e in _causes(exc))
    if "Connection refused" in text or "Failed to establish a new connection" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return f"no answer within {MLFLOW_TIMEOUT_SECONDS} s"
    return _first_line(exc)


def check_mlflow(settings: PlatformSettings) -> CheckResult:
    """The tracking server or database answers a registry query."""
    uri = settings.mlflow.tracking_uri or ""
    shown, scheme = without_userinfo(uri), uri.split(":", 1)[0].split("+", 1)[0].lower()
    setting = "CHURN_MLFLOW_TRACKING_URI"
    if scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.exists():
            return _ok("mlflow", setting, f"{shown}: not created yet (the first training run creates it)")
    elif scheme in ("postgresql", "mysql", "mssql"):
        problem = _database_precheck(uri)
        if problem is not None:
            return _fail("mlflow", setting, f"{shown}: {problem}")
    import mlflow

    try:
        with _environment(
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT=str(MLFLOW_TIMEOUT_SECONDS)
        ):
            mlflow.MlflowClient(uri).search_registered_models(max_results=1)
    except Exception as exc:
        problem = _mlflow_problem(exc)
        if "401" in problem or "Unauthorized" in problem:
            setting = "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD"
        return _fail("mlflow", setting, f"{shown}: {problem}")
    return _ok("mlflow", setting, f"{shown}: the model registry answered")


# -- the CRM -------------------------------------------------------------------------------------------
def check_crm(settings: PlatformSettings) -> CheckResult:
    """One authenticated request of the platform's own Zendesk client (the incremental export the
    ingestion uses, over the last two minutes), without retries."""
    import datetime as dt

    from churn_platform.crm.zendesk_api import CRMAPIError, CRMRequestRefused
    from churn_platform.resources import build_crm

    if not settings.crm.url:
        return _ok("crm", "CHURN_CRM_URL", "bundled simulator (development only)")
    secrets, shown = settings.secrets_set, without_userinfo(settings.crm.url)
    oauth = "ZENDESK_OAUTH_TOKEN" in secrets
    credentials = "ZENDESK_OAUTH_TOKEN" if oauth else "CHURN_CRM_EMAIL/ZENDESK_API_TOKEN"
    if not oauth and not (settings.crm.email and "ZENDESK_API_TOKEN" in secrets):
        return _fail(
            "crm",
            credentials,
            "no credentials: set ZENDESK_OAUTH_TOKEN, or CHURN_CRM_EMAIL and ZENDESK_API_TOKEN",
        )
    crm = build_crm(settings, None).model_copy(
        update={"timeout_seconds": float(TIMEOUT_SECONDS), "max_attempts": 1}
    )
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=CRM_EXPORT_WINDOW_SECONDS)
    try:
        with crm.api() as api:
            tickets = api.export_tickets(since, max_pages=1)
    except CRMRequestRefused as exc:
        status = re.search(r"\((\d{3})\)", str(exc))
        code = status.group(1) if status else ""
        if code in ("401", "403"):
            why = (
                "refused the credentials"
                if code == "401"
                else "refused the agent (the export needs an admin)"
            )
            return _fail("crm", credentials, f"{shown} {why} ({code})")
        return _fail("crm", "CHURN_CRM_URL", f"{shown} refused the export: {_first_line(exc)}")
    except CRMAPIError as exc:
        if "did not reach end_of_stream" not in str(exc):  # (a full page of recent tickets: it answered)
            return _fail("crm", "CHURN_CRM_URL", f"{shown}: {str(exc).rsplit(': ', 1)[-1][:200]}")
        return _ok(
            "crm",
            "CHURN_CRM_URL",
            f"{shown}: authenticated export answered (over a page of tickets updated in the last 2 minutes)",
        )
    return _ok(
        "crm",
        "CHURN_CRM_URL",
        f"{shown}: authenticated export answered ({len(tickets)} tickets updated in the last 2 minutes)",
    )


# -- Spark ---------------------------------------------------------------------------------------------
def check_spark(settings: PlatformSettings) -> CheckResult:
    """A standalone master accepts a TCP connection (any of an HA list); other masters are named."""
    engine, setting = settings.engine, "CHURN_SPARK_MASTER"
    if engine.feature_engine != "spark":
        return _ok("spark", "CHURN_FEATURE_ENGINE", f"not used (feature engine {engine.feature_engine})")
    master = engine.spark_master
    if master.startswith("local"):
        return _ok("spark", setting, f"{master}: local mode, inside each run")
    if not master.startswith("spark://"):
        scheme = master.split("://", 1)[0]
        return _ok(
            "spark",
            setting,
            f"{without_userinfo(master)}: not checked (Spark reaches a {scheme} master with that cluster's own "
            "configuration and credentials, which only a run's pod has)",
        )
    problems = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "7077")
        try:
            with socket.create_connection((host, int(port)), timeout=TIMEOUT_SECONDS):
                return _ok("spark", setting, f"{master}: the master at {host}:{port} accepts connections")
        except ValueError:
            problems.append(f"{address}: not host:port")
        except OSError as exc:
            problems.append(f"{host}:{port} {exc.strerror or type(exc).__name__}")
    return _fail("spark", setting, f"{master}: no master answers ({'; '.join(problems)})")


# -- Slack ---------------------------------------------------------------------------------------------
def _slack_url_problem(url: str) -> str | None:
    """What makes ``url`` not a Slack incoming-webhook URL (never the URL itself), or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a URL"
    if parts.scheme != "https":
        return "is not https"
    if host != "hooks.slack.com":
        return "host is not hooks.slack.com"
    if not SLACK_PATH.match(parts.path):
        return "path is not /services/T.../B.../<token>"
    return None


def check_slack(settings: PlatformSettings) -> CheckResult:
    """The webhook URL's shape only: nothing is posted, and the URL (a secret) is never shown."""
    from churn_platform.storage.credentials import env_secret, reveal

    setting = "SLACK_WEBHOOK_URL"
    url = reveal(env_secret(setting, settings.secrets_set))
    if not url:
        if settings.storage.production:
            return _fail("slack", setting, "not set: failure alerts would only be logged")
        return _ok("slack", setting, "not set: alerts are only logged")
    problem = _slack_url_problem(url)
    if problem is None:
        return _ok("slack", setting, "an incoming-webhook URL of hooks.slack.com (not posted to)")
    if settings.storage.production:
        return _fail("slack", setting, f"not a Slack incoming-webhook URL: {problem}")
    return _ok("slack", setting, f"not a Slack incoming-webhook URL ({problem}); accepted outside production")


# -- the online feature store and the scoring service ------------------------------------------------
MIN_API_KEY_CHARS = 16


def check_online_store(settings: PlatformSettings) -> CheckResult:
    """Redis answers PING with the configured credentials; which features version is current."""
    from redis.exceptions import AuthenticationError, RedisError

    from churn_platform.online.store import OnlineFeaturesMissing, current_version
    from churn_platform.resources import build_resources

    store = build_resources(settings)["online_store"]
    shown = without_userinfo(store.url)
    client = store.client()
    client.connection_pool.connection_kwargs.update(
        socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
    )
    try:
        client.ping()
        try:
            current = f"features as of {current_version(client, store.prefix)} are current"
        except OnlineFeaturesMissing:
            current = "no features loaded yet (materialize online/customer_features)"
    except AuthenticationError:
        return _fail("online", "CHURN_REDIS_PASSWORD", f"{shown} refused the credentials")
    except RedisError as exc:
        return _fail("online", "CHURN_REDIS_URL", f"{shown}: {_first_line(exc)}")
    finally:
        client.close()
    return _ok("online", "CHURN_REDIS_URL", f"{shown} answered; {current}")


def check_serving(settings: PlatformSettings) -> CheckResult:
    """The scoring service's secrets: an API key long enough to resist guessing, and whether CRM
    webhooks are on (neither value is shown)."""
    from churn_platform.storage.credentials import env_secret, reveal

    key = reveal(env_secret("CHURN_SERVING_API_KEY", settings.secrets_set))
    webhooks = (
        "CRM webhooks on"
        if "CHURN_CRM_WEBHOOK_SECRET" in settings.secrets_set
        else "CRM webhooks off (CHURN_CRM_WEBHOOK_SECRET unset)"
    )
    if not key:
        return _ok(
            "serving",
            "CHURN_SERVING_API_KEY",
            f"not set: `churn-platform serve` refuses to start here (set it where the service runs); {webhooks}",
        )
    if len(key) < MIN_API_KEY_CHARS:
        return _fail(
            "serving", "CHURN_SERVING_API_KEY", f"shorter than {MIN_API_KEY_CHARS} characters: easy to guess"
        )
    return _ok("serving", "CHURN_SERVING_API_KEY", f"set ({len(key)} characters); {webhooks}")


# -- running and reporting ----------------------------------------------------------------------------
CHECKS: list[tuple[str, Callable[[PlatformSettings], str], Callable[[PlatformSettings], CheckResult]]] = [
    ("warehouse", lambda s: _location(s, backups=False).setting, check_warehouse),
    ("backups", lambda s: _location(s, backups=True).setting, check_backups),
    ("dagster", lambda s: "DAGSTER_HOME", check_dagster),
    ("mlflow", lambda s: "CHURN_MLFLOW_TRACKING_URI", check_mlflow),
    ("crm", lambda s: "CHURN_CRM_URL", check_crm),
    ("spark", lambda s: "CHURN_SPARK_MASTER", check_spark),
    ("slack", lambda s: "SLACK_WEBHOOK_URL", check_slack),
    ("online", lambda s: "CHURN_REDIS_URL", check_online_store),
    ("serving", lambda s: "CHURN_SERVING_API_KEY", check_serving),
]


def _bounded(service: str, setting: str, check: Callable[[], CheckResult], deadline: float) -> CheckResult:
    """``check()`` in a daemon thread: an unexpected error or no answer by the deadline is a finding
    (a stuck thread is left behind; it does not keep the process alive)."""
    outcome: list[CheckResult] = []

    def run() -> None:
        try:
            outcome.append(check())
        except Exception as exc:
            outcome.append(_fail(service, setting, f"check failed: {_first_line(exc)}"))

    thread = threading.Thread(target=run, name=f"doctor-{service}", daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(deadline)
    if outcome:
        return outcome[0]
    return _fail(service, setting, f"no answer within {time.monotonic() - started:.0f} s")


def run_checks(settings: PlatformSettings, deadline: float = CHECK_DEADLINE_SECONDS) -> list[CheckResult]:
    """Every service the settings configure, checked in turn; secrets scrubbed from every line."""
    secrets = _secret_values(settings)
    results = []
    for service, setting_of, check in CHECKS:
        result = _bounded(service, setting_of(settings), lambda check=check: check(settings), deadline)
        results.append(replace(result, detail=redact(result.detail, secrets)))
    return results


def settings_error_results(error: SettingsError) -> list[CheckResult]:
    """Settings that do not load, as findings: one per problem, each naming its variable."""
    message = str(error)
    head, marker, problems = message.partition(" is not a production configuration: ")
    # Each problem starts with its variable ("; " also occurs inside a problem's explanation).
    parts = re.split(r"; (?=[A-Z][A-Z0-9_]+\b)", problems) if marker else [message]
    results = []
    for part in parts:
        variable = re.match(r"[A-Z][A-Z0-9_]+", part)
        results.append(_fail("settings", variable.group(0) if variable else "CHURN_ENV", part))
    if marker:
        results = [replace(r, detail=f"{head}: {r.detail}") for r in results]
    return [replace(r, detail=redact(r.detail, set())) for r in results]


def format_report(results: list[CheckResult]) -> str:
    """One aligned line per check: status, service, setting, detail."""
    service_width = max((len(r.service) for r in results), default=0)
    setting_width = max((len(r.setting) for r in results), default=0)
    return "\n".join(
        f"{r.status:4}  {r.service:{service_width}}  {r.setting:{setting_width}}  {r.detail}".rstrip()
        for r in results
    )
