# Every target bootstraps .venv itself, so a fresh clone needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint drills bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/intilery-bridge demo

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench
	$(BIN)/mypy bridge

test: lint
	$(BIN)/pytest -m "not slow" -n 3 tests

drills: $(STAMP)
	$(BIN)/pytest -m slow tests/drills

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/decode.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
