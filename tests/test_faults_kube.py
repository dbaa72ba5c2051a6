"""API server faults against the controller: the official client and real watches (the informers)
against the fake API server, a manual clock for the ticks.

* No write from a stale view: while the Deployments watch fails, every target it covers is held
  (no patch at all), `/readyz` names the reason, and what changed meanwhile (an opt-out, dry-run
  switched on, someone else's scale) is honoured once the view is current again.
* A scale patch carries the resourceVersion it was decided from: a change made after the view was
  read wins (409) and the next tick decides again.
* Errors on writes (5xx, 409, 403), slow answers and a whole outage never scale anything down and
  never stop the other Deployments.
* Fenced leadership: a write the API server holds up until after the lease has passed to another
  replica was given up by its sender in time, and is never carried out; the new leader's stands.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from autoscaler.actuation.leader import LeaderElector, LeaseSettings
from autoscaler.config import PREFIX
from autoscaler.kube import JsonObject, Kind, Kube, connect
from autoscaler.model import TargetRef
from autoscaler.patches import scale_patch
from autoscaler.policy import PredictivePolicy
from autoscaler.sources.informers import Informer, Informers
from autoscaler.stages import ActOutcome
from autoscaler.wiring import Controller, cluster_stages
from tests.fakekube import FakeKube
from tests.test_controller import ON, Listed, Loads, Predicted, busy_web, replicas, writes

NS = "shop"
NOW = 1_800_000_000.0


@pytest.fixture
def kube(kubeconfig: Path) -> Kube:
    return connect(kubeconfig, user_agent="predictive-autoscaler/test")


@pytest.fixture
def informers(kube: Kube) -> Iterator[Informers]:
    quick = functools.partial(Informer, backoff_s=0.02)
    started = Informers(kube, None, watch_timeout_s=30, make=quick)
    started.start()
    assert started.wait_synced(10)
    yield started
    started.stop()


def until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Wait for a watch thread to get somewhere (the ticks themselves never wait)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def edit(fake: FakeKube, name: str, change: Callable[[JsonObject], None]) -> None:
    """A change someone else makes, straight into the server's store."""
    deployment = fake.get_object("Deployment", NS, name)
    assert deployment is not None
    change(deployment)
    fake.put_object(deployment)


def annotate(key: str, value: str) -> Callable[[JsonObject], None]:
    def change(deployment: JsonObject) -> None:
        deployment["metadata"]["annotations"][PREFIX + key] = value

    return change


def scale_to(count: int) -> Callable[[JsonObject], None]:
    def change(deployment: JsonObject) -> None:
        deployment["spec"]["replicas"] = count

    return change


def three_deployments(fake: FakeKube) -> Loads:
    loads = Loads()
    for name in ("opting-out", "going-dry", "raised"):
        fake.add_deployment(NS, name, replicas=2, annotations=ON)
        loads.cores[name] = 2.1  # 6 pods' worth at 0.35 cores a pod
    return loads


def watched_three(fake: FakeKube, kube: Kube, informers: Informers) -> Controller:
    """The three Deployments, seen by the informers, and a controller that reads through them."""
    loads = three_deployments(fake)
    until(lambda: len(informers.objects(Kind.DEPLOYMENT)) == 3, "the watch to see them")
    return Controller(cluster_stages(kube, informers, loads, Predicted(), PredictivePolicy()))


def test_a_failing_watch_holds_its_targets_and_fails_readiness(
    fake_kube: FakeKube, kube: Kube, informers: Informers
) -> None:
    tick = watched_three(fake_kube, kube, informers)
    fake_kube.inject("GET", r"/deployments$", status=500, times=None)
    fake_kube.drop_watches()
    until(lambda: bool(informers.stale()), "the watch to fail")
    edit(fake_kube, "opting-out", annotate("enabled", "false"))
    edit(fake_kube, "going-dry", annotate("dry-run", "true"))
    edit(fake_kube, "raised", scale_to(9))
    fake_kube.clear_log()

    report = tick.tick(NOW)
    assert set(report.stale) == {TargetRef(NS, n) for n in ("opting-out", "going-dry", "raised")}
    assert report.decisions == ()
    assert writes(fake_kube, "/scale") == []
    why = informers.not_ready()
    assert why is not None
    assert "deployments watch is failing" in why

    fake_kube.heal()
    until(lambda: not informers.stale(), "a list to succeed again")
    assert informers.not_ready() is None
    report = tick.tick(NOW + 30)
    assert replicas(fake_kube, "opting-out") == 2, "opted out while the watch failed"
    assert replicas(fake_kube, "going-dry") == 2, "switched to dry-run while the watch failed"
    assert writes(fake_kube, "/deployments/opting-out") == []
    assert writes(fake_kube, "/deployments/going-dry/scale") == []
    decided = {d.ref.name: d for d in report.decisions}
    assert decided["raised"].current == 9, "decided from the count someone else set"


