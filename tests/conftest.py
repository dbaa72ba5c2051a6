"""Shared test fixtures: where the team's real traces live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The shared traces sit beside the repository (../shared/traces) on every developer machine and in CI;
# PA_TRACES_DIR points elsewhere when needed.
TRACES_DIR = Path(os.environ.get("PA_TRACES_DIR", Path(__file__).parents[2] / "shared" / "traces"))


@pytest.fixture(scope="session")
def traces_dir() -> Path:
    if not any(TRACES_DIR.glob("*.csv")):
        pytest.fail(f"no traces in {TRACES_DIR}; set PA_TRACES_DIR to the shared traces folder")
    return TRACES_DIR
