"""When a sharded replica runs its tick early: after a lease round that gained shards.

A shard a replica has just taken (from a replica that died, or handed over at a rebalance) has
workloads nobody decides until this replica's next tick, up to a whole interval later. So a lease
round that leaves the replica holding a shard it did not hold after the round before wakes the
tick at once; or, while a tick runs, when that tick ends (the scheduler runs one at a time, and a
run asked for meanwhile would only be skipped). A tick that starts after the gain decides the new
shards' workloads, so nothing more is owed once one has started. The first round gains nothing:
the first tick follows it at once anyway. Losing shards asks for nothing.

Pure: `TickTrigger` is told what each round held and when ticks start and end, and says when to
wake the tick; `autoscaler.runner` calls it under one lock (rounds and ticks run on different
scheduler threads) and moves the tick.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Gained", "TickTrigger"]


@dataclass(frozen=True, slots=True)
class Gained:
    """Shards a lease round gained, and whether to wake the tick now: not while a tick runs,
    whose end wakes the next one instead (`TickTrigger.tick_ended`)."""

    shards: frozenset[int]
    wake_now: bool


class TickTrigger:
    """The early-tick decision of one replica; not thread-safe (the caller holds a lock)."""

    def __init__(self) -> None:
        self._held: frozenset[int] | None = None  # after the last round; None before the first
        # Ticks started less ticks ended. A tick that ends at once can be told ended before it is
        # told started (the scheduler's thread hands it over and hears it end in one call): the
        # count dips by one until its start is told.
        self._running = 0
        self._owed = False  # shards gained while a tick ran, and no tick started since

    def round_done(self, held: Iterable[int]) -> Gained | None:
        """A lease round ended holding `held`: the shards it gained over the round before, if
        any. A round that failed is not reported, so what it took counts as gained next round."""
        now = frozenset(held)
        before, self._held = self._held, now
        if before is None:
            return None
        gained = now - before
        if not gained:
            return None
        if self._running > 0:
            self._owed = True
            return Gained(gained, wake_now=False)
        return Gained(gained, wake_now=True)

    def tick_started(self) -> None:
        self._running += 1
        self._owed = False  # this tick decides every shard gained so far

    def tick_ended(self) -> bool:
        """A tick ended: whether to wake the next one now (shards were gained while it ran)."""
        self._running -= 1
        if self._running > 0 or not self._owed:
            return False
        self._owed = False
        return True

    @property
    def running(self) -> bool:
        return self._running > 0
