# Sendarix developer commands. Every target says what it does before doing it.
#   make run    the whole platform in the foreground (Ctrl-C stops it)
#   make test   lint, type-check and the whole test suite (starts the test infrastructure itself)

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test lint clean

help:
	@echo "make install  create $(VENV) and install Sendarix with its dev tools"
	@echo "make run      install and start the whole platform locally (Ctrl-C stops it)"
	@echo "make test     lint, type-check, then run every test"
	@echo "make lint     ruff check, ruff format --check, mypy"
	@echo "make clean    remove .state (local databases, broker data, logs)"
	@echo "make bench    throughput and latency vs raw SMTP and Kafka baselines (bench-results/)"
	@echo "make chaos    10,000 messages while every service, the broker and the database fail"

install: $(INSTALLED)

# Re-installs only when pyproject.toml or constraints.txt changed since the last install.
$(INSTALLED): pyproject.toml constraints.txt
	@echo "[make] installing Sendarix and its dev tools into $(VENV)"
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "[make] Sendarix needs Python 3.11 or newer as python3"; exit 1; }
	@test -x $(BIN)/python || python3 -m venv $(VENV) \
		|| { echo "[make] python3 -m venv failed; install python3-venv first"; exit 1; }
	@$(BIN)/python -m pip install -qq --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@touch $@

run: install
	@echo "[make] starting the platform: $(BIN)/python -m deploy.stack run"
	@$(BIN)/python -m deploy.stack run

lint: install
	@echo "[make] ruff check"
	@$(BIN)/ruff check .
	@echo "[make] ruff format --check"
	@$(BIN)/ruff format --check .
	@echo "[make] mypy (strict)"
	@$(BIN)/mypy .

test: install lint
	@echo "[make] tools of the test infrastructure (built on the first run only)"
	@$(BIN)/python -m deploy.stack install --profile test
	@echo "[make] pytest (the test infrastructure starts unless it is already running)"
	@$(BIN)/pytest

clean:
	@echo "[make] removing .state (local databases, broker data, logs)"
	@rm -rf .state

# BENCH_ARGS="--scenario critical --backlog 20000" picks other scenarios or sizes (see --help).
.PHONY: bench
bench: install
	@echo "[make] benchmark on the bench stack (reused if running, else started): $(BIN)/python -m tests.bench $(BENCH_ARGS)"
	@$(BIN)/python -m tests.bench $(BENCH_ARGS)

# CHAOS_ARGS="--messages 2000 --rate 20" runs a smaller or slower chaos run (see --help).
.PHONY: chaos
chaos: install
	@echo "[make] fault injection on the chaos stack (its own broker and database): $(BIN)/python -m tests.chaos $(CHAOS_ARGS)"
	@$(BIN)/python -m tests.chaos $(CHAOS_ARGS)
