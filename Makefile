# Flotilla developer entry points. Everything runs from the repository root.
#   make venv     .venv with the package installed editable, plus dev tools
#   make test     lint + type check + pytest against a private Docker Engine and PostgreSQL
#                 (scripts/test.sh); extra pytest arguments: make test ARGS="-k foo"
#   make run      flotilla dev + a demo app deployed through the REST API (scripts/run.sh)
#   make lint     ruff check, ruff format --check, mypy, lint-imports (the layers): no Docker needed
#   make format   ruff format + ruff check --fix
#   make bench    benchmarks (bench/); never part of `make test`
#   make soak     random faults (issue 20's set) against a live fleet for SOAK_MINUTES (default
#                 10), figures into bench/RESULTS.md (bench/soak.py): make soak SOAK_MINUTES=3
#   make bench-ab issue 16's interleaved A/B gate (scripts/bench-ab.sh, ~45 min):
#                 make bench-ab ARGS="4fd1e55 HEAD"
#   make clean-run  remove the state of `make run` (.flotilla/)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LINT_PATHS := server agent tests migrations bench
ARGS ?=
SOAK_MINUTES ?= 10

.PHONY: venv test run lint format bench soak bench-ab clean-run

# The stamp is rebuilt whenever pyproject.toml is newer than it, so dependency changes
# reach the venv on the next make.
venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

test:
	scripts/test.sh $(ARGS)

run:
	scripts/run.sh

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy server agent bench
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

# Benchmarks are slow and machine-dependent: they are never part of `make test`.
bench: venv
	$(BIN)/python -m bench

# The soak stops nothing it did not start: a private engine unless DOCKER_HOST is set, and its
# scenarios' own engine and PostgreSQL.
soak: venv
	$(BIN)/python -m bench soak --minutes $(SOAK_MINUTES)

bench-ab: venv
	scripts/bench-ab.sh $(ARGS)

clean-run:
	rm -rf .flotilla
