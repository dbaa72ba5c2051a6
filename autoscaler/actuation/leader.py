"""Leader election on a `coordination.k8s.io/v1` Lease, so that of several controller replicas exactly
one acts.

The rules are client-go's: the holder renews every retry period; a candidate takes the lease over only
when its record has not changed for a whole lease duration *by the candidate's own clock* (clocks of
different machines are never compared), and every write carries the resourceVersion it read, so of two
candidates racing for an expired lease one gets a 409 and stays a follower. A leader counts itself
leader only until `renew_deadline` after its last successful renewal, which is shorter than the lease
duration: a leader cut off from the API server stops acting before anyone else may start. On a clean
stop the lease is released so that a successor does not wait out the duration.

A round is a look (`look`, which reads the lease and ages its record) and then a take, a release or
a request; a single lease does all three in `try_acquire_or_renew`, while shards
(`autoscaler.actuation.shards`) look at every lease first and then choose. Two annotations let
holders hand a lease over without a gap: a candidate asks the holder for it (`request`), and the
holder may release it reserved for the asker, whom the others then leave it to for a lease duration.

The clock is a parameter (monotonic seconds); nothing here sleeps.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.kube import Conflict, Kube, KubeError
from autoscaler.timefmt import iso_utc

__all__ = ["LeaderElector", "LeaseSettings", "LeaseView"]

log = logging.getLogger(__name__)

# Written by a candidate onto a lease another replica holds; the holder's next renewal drops it.
REQUESTED_BY = "predictive-autoscaler.io/requested-by"
# Written by a holder releasing a lease for the candidate that asked; taking the lease drops it.
RESERVED_FOR = "predictive-autoscaler.io/reserved-for"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    namespace: str
    name: str = "predictive-autoscaler"
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration, got "
                f"{self.retry_period_s:g} s, {self.renew_deadline_s:g} s, {self.lease_duration_s:g} s"
            )


@dataclass(frozen=True, slots=True)
class LeaseView:
    """A lease as one candidate saw it at `read_at` (its clock)."""

    lease: Mapping[str, Any] | None  # None: there is no such lease yet
    read_at: float
    holder: str
    mine: bool
    # This candidate may take the lease: nobody holds it (and it is not reserved for another), or
    # its record has not changed for a whole lease duration by this candidate's clock.
    expired: bool
    requested_by: str = ""
    reserved_for: str = ""


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        settings: LeaseSettings,
        identity: str,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._kube = kube
        self._settings = settings
        self.identity = identity
        self._clock = clock
        self._wall = wall_clock
        self._on_change = on_change
        self._renewed_at: float | None = None
        # The last lease record seen and when (our clock) it was first seen as it is.
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._was_leader = False

    def is_leader(self) -> bool:
        if self._renewed_at is None:
            return False
        return self._clock() - self._renewed_at < self._settings.renew_deadline_s

    def notify(self) -> None:
        """Tell of a change of leadership not told yet, such as a renew deadline that lapsed in a
        round that never touched this lease."""
        self._notify()

    def _notify(self) -> None:
        leading = self.is_leader()
        if leading != self._was_leader:
            self._was_leader = leading
            log.info(
                "%s leadership of lease %s/%s",
                "acquired" if leading else "lost",
                self._settings.namespace,
                self._settings.name,
                extra={"event": "leader", "leader": leading, "identity": self.identity},
            )
            if self._on_change is not None:
                self._on_change(leading)

    def try_acquire_or_renew(self, view: LeaseView | None = None) -> bool:
        """One round of the election; True when we hold the lease afterwards. `view`: the lease as
        `look` just read it, else it is read now."""
        try:
            acquired = self._take(view if view is not None else self.look())
        except KubeError as error:
            log.warning("lease %s: %s", self._settings.name, error)
            acquired = False
        self._notify()
        return acquired

    def _spec(self, transitions: int, acquired_wall: str | None) -> dict[str, Any]:
        now = iso_utc(self._wall(), micro=True)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self._settings.lease_duration_s)),
            "acquireTime": acquired_wall or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def look(self) -> LeaseView:
        """Read the lease and age its record by our clock; raises `KubeError`."""
        settings = self._settings
        started = self._clock()
        lease = self._kube.read_lease(settings.namespace, settings.name)
        if lease is None:
            return LeaseView(None, started, "", False, True)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, started
        aged = started - self._observed_at
        duration = float(spec.get("leaseDurationSeconds") or settings.lease_duration_s)
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        reserved = str(annotations.get(RESERVED_FOR) or "") if not holder else ""
        if holder:
            expired = aged >= duration
        elif reserved and reserved != self.identity:
            # Released for the candidate that asked: a release writes a one-second duration, so
            # the wait for an asker that never comes is our own setting's.
            expired = aged >= settings.lease_duration_s
        else:
            expired = True
        requested = str(annotations.get(REQUESTED_BY) or "") if holder else ""
        return LeaseView(lease, started, holder, holder == self.identity, expired, requested, reserved)

    def _take(self, view: LeaseView) -> bool:
        settings = self._settings
        lease = view.lease
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": settings.name, "namespace": settings.namespace},
                "spec": self._spec(0, None),
            }
            try:
                self._kube.create_lease(settings.namespace, body)
            except Conflict:
                return False
            self._renewed_at = view.read_at
            return True
        if not view.mine and not view.expired:
            self._renewed_at = None
            return False
        spec = lease.get("spec") or {}
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if view.mine else 1)
        # A fresh metadata: the renewal or take-over drops a request or reservation on the lease.
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": settings.name,
                "namespace": settings.namespace,
                "resourceVersion": (lease.get("metadata") or {}).get("resourceVersion"),
            },
            "spec": self._spec(transitions, spec.get("acquireTime") if view.mine else None),
        }
        try:
            self._kube.replace_lease(settings.namespace, settings.name, body)
        except Conflict:
            self._renewed_at = None
            return False
        self._renewed_at = view.read_at
        return True

    def request(self, view: LeaseView) -> bool:
        """Ask the holder of the lease `view` shows to hand it over to us (a holder with more than
        its share does on its next round); True when the request was written."""
        if view.lease is None or view.mine or not view.holder:
            return False
        lease = copy.deepcopy(dict(view.lease))
        meta = lease.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}), REQUESTED_BY: self.identity}
        try:
            self._kube.replace_lease(self._settings.namespace, self._settings.name, lease)
        except KubeError as error:
            # A renewal between our read and this write wins; we ask again next round.
            log.info("lease %s not requested: %s", self._settings.name, error)
            return False
        return True

    def release(self, reserve_for: str = "") -> None:
        """Give the lease up (if we hold it) so a successor need not wait for it to expire;
        `reserve_for`: the candidate that asked for it, whom the others leave it to."""
        if not self.is_leader():
            return
        settings = self._settings
        self._renewed_at = None
        try:
            lease = self._kube.read_lease(settings.namespace, settings.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = dict(lease.get("spec") or {})
            spec.update(
                {
                    "holderIdentity": "",
                    "leaseDurationSeconds": 1,
                    "renewTime": iso_utc(self._wall(), micro=True),
                }
            )
            lease["spec"] = spec
            meta = lease.setdefault("metadata", {})
            annotations = {
                k: v
                for k, v in (meta.get("annotations") or {}).items()
                if k not in (REQUESTED_BY, RESERVED_FOR)
            }
            if reserve_for:
                annotations[RESERVED_FOR] = reserve_for
            meta["annotations"] = annotations
            self._kube.replace_lease(settings.namespace, settings.name, lease)
            log.info(
                "released lease %s/%s%s",
                settings.namespace,
                settings.name,
                f" for {reserve_for}" if reserve_for else "",
                extra={"event": "lease_released", "lease": settings.name, "identity": self.identity},
            )
        except KubeError as error:
            log.warning("lease %s not released: %s", settings.name, error)
        finally:
            self._notify()
