# Two commands set everything up on a fresh machine (Python 3.11, no Docker):
#   make demo   - the whole system on the local stack
#   make test   - every check and test suite
# Both create/update .venv themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint unit integration e2e demo replay package bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml layers/boxwatch/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy layers/boxwatch/boxwatch infra/boxwatch_infra functions tests
	$(BIN)/cfn-lint template.yaml
	$(BIN)/python -m boxwatch_infra.template

test: lint
	$(BIN)/pytest

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

e2e: install
	$(BIN)/pytest tests/e2e

demo: install
	$(BIN)/boxwatch replay tests/scenarios/alarm_path.yaml --json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .aws-sam build
