# Galley's entry points. Everything installs into .venv from pyproject.toml + constraints.txt.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# pip's output goes here, not to the terminal; its tail is printed if an install fails.
INSTALL_LOG := $(VENV)/install.log
PYTEST_ARGS ?=
# `make test` runs the suite on this many pytest processes (pytest-xdist; pyproject.toml says why).
TEST_PROCESSES ?= 2
# Template tools live in venvs of their own: their pins conflict with moto's and each other's.
TOOLS  ?= .venv-tools
SAM_CLI_VERSION := 1.170.0
CHECKOV_VERSION := 3.3.30
SAM     := $(TOOLS)/sam/bin/sam
CHECKOV := $(TOOLS)/checkov/bin/checkov

# $(call logged,LOG,COMMAND): run COMMAND with its output appended to LOG; if it fails, print
# the last lines of LOG and stop.
logged = $(2) >> $(1) 2>&1 || { echo "failed: $(2); last lines of $(1):"; tail -n 40 $(1); exit 1; }

.PHONY: help install tools demo test unit lint format bench chaos requirements deploy clean

help:
	@echo "make demo    start a local stack, run the example jobs, show results, stop"
	@echo "make test    lint + the whole suite (unit, integration, e2e)"
	@echo "make unit    the unit tests only"
	@echo "make lint    ruff check, ruff format --check, mypy, lint-imports (the tiers' contract)"
	@echo "make tools   sam CLI and checkov in venvs of their own (make test needs them)"
	@echo "make bench   benchmarks under tests/perf (printed, not asserted)"
	@echo "make chaos   the chaos suite with N = 10,000 jobs (make test runs N = 300)"
	@echo "make deploy  build, deploy to AWS, put the Fargate worker on the new image (docs/deploy.md)"
	@echo "             first time: make deploy WORKER_VPC_ID=vpc-... WORKER_SUBNETS=subnet-a,subnet-b"
	@echo "make clean   remove .venv and caches"

$(STAMP): pyproject.toml constraints.txt tasks/requirements.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Galley needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV); pip's output: $(INSTALL_LOG)"
	@: > $(INSTALL_LOG)
	@$(call logged,$(INSTALL_LOG),$(BIN)/python -m pip install --upgrade pip)
	@$(call logged,$(INSTALL_LOG),$(BIN)/python -m pip install -c constraints.txt -e '.[dev]')
	@$(call logged,$(INSTALL_LOG),$(BIN)/python -m pip install -c constraints.txt -r tasks/requirements.txt)
	touch $(STAMP)

install: $(STAMP)

$(SAM):
	$(PYTHON) -m venv $(TOOLS)/sam
	@echo "installing aws-sam-cli into $(TOOLS)/sam; pip's output: $(TOOLS)/sam/install.log"
	@: > $(TOOLS)/sam/install.log
	@$(call logged,$(TOOLS)/sam/install.log,$(TOOLS)/sam/bin/python -m pip install --upgrade pip)
	@$(call logged,$(TOOLS)/sam/install.log,$(TOOLS)/sam/bin/python -m pip install aws-sam-cli==$(SAM_CLI_VERSION))

$(CHECKOV):
	$(PYTHON) -m venv $(TOOLS)/checkov
	@echo "installing checkov into $(TOOLS)/checkov; pip's output: $(TOOLS)/checkov/install.log"
	@: > $(TOOLS)/checkov/install.log
	@$(call logged,$(TOOLS)/checkov/install.log,$(TOOLS)/checkov/bin/python -m pip install --upgrade pip)
	@$(call logged,$(TOOLS)/checkov/install.log,$(TOOLS)/checkov/bin/python -m pip install checkov==$(CHECKOV_VERSION))

tools: $(SAM) $(CHECKOV)

demo: install
	$(BIN)/galley demo

test: lint tools
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check runner tasks tests
	$(BIN)/ruff format --check runner tasks tests
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format runner tasks tests
	$(BIN)/ruff check --fix runner tasks tests

bench: install
	$(BIN)/python -m pytest tests/perf -s -p no:cacheprovider $(PYTEST_ARGS)

CHAOS_N ?= 10000
chaos: install
	GALLEY_CHAOS_N=$(CHAOS_N) $(BIN)/python -m pytest tests/chaos -s -p no:cacheprovider $(PYTEST_ARGS)

# Production: sam build + sam deploy, then the Fargate worker onto the image the Lambda functions
# now run (infra/deploy.sh says how; docs/deploy.md why). Needs Docker, the AWS CLI, credentials.
# DEPLOY_ARGS go to `sam deploy`, e.g. DEPLOY_ARGS=--no-confirm-changeset in CI.
DEPLOY_ARGS ?=
deploy: $(SAM)
	SAM=$(SAM) infra/deploy.sh $(DEPLOY_ARGS)

# Regenerate the worker image's pinned runtime requirements from constraints.txt.
requirements:
	rm -rf $(TOOLS)/requirements
	$(PYTHON) -m venv $(TOOLS)/requirements
	$(TOOLS)/requirements/bin/python -m pip install --quiet -c constraints.txt .
	( echo "# Runtime dependencies of the worker image, pinned to constraints.txt (make requirements)."; \
	  $(TOOLS)/requirements/bin/python -m pip freeze --exclude-editable | grep -v '^galley' ) > infra/requirements.txt

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .galley *.egg-info
