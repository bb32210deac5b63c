# `make leaderboard` runs the missing runs of leaderboard/grid.yaml and renders the leaderboard;
# `make test` runs the test suite. Both create the virtual environment on first use, from the lock.
# `make lock` regenerates requirements.lock after a change to pyproject.toml's dependencies.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
# the lock is resolved for, and tested on, this interpreter and platform
LOCK_PYTHON := 3.11
LOCK_PLATFORM := x86_64-manylinux_2_28
UV := uv==0.13.9
EXTRAS := --extra test --extra ray --extra wandb --extra hub

.PHONY: install test leaderboard bench lock

install: $(STAMP)

# Exactly the lock: every package at its pinned version and hash, nothing resolved here (--no-deps),
# only wheels; then the project itself, built with the lock's setuptools.
$(STAMP): $(LOCK) pyproject.toml
	@$(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if v == "$(LOCK_PYTHON)" else \
		f"$(LOCK) is for Python $(LOCK_PYTHON); $(PYTHON) is {v}: run `make install PYTHON=python$(LOCK_PYTHON)`")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps --only-binary=:all: -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q

leaderboard: $(STAMP)
	$(BIN)/bench sweep leaderboard/grid.yaml --results results
	$(BIN)/bench leaderboard --results results

bench: $(STAMP)
	$(BIN)/bench speed --workers 2

# uv resolves pyproject.toml's ranges (with every extra) for the locked platform, keeping the lock's
# current pins where they still satisfy them; UPGRADE=1 moves every package to its newest release.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet $(UV)
	.venv-lock/bin/uv pip compile pyproject.toml $(EXTRAS) --python-version $(LOCK_PYTHON) \
		--python-platform $(LOCK_PLATFORM) --generate-hashes --quiet $(if $(UPGRADE),--upgrade) \
		--custom-compile-command 'make lock' -o $(LOCK)
