# streamenrich: every target installs what it needs from nothing.
SHELL := /bin/bash
export UV_COMPILE_BYTECODE := 1
export SPARK_LOCAL_IP := 127.0.0.1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)

.PHONY: install demo up down status test test-fast bench lint clean

$(CURDIR)/.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/pip install --quiet uv

install: $(if $(shell command -v uv 2>/dev/null),,$(CURDIR)/.tools/bin/uv)
	$(UV) sync --locked
	npm ci --no-audit --no-fund --loglevel=error

# The demo talks to the local stack that `local up` starts on these ports (tests never do).
STACK := demo up down status
$(STACK): export PREFECT_API_URL := http://127.0.0.1:4200/api
$(STACK): export AWS_ENDPOINT_URL_KINESIS := http://127.0.0.1:4566
$(STACK): export AWS_REGION := us-east-1
$(STACK): export AWS_ACCESS_KEY_ID := local
$(STACK): export AWS_SECRET_ACCESS_KEY := local

demo: install up  ## run the demo deployment on the local stack and show the result
	$(UV) run python -m flows.run_demo

up: install  ## start the local stack (Kinesis on 4566, Prefect on 4200, a worker)
	$(UV) run streamenrich local up

down:  ## stop what `make up` started
	$(UV) run streamenrich local down

status:
	$(UV) run streamenrich local status

test: install  ## the whole suite, slow tests included
	$(UV) run pytest

test-fast: install  ## skip the slow tests
	$(UV) run pytest -m "not slow"

bench: install  ## every benchmark; JSON and charts in benchmarks/results/
	$(UV) run python benchmarks/run.py --out benchmarks/results/latest.json

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

clean:
	rm -rf .streamenrich checkpoints spark-warehouse
