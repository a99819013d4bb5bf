# Two commands on a fresh machine: `make demo` and `make test`. Both build the virtualenv first
# and reuse it while setup.py and constraints.txt are unchanged.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: install services demo test lint format check-defs bench-tools observability-tools ui-tools screenshots bench-smoke docs dev mlflow-ui bench clean

install: $(STAMP)

$(STAMP): setup.py pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/churn-platform demo

# PostgreSQL on loopback, for the production-instance, MLflow-server and metadata-backup tests, and
# Redis, for the online feature store and the scoring service: each started when it is stopped
# (Debian's packages; CHURN_TEST_PG_HOST/_PORT/_USER point the tests at another PostgreSQL).
services:
	@pg_isready -q -h $${CHURN_TEST_PG_HOST:-127.0.0.1} -p $${CHURN_TEST_PG_PORT:-5432} \
		|| pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | tail -1) main start
	@pg_isready -h $${CHURN_TEST_PG_HOST:-127.0.0.1} -p $${CHURN_TEST_PG_PORT:-5432} -t 30
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 \
		|| redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
	@redis-cli -h 127.0.0.1 ping

# Lint and the definitions check first (seconds), every benchmark once at a tiny size, then the
# suite. (The benchmarks run alone: beside the suite's own servers they starved its timeouts.)
test: $(STAMP) services observability-tools ui-tools lint check-defs bench-smoke
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=25

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# dg finds the project through pyproject.toml's [tool.dg]; VIRTUAL_ENV tells it the venv is ours.
check-defs: $(STAMP)
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

# wrk, the HTTP load generator bench/serving.py drives the scoring service with: installed (Debian's
# package) when it is missing.
bench-tools:
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -q wrk || { apt-get update -q && apt-get install -y -q wrk; }
	@command -v wrk

# Prometheus (it ships promtool) and the Pushgateway, which the observability tests start on loopback
# and which check the alert rules and dashboards: installed (Debian's packages) when missing. The
# tests start their own processes; the packages' system services are not needed.
observability-tools:
	@{ command -v promtool && command -v prometheus && command -v prometheus-pushgateway; } >/dev/null 2>&1 \
		|| apt-get install -y -q prometheus prometheus-pushgateway \
		|| { apt-get update -q && apt-get install -y -q prometheus prometheus-pushgateway; }
	@command -v promtool && command -v prometheus-pushgateway

# Chromium, which the browser test of the Dagster UI (churn_platform_tests/ui) drives through Playwright
# and `make screenshots` uses: installed (Debian's package) when missing. Playwright never downloads a
# browser of its own here (no `playwright install`): it launches /usr/bin/chromium.
ui-tools:
	@test -x /usr/bin/chromium || apt-get install -y -q chromium \
		|| { apt-get update -q && apt-get install -y -q chromium; }
	@/usr/bin/chromium --version 2>/dev/null

# The README's UI screenshots (docs/screenshots/), from a small freshly materialized platform in a
# temporary directory, through the same browser driver as the UI test.
screenshots: $(STAMP) ui-tools
	$(BIN)/python -m churn_platform_tests.ui.screenshots docs/screenshots

# Each bench/ script once at a tiny size: proves it still runs, measures nothing.
bench-smoke: $(STAMP) bench-tools
	$(BIN)/python bench/smoke.py

# The README's configuration tables, from the settings declarations.
docs: $(STAMP)
	$(BIN)/python -m churn_platform.settings.docs README.md

# The demo's settings (CHURN_START_DATE, following its data) from $(DAGSTER_HOME)/churn.env.
# Variables set in the shell win over the file (python-dotenv's --no-override).
dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	touch $(DAGSTER_HOME)/churn.env
	$(BIN)/python -m dotenv -f $(DAGSTER_HOME)/churn.env run --no-override $(BIN)/dagster dev -w workspace.yaml

# Every benchmark at full size (minutes to hours); each writes bench/results/ and the README cites them.
bench: $(STAMP) bench-tools
	for script in bench/[!_]*.py; do [ "$$script" = bench/smoke.py ] || $(BIN)/python $$script || exit 1; done

# The MLflow UI on the local store that `make demo` fills (runs, plots, registered model, champion).
mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/data/mlflow/mlflow.db --port 5000

clean:
	rm -rf $(VENV) .dagster_home data .pytest_cache
