# Baton: `make demo` starts the app on SQLite with a demo study; `make test` runs every test;
# `make test-fast` runs all but the slow and the browser tests (a few minutes).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint format typecheck bench install clean-demo

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 12), f"Python >= 3.12 needed, {sys.executable} is {sys.version.split()[0]}"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# Starts the web server and a task worker on the embedded SQLite database; Ctrl-C stops both.
demo: install
	@export DEBUG=1 TASKS_BACKEND=django_tasks_db.DatabaseBackend; \
	$(PY) manage.py migrate --verbosity 0 && \
	$(PY) manage.py makedemo --if-absent --url http://$(HOST):$(PORT)/ || exit 1; \
	$(PY) manage.py db_worker --no-reload --verbosity 1 & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null; exit 0' INT TERM EXIT; \
	echo "Baton: http://$(HOST):$(PORT)/  (Ctrl-C stops the server and the worker)"; \
	DEBUG=1 $(PY) manage.py runserver --noreload $(HOST):$(PORT)

# SQLite by default; PostgreSQL when DATABASE_URL is set.
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Every test but those marked slow (real sampling, large data) or browser (Chromium).
test-fast: install
	$(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install
	BATON_INSECURE_DEV_KEY=1 $(VENV)/bin/mypy annotate calibration config accounts

clean-demo:
	rm -f db.sqlite3 db.sqlite3-wal db.sqlite3-shm
