# Two commands on a fresh machine with Python 3.11:  `make demo`  and  `make test`.
# Both create .venv and install the project into it if needed (CPU wheels, see constraints/).

PYTHON      ?= python3
VENV        ?= .venv
CONSTRAINTS ?= constraints/cpu.txt
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.dclr-installed
PYTEST_ARGS ?=
DEMO_ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help install demo test lint typecheck pytest test-slow format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever the dependency declaration or the pins change.
$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev,cluster]"
	@touch $@

install: $(STAMP)  ## create .venv and install the project with its dev and cluster tools

demo: $(STAMP)  ## run the main job end to end on generated data (local Ray, SQLite MLflow)
	$(BIN)/dclr demo $(DEMO_ARGS)

lint: $(STAMP)  ## ruff lint and format check, and the import-layer contracts (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)  ## mypy (strict) on the package
	$(BIN)/mypy

# pytest exits 5 when it collects nothing: that is a broken suite, and it fails here like any error.
pytest: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not browser and not cluster" $(PYTEST_ARGS)

test: lint typecheck pytest test-browser test-cluster  ## ruff, mypy, the suite, the MLflow UI in a browser and the multi-node cluster (not the slow studies)

test-slow: $(STAMP)  ## only the slow studies
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The MLflow UI in headless Chromium (tests/browser): Debian's chromium and chromium-driver,
# installed with apt (through sudo unless make runs as root).
.PHONY: browser-deps test-browser
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

browser-deps:  ## install Chromium and its driver (Debian apt) unless present
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "chromium and chromedriver are installed"; \
	else \
		$(SUDO) apt-get update && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; \
	fi

test-browser: $(STAMP) browser-deps  ## the MLflow UI test in headless Chromium
	DCLR_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -m browser tests/browser $(PYTEST_ARGS)

# A two-node Ray cluster on this machine with an S3 server and an MLflow server
# (cluster/local_cluster.py; cluster/README.md). `cluster-up` prints the environment to use.
.PHONY: cluster-up cluster-down cluster-status test-cluster

cluster-up: $(STAMP)  ## start a local two-node Ray cluster, S3 and MLflow servers
	$(BIN)/python cluster/local_cluster.py up

cluster-down:  ## stop everything cluster-up started
	$(BIN)/python cluster/local_cluster.py down

cluster-status:  ## what cluster-up started, by process id
	$(BIN)/python cluster/local_cluster.py status

test-cluster: $(STAMP)  ## the multi-node test: jobs on both nodes, data on s3://, runs on the MLflow server
	$(BIN)/python -m pytest -m cluster tests/cluster $(PYTEST_ARGS)

clean:  ## remove run outputs (keeps .venv)
	rm -rf mlruns ray_results demo_data studies test-artifacts .pytest_cache .mypy_cache .ruff_cache
