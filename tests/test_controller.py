"""The controller's tick against the fake API server, through the official client.

Covers: mode replicas patches the scale subresource once per change, with an Event and a status
annotation; dry-run writes nothing to the workload and tells what it would set once, again only when
that changes (or came back after it went away, or after the target left), while a change of footing
gets its own Event as in a real run; mode hpa raises the HPA floor ahead of forecast
load and restores it (annotation removed) when the forecast falls; a replicas-mode Deployment that an
HPA targets is refused with one Event; bad annotations give one Event naming key and value, no patch,
and the other targets are still served; a target whose decision cannot be computed is held with
one `TargetFailed` Event while the others are scaled; a request selector Prometheus rejects gives one
`InvalidAnnotation` Event while it lasts (again once it went away, or its value changed; an outage or
another problem of the same Deployment does not repeat it); 503/429/403/404 on the scale never crash the
tick, 403 cools the target down, 404 forgets it; metrics missing → hold (no scale-down); kubectl
sees what the controller did and its annotations steer the next tick; the informers resume a dropped
watch without listing again and list again after a 410.

Loads and forecasts come from small in-test stages that implement the `MetricsSource` and
`Forecaster` protocols (the Prometheus source has its own tests against a real Prometheus).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest

from autoscaler.config import PREFIX, STATUS_KEY
from autoscaler.kube import JsonObject, Kind, Kube, connect
from autoscaler.metrics import MetricKind
from autoscaler.model import (
    ForecastQuality,
    Forecasts,
    LoadForecast,
    LoadSnapshot,
    Sample,
    Target,
    TargetRef,
)
from autoscaler.patches import ORIGINAL_MIN_KEY
from autoscaler.policy import Mode, PredictivePolicy, Reason
from autoscaler.sources.cluster import ClusterObjects, ClusterReader
from autoscaler.sources.informers import Informers
from autoscaler.stages import (
    NO_HISTORY,
    MetricsSource,
    MetricsUnavailable,
    RecordedLoad,
    Rejected,
    Stage,
    WithoutHistory,
)
from autoscaler.wiring import Controller, cluster_stages
from tests.fakekube import FakeKube
from tests.polling import wait_for

NOW = 1_800_000_000.0
NS = "shop"
ON = {PREFIX + "enabled": "true", PREFIX + "startup-seconds": "60"}


def busy_web(fake: FakeKube) -> Loads:
    """Deployment `web` at 2 pods with three times the load they should carry."""
    fake.add_deployment(NS, "web", replicas=2, annotations=ON)
    loads = Loads()
    loads.cores["web"] = 2.1  # 1.05 cores a pod against 0.35 wanted
    return loads


class Loads(WithoutHistory, MetricsSource):
    """Aggregate CPU cores (and requests/s, where given) per Deployment, as the metrics source would
    report them."""

    def __init__(self) -> None:
        self.cores: dict[str, float] = {}
        self.rps: dict[str, float] = {}
        self.down = False
        # Deployment name → the request selector Prometheus rejects for it.
        self.rejecting: dict[str, str] = {}
        self._rejected: tuple[Rejected, ...] = ()

    def rejected(self) -> tuple[Rejected, ...]:
        return self._rejected

    def observe(self, targets: Sequence[Target], now: float) -> Mapping[TargetRef, LoadSnapshot]:
        if self.down:
            raise MetricsUnavailable("prometheus is down")
        key, words = PREFIX + "requests-metric", "parse error: invalid repeat count"
        self._rejected = tuple(
            Rejected(t.state.ref, MetricKind.REQUESTS, key, self.rejecting[t.state.ref.name], words)
            for t in targets
            if t.state.ref.name in self.rejecting
        )
        out = {}
        for t in targets:
            name = t.state.ref.name
            rps = self.rps.get(name)
            if name in self.cores:
                out[t.state.ref] = LoadSnapshot.of(
                    cpu=Sample(self.cores[name], now - 30),
                    requests=None if rps is None else Sample(rps, now - 30),
                )
        return out


class Predicted:
    """A trusted CPU forecast per Deployment: a flat upper bound over the next half hour."""

    def __init__(self) -> None:
        self.upper: dict[str, float] = {}

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        upper = self.upper.get(target.state.ref.name)
        if upper is None:
            return Forecasts()
        times = tuple(now - 60 + 300 * i for i in range(6))
        forecast = LoadForecast(
            kind=MetricKind.CPU,
            made_at=now - 60,
            step_s=300,
            times=times,
            mean=(upper * 0.8,) * 6,
            upper=(upper,) * 6,
            level=0.8,
            quality=ForecastQuality(48, 0.5, 0.85),
        )
        return Forecasts.of(cpu=forecast)

    def keep_only(self, refs: AbstractSet[TargetRef]) -> None:
        return None


class Listed:
    """Objects from fresh lists: every tick sees the server's state without watch delays."""

    synced = True

    def __init__(self, kube: Kube) -> None:
        self._kube = kube
        self.forgotten: list[TargetRef] = []

    def objects(self, kind: Kind) -> list[JsonObject]:
        return self._kube.list(kind, None)[0]

    def forget(self, ref: TargetRef) -> None:
        self.forgotten.append(ref)

    def stale(self) -> Mapping[str | None, str]:
        return {}


