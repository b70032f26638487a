# Galley's entry points. Everything installs into .venv from pyproject.toml + constraints.txt.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install demo test unit lint format bench clean

help:
	@echo "make demo    start a local stack, run the example jobs, show results, stop"
	@echo "make test    lint + the whole suite (unit, integration, e2e)"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make bench   benchmarks under tests/perf (printed, not asserted)"
	@echo "make clean   remove .venv and caches"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Galley needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/galley demo

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check runner tasks tests
	$(BIN)/ruff format --check runner tasks tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format runner tasks tests
	$(BIN)/ruff check --fix runner tasks tests

bench: install
	$(BIN)/python -m pytest tests/perf -s -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .galley *.egg-info
