# Entry points for people and CI. `make demo` and `make test` are the README's
# two commands; both set up .venv on first use from the lockfile (uv.lock).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
SHARED ?= ../shared
# Machines without internet use the real weights in ../shared/models; elsewhere
# `make demo` downloads the official file into the user cache first.
MODEL_DIR ?= $(if $(wildcard $(SHARED)/models/*.pth),$(SHARED)/models,$(HOME)/.cache/superres/models)
DEMO_IMAGE ?= $(SHARED)/images/chelsea.png
# The tool that reads uv.lock: the one package installed before the lock can be read.
UV_VERSION := 0.13.9
# checkov's environment is a workspace member that conflicts with the kit (pyproject.toml).
export UV_PREVIEW_FEATURES := package-conflicts

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# uv exports the hashed pins of uv.lock (--locked: it fails when pyproject.toml changed
# and the lock was not refreshed) and pip installs them: pip takes the wheels this
# machine already holds (torch's 5.5 GB), where uv would download them again.
$(STAMP): pyproject.toml uv.lock tests/tools/checkov/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv export -q --locked --extra dev --no-emit-project --no-emit-workspace -o $(VENV)/requirements.txt
	$(BIN)/pip install -q --require-hashes --no-deps -r $(VENV)/requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	# checkov pins a boto3 that conflicts with ours: its own venv, used by tests/test_templates.py.
	$(PYTHON) -m venv $(VENV)/checkov
	$(BIN)/uv export -q --locked --package checkov-env --no-emit-project --no-emit-workspace -o $(VENV)/checkov/requirements.txt
	$(VENV)/checkov/bin/pip install -q --require-hashes --no-deps -r $(VENV)/checkov/requirements.txt
	touch $@

.PHONY: install lock demo test lint browser bench templates
install: $(STAMP)

# Refreshes uv.lock: every unpinned (transitive) dependency to its newest release that
# fits the exact pins of pyproject.toml. Commit the result with the change that needs it.
lock: $(STAMP)
	$(BIN)/uv lock --upgrade

demo: $(STAMP)
	$(BIN)/superres models fetch RealESRGAN_x4plus --model-dir $(MODEL_DIR)
	$(BIN)/superres demo $(DEMO_IMAGE) --scale 4 --model-dir $(MODEL_DIR) --output out/

# The gates CI runs before the tests; pre-commit runs the same (.pre-commit-config.yaml).
lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy

# The web page tests drive Debian's Chromium: test tools cannot download browsers here.
browser:
	@command -v chromium >/dev/null || { \
	    echo "installing Debian's chromium for the web page tests"; \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	    || { echo "make test needs Debian's chromium (apt-get install chromium) for the page tests" >&2; exit 1; }

test: $(STAMP) browser
	SUPERRES_SHARED=$(abspath $(SHARED)) $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/engine_bench.py --model-dir $(MODEL_DIR)

templates: $(STAMP)
	$(BIN)/python templates/build.py