@pytest.fixture
def kube(kubeconfig: Path) -> Kube:
    return connect(kubeconfig, user_agent="predictive-autoscaler/test")


def controller(
    kube: Kube,
    loads: Loads,
    predicted: Predicted | None = None,
    dry_run: bool = False,
    objects: ClusterObjects | None = None,
) -> Controller:
    stages = cluster_stages(
        kube,
        objects or Listed(kube),
        loads,
        predicted or Predicted(),
        PredictivePolicy(interval_s=30),
        dry_run=dry_run,
    )
    return Controller(stages)


def writes(fake: FakeKube, fragment: str) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in fake.requests
        if r.method in ("PATCH", "PUT", "POST", "DELETE") and fragment in r.path
    ]


def events(fake: FakeKube, reason: str | None = None) -> list[dict[str, str]]:
    found = [
        {
            "reason": e.get("reason", ""),
            "message": e.get("message", ""),
            "name": e["involvedObject"]["name"],
        }
        for e in fake.list_objects("Event", NS)
    ]
    return [e for e in found if reason is None or e["reason"] == reason]


def replicas(fake: FakeKube, name: str) -> int:
    deployment = fake.get_object("Deployment", NS, name)
    assert deployment is not None
    return int(deployment["spec"]["replicas"])


def test_replicas_mode_scales_once_with_event_and_status(fake_kube: FakeKube, kube: Kube) -> None:
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=ON, cpu_request="500m")
    loads = Loads()
    loads.cores["web"] = 2.1  # 1.05 cores a pod against 0.35 wanted: three times the pods
    tick = controller(kube, loads)

    summary = tick.tick(NOW)
    assert [d.replicas for d in summary.decisions] == [6]
    assert replicas(fake_kube, "web") == 6
    assert len(writes(fake_kube, "/deployments/web/scale")) == 1
    assert [e["reason"] for e in events(fake_kube, "ScaledUp")] == ["ScaledUp"]
    deployment = fake_kube.get_object("Deployment", NS, "web")
    assert deployment is not None
    status = json.loads(deployment["metadata"]["annotations"][STATUS_KEY])
    assert status["target"] == 6
    assert "scale-up" in status["reasons"]

    loads.cores["web"] = 2.1 * 6 / 2 / 3  # now just right for 6 pods
    tick.tick(NOW + 30)
    assert len(writes(fake_kube, "/deployments/web/scale")) == 1, "no patch without a change"


