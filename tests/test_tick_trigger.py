"""The tick runs early after a lease round that gained shards (`autoscaler.tick_trigger`, wired by
`autoscaler.runner.EarlyTicks`).

Covers, by named cases of the pure decision (rounds, tick starts and ends in order, and what each
says): a gain while no tick runs wakes the tick now; a gain while one runs wakes nothing until
it ends, then once; several gains during one tick wake once; losing shards, keeping the same ones,
and the first round wake nothing; a tick that started after the gain owes nothing more; a tick's
end told before its start (one that ended at once) counts the same. Then the
wiring on a real APScheduler scheduler, driven by events (no sleeps, an hour's interval so that no
scheduled tick comes by): a gain while idle moves the tick's next run to now and the next one an
interval after it; a gain while a tick runs moves it when that tick ends, with no "maximum number
of running instances" skip; an early run that meets a tick the scheduler started between the
decision and the move is dropped without that warning, while a tick that overruns still skips the
next one as before; after `stop` a gain moves nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
)

from autoscaler.runner import TICK_JOB, EarlyTicks
from autoscaler.tick_trigger import TickTrigger

# --- the decision -----------------------------------------------------------------------------


def play(steps: list[str]) -> list[str]:
    """Each step ("round 0 2": a round held shards 0 and 2; "start"; "end") and what it said:
    "now 1" / "later 1" (shards gained, wake now or at the running tick's end), "wake" (a tick
    ended and the next is to run now), or "-"."""
    trigger = TickTrigger()
    said: list[str] = []
    for step in steps:
        what, *shards = step.split()
        if what == "round":
            gained = trigger.round_done(int(s) for s in shards)
            if gained is None:
                said.append("-")
            else:
                when = "now" if gained.wake_now else "later"
                said.append(" ".join([when, *map(str, sorted(gained.shards))]))
        elif what == "start":
            trigger.tick_started()
            said.append("-")
        else:
            assert what == "end"
            said.append("wake" if trigger.tick_ended() else "-")
    return said


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(
            [("round 0 1", "-"), ("start", "-"), ("end", "-")],
            id="first-round-wakes-nothing",
        ),
        pytest.param(
            [("round 0", "-"), ("round 0 1", "now 1"), ("start", "-"), ("end", "-")],
            id="gained-while-idle-wakes-now",
        ),
        pytest.param(
            [("round 0", "-"), ("start", "-"), ("round 0 1", "later 1"), ("round 0 1", "-"),
             ("end", "wake"), ("start", "-"), ("end", "-")],
            id="gained-while-a-tick-runs-wakes-at-its-end",
        ),
        pytest.param(
            [("round", "-"), ("start", "-"), ("round 0", "later 0"), ("round 0 1", "later 1"),
             ("round 0 1 2", "later 2"), ("end", "wake"), ("start", "-"), ("end", "-")],
            id="several-gains-during-one-tick-wake-once",
        ),
        pytest.param(
            [("round 0 1", "-"), ("round 0", "-"), ("start", "-"), ("round", "-"), ("end", "-")],
            id="lost-shards-wake-nothing",
        ),
        pytest.param(
            [("round 0 1", "-"), ("round 0 1", "-"), ("start", "-"), ("round 1 0", "-"), ("end", "-")],
            id="same-shards-wake-nothing",
        ),
        pytest.param(
            [("round 0 1", "-"), ("round 1 2", "now 2")],
            id="gained-one-lost-another-wakes-now",
        ),
        pytest.param(
            [("round 0 1", "-"), ("round 0", "-"), ("round 0 1", "now 1")],
            id="lost-then-taken-back-wakes-now",
        ),
        pytest.param(
            # The scheduler hands the next tick to a thread before the last one's end is told.
            [("round 0", "-"), ("start", "-"), ("round 0 1", "later 1"), ("start", "-"),
             ("end", "-"), ("end", "-")],
            id="a-tick-started-after-the-gain-owes-nothing",
        ),
        pytest.param(
            [("round 0", "-"), ("start", "-"), ("start", "-"), ("round 0 1", "later 1"),
             ("end", "-"), ("end", "wake")],
            id="wakes-when-the-last-running-tick-ends",
        ),
        pytest.param(
            # A tick that ended at once is told ended before it is told started.
            [("round 0", "-"), ("end", "-"), ("start", "-"), ("start", "-"),
             ("round 0 1", "later 1"), ("end", "wake")],
            id="an-end-told-before-its-start",
        ),
    ],
)  # fmt: skip
def test_tick_trigger(script: list[tuple[str, str]]) -> None:
    steps = [step for step, _ in script]
    assert list(zip(steps, play(steps), strict=True)) == script


def test_running_counts_starts_less_ends_in_either_order() -> None:
    trigger = TickTrigger()
    assert not trigger.running
    trigger.tick_started()
    assert trigger.running
    assert not trigger.tick_ended()
    assert not trigger.running
    # A tick that ended at once, told ended before it is told started.
    assert not trigger.tick_ended()
    trigger.tick_started()
    assert not trigger.running
    trigger.tick_started()
    assert trigger.running


# --- wired to the scheduler ---------------------------------------------------------------------

INTERVAL = timedelta(hours=1)
ENDED = EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED
TICK_EVENTS = EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES | ENDED
WAIT_S = 30.0  # a deadline for what the scheduler's threads do at once, never a delay


class Ticks:
    """The tick job of a real scheduler: how often it was handed to a thread (the scheduler's
    events), started and ended, and a gate that holds a running tick until the test opens it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.submitted: list[datetime] = []  # the run times the scheduler handed over
        self.started = 0
        self.ended = 0
        self.skipped = 0  # "maximum number of running instances reached"
        self.gate = threading.Event()
        self.gate.set()

    def tick(self) -> None:
        with self._changed:
            self.started += 1
            self._changed.notify_all()
        assert self.gate.wait(WAIT_S)

    def on_event(self, event: Any) -> None:
        if event.job_id != TICK_JOB:
            return
        with self._changed:
            if event.code == EVENT_JOB_SUBMITTED:
                self.submitted.append(event.scheduled_run_times[-1])
            elif event.code == EVENT_JOB_MAX_INSTANCES:
                self.skipped += 1
            else:
                self.ended += 1
            self._changed.notify_all()

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        with self._changed:
            assert self._changed.wait_for(condition, WAIT_S), f"timed out waiting for {what}"