def test_a_scale_decided_from_an_old_view_loses_to_the_change_made_since(
    fake_kube: FakeKube, kube: Kube
) -> None:
    loads = busy_web(fake_kube)
    old = Frozen(kube)  # the view as it was before someone else scaled
    kube.patch(scale_patch(TargetRef(NS, "web"), 10))
    fake_kube.clear_log()
    tick = Controller(cluster_stages(kube, old, loads, Predicted(), PredictivePolicy()))
    report = tick.tick(NOW)
    assert report.outcomes[TargetRef(NS, "web")] is ActOutcome.CONFLICT
    assert replicas(fake_kube, "web") == 10
    patched = [r for r in fake_kube.requests if r.method == "PATCH" and r.path.endswith("/scale")]
    assert [r.status for r in patched] == [409]
    tick = Controller(cluster_stages(kube, Listed(kube), loads, Predicted(), PredictivePolicy()))
    tick.tick(NOW + 30)
    assert replicas(fake_kube, "web") == 10, "decided again from 10: no scale-down within the window"


HPA_MODE = {**ON, PREFIX + "mode": "hpa"}


@pytest.mark.parametrize(
    ("change", "written"),
    [
        pytest.param(annotate("enabled", "false"), False, id="opted-out"),
        pytest.param(annotate("dry-run", "true"), False, id="dry-run"),
        pytest.param(annotate("mode", "replicas"), False, id="mode-changed"),
        pytest.param(annotate("enabled", "perhaps"), False, id="annotation-now-invalid"),
        pytest.param(scale_to(3), True, id="only-replicas-changed"),
    ],
)
def test_an_hpa_floor_decided_from_an_old_view_honours_the_latest_opt_in(
    fake_kube: FakeKube, kube: Kube, change: Callable[[JsonObject], None], written: bool
) -> None:
    # The floor patch is preconditioned on the HPA's resourceVersion, which an edit of the
    # Deployment does not move: the Deployment is read again before the HPA is written.
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=HPA_MODE)
    fake_kube.add_hpa(NS, "web", "web", min_replicas=2, max_replicas=20)
    loads, predicted = Loads(), Predicted()
    loads.cores["web"] = 0.5
    predicted.upper["web"] = 3.5
    old = Frozen(kube)
    edit(fake_kube, "web", change)
    tick = Controller(cluster_stages(kube, old, loads, predicted, PredictivePolicy()))
    report = tick.tick(NOW)
    hpa = fake_kube.get_object("HorizontalPodAutoscaler", NS, "web")
    assert hpa is not None
    assert hpa["spec"]["minReplicas"] == (7 if written else 2)
    expected = ActOutcome.APPLIED if written else ActOutcome.CONFLICT
    assert report.outcomes[TargetRef(NS, "web")] is expected


class Frozen(Listed):
    """The objects as listed once: a view that no longer follows the server."""

    def __init__(self, kube: Kube) -> None:
        super().__init__(kube)
        self._frozen = {kind: kube.list(kind, None)[0] for kind in Kind}

    def objects(self, kind: Kind) -> list[JsonObject]:
        return self._frozen[kind]

    def stale(self) -> Mapping[str | None, str]:
        return {}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        pytest.param(500, ActOutcome.UNAVAILABLE, id="server-error"),
        pytest.param(409, ActOutcome.CONFLICT, id="conflict"),
        pytest.param(403, ActOutcome.FORBIDDEN, id="forbidden"),
    ],
)
def test_a_failed_write_for_one_deployment_holds_it_and_not_the_others(
    fake_kube: FakeKube, kube: Kube, status: int, outcome: ActOutcome
) -> None:
    loads = Loads()
    for name in ("web", "api"):
        fake_kube.add_deployment(NS, name, replicas=2, annotations=ON)
        loads.cores[name] = 2.1
    tick = Controller(cluster_stages(kube, Listed(kube), loads, Predicted(), PredictivePolicy()))
    fake_kube.inject("PATCH", r"/deployments/web/scale", status=status, times=None)
    report = tick.tick(NOW)
    assert report.outcomes[TargetRef(NS, "web")] is outcome
    assert replicas(fake_kube, "web") == 2
    assert replicas(fake_kube, "api") == 6


