# The verbs: run, test, lint, bench. CI calls `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit bench chaos clean

run: $(STAMP)
	$(BIN)/email-platform up

test: $(STAMP) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP)
	$(BIN)/python -m bench.ingest_parse
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.schedule
	$(BIN)/python -m bench.sesim
	$(BIN)/python -m bench.send

# The sender crash test, 20 campaigns instead of the one `make test` runs.
chaos: $(STAMP)
	CHAOS_TRIALS=20 $(BIN)/pytest tests/integration/test_sender_crash.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[stack,dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