@dataclass
class Wired:
    early: EarlyTicks
    scheduler: Any
    ticks: Ticks

    def next_run(self) -> datetime:
        return self.scheduler.get_job(TICK_JOB).next_run_time  # type: ignore[no-any-return]


@pytest.fixture
def wired(caplog: pytest.LogCaptureFixture) -> Iterator[Wired]:
    """A scheduler as `run` builds it, the tick every hour from now; the first tick has ended."""
    caplog.set_level(logging.INFO)
    early = EarlyTicks()
    scheduler = early.scheduler()
    ticks = Ticks()
    # After EarlyTicks' own listener: when the test hears that a tick ended, EarlyTicks has too.
    scheduler.add_listener(ticks.on_event, TICK_EVENTS)
    scheduler.add_job(
        ticks.tick,
        "interval",
        seconds=INTERVAL.total_seconds(),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=60,
        next_run_time=datetime.now(UTC),
        id=TICK_JOB,
    )
    scheduler.start()
    try:
        ticks.wait(lambda: ticks.ended == 1, "the first tick")
        yield Wired(early, scheduler, ticks)
    finally:
        ticks.gate.set()
        early.stop()
        scheduler.shutdown(wait=True)


def skip_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "maximum number of running" in r.getMessage()]


def gained_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[list[int], str]]:
    return [
        (r.shards, r.tick)  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "event", None) == "shards_gained"
    ]


