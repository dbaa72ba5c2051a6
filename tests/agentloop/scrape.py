"""The loop's Prometheus: the agents found through file-based service discovery, and the pod
runner's kube-state-metrics endpoint, both scraped every second (see `workload.py` for the labels)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tests.agentloop.workload import AGENTS_JOB, KSM_INSTANCE, KSM_JOB
from tests.promserver import PromServer

__all__ = ["LoopPrometheus", "scrape_config", "write_file_sd"]


def scrape_config(sd_file: Path, ksm_address: str, scrape_s: int = 1) -> str:
    # JSON is YAML: no hand-made indentation to get wrong.
    config = {
        "global": {"evaluation_interval": "1h"},
        "scrape_configs": [
            {
                "job_name": AGENTS_JOB,
                "scrape_interval": f"{scrape_s}s",
                "scrape_timeout": f"{scrape_s}s",
                # Prometheus also watches the file; the interval is only its fallback.
                "file_sd_configs": [{"files": [str(sd_file)], "refresh_interval": "5s"}],
                "relabel_configs": [{"source_labels": ["pod"], "target_label": "instance"}],
            },
            {
                "job_name": KSM_JOB,
                "scrape_interval": f"{scrape_s}s",
                "scrape_timeout": f"{scrape_s}s",
                "honor_labels": True,
                "static_configs": [{"targets": [ksm_address]}],
                "relabel_configs": [{"target_label": "instance", "replacement": KSM_INSTANCE}],
            },
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def write_file_sd(path: Path, namespace: str, targets: Iterable[tuple[str, str]]) -> None:
    """Replace the file-SD file with one target group per (pod, host:port), atomically: Prometheus
    must never read a half-written file (it would drop every target until the next write)."""
    groups = [
        {"targets": [address], "labels": {"namespace": namespace, "pod": pod}}
        for pod, address in targets
    ]
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(groups, out, indent=1)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class LoopPrometheus(PromServer):
    """`PromServer` with the loop's two scrape jobs instead of static targets."""

    def __init__(self, tsdb: Path, sd_file: Path, ksm_address: str) -> None:
        super().__init__(tsdb)
        self.config.write_text(scrape_config(sd_file, ksm_address))
