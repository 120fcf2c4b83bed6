# The two commands of the README:
#   make dev   - the whole stack on this machine (API on http://localhost:8000)
#   make test  - ruff and the whole test suite against real servers
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

.PHONY: dev test lint format system-deps clean-dev

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed: make PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

system-deps:
	@bash api/scripts/system-deps.sh

# The Procfile's processes plus the operators' tools of Procfile.dev (rq-dashboard).
dev: system-deps $(VENV)/.dev-installed
	cat Procfile Procfile.dev > $(VENV)/Procfile.make-dev
	PATH="$(BIN):$$PATH" PYTHONPATH=api $(BIN)/python -m devtools.devstack run -- honcho -f $(VENV)/Procfile.make-dev -d . start

lint: $(VENV)/.dev-installed
	cd api && $(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(VENV)/.dev-installed
	cd api && $(BIN)/ruff check --fix . && $(BIN)/ruff format .

# The frontend's view in the tests: a TypeScript client generated from the live OpenAPI.
CLIENT_DIR := api/tests/typescript_client

$(CLIENT_DIR)/node_modules/.installed: $(CLIENT_DIR)/package-lock.json
	cd $(CLIENT_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test: $(VENV)/.dev-installed lint
	@bash api/scripts/system-deps.sh --test
	@$(MAKE) --no-print-directory $(CLIENT_DIR)/node_modules/.installed
	cd api && PATH="$(BIN):$$PATH" $(BIN)/python -m pytest

clean-dev:
	rm -rf .devdata
