PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo run clean

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

test: install lint
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=10 -n 2 --dist loadfile

# A complete local installation: embedded MLflow + gatekeeper, two example versions decided.
demo: install
	$(BIN)/python -m demo

# The gatekeeper in the foreground with embedded defaults (SQLite, local MLflow server).
run: install
	$(BIN)/gatekeeper serve

clean:
	rm -rf $(VENV) .gatekeeper .gatekeeper-demo
