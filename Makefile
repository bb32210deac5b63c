# `make leaderboard` runs the missing runs of leaderboard/grid.yaml and renders the leaderboard;
# `make test` runs the test suite. Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test leaderboard bench

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,ray,wandb]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q

leaderboard: $(STAMP)
	$(BIN)/bench sweep leaderboard/grid.yaml --results results
	$(BIN)/bench leaderboard --results results

bench: $(STAMP)
	$(BIN)/bench speed --workers 2
