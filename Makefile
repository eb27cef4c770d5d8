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
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever the dependency declaration or the pins change.
$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	@touch $@

install: $(STAMP)  ## create .venv and install the project with its dev tools

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
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test: lint typecheck pytest  ## ruff, mypy and the test suite (the slow studies excluded)

test-slow: $(STAMP)  ## only the slow studies
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove run outputs (keeps .venv)
	rm -rf mlruns ray_results demo_data studies .pytest_cache .mypy_cache .ruff_cache
