# Two entry points do all set-up on a fresh machine with only Python 3.11:
#   make demo  - simulate the bundled real trace (table + out/demo.png)
#   make test  - lint, type-check, architecture contracts, then the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(BIN)/predictive-autoscaler simulate --plot out/demo.png

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The integration tests run Debian's Prometheus (installed here when missing) and real kubectl.
test: lint
	bash scripts/ensure-prometheus
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/simulate_speed.py

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache *.egg-info