def test_dry_run_writes_nothing_to_the_workload(fake_kube: FakeKube, kube: Kube) -> None:
    fake_kube.add_deployment(NS, "web", replicas=2, annotations={**ON, PREFIX + "dry-run": "true"})
    fake_kube.add_deployment(NS, "api", replicas=2, annotations=ON)
    loads = Loads()
    loads.cores.update(web=2.1, api=2.1)
    fake_kube.clear_log()

    summary = controller(kube, loads, dry_run=False).tick(NOW)
    assert {d.ref.name: d.replicas for d in summary.decisions} == {"web": 6, "api": 6}
    assert replicas(fake_kube, "web") == 2
    assert writes(fake_kube, "/deployments/web") == []
    assert [e["name"] for e in events(fake_kube, "DryRun")] == ["web"]
    assert "would set replicas 2→6" in events(fake_kube, "DryRun")[0]["message"]
    assert replicas(fake_kube, "api") == 6


def test_global_dry_run_flag(fake_kube: FakeKube, kube: Kube) -> None:
    loads = busy_web(fake_kube)
    fake_kube.clear_log()
    controller(kube, loads, dry_run=True).tick(NOW)
    assert writes(fake_kube, "/deployments") == []
    assert replicas(fake_kube, "web") == 2


DRY_RUN_BY = [
    pytest.param(False, {PREFIX + "dry-run": "true"}, id="dry-run-annotation"),
    pytest.param(True, {}, id="dry-run-flag"),
]


def dry_run_web(
    fake: FakeKube, kube: Kube, flag: bool, annotation: dict[str, str]
) -> tuple[Controller, Loads]:
    """`web` at 2 pods, in dry-run, with three times the load they should carry: it would set 2→6."""
    fake.add_deployment(NS, "web", replicas=2, annotations={**ON, **annotation})
    loads = Loads()
    loads.cores["web"] = 2.1
    return controller(kube, loads, dry_run=flag), loads


def would_set(fake: FakeKube) -> list[str]:
    return [e["message"].split(":")[0] for e in events(fake, "DryRun")]


def scale_by_hand(fake: FakeKube, count: int) -> None:
    deployment = fake.get_object("Deployment", NS, "web")
    assert deployment is not None
    deployment["spec"]["replicas"] = count
    fake.put_object(deployment)


@pytest.mark.parametrize(("flag", "annotation"), DRY_RUN_BY)
def test_dry_run_tells_a_proposal_once_and_again_when_it_changes(
    fake_kube: FakeKube, kube: Kube, flag: bool, annotation: dict[str, str]
) -> None:
    tick, loads = dry_run_web(fake_kube, kube, flag, annotation)
    for i in range(4):
        assert [d.replicas for d in tick.tick(NOW + 30 * i).decisions] == [6]
    assert would_set(fake_kube) == ["would set replicas 2→6"], "one Event while the proposal stays"

    loads.cores["web"] = 3.15  # asks for 9, rate-limited to 6: another reason, the same proposal
    decision = tick.tick(NOW + 120).decisions[0]
    assert (decision.replicas, Reason.RATE_LIMITED in decision.reasons) == (6, True)
    assert len(would_set(fake_kube)) == 1

    loads.cores["web"] = 1.4  # four pods' worth: it would now set 2→4
    tick.tick(NOW + 150)
    tick.tick(NOW + 180)
    assert would_set(fake_kube) == ["would set replicas 2→6", "would set replicas 2→4"]
    assert writes(fake_kube, "/deployments/web") == []


@pytest.mark.parametrize(("flag", "annotation"), DRY_RUN_BY)
def test_dry_run_tells_a_proposal_again_once_it_went_away(
    fake_kube: FakeKube, kube: Kube, flag: bool, annotation: dict[str, str]
) -> None:
    tick, loads = dry_run_web(fake_kube, kube, flag, annotation)
    tick.tick(NOW)
    loads.cores["web"] = 0.7  # just right for 2 pods: nothing to set
    assert [d.changed for d in tick.tick(NOW + 30).decisions] == [False]
    loads.cores["web"] = 2.1
    tick.tick(NOW + 60)
    tick.tick(NOW + 90)
    assert would_set(fake_kube) == ["would set replicas 2→6"] * 2, "as a real scale-up would be"


