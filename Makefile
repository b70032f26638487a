# Galley's entry points. Everything installs into .venv from pyproject.toml + constraints.txt.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Template tools live in venvs of their own: their pins conflict with moto's and each other's.
TOOLS  ?= .venv-tools
SAM_CLI_VERSION := 1.170.0
CHECKOV_VERSION := 3.3.30
SAM     := $(TOOLS)/sam/bin/sam
CHECKOV := $(TOOLS)/checkov/bin/checkov

.PHONY: help install tools demo test unit lint format bench chaos requirements clean

help:
	@echo "make demo    start a local stack, run the example jobs, show results, stop"
	@echo "make test    lint + the whole suite (unit, integration, e2e)"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make tools   sam CLI and checkov in venvs of their own (make test needs them)"
	@echo "make bench   benchmarks under tests/perf (printed, not asserted)"
	@echo "make chaos   the chaos suite with N = 10,000 jobs (make test runs N = 300)"
	@echo "make clean   remove .venv and caches"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Galley needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(SAM):
	$(PYTHON) -m venv $(TOOLS)/sam
	$(TOOLS)/sam/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/sam/bin/python -m pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)

$(CHECKOV):
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/checkov/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)

tools: $(SAM) $(CHECKOV)

demo: install
	$(BIN)/galley demo

test: lint tools
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

CHAOS_N ?= 10000
chaos: install
	GALLEY_CHAOS_N=$(CHAOS_N) $(BIN)/python -m pytest tests/chaos -s -p no:cacheprovider $(PYTEST_ARGS)

# Regenerate the worker image's pinned runtime requirements from constraints.txt.
requirements:
	rm -rf $(TOOLS)/requirements
	$(PYTHON) -m venv $(TOOLS)/requirements
	$(TOOLS)/requirements/bin/python -m pip install --quiet -c constraints.txt .
	( echo "# Runtime dependencies of the worker image, pinned to constraints.txt (make requirements)."; \
	  $(TOOLS)/requirements/bin/python -m pip freeze --exclude-editable | grep -v '^galley' ) > infra/requirements.txt

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .galley *.egg-info
