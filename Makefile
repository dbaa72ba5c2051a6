# Two entry points do all set-up on a fresh machine with only Python 3.11:
#   make demo  - simulate the bundled real trace (table + out/demo.png)
#   make test  - lint, type-check, architecture contracts, then the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: demo test lint bench clean image agent-demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
# Helm's Go library for tests/test_helm.py; the wheel says Python 3.12 but works on 3.11.
	$(BIN)/pip install --quiet --ignore-requires-python helm-sdkpy==0.1.32
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(BIN)/predictive-autoscaler simulate --plot out/demo.png

# The closed loop with real agent pods, predictive against reactive (about 8 minutes in real time):
# comparison table on stdout, plot in out/agent-demo.png.
agent-demo: $(STAMP)
	bash scripts/ensure-prometheus
	$(BIN)/python -m tests.agentloop.demo --out out/agent-demo.png

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The integration tests run Debian's Prometheus (installed here when missing) and real kubectl; the
# image test builds the Dockerfile on a Docker daemon and a local base image (made here when missing).
test: lint
	bash scripts/ensure-prometheus
	bash scripts/ensure-docker
	$(BIN)/pytest

# The controller's image, on the local base image (PA_BASE_IMAGE; python:3.11-slim-bookworm also works).
PA_BASE_IMAGE ?= local/python:3.11-bookworm
image:
	bash scripts/ensure-docker
	docker build --network=host --build-arg BASE_IMAGE=$(PA_BASE_IMAGE) -t predictive-autoscaler:0.1.0 .

bench: $(STAMP)
	$(BIN)/python bench/simulate_speed.py

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache *.egg-info