def test_dry_run_tells_a_change_of_footing_as_a_real_run_does(fake_kube: FakeKube, kube: Kube) -> None:
    fake_kube.add_deployment(NS, "web", replicas=2, annotations={**ON, PREFIX + "dry-run": "true"})
    loads, predicted = Loads(), Predicted()
    loads.cores["web"] = 2.1
    tick = controller(kube, loads, predicted)
    tick.tick(NOW)
    predicted.upper["web"] = 3.15  # a trusted forecast asking for 9, rate-limited to 6 as well
    decisions = [tick.tick(NOW + 30 * i).decisions[0] for i in (1, 2)]
    assert [(d.mode, d.replicas) for d in decisions] == [(Mode.PREDICTIVE, 6)] * 2
    assert len(events(fake_kube, "Predictive")) == 1, "the new footing is told once"
    assert would_set(fake_kube) == ["would set replicas 2→6"], "what it would set is not repeated"


@pytest.mark.parametrize(("flag", "annotation"), DRY_RUN_BY)
def test_dry_run_tells_a_proposal_again_after_someone_scaled_by_hand(
    fake_kube: FakeKube, kube: Kube, flag: bool, annotation: dict[str, str]
) -> None:
    tick, _ = dry_run_web(fake_kube, kube, flag, annotation)
    tick.tick(NOW)
    scale_by_hand(fake_kube, 3)
    tick.tick(NOW + 30)
    tick.tick(NOW + 60)
    assert would_set(fake_kube) == ["would set replicas 2→6", "would set replicas 3→6"]


@pytest.mark.parametrize(
    "leave",
    [
        pytest.param(lambda f: reannotate(f, {**ON, PREFIX + "enabled": "false"}), id="opted-out"),
        pytest.param(lambda f: f.delete_object("Deployment", NS, "web"), id="deployment-deleted"),
    ],
)
def test_dry_run_forgets_a_target_that_left(
    fake_kube: FakeKube, kube: Kube, leave: Callable[[FakeKube], object]
) -> None:
    tick, _ = dry_run_web(fake_kube, kube, False, {PREFIX + "dry-run": "true"})
    tick.tick(NOW)
    leave(fake_kube)
    assert tick.tick(NOW + 30).decisions == ()
    fake_kube.delete_object("Deployment", NS, "web")  # and back as it was at first
    fake_kube.add_deployment(NS, "web", replicas=2, annotations={**ON, PREFIX + "dry-run": "true"})
    tick.tick(NOW + 60)
    assert would_set(fake_kube) == ["would set replicas 2→6"] * 2, "back again: told afresh"


def test_hpa_mode_raises_the_floor_ahead_and_restores_it(fake_kube: FakeKube, kube: Kube) -> None:
    fake_kube.add_deployment(NS, "web", replicas=2, annotations={**ON, PREFIX + "mode": "hpa"})
    fake_kube.add_hpa(NS, "web", "web", min_replicas=2, max_replicas=20)
    loads, predicted = Loads(), Predicted()
    loads.cores["web"] = 0.5
    predicted.upper["web"] = 3.5  # 0.5 cores a pod at full capacity: 7 pods
    tick = controller(kube, loads, predicted)

    tick.tick(NOW)
    hpa = fake_kube.get_object("HorizontalPodAutoscaler", NS, "web")
    assert hpa is not None
    assert hpa["spec"]["minReplicas"] == 7
    assert hpa["metadata"]["annotations"]["predictive-autoscaler.io/original-min-replicas"] == "2"
    assert replicas(fake_kube, "web") == 2, "the HPA, not us, scales the Deployment"
    assert [e["reason"] for e in events(fake_kube, "RaisedHPAFloor")] == ["RaisedHPAFloor"]
    # Mode hpa speaks of the floor: the HPA, not us, sets the replicas.
    message = events(fake_kube, "RaisedHPAFloor")[0]["message"]
    assert message.startswith("HPA web floor 2→7: predictive-scale-up"), message

    predicted.upper["web"] = 0.4
    tick.tick(NOW + 30)
    hpa = fake_kube.get_object("HorizontalPodAutoscaler", NS, "web")
    assert hpa is not None
    assert hpa["spec"]["minReplicas"] == 2
    assert "predictive-autoscaler.io/original-min-replicas" not in (
        hpa["metadata"].get("annotations") or {}
    )
    assert [e["reason"] for e in events(fake_kube, "RestoredHPAFloor")] == ["RestoredHPAFloor"]


