PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint browser demo run clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The report page tests drive a real headless Chromium (tests/browser.py): Debian's package,
# installed here when it is missing and we may (root, apt-get: CI and fresh machines). Anyone
# else installs it once (`sudo apt-get install chromium`) or points GATEKEEPER_TEST_CHROMIUM at
# a Chrome; without one those tests fail and say so. `make install` and `make demo` need none.
browser:
	@if [ -z "$$GATEKEEPER_TEST_CHROMIUM" ] && ! command -v chromium >/dev/null 2>&1 \
		&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the page tests"; \
		apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; \
	fi

test: install lint browser
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=10 -n 2 --dist loadfile

# The fast tier: unit and in-process integration tests, no MLflow server and no gatekeeper
# process (marks: tests/conftest.py, `slow`). Under a minute; `make test` is still the gate.
test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 -m "not e2e and not slow"

# A complete local installation: embedded MLflow + gatekeeper, two example versions decided.
demo: install
	$(BIN)/python -m demo

# The gatekeeper in the foreground with embedded defaults (SQLite, local MLflow server).
run: install
	$(BIN)/gatekeeper serve

clean:
	rm -rf $(VENV) .gatekeeper .gatekeeper-demo
