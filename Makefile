# mritune: two commands for a fresh machine.
#   make demo   installs into .venv, then runs the whole pipeline on a generated demo dataset
#   make test   installs into .venv, then runs ruff, the layer contracts and every test
PYTHON ?= python3
VENV ?= .venv
# torch is pinned for this project's build machines; elsewhere override, e.g.
#   make test TORCH_PINS="torch==2.5.1 torchvision==0.20.1"   or   TORCH_PINS=   (no pin)
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
EXTRAS ?= dev
STAMP := $(VENV)/.mritune-installed
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo

.PHONY: install test demo lint clean-venv bench

install: $(STAMP)

# Re-runs only when pyproject.toml or this Makefile changed (or the venv is gone):
# a second `make test` on an up-to-date .venv installs nothing.
$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@printf '%s\n' $(TORCH_PINS) > $(VENV)/torch-pins.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(VENV)/torch-pins.txt $(TORCH_PINS) -e '.[$(EXTRAS)]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/mritune demo --out $(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_engine.py

clean-venv:
	rm -rf $(VENV)
