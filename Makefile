# Entry points for developers and CI. Every target documents itself in one line.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed
TESTBED := $(PY) -m tests.testbed
# ETCD_PKI_BED=NAME selects a separate test-bed instance (see tests/testbed/cli.py).
BED_STATE := .testbed/$(if $(ETCD_PKI_BED),$(ETCD_PKI_BED)/,)

.PHONY: help .venv demo test test-fast lint format testbed-up testbed-down testbed-status bench settings-table

# help: list the targets
help:
	@grep -B1 -E '^[a-z.-]+:' Makefile | grep -E '^# ' | sed 's/^# //'

# .venv: create .venv and install the pinned dependencies from pyproject.toml
.venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r $(VENV)/requirements.txt
	touch $(STAMP)

# demo: bring the test bed up, run deploy.py on it (when it exists), say how to reach it
demo: .venv
	$(TESTBED) up
	@if [ -f deploy.py ]; then \
		$(VENV)/bin/pyinfra -y $(BED_STATE)inventory_docker.py deploy.py; \
	else \
		echo "*** deploy.py is not written yet: the test bed is up, nothing was deployed ***"; \
	fi
	@$(TESTBED) status

# test: every test (unit + e2e); the e2e fixtures bring the test bed up themselves
test: .venv
	$(VENV)/bin/pytest

# test-fast: unit tests only (no Docker)
test-fast: .venv
	$(VENV)/bin/pytest -m "not e2e"

# lint: ruff check and format check
lint: .venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# format: apply ruff's formatting and safe fixes
format: .venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# settings-table: rewrite README.md's settings table from the spec in etcd_pki/settings.py
settings-table: .venv
	$(PY) -m etcd_pki.settings_table README.md

# testbed-up: build what is missing and start the containers (idempotent)
testbed-up: .venv
	$(TESTBED) up

# testbed-down: remove containers, network and HTTP mirror (caches are kept)
testbed-down: .venv
	$(TESTBED) down

# testbed-status: show containers, mirror, binaries and how to reach them
testbed-status: .venv
	$(TESTBED) status

# bench: run the benchmark, `python -m bench` (options: make bench BENCH_ARGS="--quick ...")
bench: .venv
	$(PY) -m bench
