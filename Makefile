# The two commands of the README's quick start: `make up` and `make test`.
# Both install exactly what the lock files pin, with their hashes (`make lock` refreshes them).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements-dev.lock
# one interpreter and platform family for every lock: what CI and `make up` run
LOCK_FLAGS := --generate-hashes --universal --python-version 3.11 --quiet

.PHONY: up test test-unit-shifted cluster-test install lint lock docs bench mutation clean

$(STAMP): $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

## Install, then start the whole system (three services + dashboard) with demo data.
up: $(STAMP)
	$(BIN)/hai up --demo

# the suite runs in random order (pytest-randomly); `make test SEED=N` repeats an order
ifndef SEED
SEED := $(shell $(PYTHON) -c 'import random; print(random.randrange(2**31))')
endif

## Install, then run the linters and the whole test suite (the cluster fault tests, which start
## a cluster of their own, are `make cluster-test`; .ci/run runs both).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared services bench
	@echo "random order seed: $(SEED) (make test SEED=$(SEED) repeats it)"
	$(BIN)/pytest -q -ra -p randomly --randomly-seed=$(SEED) --ignore=tests/cluster $(PYTEST_ARGS)

## The unit tests at another date: DAYS ahead of today (libfaketime; Debian's `faketime`).
DAYS ?= 365
test-unit-shifted: $(STAMP)
	@echo "random order seed: $(SEED)"
	FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -f "+$(DAYS)d" $(BIN)/pytest -q -p no:cacheprovider \
		-p randomly --randomly-seed=$(SEED) tests/unit

## Faults injected into a three-node RabbitMQ cluster and a PostgreSQL primary + synchronous
## standby of the run's own (tests/cluster; other ports, temp dirs, removed after; ~10 min).
cluster-test: $(STAMP)
	HAI_CLUSTER_TESTS=1 HAI_REQUIRE_SERVICES=1 $(BIN)/pytest -q -ra -s -p no:randomly \
		--timeout 900 tests/cluster $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared services bench

## Refresh both lock files from pyproject.toml (newest versions that fit its ranges).
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev -c requirements.lock $(LOCK_FLAGS) -o $(LOCK)

## Export each service's OpenAPI document to docs/openapi/ (a unit test fails when one is stale).
docs: $(STAMP)
	$(BIN)/python -m services.openapi
	$(BIN)/python -m shared.contracts.asyncapi > docs/asyncapi.json

## Every benchmark, written to bench/RESULTS.md (needs RabbitMQ and PostgreSQL).
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench all

## Mutation testing of the pure core and the safety-critical platform pieces (pyproject
## [tool.mutmut]; only those modules, against their unit tests: CPU is shared). One module:
## make mutation MUTANTS='services.alerts.rules*'  (docs/mutation.md has the figures)
MUTANTS ?=
mutation: $(STAMP)
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) var build mutants .pytest_cache .mypy_cache .ruff_cache
