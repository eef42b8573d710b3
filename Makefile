# mlplat — the two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv if missing (idempotent) and install the project into it first.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mlplat-installed
PYTEST_ARGS ?=
# Real services the tests start on loopback (never mocked): Redis (online store), PostgreSQL
# (MLflow backend, audit log), Prometheus and Alertmanager (alerts), NGINX (the ingress).
DEB_PACKAGES := redis-server postgresql prometheus prometheus-alertmanager nginx-light
DEB_STAMP    := $(VENV)/.mlplat-debs

.PHONY: install demo test test-unit test-integration bench lint typecheck cluster-up cluster-down clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the dependency list changes. torch is pinned to 2.13.0 in pyproject.toml:
# its CPU build is on local disk; any other version would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Debian packages: installed once per machine (needs root or sudo); skipped when already present.
$(DEB_STAMP): Makefile | $(BIN)/python
	@missing=""; \
	for b in redis-server prometheus prometheus-alertmanager nginx; do command -v $$b >/dev/null || missing=1; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing=1; \
	if [ -n "$$missing" ]; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "installing Debian packages: $(DEB_PACKAGES)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
	fi
	touch $@

install: $(STAMP) $(DEB_STAMP)

demo: install
	$(BIN)/mlplat cluster up
	$(BIN)/mlplat demo

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests

test-unit: install
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests/unit

test-integration: install
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests/integration tests/e2e

bench: install
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/ruff check platform jobs apps tests bench

typecheck: install
	$(BIN)/mypy

cluster-up: install
	$(BIN)/mlplat cluster up

cluster-down: install
	$(BIN)/mlplat cluster down

clean:
	-$(BIN)/mlplat cluster down
	rm -rf .mlplat
