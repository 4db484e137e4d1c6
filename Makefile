# Two commands on a fresh machine:
#   make run    install into .venv and run Pulse on the embedded default (SQLite + live demo data)
#   make test   install into .venv (plus PostgreSQL for the database tests) and run lint + tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install install-dev run test lint bench

$(VENV)/.installed: requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

run: install
	$(PY) app.py run

lint: install-dev
	$(PY) -m ruff check .

test: install-dev
	bash scripts/install-system-packages.sh
	$(PY) -m ruff check .
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/bench_ingest.py
