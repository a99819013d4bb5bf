# The churn_platform code location. The Helm chart's user deployment runs it as the gRPC server that
# the Dagster webserver and daemon load churn_platform.definitions from, and K8sRunLauncher starts every
# run's pod from the same image (deploy/helm/values.yaml). Build from the repository root:
#   docker build -t <registry>/churn-platform:<version> .
# Secrets are never baked in: they reach the containers from the Kubernetes Secret churn-platform-secrets.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

# Java 17 for Spark (CHURN_FEATURE_ENGINE=spark: pyspark starts its JVM driver in the run's pod), and
# pg_dump/pg_restore for backups of the PostgreSQL instance and MLflow database (bookworm's client is
# PostgreSQL 15: pg_dump must be at least the server's major version, so match it to your server).
# The slim image lacks the man directory the JRE's post-install links into, hence the mkdir.
# Not pinned (DL3008): bookworm's security updates replace any pinned version; the tag fixes the release.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/dagster/app

# Dependencies first, from the files that declare them only, so this layer is rebuilt only when
# setup.py, pyproject.toml or constraints.txt change: a stub package stands in for the source while pip
# resolves install_requires against the pinned versions, then it is removed again.
COPY setup.py pyproject.toml constraints.txt ./
RUN mkdir churn_platform \
    && touch churn_platform/__init__.py \
    && pip install --no-cache-dir -c constraints.txt . \
    && pip uninstall --yes churn_platform \
    && rm -rf churn_platform build churn_platform.egg-info

# The package itself, installed (not editable) into site-packages like any other dependency.
COPY churn_platform ./churn_platform
RUN pip install --no-cache-dir --no-deps -c constraints.txt . \
    && rm -rf build churn_platform.egg-info

# A fixed, numeric non-root user (Kubernetes' runAsNonRoot can only verify a numeric UID). Its home
# holds Spark's Ivy cache (CHURN_SPARK_PACKAGES); DAGSTER_HOME holds the alert outbox the sensors write.
RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --create-home --home-dir /home/dagster \
        --shell /usr/sbin/nologin dagster \
    && mkdir -p "$DAGSTER_HOME" \
    && chown dagster:dagster "$DAGSTER_HOME"
USER 10001:10001

EXPOSE 3030

# The same check the chart's readiness probe runs against the gRPC server.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "3030"]

# The chart passes its own arguments (dagster api grpc -h 0.0.0.0 -p 3030 -m churn_platform.definitions),
# so there is no ENTRYPOINT; this CMD serves the same code location under `docker run`.
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "churn_platform.definitions"]
