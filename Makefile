# The two commands: `make demo` and `make test`. Everything else is a convenience.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CRM_HOME ?= $(CURDIR)/data
export CRM_HOME
export DAGSTER_HOME ?= $(CRM_HOME)/dagster

.PHONY: env demo test lint format dev bench lock clean

# Create the virtual environment from the lock file (exact pins); re-run when the lock changes.
# uv (pinned here) installs the lock: the same pins as pip, in parallel, a few times faster.
UV_VERSION := 0.13.9
$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

env: $(STAMP)

demo: $(STAMP)
	$(BIN)/crm demo
	@echo "crm is installed in $(VENV): run 'source $(VENV)/bin/activate' once per shell, then 'crm --help' (or call $(BIN)/crm)."

test: $(STAMP)
	bash tests/support/ensure_system_packages.sh
	$(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder tests

lint: $(STAMP)
	$(BIN)/ruff check pipelines benchmarks tests
	$(BIN)/ruff format --check pipelines benchmarks tests
	cd dbt_project && ../$(BIN)/sqlfluff lint models

format: $(STAMP)
	$(BIN)/ruff format pipelines benchmarks tests
	$(BIN)/ruff check --fix pipelines benchmarks tests

# The Dagster UI and daemon on $(DAGSTER_HOME) (`dagster dev -w workspace.yaml`); stops on
# Ctrl-C and SIGTERM even when started in the background (pipelines/dev.py).
dev: $(STAMP)
	$(BIN)/python -m pipelines.dev

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Re-resolve every dependency (newest versions allowed by pyproject.toml) into a scratch
# environment and write the exact pins to requirements.lock. Review the diff, run make test.
lock:
	rm -rf .lock-env && $(PYTHON) -m venv .lock-env
	.lock-env/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	{ echo "# Exact pins of the whole dependency tree (Python 3.11). Regenerate with: make lock"; \
	  .lock-env/bin/python -m pip freeze --exclude-editable --disable-pip-version-check | grep -v '^-e ' | LC_ALL=C sort -f; } > requirements.lock
	rm -rf .lock-env

clean:
	rm -rf $(CRM_HOME) dbt_project/target dbt_project/logs
