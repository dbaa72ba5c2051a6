"""Shards of the fleet, one Lease each (`autoscaler.actuation.shards`).

Covers: a workload's shard is the same in another process (another hash seed) and pinned across
releases, and the shards are balanced at a thousand workloads; the Lease names (one shard keeps the
leader's plain name); a round's plan from what was read, by named cases (take up to the fair share,
reserved shards first, ask the replica with the most, release to an asker only when holding two more,
a settled fleet does nothing); three replicas against the fake API server with one clock: they settle
on even shares, one that stops renewing loses its shards to the others once its Leases have been
unchanged for a lease duration, and when it comes back it is handed its share again with no shard
left unheld for more than two rounds; no two replicas ever hold one shard, both by their own
fencing at every step and by the holders the server was sent (its request log); two controllers
over six Deployments, where every Deployment is written by exactly the replica holding its shard,
and the other takes its shards over when that one stops; the shard gauges on /metrics.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

from autoscaler.actuation.leader import LeaseSettings, LeaseView
from autoscaler.actuation.shards import ShardElector, lease_names, plan_round, shard_of
from autoscaler.kube import Kube, connect
from autoscaler.observability.telemetry import Telemetry
from autoscaler.policy import PredictivePolicy
from autoscaler.timefmt import parse_time
from autoscaler.wiring import Controller, cluster_stages
from tests.fakekube import FakeKube
from tests.test_controller import ON, Listed, Loads, Predicted, replicas

NS = "shop"
LEASE_NS = "ops"
SETTINGS = LeaseSettings(LEASE_NS, "pa", lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)
WALL = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# --- assignment -------------------------------------------------------------------------------

PINNED = [("shop", "web"), ("shop", "api"), ("payments", "ledger"), ("agents", "agent-7")]


def test_shard_assignment_is_stable_across_processes() -> None:
    here = [shard_of(ns, name, 7) for ns, name in PINNED]
    code = (
        "from autoscaler.actuation.shards import shard_of\n"
        f"print([shard_of(ns, name, 7) for ns, name in {PINNED!r}])"
    )
    for seed in ("1", "12345"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert done.stdout.strip() == str(here)
    # Pinned: a new release must not move every workload to another replica.
    assert here == [6, 1, 2, 4]


@pytest.mark.parametrize("shards", [2, 3, 6, 8, 12])
def test_shard_assignment_is_balanced(shards: int) -> None:
    workloads = [(f"team-{i % 37}", f"service-{i}") for i in range(1000)]
    counts = Counter(shard_of(ns, name, shards) for ns, name in workloads)
    mean = len(workloads) / shards
    assert len(counts) == shards
    assert max(counts.values()) <= 1.3 * mean, counts


def test_lease_names() -> None:
    assert lease_names("pa", 1) == ("pa",), "one shard is the single leader's Lease"
    assert lease_names("pa", 3) == ("pa-0", "pa-1", "pa-2")
    with pytest.raises(ValueError, match="at least 1"):
        lease_names("pa", 0)


# --- a round's plan ---------------------------------------------------------------------------


def held(holder: str, me: str = "me", requested_by: str = "", expired: bool = False) -> LeaseView:
    lease = {"metadata": {"name": "x"}, "spec": {"holderIdentity": holder}}
    return LeaseView(lease, 0.0, holder, holder == me, expired, requested_by)


def free(reserved_for: str = "") -> LeaseView:
    """A released Lease; one reserved for another is not ours to take (yet), as `look` says."""
    lease = {"metadata": {"name": "x"}, "spec": {"holderIdentity": ""}}
    ours = reserved_for in ("", "me")
    return LeaseView(lease, 0.0, "", False, ours, reserved_for=reserved_for)


@pytest.mark.parametrize(
    ("views", "renew", "release", "takes", "wanted", "ask"),
    [
        pytest.param(
            {0: free(), 1: free(), 2: free(), 3: held("b")},
            (), (), {0, 1, 2}, 2, None, id="takes-free-shards-up-to-the-fair-share",
        ),
        pytest.param(
            {0: free(), 1: free(reserved_for="me"), 2: held("b"), 3: held("b")},
            (), (), {0, 1}, 2, None, id="reserved-for-us-first",
        ),
        pytest.param(
            {0: free(reserved_for="c"), 1: held("me"), 2: held("b"), 3: held("me")},
            (1, 3), (), set(), 0, None, id="leaves-a-shard-reserved-for-another",
        ),
        pytest.param(
            {0: held("a"), 1: held("a"), 2: held("a"), 3: held("b"), 4: held("b"), 5: held("b")},
            (), (), set(), 2, "a-or-b", id="asks-a-replica-with-two-more",
        ),
        pytest.param(
            {0: held("me", requested_by="c"), 1: held("me"), 2: held("me"), 3: held("b")},
            (1, 2), ((0, "c"),), set(), 0, None, id="releases-to-an-asker-with-two-fewer",
        ),
        pytest.param(
            {0: held("me", requested_by="b"), 1: held("me"), 2: held("b")},
            (0, 1), (), set(), 0, None, id="keeps-a-shard-when-one-more-than-the-asker",
        ),
        pytest.param(
            {0: held("me"), 1: held("me"), 2: held("b"), 3: held("b"), 4: held("c"), 5: held("c")},
            (0, 1), (), set(), 0, None, id="settled-does-nothing",
        ),
        pytest.param(
            {0: held("me"), 1: held("gone", expired=True), 2: held("b"), 3: held("gone", expired=True)},
            (0,), (), {1, 3}, 1, None, id="takes-over-expired-leases",
        ),
    ],
)  # fmt: skip
def test_plan_round(
    views: dict[int, LeaseView],
    renew: tuple[int, ...],
    release: tuple[tuple[int, str], ...],
    takes: set[int],
    wanted: int,
    ask: str | None,
) -> None:
    plan = plan_round("me", views, len(views))
    assert plan.renew == renew
    assert plan.release == release
    assert set(plan.take) == takes
    assert plan.take[: len([v for v in views.values() if v.reserved_for == "me"])] == tuple(
        s for s, v in views.items() if v.reserved_for == "me"
    )
    assert plan.wanted == wanted
    if ask is None:
        assert plan.ask is None
    else:
        assert plan.ask is not None
        assert views[plan.ask].holder in ("a", "b")


# --- three replicas against the API server -----------------------------------------------------


@pytest.fixture
def kube(fake_kube: FakeKube, kubeconfig: Path) -> Kube:
    fake_kube.add_namespace(LEASE_NS)
    return connect(kubeconfig, user_agent="predictive-autoscaler/test")


def fleet(kube: Kube, clock: Clock, names: Iterable[str], shards: int) -> dict[str, ShardElector]:
    return {
        name: ShardElector(kube, SETTINGS, shards, name, clock, lambda: WALL + clock.t) for name in names
    }


def holdings(replicas_: dict[str, ShardElector]) -> dict[str, frozenset[int]]:
    """What each replica counts itself holding now, after checking no shard is held twice."""
    out = {name: r.held() for name, r in replicas_.items()}
    for shard in range(next(iter(replicas_.values())).shards):
        holders = [name for name, shards in out.items() if shard in shards]
        assert len(holders) <= 1, f"shard {shard} held by {holders}"
    return out


def counts(replicas_: dict[str, ShardElector]) -> dict[str, int]:
    return {name: len(shards) for name, shards in holdings(replicas_).items()}


def step(replicas_: dict[str, ShardElector], alive: Iterable[str], clock: Clock) -> None:
    """One retry period: every live replica runs its round, then the fencing is checked."""
    clock.t += SETTINGS.retry_period_s
    for name in alive:
        replicas_[name].round()
    holdings(replicas_)


def assert_never_held_twice(fake: FakeKube) -> None:
    """From the holders the server was sent: a Lease passes from one holder to another only after
    the old one's last renewal is a lease duration old, or through a release."""
    last: dict[str, tuple[str, float]] = {}
    for record in fake.requests:
        if record.method not in ("PUT", "POST") or "/leases" not in record.path:
            continue
        if record.status not in (200, 201):
            continue
        name = record.body["metadata"]["name"]
        spec = record.body["spec"]
        holder = spec.get("holderIdentity") or ""
        renewed = parse_time(spec.get("renewTime"))
        assert renewed is not None
        before = last.get(name)
        if before is not None and before[0] and holder and holder != before[0]:
            gap = renewed - before[1]
            assert gap >= SETTINGS.lease_duration_s, f"{name}: {before[0]} → {holder} after {gap} s"
        last[name] = (holder, renewed)


