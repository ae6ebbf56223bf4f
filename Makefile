# pllm: `make demo` and `make test` work on a fresh machine; both set everything up first if needed.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Two pytest workers, each test file kept on one (its module fixtures are set up once); conftest gives each
# worker its share of the cores.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test test-fast lint typecheck check bench docs clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(PYTHON) $(VENV)
	touch $@

demo: setup  ## the main job on the embedded default model
	bash scripts/demo.sh

lint: setup  ## ruff, the layer contracts (import-linter), and the generated docs must be current
	$(BIN)/ruff check src tests scripts
	$(BIN)/lint-imports
	$(BIN)/cog --check docs/cli.md README.md

docs: setup  ## regenerate docs/cli.md from --help and README's settings table from Settings
	$(BIN)/cog -r docs/cli.md README.md

typecheck: setup
	$(BIN)/mypy src

test: lint  ## the whole suite (pytest's "no tests collected", exit 5, counts as a failure here too)
	$(PYTEST) $(PYTEST_ARGS)

test-fast: setup
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

check: lint typecheck test

bench: setup
	$(BIN)/pllm bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
