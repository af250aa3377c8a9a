# `make train` and `make test` install what they need on first use (and again when pyproject.toml changes).
PYTHON ?= python
# Installed only where no torch is present: the CPU build on machines that keep it locally, PyPI's default elsewhere.
TORCH ?= torch==2.13.0

.PHONY: train test test-all lint install install-dev

train: .make/install
	$(PYTHON) scripts/train.py +experiment=sgd

# The everyday loop: everything but the tests marked slow (subprocesses, DDP, sweeps, servers).
test: .make/install-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -m "not slow"

# Everything, as CI runs it.
test-all: .make/install-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest

lint: .make/install-dev
	$(PYTHON) -m ruff check .

install: .make/install
install-dev: .make/install-dev

.make/install: pyproject.toml
	@mkdir -p .make
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH)"
	$(PYTHON) -m pip install -e .
	@touch $@

.make/install-dev: pyproject.toml
	@mkdir -p .make
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "$(TORCH)"
	$(PYTHON) -m pip install -e ".[dev]"
	@touch $@ .make/install
