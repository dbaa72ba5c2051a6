"""Leader election on a `coordination.k8s.io/v1` Lease, so that of several controller replicas exactly
one acts.

The rules are client-go's: the holder renews every retry period; a candidate takes the lease over only
when its record has not changed for a whole lease duration *by the candidate's own clock* (clocks of
different machines are never compared), and every write carries the resourceVersion it read, so of two
candidates racing for an expired lease one gets a 409 and stays a follower. A leader counts itself
leader only until `renew_deadline` after its last successful renewal, which is shorter than the lease
duration: a leader cut off from the API server stops acting before anyone else may start. On a clean
stop the lease is released so that a successor does not wait out the duration.

The clock is a parameter (monotonic seconds); nothing here sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autoscaler.kube import Conflict, Kube, KubeError
from autoscaler.timefmt import iso_utc

__all__ = ["LeaderElector", "LeaseSettings"]

log = logging.getLogger(__name__)


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

    def try_acquire_or_renew(self) -> bool:
        """One round of the election; True when we hold the lease afterwards."""
        try:
            acquired = self._round()
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

    def _round(self) -> bool:
        settings = self._settings
        started = self._clock()
        lease = self._kube.read_lease(settings.namespace, settings.name)
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
            self._renewed_at = started
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, started
        duration = float(spec.get("leaseDurationSeconds") or settings.lease_duration_s)
        mine = holder == self.identity
        expired = not holder or started - self._observed_at >= duration
        if not mine and not expired:
            self._renewed_at = None
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": settings.name,
                "namespace": settings.namespace,
                "resourceVersion": (lease.get("metadata") or {}).get("resourceVersion"),
            },
            "spec": self._spec(transitions, spec.get("acquireTime") if mine else None),
        }
        try:
            self._kube.replace_lease(settings.namespace, settings.name, body)
        except Conflict:
            self._renewed_at = None
            return False
        self._renewed_at = started
        return True

    def release(self) -> None:
        """Give the lease up (if we hold it) so a successor need not wait for it to expire."""
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
            self._kube.replace_lease(settings.namespace, settings.name, lease)
        except KubeError as error:
            log.warning("lease %s not released: %s", settings.name, error)
        finally:
            self._notify()