def test_replicas_share_shards_take_over_a_silent_one_and_hand_its_share_back(
    fake_kube: FakeKube, kube: Kube
) -> None:
    clock = Clock()
    fleet_ = fleet(kube, clock, ("a", "b", "c"), 6)
    everyone = ("a", "b", "c")
    for _ in range(10):
        step(fleet_, everyone, clock)
        if sorted(counts(fleet_).values()) == [2, 2, 2]:
            break
    assert counts(fleet_) == {"a": 2, "b": 2, "c": 2}
    settled = holdings(fleet_)
    for _ in range(5):  # settled: nobody fights over a shard
        step(fleet_, everyone, clock)
    assert holdings(fleet_) == settled

    # c stops renewing: its own fencing stops it at the renew deadline, and the others take its
    # shards once its Leases have been unchanged for a lease duration by their clocks.
    silent_since = clock.t
    taken_at = None
    while clock.t - silent_since <= SETTINGS.lease_duration_s + 3 * SETTINGS.retry_period_s:
        step(fleet_, ("a", "b"), clock)
        if clock.t - silent_since >= SETTINGS.renew_deadline_s:
            assert fleet_["c"].held() == frozenset()
        if taken_at is None and fleet_["a"].held() | fleet_["b"].held() == set(range(6)):
            taken_at = clock.t
    assert taken_at is not None
    assert taken_at - silent_since <= SETTINGS.lease_duration_s + 2 * SETTINGS.retry_period_s
    assert counts(fleet_) == {"a": 3, "b": 3, "c": 0}

    # c comes back: a replica with two more hands one over, reserved for c; nobody else takes it.
    unheld_for = Counter[int]()
    for _ in range(8):
        step(fleet_, everyone, clock)
        now_held = set().union(*holdings(fleet_).values())
        for shard in range(6):
            unheld_for[shard] = 0 if shard in now_held else unheld_for[shard] + 1
            assert unheld_for[shard] <= 2, f"shard {shard} unheld for {unheld_for[shard]} rounds"
        if sorted(counts(fleet_).values()) == [2, 2, 2]:
            break
    assert counts(fleet_) == {"a": 2, "b": 2, "c": 2}
    settled = holdings(fleet_)
    for _ in range(5):
        step(fleet_, everyone, clock)
    assert holdings(fleet_) == settled

    # A clean stop releases at once: the others take the shards on their next round.
    fleet_["c"].release()
    step(fleet_, ("a", "b"), clock)
    assert counts(fleet_) == {"a": 3, "b": 3, "c": 0}
    assert_never_held_twice(fake_kube)


