# towline: the commands a newcomer needs. Everything lives in .venv inside the checkout.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit lifecycle bench bench-scale soak soak-quick docs hooks clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/towline up
	$(BIN)/towline run examples/demo/plan.yaml --wait

lint: install
	$(BIN)/ruff check src tests bench soak
	$(BIN)/ruff format --check src tests bench soak

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/python -m pytest

unit: install
	$(BIN)/python -m pytest tests/unit

# More generated lifecycle cases than `make test` runs (every run ends, rollbacks done);
# TOWLINE_LIFECYCLE_CASES sets how many, TOWLINE_LIFECYCLE_SEED replays one.
LIFECYCLE_CASES ?= 2000
lifecycle: install
	TOWLINE_LIFECYCLE_CASES=$${TOWLINE_LIFECYCLE_CASES:-$(LIFECYCLE_CASES)} \
	  $(BIN)/python -m pytest tests/integration/test_lifecycle.py

# Generated docs; tests/unit/test_docs.py fails when they are stale.
docs: install
	$(BIN)/towline tools --markdown > docs/tools.md

bench: install
	$(BIN)/python -m bench

# wide_5000: one run of 5,000 workstreams (minutes); writes bench/results/scale.{json,md}
bench-scale: install
	$(BIN)/python -m bench.scale

# Mixed runs under random faults (docs/operations.md, "Soak"); not part of `make test`.
# SOAK_MINUTES sets the load's length (default 20); SOAK_SEED replays a fault schedule.
SOAK_MINUTES ?= 20
soak: install
	$(BIN)/python -m soak --minutes $(SOAK_MINUTES) $(if $(SOAK_SEED),--seed $(SOAK_SEED))

soak-quick: install
	$(BIN)/python -m soak --minutes 3 --out .towline/soak $(if $(SOAK_SEED),--seed $(SOAK_SEED))

# ruff and mypy before each commit (.pre-commit-config.yaml); optional: `make test`
# runs the same checks without it.
hooks: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pre-commit
	$(BIN)/pre-commit install

clean:
	rm -rf $(VENV) .towline build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
