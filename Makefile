# streamenrich: every target installs what it needs from nothing.
SHELL := /bin/bash
export UV_COMPILE_BYTECODE := 1
export SPARK_LOCAL_IP := 127.0.0.1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)

.PHONY: install test test-fast lint typecheck clean

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv

install: $(if $(shell command -v uv 2>/dev/null),,$(CURDIR)/.tools/bin/uv)
	$(UV) sync --locked
	npm ci --no-audit --no-fund --loglevel=error

test: install  ## the whole suite, slow tests included
	$(UV) run pytest

test-fast: install  ## skip the slow tests
	$(UV) run pytest -m "not slow"

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

clean:
	rm -rf .streamenrich checkpoints spark-warehouse
