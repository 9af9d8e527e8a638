# Two commands set everything up on a fresh machine (Python 3.11, no Docker):
#   make demo   - the whole system on the local stack
#   make test   - every check and test suite
# Both create/update .venv themselves.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: checkov install test lint unit integration e2e demo replay package bench bench-quick soak clean

install: $(STAMP)

$(STAMP): pyproject.toml layers/boxwatch/requirements.txt
	# mosquitto: the MQTT broker of the device-agent tests and fleet bench (Debian package)
	command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || \
		(apt-get update -q >/dev/null && apt-get install -y -q mosquitto >/dev/null)
	# chromium: the browser of the console's tests (Playwright drives Debian's build; never `playwright install`)
	test -x /usr/bin/chromium || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy layers/boxwatch/boxwatch infra/boxwatch_infra functions tests
	$(BIN)/cfn-lint template.yaml
	$(BIN)/python -m boxwatch_infra.aws.template

# the browser tests run in their own process: Playwright's driver and its event loop stay out of
# the rest of the suite
test: lint checkov
	$(BIN)/pytest --ignore=tests/e2e/test_console_browser.py
	$(BIN)/pytest tests/e2e/test_console_browser.py

# checkov pins an older boto3 than the project: it gets its own venv (~3 s per run)
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/bin/checkov:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q checkov

checkov: $(CHECKOV_VENV)/bin/checkov
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

e2e: install
	$(BIN)/pytest tests/e2e

# the differential test at length: 5,000 full-size random scenarios through replay and the
# reference model (tests/model); prints how many pushes of each kind it checked, a minimal
# scenario per class of disagreement, exits 1 on any. SOAK_COUNT / SOAK_JOBS / SOAK_START override.
# About 2.7 h on 2 cores; a run cut short goes on where it stopped: seeds that the record
# (tests/model/soak-record.log, committed) holds for the same code are taken from it, so a soak
# may span sessions; a line made by other code (system, template, tooling, model) is run again.
SOAK_COUNT ?= 5000
SOAK_JOBS ?= 2
SOAK_START ?= 100000
SOAK_RECORD ?= tests/model/soak-record.log
soak: install
	$(BIN)/python -m tests.model.differential --size full --count $(SOAK_COUNT) --jobs $(SOAK_JOBS) \
		--start $(SOAK_START) --shrink --progress $(SOAK_RECORD) --resume

# the whole system on the local cloud (moto_server + MQTT broker + the template's functions,
# rules and schedules) with a fleet of device agents; exits 0 when every expected push arrived
demo: install
	$(BIN)/boxwatch demo --screenshot test-artifacts/demo/console-fire.png

# Lambda artifacts (python3.12, manylinux wheels) and their sizes against Lambda's limits
package: install
	$(BIN)/python -m boxwatch_infra.localcloud.package

# benchmarks (issue 7): bench/results.json, results.md, results.png; prints the table
bench: install
	$(BIN)/python -m boxwatch_infra.bench

bench-quick: install
	$(BIN)/python -m boxwatch_infra.bench --quick --out bench/quick

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .mypy_cache .ruff_cache .pytest_cache .aws-sam build
