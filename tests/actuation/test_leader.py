"""Leader election on a Lease in the fake API server, with manual clocks (nothing sleeps).

Covers: the first candidate takes a free lease and the second stays follower; exactly one leader at
every step of a long run; the holder renews; a leader that cannot renew stops counting itself leader
after the renew deadline, before the lease can expire for others; a follower takes over only once the
record has not changed for a lease duration by its own clock; a clean release hands over at once; a
stale write loses with 409 and leaves the candidate a follower; bad timings are refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.actuation.leader import LeaderElector, LeaseSettings
from autoscaler.kube import Kube, connect
from tests.fakekube import FakeKube

SETTINGS = LeaseSettings("ops", "autoscaler", lease_duration_s=15, renew_deadline_s=10, retry_period_s=2)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def kube(fake_kube: FakeKube, kubeconfig: Path) -> Kube:
    fake_kube.add_namespace("ops")
    return connect(kubeconfig, user_agent="predictive-autoscaler/test")


def elector(kube: Kube, name: str, clock: Clock) -> LeaderElector:
    return LeaderElector(kube, SETTINGS, name, clock, lambda: 1_800_000_000.0 + clock.t)


def holder(fake: FakeKube) -> str:
    lease = fake.get_object("Lease", "ops", "autoscaler")
    assert lease is not None
    return str(lease["spec"].get("holderIdentity") or "")


def test_one_leader_and_takeover_after_expiry(fake_kube: FakeKube, kube: Kube) -> None:
    clock_a, clock_b = Clock(), Clock()
    a, b = elector(kube, "a", clock_a), elector(kube, "b", clock_b)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert holder(fake_kube) == "a"
    for _ in range(20):  # a long, healthy run: a renews, b watches
        clock_a.t += 2
        clock_b.t += 2
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
        assert a.is_leader()
        assert not b.is_leader()

    # a is cut off: it stops counting itself leader after the renew deadline...
    clock_a.t += 10
    assert not a.is_leader()
    # ...while b must wait a whole lease duration since it last saw the record change.
    clock_b.t += 14
    assert not b.try_acquire_or_renew()
    clock_b.t += 2
    assert b.try_acquire_or_renew()
    assert holder(fake_kube) == "b"
    lease = fake_kube.get_object("Lease", "ops", "autoscaler")
    assert lease is not None
    assert lease["spec"]["leaseTransitions"] == 1


def test_release_hands_over_at_once(fake_kube: FakeKube, kube: Kube) -> None:
    clock_a, clock_b = Clock(), Clock()
    a, b = elector(kube, "a", clock_a), elector(kube, "b", clock_b)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    assert not a.is_leader()
    assert b.try_acquire_or_renew()
    assert holder(fake_kube) == "b"


def test_conflicting_write_leaves_a_follower(fake_kube: FakeKube, kube: Kube) -> None:
    clock = Clock()
    a = elector(kube, "a", clock)
    assert a.try_acquire_or_renew()
    fake_kube.inject("PUT", r"/leases/autoscaler", status=409, times=1)
    clock.t += 2
    assert not a.try_acquire_or_renew()
    assert not a.is_leader()
    clock.t += 2
    assert a.try_acquire_or_renew()


def test_api_errors_never_make_a_leader(fake_kube: FakeKube, kube: Kube) -> None:
    clock = Clock()
    a = elector(kube, "a", clock)
    fake_kube.fail_all(503)
    assert not a.try_acquire_or_renew()
    assert not a.is_leader()
    fake_kube.heal()
    assert a.try_acquire_or_renew()


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"),
    [
        pytest.param(10, 10, 2, id="deadline-not-below-duration"),
        pytest.param(15, 10, 10, id="retry-not-below-deadline"),
        pytest.param(15, 10, 0, id="retry-zero"),
    ],
)
def test_bad_timings_refused(duration: float, deadline: float, retry: float) -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaseSettings("ops", "x", duration, deadline, retry)
