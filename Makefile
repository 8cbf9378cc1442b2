# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two stamps: `make run` installs what running needs, `make test` adds the dev tools on top.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
LISTEN ?= 127.0.0.1:8000

.PHONY: help install install-dev models run test test-fast test-services lint fmt bench clean

help:
	@echo "make run    set up .venv, build the example models, start the daemon on $(LISTEN)"
	@echo "make test   lint, import contracts and the test suite"
	@echo "make test-fast  lint and every test that runs no daemon process (well under a minute)"
	@echo "make lint   ruff, import-linter, mypy;  make fmt  format the code"
	@echo "make bench  swap under load vs bare ONNX Runtime and restart (bench/README.md)"
	@echo "make clean  remove .venv, state/ and generated models"

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(DEV_STAMP)

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

models: $(RUN_STAMP)
	$(BIN)/python examples/make_models.py

# The device trusts the example publisher's key: on a real device its owner installs the key.
run: models
	@mkdir -p state/trust && cp examples/keys/hotswap.pub state/trust/examples.pub
	$(BIN)/hotswap run --desired desired/ --state-dir state/ --listen $(LISTEN)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# Real peers the tests start on 127.0.0.1: Mosquitto (MQTT), CNCF distribution (an OCI registry)
# and OpenSSH's server (git over ssh://). Installed from Debian when missing, with the packages'
# own services kept from starting (policy-rc.d): the tests start their own, on loopback only.
# The tests skip a peer only where none can be had.
TEST_SERVICES := mosquitto:mosquitto docker-registry:docker-registry sshd:openssh-server
test-services:
	@missing=""; for pair in $(TEST_SERVICES); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    policy=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy=1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	    rc=$$?; [ -n "$$policy" ] && rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	  else echo "not installed:$$missing (tests that need them are skipped)"; fi; \
	fi

# Tests run on one worker per core, four at most: the daemon tests mostly wait on processes.
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
test: lint test-services
	$(BIN)/pytest -q -n $(TEST_JOBS)

test-fast: lint
	$(BIN)/pytest -q -n $(TEST_JOBS) -m 'not daemon'

bench: $(DEV_STAMP)
	$(BIN)/python bench/swap_under_load.py

fmt: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) state examples/registry
