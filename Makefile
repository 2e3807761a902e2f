# Entry points for people and CI. `make demo` and `make test` are the README's
# two commands; both set up .venv on first use (pinned, from pyproject.toml).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
SHARED ?= ../shared
# Machines without internet use the real weights in ../shared/models; elsewhere
# `make demo` downloads the official file into the user cache first.
MODEL_DIR ?= $(if $(wildcard $(SHARED)/models/*.pth),$(SHARED)/models,$(HOME)/.cache/superres/models)
DEMO_IMAGE ?= $(SHARED)/images/chelsea.png

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml tests/requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps -r tests/requirements-nodeps.txt
	# checkov pins a boto3 that conflicts with ours: its own venv, used by tests/test_templates.py.
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install -q checkov==3.3.30
	touch $@

.PHONY: install demo test lint bench templates
install: $(STAMP)

demo: $(STAMP)
	$(BIN)/superres models fetch RealESRGAN_x4plus --model-dir $(MODEL_DIR)
	$(BIN)/superres demo $(DEMO_IMAGE) --scale 4 --model-dir $(MODEL_DIR) --output out/

# The gates CI runs before the tests; pre-commit runs the same (.pre-commit-config.yaml).
lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy

test: $(STAMP)
	SUPERRES_SHARED=$(abspath $(SHARED)) $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/engine_bench.py --model-dir $(MODEL_DIR)

templates: $(STAMP)
	$(BIN)/python templates/build.py
