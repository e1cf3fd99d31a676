# regwatch: two commands for a newcomer, `make demo` and `make test`; the rest are helpers.
# `make check`: lint (ruff), types (mypy), the import contracts between the packages (lint-imports);
# CI runs it before `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: install deps demo demo-down check test test-fast es-up es-down es-status setup bench kibana kibana-objects clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,demo]'
	touch $(STAMP)

install: $(STAMP)

## Debian's prometheus, prometheus-alertmanager, zabbix-agent2, nginx, logrotate: installed when
## run as root, else one line naming the packages (the tests that run them then fail saying so).
deps: install
	$(BIN)/regwatch deps --install

## The demo: a local Elasticsearch, then a real MLflow behind nginx, regwatch's services, a
## workload and two incidents; ends with a summary and leaves it running for `regwatch top`.
demo: deps
	$(BIN)/regwatch es up
	$(BIN)/regwatch setup
	$(BIN)/regwatch demo up

## Stop everything `make demo` started, the local Elasticsearch included.
demo-down: install
	$(BIN)/regwatch demo down
	$(BIN)/regwatch es down

## Lint, types and import contracts, as configured in pyproject.toml; clean or it fails.
check: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## Every test, Elasticsearch-backed ones included (the node is provisioned by tests/conftest.py).
test: deps
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not elasticsearch and not slow"

es-up: install
	$(BIN)/regwatch es up

es-down: install
	$(BIN)/regwatch es down

es-status: install
	$(BIN)/regwatch es status

setup: install
	$(BIN)/regwatch setup

## Import the saved objects into Kibana (KIBANA_URL, KIBANA_API_KEY or KIBANA_USERNAME/KIBANA_PASSWORD).
kibana: install
	$(BIN)/regwatch kibana import

## Regenerate kibana/regwatch.ndjson from kibana/objects.py.
kibana-objects: install
	$(BIN)/python -m kibana.objects

## Every bench of bench/, each figure beside its goal and the last recorded one (bench/figures.yaml,
## bench/recorded.yaml); exits 1 if a figure misses its goal. Not part of `make test`.
## BENCHES=shipper_bench,parsers_bench runs some; RECORD=1 records this run's figures;
## The memory figure holds from a 100k- to a 10M-line backlog (the 10M one takes about 15 minutes);
## BACKLOGS=100000,1000000 leaves it out.
NAB      ?= ../shared/datasets/nab
BACKLOGS ?= 100000,1000000,10000000
BENCHES  ?=
bench: install
	$(BIN)/python bench/scoreboard.py $(if $(BENCHES),--only $(BENCHES)) $(if $(RECORD),--record) \
		--args "anomaly_bench.py=--nab $(NAB)" \
		--args "shipper_bench.py=--lines 200000 --backlogs $(BACKLOGS)"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache .import_linter_cache