def test_an_api_outage_holds_everything_and_the_next_tick_recovers(
    fake_kube: FakeKube, kube: Kube, informers: Informers
) -> None:
    tick = watched_three(fake_kube, kube, informers)
    fake_kube.fail_all(503)
    until(lambda: bool(informers.stale()), "the watches to fail")
    report = tick.tick(NOW)
    assert report.decisions == ()
    assert len(report.stale) == 3
    fake_kube.heal()
    until(lambda: not informers.stale(), "a list to succeed again")
    tick.tick(NOW + 30)
    assert [replicas(fake_kube, n) for n in ("opting-out", "going-dry", "raised")] == [6, 6, 6]


def test_a_slow_write_is_given_up_and_holds(fake_kube: FakeKube, kubeconfig: Path) -> None:
    impatient = connect(kubeconfig, user_agent="predictive-autoscaler/test", timeout_s=0.5)
    loads = busy_web(fake_kube)
    tick = Controller(
        cluster_stages(impatient, Listed(impatient), loads, Predicted(), PredictivePolicy())
    )
    fake_kube.slow(r"/deployments/web/scale", 2.0)
    report = tick.tick(NOW)
    assert report.outcomes[TargetRef(NS, "web")] is ActOutcome.UNAVAILABLE


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_write_held_up_past_a_hand_over_never_lands(fake_kube: FakeKube, kubeconfig: Path) -> None:
    fake_kube.add_namespace("ops")
    fake_kube.add_deployment(NS, "web", replicas=2, annotations=ON)
    lease = LeaseSettings(
        "ops", "autoscaler", lease_duration_s=15, renew_deadline_s=10, retry_period_s=2
    )
    controllers: dict[str, Controller] = {}
    electors: dict[str, LeaderElector] = {}
    clocks = {"a": Clock(), "b": Clock()}
    wanted = {"a": 2.1, "b": 1.4}  # a would run 6 pods, b 4
    for name in ("a", "b"):
        # Writes are given up after lease duration − renew deadline, as `run` sets them.
        kube = connect(kubeconfig, user_agent=f"predictive-autoscaler/{name}", write_timeout_s=0.3)
        electors[name] = LeaderElector(kube, lease, name, clocks[name], lambda: 1_800_000_000.0)
        loads = Loads()
        loads.cores["web"] = wanted[name]
        leads = electors[name].is_leader
        stages = cluster_stages(
            kube, Listed(kube), loads, Predicted(), PredictivePolicy(), may_act=leads
        )
        controllers[name] = Controller(stages, may_act=leads)
    a, b = electors["a"], electors["b"]
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    fake_kube.clear_log()

    fake_kube.slow(r"/deployments/web/scale", 2.0)  # the API server holds a's write up
    report = controllers["a"].tick(NOW)
    assert report.outcomes[TargetRef(NS, "web")] is ActOutcome.UNAVAILABLE, "a gave up in time"
    clocks["a"].t += 10  # a is cut off and stops acting...
    assert not a.is_leader()
    clocks["b"].t += 16  # ...and b takes over once the lease has expired by its own clock
    assert b.try_acquire_or_renew()
    controllers["b"].tick(NOW + 30)
    assert replicas(fake_kube, "web") == 4

    def answered() -> list[int]:
        held = [r for r in fake_kube.requests if r.method == "PATCH" and r.path.endswith("/scale")]
        return [r.status for r in sorted(held, key=lambda r: r.timestamp)]

    until(lambda: len(answered()) == 2, "the server to give up a's held write")
    assert answered() == [0, 200], "a's write, held until a had given it up, was never carried out"
    assert replicas(fake_kube, "web") == 4


def test_a_watch_that_goes_quiet_past_its_bound_counts_as_stale(fake_kube: FakeKube, kube: Kube) -> None:
    clock = Clock()
    informer = Informer(kube, Kind.DEPLOYMENT, None, watch_timeout_s=30, grace_s=10, clock=clock)
    informer.start()
    try:
        assert informer.wait_synced(10)
        assert informer.staleness() is None
        clock.t += 41  # no event, and no watch ended as asked, for longer than a watch lasts
        why = informer.staleness()
        assert why is not None
        assert "not been confirmed for 41 s" in why
        fake_kube.add_deployment(NS, "web", replicas=2, annotations=ON)  # an event confirms it
        until(lambda: informer.staleness() is None, "the event to arrive")
    finally:
        informer.stop()