def test_a_gain_while_idle_moves_the_tick_to_now(wired: Wired, caplog: pytest.LogCaptureFixture) -> None:
    ticks = wired.ticks
    wired.early.round_done({0})  # the first round
    wired.early.round_done({0})
    wired.early.round_done(set())
    assert wired.next_run() == ticks.submitted[0] + INTERVAL, "same or lost shards move nothing"
    assert gained_lines(caplog) == []

    wired.early.round_done({0, 1})
    ticks.wait(lambda: ticks.ended == 2, "the early tick")
    assert ticks.submitted[1] < ticks.submitted[0] + INTERVAL
    assert wired.next_run() == ticks.submitted[1] + INTERVAL, "the next one an interval after"
    assert gained_lines(caplog) == [([0, 1], "now")]
    assert skip_warnings(caplog) == []


def test_a_gain_while_a_tick_runs_moves_the_tick_when_it_ends(
    wired: Wired, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = wired.ticks
    wired.early.round_done({0})
    ticks.gate.clear()
    wired.scheduler.modify_job(TICK_JOB, next_run_time=datetime.now(UTC))  # a tick, on schedule
    ticks.wait(lambda: ticks.started == 2, "the second tick")
    wired.early.round_done({0, 1})
    wired.early.round_done({0, 1, 2})
    assert wired.next_run() == ticks.submitted[1] + INTERVAL, "nothing moved while it runs"
    assert gained_lines(caplog) == [([1], "after_running"), ([2], "after_running")]

    ticks.gate.set()
    ticks.wait(lambda: ticks.ended == 3, "the early tick")
    assert len(ticks.submitted) == 3, "one early tick for both gains"
    assert ticks.submitted[2] < ticks.submitted[1] + INTERVAL
    assert wired.next_run() == ticks.submitted[2] + INTERVAL
    assert ticks.skipped == 0
    assert skip_warnings(caplog) == []


def test_an_early_run_meeting_a_tick_started_since_the_gain_is_dropped_quietly(
    wired: Wired, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = wired.ticks
    early = wired.early
    wired.early.round_done({0})
    # The scheduler starts a tick between the round's decision (no tick running: wake now) and
    # the move of the tick's next run.
    move = early._move

    def move_once_a_tick_runs(at: datetime) -> None:
        ticks.wait(lambda: ticks.started == 2, "the tick on schedule")
        move(at)

    monkeypatch.setattr(early, "_move", move_once_a_tick_runs)
    ticks.gate.clear()
    round_ = threading.Thread(target=early.round_done, args=({0, 1},))
    round_.start()
    wired.scheduler.modify_job(TICK_JOB, next_run_time=datetime.now(UTC))  # a tick, on schedule
    ticks.wait(lambda: len(ticks.submitted) == 3, "the early run to be reached")
    round_.join(WAIT_S)
    assert not round_.is_alive()
    assert ticks.started == 2, "the early run did not start beside the running tick"
    assert ticks.skipped == 0
    assert skip_warnings(caplog) == []

    ticks.gate.set()
    ticks.wait(lambda: ticks.ended == 2, "the tick on schedule to end")
    assert ticks.started == 2, "that tick decided the gained shard: nothing more is owed"
    assert wired.next_run() == ticks.submitted[2] + INTERVAL


def test_a_tick_that_overruns_still_skips_the_next(
    wired: Wired, caplog: pytest.LogCaptureFixture
) -> None:
    ticks = wired.ticks
    ticks.gate.clear()
    wired.scheduler.modify_job(TICK_JOB, next_run_time=datetime.now(UTC))
    ticks.wait(lambda: ticks.started == 2, "the second tick")
    wired.scheduler.modify_job(TICK_JOB, next_run_time=datetime.now(UTC))  # due while it runs
    ticks.wait(lambda: ticks.skipped == 1, "the skip")
    assert len(skip_warnings(caplog)) == 1


def test_after_stop_a_gain_moves_nothing(wired: Wired, caplog: pytest.LogCaptureFixture) -> None:
    wired.early.round_done({0})
    wired.early.stop()
    wired.early.round_done({0, 1})
    assert wired.next_run() == wired.ticks.submitted[0] + INTERVAL
    assert gained_lines(caplog) == []