def raised_floor(fake: FakeKube, kube: Kube) -> Controller:
    """web in mode hpa with its HPA's floor raised from 2 to 7; the controller that raised it."""
    fake.add_deployment(NS, "web", replicas=2, annotations={**ON, PREFIX + "mode": "hpa"})
    fake.add_hpa(NS, "web", "web", min_replicas=2, max_replicas=20)
    loads, predicted = Loads(), Predicted()
    loads.cores["web"] = 0.5
    predicted.upper["web"] = 3.5
    tick = controller(kube, loads, predicted)
    tick.tick(NOW)
    assert hpa_floor(fake) == (7, "2")
    return tick


def hpa_floor(fake: FakeKube) -> tuple[int, str | None]:
    hpa = fake.get_object("HorizontalPodAutoscaler", NS, "web")
    assert hpa is not None
    remembered = (hpa["metadata"].get("annotations") or {}).get(ORIGINAL_MIN_KEY)
    return int(hpa["spec"]["minReplicas"]), remembered


def reannotate(fake: FakeKube, annotations: dict[str, str]) -> None:
    deployment = fake.get_object("Deployment", NS, "web")
    assert deployment is not None
    deployment["metadata"]["annotations"] = annotations
    fake.put_object(deployment)


@pytest.mark.parametrize(
    "leave",
    [
        pytest.param(lambda f: reannotate(f, {**ON, PREFIX + "enabled": "false"}), id="opted-out"),
        pytest.param(lambda f: reannotate(f, {}), id="annotations-removed"),
        pytest.param(
            lambda f: reannotate(f, {**ON, PREFIX + "mode": "replicas"}), id="switched-to-replicas"
        ),
        pytest.param(lambda f: f.delete_object("Deployment", NS, "web"), id="deployment-deleted"),
    ],
)
def test_a_floor_left_behind_goes_back_to_its_owner(
    fake_kube: FakeKube, kube: Kube, leave: Callable[[FakeKube], object]
) -> None:
    tick = raised_floor(fake_kube, kube)
    leave(fake_kube)
    tick.tick(NOW + 30)
    assert hpa_floor(fake_kube) == (2, None)
    assert len(events(fake_kube, "RestoredHPAFloor")) == 1
    tick.tick(NOW + 60)
    assert len(writes(fake_kube, "/horizontalpodautoscalers/web")) == 2, "restored once"


def test_a_bad_annotation_keeps_the_raised_floor(fake_kube: FakeKube, kube: Kube) -> None:
    tick = raised_floor(fake_kube, kube)
    reannotate(fake_kube, {**ON, PREFIX + "mode": "HPA"})
    tick.tick(NOW + 30)
    assert hpa_floor(fake_kube) == (7, "2"), "a typo must not undo the floor"
    assert len(events(fake_kube, "InvalidAnnotation")) == 1


def test_dry_run_leaves_a_stranded_floor_alone(fake_kube: FakeKube, kube: Kube) -> None:
    raised_floor(fake_kube, kube)
    reannotate(fake_kube, {})
    controller(kube, Loads(), dry_run=True).tick(NOW + 30)
    assert hpa_floor(fake_kube) == (7, "2")


def test_hpa_floor_never_above_hpa_max(fake_kube: FakeKube, kube: Kube) -> None:
    fake_kube.add_deployment(NS, "web", replicas=2, annotations={**ON, PREFIX + "mode": "hpa"})
    fake_kube.add_hpa(NS, "web", "web", min_replicas=2, max_replicas=5)
    loads, predicted = Loads(), Predicted()
    loads.cores["web"] = 0.5
    predicted.upper["web"] = 50.0
    controller(kube, loads, predicted).tick(NOW)
    hpa = fake_kube.get_object("HorizontalPodAutoscaler", NS, "web")
    assert hpa is not None
    assert hpa["spec"]["minReplicas"] == 5


