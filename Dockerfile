# The controller's image: `predictive-autoscaler run` (ENTRYPOINT) as a non-root numeric user.
#
# Every stage starts from one base, which is a build argument: any Debian-based image with Python 3.11
# and its venv module (python:3.11-slim-bookworm where a registry is reachable; scripts/ensure-docker
# makes local/python:3.11-bookworm with debootstrap where none is). The builder installs the package
# into a virtualenv with pip only (every dependency ships a manylinux wheel, so no compiler is
# needed anywhere); the final stage copies that virtualenv and nothing else, without pip.
#
#   docker build --build-arg BASE_IMAGE=local/python:3.11-bookworm -t predictive-autoscaler .
#   docker run --rm predictive-autoscaler --help
ARG BASE_IMAGE=python:3.11-slim-bookworm

# The runtime requirements, read from pyproject.toml: a change elsewhere in that file (a dev tool,
# a lint rule) leaves requirements.txt, and so the layer of dependencies below, as it was.
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml /src/
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /requirements.txt

FROM ${BASE_IMAGE} AS builder
SHELL ["/bin/sh", "-eu", "-c"]
# pip verifies TLS against the system trust store, which the base image carries.
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=180
WORKDIR /src
RUN python3 -m venv /opt/venv
# Dependencies first, so that a change to the code reuses this layer.
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --requirement /tmp/requirements.txt "setuptools>=77" "wheel>=0.43"
COPY pyproject.toml README.md ./
COPY autoscaler ./autoscaler
COPY forecasting ./forecasting
# --no-build-isolation: setuptools is already in the venv. Then pip, setuptools and wheel go: the
# final image needs none of them.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation --no-compile . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
    && find /opt/venv -name tests -type d -path '*/site-packages/*/tests' -prune -exec rm -rf {} + \
    && /opt/venv/bin/python -c 'import autoscaler.runner, forecasting'

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="predictive-autoscaler" \
      org.opencontainers.image.description="Predictive autoscaler for Kubernetes Deployments" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/venv /opt/venv
# One BLAS thread: a second one doubles the CPU used and saves no time. HOME is /tmp, the one
# writable place in the pod. matplotlib is not installed: only the offline commands draw, and
# `simulate --plot` here says to install predictive-autoscaler[plot].
ENV PATH=/opt/venv/bin:$PATH \
    OPENBLAS_NUM_THREADS=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# A numeric user and group that exist in no base image: `runAsNonRoot` can check a number.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["predictive-autoscaler", "run"]
