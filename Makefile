# The two commands of the README's quick start: `make up` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test install lint bench mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Install, then start the whole system (three services + dashboard) with demo data.
up: $(STAMP)
	$(BIN)/hai up --demo

## Install, then run the linters and the whole test suite.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared services bench
	$(BIN)/pytest -q -ra $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy shared services bench

## Every benchmark, written to bench/RESULTS.md (needs RabbitMQ and PostgreSQL).
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench all

## Mutation testing of the pure core and the safety-critical platform pieces (pyproject
## [tool.mutmut]; only those modules, against their unit tests: CPU is shared).
mutation: $(STAMP)
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) var build mutants .pytest_cache .mypy_cache .ruff_cache
