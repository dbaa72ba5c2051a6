"""Past days of the agent Deployment, written as OpenMetrics for `promtool` to backfill.

The controller forecasts each 5-minute bucket from days of history, so the history is the same
chat day as the live run (`ChatDay`: the ramp at the same time of day) over the days before it. The
service then ran on the pods a run starts with (`Workload.first_pods`), each carrying an even share;
only the Deployment's total reaches the forecast, so how many pods served the past does not matter.

* `agent_inflight_requests` per pod: an unsaturated service holds a Poisson number of requests with
  mean rate × time in service (Little's law), drawn per scrape with a fixed seed;
* `agent_requests_total{outcome="ok"}` per pod: the integral of the rate (for the built-in
  `requests` metric);
* kube-state-metrics' ownership series for those pods.

Every series carries the labels its live counterpart gets when scraped (`workload.py`), so the
present continues the past.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.agentloop.day import ChatDay
from tests.agentloop.workload import (
    AGENTS_JOB,
    KSM_INSTANCE,
    KSM_JOB,
    Workload,
    ownership_series,
    series_text,
)

__all__ = ["AgentHistory"]

# Integration step of the request counter: fine against the scrapes.
_FINE_S = 5.0


@dataclass(frozen=True, slots=True)
class AgentHistory:
    day: ChatDay
    workload: Workload
    start: float
    end: float
    pods: int
    # Seconds a request stays in flight when nothing queues (generation time plus HTTP).
    service_s: float
    # The gauge and the ownership series one point a minute, as long-kept history often is: each
    # in-flight point is an instant of a Poisson count, so a 5-minute bucket averages five of them.
    scrape_s: float = 60.0
    # The counter every 15 s: the controller's 30-s rate window needs two points in it.
    counter_scrape_s: float = 15.0
    seed: int = 7

    def scrapes(self, every_s: float) -> np.ndarray:
        return np.arange(self.start, self.end, every_s)

    def write_openmetrics(self, path: Path) -> int:
        times = self.scrapes(self.scrape_s)
        names = self.workload.first_pods(self.pods)
        rate = self.day.rate(times)
        counted = self.scrapes(self.counter_scrape_s)
        fine = np.arange(self.start, self.end + _FINE_S, _FINE_S)
        served = np.concatenate([[0.0], np.cumsum(self.day.rate(fine[:-1]) * _FINE_S)])
        per_pod_total = np.interp(counted, fine, served) / self.pods
        rng = np.random.default_rng(self.seed)
        stamps = [f"{t:.3f}" for t in times.tolist()]
        counter_stamps = [f"{t:.3f}" for t in counted.tolist()]
        samples = 0
        with path.open("w", encoding="utf-8") as out:
            out.write("# TYPE agent_inflight_requests gauge\n")
            for pod in names:
                labels = self._agent_labels(pod)
                inflight = rng.poisson(rate * self.service_s / self.pods)
                series = series_text("agent_inflight_requests", labels)
                out.writelines(
                    f"{series} {v} {t}\n" for v, t in zip(inflight.tolist(), stamps, strict=True)
                )
                samples += len(stamps)
            out.write("# TYPE agent_requests counter\n")
            for pod in names:
                series = series_text(
                    "agent_requests_total", {**self._agent_labels(pod), "outcome": "ok"}
                )
                out.writelines(
                    f"{series} {v!r} {t}\n"
                    for v, t in zip(per_pod_total.tolist(), counter_stamps, strict=True)
                )
                samples += len(counter_stamps)
            ksm = {"job": KSM_JOB, "instance": KSM_INSTANCE}
            lines = ownership_series(self.workload, names, ksm)
            for family in ("kube_pod_owner", "kube_replicaset_owner"):
                out.write(f"# TYPE {family} gauge\n")
                for line in (x for x in lines if x.startswith(family + "{")):
                    out.writelines(f"{line} 1 {t}\n" for t in stamps)
                    samples += len(stamps)
            out.write("# EOF\n")
        return samples

    def _agent_labels(self, pod: str) -> dict[str, str]:
        return {"namespace": self.workload.namespace, "pod": pod, "job": AGENTS_JOB, "instance": pod}
