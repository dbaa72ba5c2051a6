"""Shards: the fleet split among controller replicas, one `coordination.k8s.io/v1` Lease per shard.

A workload belongs to shard `blake2b(namespace/name) mod N`, the same in every process and release.
Each shard's Lease is held and fenced exactly as the single leader's is (`leader.LeaderElector`,
one per shard): a replica acts on a workload only while it holds that workload's shard, that is
within the renew deadline of the shard Lease's last renewal. With one shard the Lease keeps its
plain name, so a single-shard install is today's leader election; with N it is `<name>-<i>`.

Replicas learn who is alive from the Leases themselves: the holders of Leases that have not expired
by the reader's clock, and the candidates that asked for one. Each round a replica
* renews what it holds, except a shard a candidate asked for while we hold at least two more
  shards than it does: that one is released, reserved for the asker;
* takes free or expired Leases (those reserved for it first, then by a preference hashed from its
  identity and the shard, so that replicas reaching for free shards at once mostly reach for
  different ones) until it holds its fair share, ceil(N / live replicas);
* short of its share with nothing free, asks the replica holding the most (at least two more than
  itself) for one of its shards.
Moves go only from a replica with at least two more shards to one with fewer, so the holdings
settle within one shard of each other and nobody fights; a replica that stops renewing loses its
shards to the others once they have seen its Leases unchanged for a lease duration.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from autoscaler.actuation.leader import LeaderElector, LeaseSettings, LeaseView
from autoscaler.kube import Kube, KubeError
from autoscaler.model import TargetRef
from autoscaler.stages import ActuationResult, ClusterReader, Snapshot

__all__ = ["OwnedReader", "ShardElector", "lease_names", "plan_round", "shard_of"]

log = logging.getLogger(__name__)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard of the workload `namespace/name` among `shards`: a Deployment and a
    StatefulSet of one name share it."""
    return _digest(f"{namespace}/{name}") % shards


def lease_names(name: str, shards: int) -> tuple[str, ...]:
    """The Lease of each shard: the plain name for one shard (the leader election's Lease)."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    return (name,) if shards == 1 else tuple(f"{name}-{i}" for i in range(shards))


def _preference(identity: str, key: str) -> int:
    return _digest(f"{identity}#{key}")


@dataclass(frozen=True, slots=True)
class Plan:
    """What one replica does with the shard Leases in a round, from what it just read."""

    renew: tuple[int, ...]
    release: tuple[tuple[int, str], ...]  # (shard, the candidate it is reserved for)
    take: tuple[int, ...]  # free shards, best first
    wanted: int  # how many of `take` to get
    ask: int | None  # a shard whose holder is asked to hand it over
    live: int
    fair: int


def plan_round(identity: str, views: Mapping[int, LeaseView], shards: int) -> Plan:
    """The round's plan for `identity` (pure). Shards missing from `views` could not be read and
    are left alone: held ones lapse at their renew deadline unless the next read works."""
    holding: Counter[str] = Counter()
    askers: set[str] = set()
    for view in views.values():
        if view.holder and (view.mine or not view.expired):
            holding[view.holder] += 1
            if view.requested_by and view.requested_by != view.holder:
                askers.add(view.requested_by)
    live = set(holding) | askers | {identity}
    fair = math.ceil(shards / len(live))
    mine = sorted(s for s, v in views.items() if v.mine)
    count = len(mine)
    release: list[tuple[int, str]] = []
    for shard in mine:
        asker = views[shard].requested_by
        if asker and asker != identity and count >= holding[asker] + 2:
            release.append((shard, asker))
            count -= 1
            holding[asker] += 1
    released = {s for s, _ in release}
    renew = tuple(s for s in mine if s not in released)
    free = [s for s, v in views.items() if not v.mine and v.expired]
    free.sort(key=lambda s: (views[s].reserved_for != identity, _preference(identity, str(s))))
    reserved = sum(1 for s in free if views[s].reserved_for == identity)
    wanted = max(fair - count, reserved, 0)
    ask = None
    if not free and count < fair:
        donors = [d for d, n in holding.items() if d != identity and n >= count + 2]
        if donors:
            donor = max(donors, key=lambda d: (holding[d], _preference(identity, d)))
            theirs = [
                s for s, v in views.items() if v.holder == donor and not v.expired and not v.requested_by
            ]
            if theirs:
                ask = min(theirs, key=lambda s: _preference(identity, str(s)))
    return Plan(renew, tuple(release), tuple(free), wanted, ask, len(live), fair)


class ShardElector:
    """The shard Leases of one replica: which it holds now, and one round of renewing, releasing,
    taking and asking (`round`, on the retry period)."""

    def __init__(
        self,
        kube: Kube,
        settings: LeaseSettings,
        shards: int,
        identity: str,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self.shards = shards
        self.identity = identity
        self.names = lease_names(settings.name, shards)
        self._electors = tuple(
            LeaderElector(kube, replace(settings, name=name), identity, clock, wall_clock)
            for name in self.names
        )

    def holds(self, shard: int) -> bool:
        return self._electors[shard].is_leader()

    def held(self) -> frozenset[int]:
        return frozenset(i for i, e in enumerate(self._electors) if e.is_leader())

    def holds_any(self) -> bool:
        return any(e.is_leader() for e in self._electors)

    def owns(self, ref: TargetRef) -> bool:
        """True while this replica holds the shard of `ref`, with the leader's fencing."""
        return self.holds(shard_of(ref.namespace, ref.name, self.shards))

    def round(self) -> frozenset[int]:
        """One round over every shard Lease; the shards held afterwards."""
        views: dict[int, LeaseView] = {}
        for shard, elector in enumerate(self._electors):
            try:
                views[shard] = elector.look()
            except KubeError as error:
                log.warning("lease %s: %s", self.names[shard], error)
        plan = plan_round(self.identity, views, self.shards)
        for shard, asker in plan.release:
            self._electors[shard].release(reserve_for=asker)
        for shard in plan.renew:
            self._electors[shard].try_acquire_or_renew(views[shard])
        got = 0
        for shard in plan.take:
            if got >= plan.wanted:
                break
            if self._electors[shard].try_acquire_or_renew(views[shard]):
                got += 1
        if plan.ask is not None and self._electors[plan.ask].request(views[plan.ask]):
            log.info(
                "asked for lease %s: %d live replicas, a fair share of %d",
                self.names[plan.ask],
                plan.live,
                plan.fair,
                extra={"event": "lease_requested", "lease": self.names[plan.ask]},
            )
        for elector in self._electors:
            elector.notify()
        return self.held()

    def release(self) -> None:
        """Give up every shard held (on a clean stop), so the others take them at once."""
        for elector in self._electors:
            elector.release()


class OwnedReader:
    """The reader, narrowed to the workloads this replica's shards own: targets, set-asides
    and HPA floors to give back alike."""

    def __init__(self, reader: ClusterReader, owns: Callable[[TargetRef], bool]) -> None:
        self._reader = reader
        self._owns = owns

    def snapshot(self, now: float) -> Snapshot:
        built = self._reader.snapshot(now)
        if not built.synced:
            return built
        owns = self._owns
        return Snapshot(
            tuple(t for t in built.targets if owns(t.state.ref)),
            tuple(a for a in built.set_aside if owns(a.ref)),
            tuple(r for r in built.releases if owns(r.ref)),
        )

    def learn(self, ref: TargetRef, result: ActuationResult, now: float) -> None:
        self._reader.learn(ref, result, now)
