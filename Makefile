# Astra money-movement suite. `make run` and `make test` are all a newcomer needs:
# both create the virtual environment (.venv, from uv.lock) on first use.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_PYTHON_DOWNLOADS := never
# The machine's CA bundle, so uv trusts the same registries pip does.
export SSL_CERT_FILE ?= /etc/ssl/certs/ca-certificates.crt

PYTEST_ARGS ?=

.PHONY: help venv run test test-unit test-integration test-e2e lint fmt protos bench simulate events clean

help:
	@echo "make run     start the whole suite on embedded defaults"
	@echo "make test    run every test (unit, integration on PostgreSQL + Pub/Sub emulator, e2e)"
	@echo "make bench   run the benchmarks and write the report"
	@echo "make simulate SEEDS=N [FIRST=S] | SEED=S   the deterministic simulation (SIMULATION.md)"
	@echo "make lint    ruff, mypy, buf lint"
	@echo "make protos  regenerate libs/contracts from protos/"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml libs/*/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	@touch $@

venv: $(VENV)/.synced

run: venv
	$(PY) scripts/run_suite.py

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: venv
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: venv
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs/chassis/src libs/screening/src libs/testkit/src services/*/src scripts tests bench simulation
	cd protos && ../$(VENV)/bin/buf lint

fmt: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

protos: venv
	$(PY) scripts/generate_contracts.py

bench: venv
	$(PY) -m bench.run

# The deterministic simulation (SIMULATION.md): SEEDS seeds from FIRST; SEED=S replays one
# seed with its trace (the command a failing seed prints).
SEEDS ?= 100
FIRST ?= 1
simulate: venv
	$(PY) -m simulation $(if $(SEED),--seed $(SEED) --trace,--seeds $(SEEDS) --first $(FIRST))

# Tail a context's events as JSON lines: make events [ARGS="payments --count 5"].
# Defaults to the ledger's topic on the local emulator that `make run` starts
# (on ASTRA_PUBSUB_EMULATOR_PORT when that moved it).
events: venv
	PUBSUB_EMULATOR_HOST=$${PUBSUB_EMULATOR_HOST-127.0.0.1:$${ASTRA_PUBSUB_EMULATOR_PORT-8085}} \
		$(VENV)/bin/astra-events $(or $(ARGS),ledger)

clean:
	rm -rf $(VENV) $(TOOLS) .data .pytest_cache .mypy_cache .ruff_cache
