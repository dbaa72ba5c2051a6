"""Shared test fixtures: where the team's real traces live."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakekube.plugin import fake_kube, kubeconfig  # noqa: F401
from tests.promserver import prometheus, prometheus_history, prometheus_live  # noqa: F401

# The shared traces sit beside the repository (../shared/traces) on every developer machine and in CI;
# PA_TRACES_DIR points elsewhere when needed.
TRACES_DIR = Path(os.environ.get("PA_TRACES_DIR", Path(__file__).parents[2] / "shared" / "traces"))


@pytest.fixture(scope="session")
def traces_dir() -> Path:
    if not any(TRACES_DIR.glob("*.csv")):
        pytest.fail(f"no traces in {TRACES_DIR}; set PA_TRACES_DIR to the shared traces folder")
    return TRACES_DIR


def write_trace(path: Path, days: int, value_at: Callable[[int], float]) -> Path:
    """A trace file of `days` days at 5-minute steps from 2024-01-01; `value_at(k)` gives row k."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = ["timestamp,value"]
    for k in range(days * 288):
        stamp = (start + timedelta(minutes=5 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rows.append(f"{stamp},{value_at(k):.0f}")
    path.write_text("\n".join(rows) + "\n")
    return path