def test_replicas_mode_with_an_hpa_is_refused(fake_kube: FakeKube, kube: Kube) -> None:
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=ON)
    fake_kube.add_hpa(NS, "web-hpa", "web", min_replicas=1, max_replicas=10)
    loads = Loads()
    loads.cores["web"] = 2.1
    tick = controller(kube, loads)
    fake_kube.clear_log()
    for k in range(3):
        summary = tick.tick(NOW + 30 * k)
        assert summary.refused == (TargetRef(NS, "web"),)
    assert writes(fake_kube, "/deployments/web") == []
    assert writes(fake_kube, "/horizontalpodautoscalers") == []
    refused = events(fake_kube, "RefusedHPAConflict")
    assert len(refused) == 1
    assert "web-hpa" in refused[0]["message"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("min-replicas", "-1", id="negative"),
        pytest.param("target-utilization", "high", id="non-numeric"),
        pytest.param("mode", "REPLICAS", id="wrong-case"),
        pytest.param("metrics", "cpu,disk", id="unknown-metric"),
        pytest.param("max-replicas", "", id="empty"),
    ],
)
def test_bad_annotation_event_no_patch_loop_goes_on(
    fake_kube: FakeKube, kube: Kube, key: str, value: str
) -> None:
    fake_kube.add_deployment(NS, "broken", replicas=2, annotations={**ON, PREFIX + key: value})
    fake_kube.add_deployment(NS, "fine", replicas=2, annotations=ON)
    loads = Loads()
    loads.cores.update(broken=2.1, fine=2.1)
    tick = controller(kube, loads)
    fake_kube.clear_log()
    tick.tick(NOW)
    tick.tick(NOW + 30)
    assert writes(fake_kube, "/deployments/broken") == []
    assert replicas(fake_kube, "broken") == 2
    invalid = events(fake_kube, "InvalidAnnotation")
    assert len(invalid) == 1, "reported once, not once per tick"
    assert invalid[0]["name"] == "broken"
    assert PREFIX + key in invalid[0]["message"]
    assert repr(value) in invalid[0]["message"]
    assert replicas(fake_kube, "fine") == 6


def test_one_target_that_cannot_be_computed_does_not_stop_the_others(
    fake_kube: FakeKube, kube: Kube
) -> None:
    # A CPU request the API server accepts, but load divided by it overflows.
    fake_kube.add_deployment(NS, "broken", replicas=2, annotations=ON, cpu_request="1e-320")
    fake_kube.add_deployment(NS, "fine", replicas=2, annotations=ON)
    loads = Loads()
    loads.cores.update(broken=2.1, fine=2.1)
    tick = controller(kube, loads)
    fake_kube.clear_log()
    first = tick.tick(NOW)
    tick.tick(NOW + 30)
    assert first.failed == {TargetRef(NS, "broken"): Stage.DECIDE}
    assert [d.ref.name for d in first.decisions] == ["fine"]
    assert replicas(fake_kube, "fine") == 6
    assert replicas(fake_kube, "broken") == 2
    assert writes(fake_kube, "/deployments/broken") == []
    failed = events(fake_kube, "TargetFailed")
    assert len(failed) == 1, "reported once, not once per tick"
    assert failed[0]["name"] == "broken"
    assert "decide failed (OverflowError" in failed[0]["message"]


class Exploding(Predicted):
    """Forecasts whose model raises for the Deployments named in `explode`."""

    def __init__(self) -> None:
        super().__init__()
        self.explode: set[str] = set()

    def forecast(
        self, target: Target, load: LoadSnapshot, now: float, past: RecordedLoad = NO_HISTORY
    ) -> Forecasts:
        if target.state.ref.name in self.explode:
            raise FloatingPointError("overflow in the model")
        return super().forecast(target, load, now, past)


