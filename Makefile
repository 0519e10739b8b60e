# chatstack: `make run` sets everything up and starts the service; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install engine run run-nginx bench test test-fast lint format clean mcp-servers

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## Create .venv and install chatstack with its pinned dependencies

engine: install  ## The embedded model: vLLM (CPU) in its own virtualenv, and its weights (both once)
	$(BIN)/chatstack model install-engine
	$(BIN)/chatstack model fetch

run: engine  ## Start chatstack on 127.0.0.1:8000 with the configured backends (the embedded model included)
	$(BIN)/chatstack serve

run-nginx: install  ## chatstack behind nginx on http://127.0.0.1:8090 (needs Debian's nginx)
	$(BIN)/chatstack serve --with-nginx

bench: install  ## A short run of every phase against the emulator profiles -> bench-results/quick/report.html
	$(BIN)/python -m bench.quick

MCP_SERVERS := tests/mcp/servers
MCP_STAMP := $(MCP_SERVERS)/node_modules/.package-lock.json

$(MCP_STAMP): $(MCP_SERVERS)/package.json $(MCP_SERVERS)/package-lock.json
	npm ci --prefix $(MCP_SERVERS) --prefer-offline --no-audit --no-fund --loglevel=error
	touch $@

mcp-servers: $(MCP_STAMP)  ## The published MCP servers the tests start, pinned by tests/mcp/servers/package-lock.json

lint: install  ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app agent tools backends bench ui protocol

test: lint engine mcp-servers  ## Everything CI runs: lint, types, unit and end-to-end tests (SQLite and PostgreSQL)
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-fast: install mcp-servers  ## Unit tests only, for quick iteration
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) test-output .pytest_cache .mypy_cache .ruff_cache