def test_one_shard_is_the_single_leaders_lease(fake_kube: FakeKube, kube: Kube) -> None:
    clock = Clock()
    fleet_ = fleet(kube, clock, ("a", "b"), 1)
    for _ in range(3):
        step(fleet_, ("a", "b"), clock)
    assert counts(fleet_) == {"a": 1, "b": 0}
    lease = fake_kube.get_object("Lease", LEASE_NS, "pa")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "a"
    assert not [r for r in fake_kube.requests if "/leases/pa-" in r.path]
    # The follower never asks a holder of the only shard for it.
    assert all(
        "annotations" not in (r.body or {}).get("metadata", {})
        for r in fake_kube.requests
        if r.method == "PUT"
    )


# --- controllers -------------------------------------------------------------------------------

DEPLOYMENTS = [f"web-{i}" for i in range(6)]


def test_each_workload_is_written_only_by_the_replica_holding_its_shard(
    fake_kube: FakeKube, kubeconfig: Path
) -> None:
    fake_kube.add_namespace(LEASE_NS)
    clock = Clock()
    shards = 4
    loads = Loads()
    for name in DEPLOYMENTS:
        fake_kube.add_deployment(NS, name, replicas=2, annotations=ON)
        loads.cores[name] = 2.1  # three times what two pods should carry: 6 pods
    electors: dict[str, ShardElector] = {}
    controllers: dict[str, Controller] = {}
    for name in ("a", "b"):
        kube = connect(kubeconfig, user_agent=f"predictive-autoscaler/{name}")
        elector = ShardElector(kube, SETTINGS, shards, name, clock, lambda: WALL + clock.t)
        stages = cluster_stages(
            kube,
            Listed(kube),
            loads,
            Predicted(),
            PredictivePolicy(interval_s=30),
            may_act=elector.holds_any,
            owns=elector.owns,
        )
        electors[name] = elector
        controllers[name] = Controller(stages, may_act=elector.holds_any)
    for _ in range(6):
        step(electors, ("a", "b"), clock)
    assert counts(electors) == {"a": 2, "b": 2}
    owner = {
        d: next(n for n, e in electors.items() if e.holds(shard_of(NS, d, shards))) for d in DEPLOYMENTS
    }
    assert set(owner.values()) == {"a", "b"}, "both replicas have workloads to act on"

    fake_kube.clear_log()
    decided = {name: controllers[name].tick(WALL) for name in ("a", "b")}
    for name, report in decided.items():
        assert {ref.name for ref in report.outcomes} == {d for d in DEPLOYMENTS if owner[d] == name}
    for deployment in DEPLOYMENTS:
        assert replicas(fake_kube, deployment) == 6, deployment
        writers = {
            r.user_agent.split("/")[-1]
            for r in fake_kube.requests
            if r.method in ("PATCH", "PUT", "POST") and f"/deployments/{deployment}" in r.path
        }
        assert writers == {owner[deployment]}, deployment

    # b stops; once a has taken b's shards over, a decides b's workloads too.
    silent_since = clock.t
    while clock.t - silent_since <= SETTINGS.lease_duration_s + 2 * SETTINGS.retry_period_s:
        step(electors, ("a",), clock)
    assert counts(electors) == {"a": shards, "b": 0}
    fake_kube.clear_log()
    for name in DEPLOYMENTS:
        loads.cores[name] = 2.8  # now 8 pods
    assert controllers["b"].tick(WALL + 60).outcomes == {}
    report = controllers["a"].tick(WALL + 60)
    assert {ref.name for ref in report.outcomes} == set(DEPLOYMENTS)
    assert {replicas(fake_kube, d) for d in DEPLOYMENTS} == {8}
    assert {r.user_agent.split("/")[-1] for r in fake_kube.requests if r.method == "PATCH"} == {"a"}


def test_shard_gauges() -> None:
    telemetry = Telemetry()
    telemetry.set_shards({0, 2}, 3)
    exposition = telemetry.render()[0].decode()
    assert "predictive_autoscaler_shards_held 2.0" in exposition
    assert 'predictive_autoscaler_shard_leader{shard="1"} 0.0' in exposition
    assert 'predictive_autoscaler_shard_leader{shard="2"} 1.0' in exposition
    assert "predictive_autoscaler_leader 1.0" in exposition
    telemetry.set_shards((), 3)
    assert "predictive_autoscaler_leader 0.0" in telemetry.render()[0].decode()