def test_a_rejected_selector_is_told_once_while_it_lasts(fake_kube: FakeKube, kube: Kube) -> None:
    fake_kube.add_deployment(NS, "custom", replicas=2, annotations=ON)
    fake_kube.add_deployment(NS, "fine", replicas=2, annotations=ON)
    loads = Loads()
    loads.cores.update(custom=2.1, fine=2.1)
    written = 'hits_total{path=~"/a{1001}"}'
    loads.rejecting["custom"] = written
    predicted = Exploding()
    tick = controller(kube, loads, predicted)

    def told() -> list[dict[str, str]]:
        return events(fake_kube, "InvalidAnnotation")

    tick.tick(NOW)
    tick.tick(NOW + 30)
    assert [e["name"] for e in told()] == ["custom"], "reported once, not once per tick"
    assert told()[0]["message"].startswith(
        f"annotation {PREFIX}requests-metric={written!r}: rejected by Prometheus"
        " (parse error: invalid repeat count)"
    )
    assert replicas(fake_kube, "fine") == 6
    loads.down = True
    tick.tick(NOW + 60)
    loads.down = False
    tick.tick(NOW + 90)
    assert len(told()) == 1, "a tick without metrics says nothing about the selector"
    predicted.explode = {"custom"}
    tick.tick(NOW + 120)
    predicted.explode = set()
    assert len(events(fake_kube, "TargetFailed")) == 1, "its other problems are still told"
    assert len(told()) == 1
    del loads.rejecting["custom"]
    tick.tick(NOW + 150)
    loads.rejecting["custom"] = written
    tick.tick(NOW + 180)
    assert len(told()) == 2, "told again once it had gone away"
    loads.rejecting["custom"] = written.replace("{1001}", "{2000}")
    tick.tick(NOW + 210)
    assert len(told()) == 3, "and when its value changes"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_on_scale_are_retried_next_tick(
    fake_kube: FakeKube, kube: Kube, status: int
) -> None:
    loads = busy_web(fake_kube)
    tick = controller(kube, loads)
    fake_kube.inject("PATCH", r"/deployments/web/scale", status=status, times=1, retry_after=1)
    tick.tick(NOW)
    assert replicas(fake_kube, "web") == 2
    tick.tick(NOW + 30)
    assert replicas(fake_kube, "web") == 6


def test_forbidden_is_reported_and_not_retried_in_a_loop(fake_kube: FakeKube, kube: Kube) -> None:
    loads = busy_web(fake_kube)
    tick = controller(kube, loads)
    fake_kube.inject("PATCH", r"/deployments/web/scale", status=403, times=None)
    for k in range(4):
        tick.tick(NOW + 30 * k)
    assert len(writes(fake_kube, "/deployments/web/scale")) == 1
    assert len(events(fake_kube, "Forbidden")) == 1


def test_deployment_gone_before_the_patch_is_forgotten(fake_kube: FakeKube, kube: Kube) -> None:
    loads = busy_web(fake_kube)
    objects = Listed(kube)
    tick = controller(kube, loads, objects=objects)
    fake_kube.inject("PATCH", r"/deployments/web/scale", status=404, times=1)
    summary = tick.tick(NOW)
    assert objects.forgotten == [TargetRef(NS, "web")]
    assert summary.outcomes[TargetRef(NS, "web")].value == "gone"


def test_metrics_missing_holds_and_never_scales_down(fake_kube: FakeKube, kube: Kube) -> None:
    fake_kube.add_deployment(NS, "web", replicas=8, annotations=ON)
    loads = Loads()
    loads.down = True
    tick = controller(kube, loads)
    for k in range(20):  # well past the stabilization window
        summary = tick.tick(NOW + 30 * k)
        assert not summary.metrics_available
    assert replicas(fake_kube, "web") == 8
    assert writes(fake_kube, "/deployments/web/scale") == []
    assert [e["reason"] for e in events(fake_kube, "Holding")] == ["Holding"]


def test_api_outage_never_crashes_and_never_scales_down(fake_kube: FakeKube, kube: Kube) -> None:
    fake_kube.add_deployment(NS, "web", replicas=8, annotations=ON)
    reader = Informers(kube, [NS], watch_timeout_s=5)
    reader.start()
    try:
        assert reader.wait_synced(5)
        loads = Loads()
        loads.cores["web"] = 0.1  # would scale down to 1 if it could
        tick = controller(kube, loads, objects=reader)
        fake_kube.fail_all(503)
        for k in range(12):  # past the 300 s stabilization window
            tick.tick(NOW + 30 * k)
        fake_kube.heal()
        assert replicas(fake_kube, "web") == 8
    finally:
        reader.stop()


