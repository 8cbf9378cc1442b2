# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LISTEN ?= 127.0.0.1:8000

.PHONY: help install models run test test-fast lint fmt bench clean

help:
	@echo "make run    set up .venv, build the example models, start the daemon on $(LISTEN)"
	@echo "make test   lint, import contracts and the test suite"
	@echo "make test-fast  lint and every test that runs no daemon process (well under a minute)"
	@echo "make lint   ruff, import-linter, mypy;  make fmt  format the code"
	@echo "make bench  swap under load vs bare ONNX Runtime and restart (bench/README.md)"
	@echo "make clean  remove .venv, state/ and generated models"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

models: $(STAMP)
	$(BIN)/python examples/make_models.py

# The device trusts the example publisher's key: on a real device its owner installs the key.
run: models
	@mkdir -p state/trust && cp examples/keys/hotswap.pub state/trust/examples.pub
	$(BIN)/hotswap run --desired desired/ --state-dir state/ --listen $(LISTEN)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

test-fast: lint
	$(BIN)/pytest -q -m 'not daemon'

bench: $(STAMP)
	$(BIN)/python bench/swap_under_load.py

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) state examples/registry
