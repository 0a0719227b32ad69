# The verbs: run, test, lint, bench. CI calls `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit bench chaos clean promtool chromium

run: $(STAMP)
	$(BIN)/email-platform up

# Two workers, each with its own embedded stack: most tests wait on services, so two at a
# time nearly halve the run on two cores. A module's tests stay on one worker (loadscope),
# so a module-wide platform starts once; the longest modules go first (tests/conftest.py
# LONGEST_MODULES), in that order rather than xdist's by number of tests.
test: $(STAMP) lint promtool chromium
	$(BIN)/pytest -n 2 --dist loadscope --no-loadscope-reorder

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
	$(BIN)/python -m bench.store_in
	$(BIN)/python -m bench.tracker_writes
	$(BIN)/python -m bench.e2e

# 20 campaigns of 10,000 rows under mixed faults (tests/chaos/): kill -9 of services, NATS and
# the store restarted, SES throttling and 5xx, the callback receiver down, a slow store; a
# table of lost / duplicated / unexpected / ok per trial and a total. `make test` runs one
# smaller trial. `python -m tests.chaos --each` runs each fault alone; the sender crash test
# alone, repeated: CHAOS_TRIALS=20 pytest tests/integration/test_sender_crash.py.
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --trials 20 --messages 10000

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[stack,dev]"
	touch $(STAMP)

# promtool, from Debian's prometheus package: tests/unit/test_monitoring.py checks and
# unit-tests deploy/prometheus/alerts.yml with it. Installed when missing (as root, no sudo);
# nothing to do when it is there.
promtool:
	@command -v promtool >/dev/null || { \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    -o DPkg::Lock::Timeout=300 prometheus; }

# Debian's chromium: tests/dashboard/test_dashboard_browser.py drives it with Playwright
# (whose own browser download needs the internet). Installed when missing, like promtool.
chromium:
	@test -x /usr/bin/chromium || { \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    -o DPkg::Lock::Timeout=300 chromium; }

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