def test_informers_resume_a_dropped_watch_without_listing_again(fake_kube: FakeKube, kube: Kube) -> None:
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=ON)
    reader = Informers(kube, [NS], watch_timeout_s=30)
    reader.start()
    try:
        assert reader.wait_synced(5)
        assert fake_kube.wait_for_watches(3)
        lists = reader.lists
        fake_kube.drop_watches()
        fake_kube.add_deployment(NS, "api", replicas=3, annotations=ON)
        assert wait_for(lambda: len(ClusterReader(reader).snapshot(NOW).targets) == 2)
        assert reader.lists == lists, "a warm cache resumes its watch from the last version"

        fake_kube.compact()
        fake_kube.drop_watches()
        fake_kube.add_deployment(NS, "db", replicas=1, annotations=ON)
        assert wait_for(lambda: len(ClusterReader(reader).snapshot(NOW).targets) == 3)
        assert reader.lists > lists, "history gone (410): list again"
    finally:
        reader.stop()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_sees_and_steers_the_controller(
    fake_kube: FakeKube, kube: Kube, kubeconfig: Path
) -> None:
    loads = busy_web(fake_kube)
    tick = controller(kube, loads)
    tick.tick(NOW)

    def kubectl(*args: str) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "-n", NS, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}") == "6"
    status = kubectl("get", "deploy", "web", "-o", "jsonpath={.metadata.annotations}")
    assert "predictive-autoscaler.io/status" in status
    assert "ScaledUp" in kubectl("get", "events")

    kubectl("annotate", "deploy", "web", f"{PREFIX}min-replicas=9", "--overwrite")
    tick.tick(NOW + 30)
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}") == "9"

    kubectl("annotate", "deploy", "web", f"{PREFIX}max-replicas=oops", "--overwrite")
    kubectl("scale", "deploy/web", "--replicas=4")
    tick.tick(NOW + 60)
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}") == "4"
    assert "InvalidAnnotation" in kubectl("get", "events")


def test_after_a_restart_nothing_scales_down_within_the_window_of_the_count_found(
    fake_kube: FakeKube, kube: Kube
) -> None:
    fake_kube.add_deployment(NS, "web", replicas=6, annotations=ON)
    loads = Loads()
    loads.cores["web"] = 0.7  # one pod's worth: the HPA's answer alone is 2
    restarted = controller(kube, loads)  # a fresh process: no decision history at all
    for t in range(0, 300, 30):
        report = restarted.tick(NOW + t)
        assert replicas(fake_kube, "web") == 6, f"scaled down {t} s after the start"
        assert Reason.HELD_BY_STABILIZATION in report.decisions[0].reasons
    restarted.tick(NOW + 300)
    assert replicas(fake_kube, "web") == 2, "once the window of the count found has passed"


def test_after_a_take_over_nothing_scales_down_within_the_window_of_the_count_found(
    fake_kube: FakeKube, kube: Kube
) -> None:
    loads = busy_web(fake_kube)
    leading = [True]
    stages = cluster_stages(
        kube, Listed(kube), loads, Predicted(), PredictivePolicy(interval_s=30), dry_run=False
    )
    tick = Controller(stages, may_act=lambda: leading[0])
    tick.tick(NOW)
    assert replicas(fake_kube, "web") == 6
    leading[0] = False  # the lease moved; the other replica found 6 and kept it a long while
    tick.tick(NOW + 30)
    loads.cores["web"] = 0.7
    leading[0] = True  # and it came back
    tick.tick(NOW + 3600)
    tick.tick(NOW + 3600 + 270)
    assert replicas(fake_kube, "web") == 6, "a new leader does not scale down on arrival"
    tick.tick(NOW + 3600 + 300)
    assert replicas(fake_kube, "web") == 2
