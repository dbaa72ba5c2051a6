"""`PrometheusSource` against a real Prometheus serving backfilled cluster-shaped data
(`tests.promserver`):

* latest values per Deployment (cpu cores, memory bytes, requests/s) and whole histories match the
  generated data, across a rollout, a counter reset, duplicate kube-state-metrics series and a custom
  request selector; samples carry their own timestamp;
* a Deployment name used in two namespaces never mixes, and a target never borrows another
  namespace's series;
* StatefulSets: their load comes through their own ownership (`kube_pod_owner` names them, no
  ReplicaSet), alone or beside a Deployment of the same name in the same namespace, which keeps its
  own; a query for StatefulSets alone joins no Deployment;
* batching: the queries per tick do not grow with the number of targets (50 vs 2), only distinct
  request selectors add one; a new target's history is fetched once, later ticks ask only for the new
  window (one step of overlap); chunked history fetches equal unchunked ones;
* `recorded` (the history port) is a regular UTC series with short gaps interpolated and long ones
  left NaN; it hands the history over: the cache then keeps only its last `cache_s`, still serves the
  latest samples as before (a series back after a long gap is still missing, not new), and a steady
  tick keeps as much whatever the history's length;
  `fetch_history` serves a backtest without touching the cache;
* memory in flight: a first read of many targets in groups caches what one read does, holding no more
  than `max_points_in_flight` parsed points at once, and steady ticks still make one query per kind;
* broken data: stale series, NaN points, a gappy counter and a ReplicaSet no Deployment owns leave that
  kind (or target) out;
* failures: a stopped server raises `PrometheusUnreachable` after the retries (with the injected
  backoff, no real sleep) and the next tick after a restart on the same port and data recovers; a
  frozen server raises `PrometheusTimeout`; a query Prometheus rejects raises `PrometheusRejected`,
  and costs only its own targets their request rate when it comes from a custom selector, which
  `rejected()` names per target as written, with Prometheus' words (short, without query positions);
* HTTP statuses a real Prometheus cannot be made to return on demand (a scripted stand-in server):
  4xx not retried, 5xx/429 and non-JSON answers retried then typed, 401/403 re-read the bearer token,
  and a rotated token file is picked up;
* settings validation.
"""

from __future__ import annotations

import http.server
import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autoscaler.config import PREFIX
from autoscaler.metrics import BUILTIN_KINDS, MetricKind
from autoscaler.model import (
    Bounds,
    LoadSnapshot,
    Target,
    TargetConfig,
    TargetRef,
    WorkloadKind,
    WorkloadState,
)
from autoscaler.selectors import LabelMatcher, MatchOp, SeriesSelector, parse_selector
from autoscaler.sources.prometheus import (
    FetchPurpose,
    FetchRecord,
    PrometheusRejected,
    PrometheusServerError,
    PrometheusSettings,
    PrometheusSource,
    PrometheusTimeout,
    PrometheusUnreachable,
    regular_series,
)
from autoscaler.sources.prometheus.cache import SeriesCache
from autoscaler.stages import MetricsUnavailable
from tests.faultproxy import Fault, FaultProxy
from tests.promserver import Dataset, PromEnv, PromServer, free_port

STEP = 60
WINDOW = 120.0  # the rate window of SETTINGS, in seconds
HOURS = 3600.0
CUSTOM = SeriesSelector("app_hits_total", (LabelMatcher("handler", MatchOp.EQUAL, "/checkout"),))
ALL_KINDS = BUILTIN_KINDS

WEB = TargetRef("shop", "web")
SHOP_API = TargetRef("shop", "api")
BLOG_API = TargetRef("blog", "api")
GAPPY = TargetRef("blog", "gappy")
CUSTOM_REF = TargetRef("blog", "custom")
BROKEN = TargetRef("shop", "broken")
STALE = TargetRef("shop", "stale")
ORPHAN = TargetRef("shop", "orphan")
WEB_STS = TargetRef("shop", "web", WorkloadKind.STATEFULSET)  # beside the Deployment shop/web
DB_STS = TargetRef("shop", "db", WorkloadKind.STATEFULSET)
BULK = tuple(TargetRef("bulk", f"bulk-{i:02d}") for i in range(48))
HEALTHY = (WEB, SHOP_API, BLOG_API, GAPPY, CUSTOM_REF, BULK[0], BULK[47])


def settings_for(env: PromEnv, **changes: object) -> PrometheusSettings:
    base = PrometheusSettings(
        url=env.url,
        timeout_s=5.0,
        retries=0,
        step_s=STEP,
        rate_window="2m",
        history_s=6 * HOURS,
        cache_s=6 * HOURS,
        late_steps=1,
        quality_window_s=600.0,
        max_missing_share=0.3,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def target(
    ref: TargetRef, kinds: Sequence[MetricKind] = ALL_KINDS, selector: SeriesSelector | None = None
) -> Target:
    if selector is None and ref == CUSTOM_REF:
        selector = CUSTOM
    selectors = {} if selector is None else {MetricKind.REQUESTS: selector}
    config = TargetConfig(metrics=tuple(kinds), bounds=Bounds(1, 20),
                          per_pod={MetricKind.REQUESTS: 10.0}, selectors=selectors)  # fmt: skip
    return Target(WorkloadState(ref, 2, 2), config)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture(scope="module")
def observed(prometheus: PromEnv) -> Iterator[tuple[PrometheusSource, dict[TargetRef, LoadSnapshot]]]:
    """One source that has seen every workload of the dataset, observed at the anchor."""
    source = PrometheusSource(settings_for(prometheus))
    targets = [target(w.ref) for w in prometheus.dataset.workloads]
    loads = dict(source.observe(targets, prometheus.anchor))
    yield source, loads
    source.close()


def close_to(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=1e-6, abs_tol=1e-9)


# --- values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param(WEB, id="after-rollout-duplicate-ksm"),
        pytest.param(SHOP_API, id="after-counter-reset"),
        pytest.param(BLOG_API, id="same-name-other-namespace"),
        pytest.param(GAPPY, id="after-a-gap"),
        pytest.param(CUSTOM_REF, id="custom-selector"),
        pytest.param(BULK[0], id="bulk-first"),
        pytest.param(BULK[47], id="bulk-last"),
        pytest.param(WEB_STS, id="statefulset-beside-same-named-deployment"),
        pytest.param(DB_STS, id="statefulset"),
    ],
)
@pytest.mark.parametrize("kind", [pytest.param(k, id=k.value) for k in BUILTIN_KINDS])
def test_latest_value_matches_the_data(
    observed: tuple[PrometheusSource, dict[TargetRef, LoadSnapshot]],
    prometheus: PromEnv,
    ref: TargetRef,
    kind: MetricKind,
) -> None:
    sample = observed[1][ref].get(kind)
    assert sample is not None
    assert sample.at == prometheus.anchor
    # Rates average over the 2m window ending at `at` (the policy's trend starts from its middle).
    assert sample.window_s == (0.0 if kind is MetricKind.MEMORY else 120.0)
    expected = prometheus.dataset.expected(ref, kind, prometheus.anchor, WINDOW)
    assert expected is not None
    assert close_to(sample.value, expected), (sample.value, expected)


def _compare_history(series: pd.Series, dataset: Dataset, ref: TargetRef, kind: MetricKind) -> int:
    compared = 0
    for stamp, value in zip(series.index, series.to_numpy(), strict=True):
        t = stamp.timestamp()
        expected = dataset.expected(ref, kind, t, WINDOW)
        if expected is None:
            continue
        assert close_to(float(value), expected), (ref, kind, stamp, value, expected)
        compared += 1
    return compared


@pytest.mark.parametrize("ref", [pytest.param(r, id=str(r).replace("/", "-")) for r in HEALTHY[:5]])
def test_history_matches_the_data_at_every_step(
    observed: tuple[PrometheusSource, dict[TargetRef, LoadSnapshot]], prometheus: PromEnv, ref: TargetRef
) -> None:
    for kind in BUILTIN_KINDS:
        series = observed[0].recorded(ref, kind)
        assert series is not None
        # Six hours at one-minute steps; only the points next to rollouts and gaps are not pinned.
        assert _compare_history(series, prometheus.dataset, ref, kind) > 280


def test_history_never_dips_at_a_counter_reset(
    observed: tuple[PrometheusSource, dict[TargetRef, LoadSnapshot]], prometheus: PromEnv
) -> None:
    series = observed[0].recorded(SHOP_API, MetricKind.REQUESTS)
    assert series is not None
    reset = pd.Timestamp(prometheus.anchor - 2 * HOURS, unit="s", tz="UTC")
    around = series[reset - pd.Timedelta(minutes=5) : reset + pd.Timedelta(minutes=5)]
    assert len(around) == 11
    assert around.notna().all()
    assert around.between(0.5 * around.median(), 1.5 * around.median()).all()


def test_same_name_in_two_namespaces_never_mixes(
    observed: tuple[PrometheusSource, dict[TargetRef, LoadSnapshot]], prometheus: PromEnv
) -> None:
    shop, blog = observed[1][SHOP_API], observed[1][BLOG_API]
    for kind in BUILTIN_KINDS:
        shop_sample, blog_sample = shop.get(kind), blog.get(kind)
        assert shop_sample is not None
        assert blog_sample is not None
        assert close_to(
            shop_sample.value,
            prometheus.dataset.expected(SHOP_API, kind, prometheus.anchor, WINDOW) or -1,
        )
        assert close_to(
            blog_sample.value,
            prometheus.dataset.expected(BLOG_API, kind, prometheus.anchor, WINDOW) or -1,
        )


def test_a_statefulset_and_a_deployment_of_one_name_each_get_their_own_load(
    observed: tuple[PrometheusSource, dict[TargetRef, LoadSnapshot]], prometheus: PromEnv
) -> None:
    deployment, statefulset = observed[1][WEB], observed[1][WEB_STS]
    for kind in ALL_KINDS:
        values = {}
        for ref, snapshot in ((WEB, deployment), (WEB_STS, statefulset)):
            sample = snapshot.get(kind)
            expected = prometheus.dataset.expected(ref, kind, prometheus.anchor, WINDOW)
            assert sample is not None
            assert expected is not None
            assert close_to(sample.value, expected), (ref, kind, sample.value, expected)
            values[ref] = sample.value
        assert not close_to(values[WEB], values[WEB_STS]), "the two loads differ in the data"


def test_statefulsets_alone_get_their_load_through_their_own_ownership(prometheus: PromEnv) -> None:
    source = PrometheusSource(settings_for(prometheus))
    targets = [target(DB_STS), target(WEB_STS)]
    for now in (prometheus.anchor - STEP, prometheus.anchor):  # a history fetch, then an update
        loads = source.observe(targets, now)
        for ref in (DB_STS, WEB_STS):
            for kind in ALL_KINDS:
                sample = loads[ref].get(kind)
                expected = prometheus.dataset.expected(ref, kind, now, WINDOW)
                assert sample is not None
                assert expected is not None
                assert close_to(sample.value, expected), (ref, kind, sample.value, expected)
    # The update is confined to the namespace only, and joins StatefulSets alone: shop's
    # Deployments (web among them) never come back.
    cpu = next(r for r in source.last_fetches if r.kind is MetricKind.CPU)
    assert (cpu.purpose, cpu.returned, cpu.series) == (FetchPurpose.UPDATE, 2, 2)
    series = source.recorded(DB_STS, MetricKind.CPU)
    assert series is not None
    assert _compare_history(series, prometheus.dataset, DB_STS, MetricKind.CPU) > 280
    start = prometheus.anchor - 2 * HOURS
    history = source.fetch_history(WEB_STS, ALL_KINDS, start, prometheus.anchor)
    assert _compare_history(history[MetricKind.REQUESTS], prometheus.dataset, WEB_STS,
                            MetricKind.REQUESTS) > 100  # fmt: skip


def test_a_target_only_gets_series_of_its_own_namespace(prometheus: PromEnv) -> None:
    source = PrometheusSource(settings_for(prometheus))
    # blog/custom counts app_hits_total; shop/custom does not exist and must not borrow blog's series.
    borrowed = TargetRef("shop", "custom")
    targets = [target(BLOG_API), target(borrowed, selector=CUSTOM)]
    loads = source.observe(targets, prometheus.anchor)
    assert set(loads) == {BLOG_API}
    custom = [r for r in source.last_fetches if r.selector == CUSTOM]
    assert [(r.returned, r.series) for r in custom] == [(0, 0)]
    # Update ticks are confined to the namespaces only: other Deployments there come back, unused.
    loads = source.observe(targets, prometheus.anchor)
    assert set(loads) == {BLOG_API}
    cpu = next(r for r in source.last_fetches if r.kind is MetricKind.CPU)
    assert cpu.returned > cpu.series == 1
    assert source.recorded(borrowed, MetricKind.REQUESTS) is None


# --- broken data ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "available"),
    [
        pytest.param(STALE, None, id="stale-target-left-out"),
        pytest.param(ORPHAN, None, id="replicaset-without-deployment-left-out"),
        pytest.param(BROKEN, {MetricKind.CPU}, id="nan-memory-and-gappy-counter-missing"),
        pytest.param(GAPPY, set(BUILTIN_KINDS), id="old-gap-does-not-matter-now"),
    ],
)
def test_broken_series_leave_their_kind_out(
    observed: tuple[PrometheusSource, dict[TargetRef, LoadSnapshot]],
    ref: TargetRef,
    available: set[MetricKind] | None,
) -> None:
    loads = observed[1]
    if available is None:
        assert ref not in loads
        return
    snapshot = loads[ref]
    assert {kind for kind in BUILTIN_KINDS if snapshot.get(kind) is not None} == available


def test_nan_points_are_dropped_not_kept(prometheus: PromEnv) -> None:
    source = PrometheusSource(settings_for(prometheus))
    source.observe([target(BROKEN, kinds=(MetricKind.MEMORY,))], prometheus.anchor)
    (record,) = source.last_fetches
    assert record.dropped >= 14  # the last fifteen minutes read NaN
    series = source.recorded(BROKEN, MetricKind.MEMORY)
    assert series is not None
    assert series.index[-1].timestamp() < prometheus.anchor - 14 * 60
    assert (series.dropna() >= 0).all()


def test_a_gappy_kind_is_missing_even_with_a_fresh_point(prometheus: PromEnv) -> None:
    source = PrometheusSource(settings_for(prometheus))
    loads = source.observe(
        [target(BROKEN, kinds=(MetricKind.REQUESTS, MetricKind.CPU))], prometheus.anchor
    )
    assert loads[BROKEN].get(MetricKind.REQUESTS) is None
    series = source.recorded(BROKEN, MetricKind.REQUESTS)
    assert series is not None
    assert series.index[-1].timestamp() == prometheus.anchor  # fresh, yet too many holes before it
    # The same counter passes with a tolerance for missing points that it meets.
    lenient = PrometheusSource(settings_for(prometheus, max_missing_share=0.7))
    assert lenient.observe([target(BROKEN, kinds=(MetricKind.REQUESTS,))], prometheus.anchor)[
        BROKEN
    ].get(MetricKind.REQUESTS)


# --- batching and incremental fetches -----------------------------------------------------------------


def test_queries_per_tick_do_not_grow_with_targets(prometheus: PromEnv) -> None:
    few = [target(WEB), target(BLOG_API)]
    many = [target(ref) for ref in (*BULK, WEB, BLOG_API)]
    assert len(many) == 50
    counts = {}
    for name, targets in (("few", few), ("many", many)):
        source = PrometheusSource(settings_for(prometheus))
        per_tick = []
        for now in (prometheus.anchor - 120, prometheus.anchor - 60, prometheus.anchor):
            before = source.queries_made
            loads = source.observe(targets, now)
            per_tick.append(source.queries_made - before)
            assert len(loads) == len(targets)
        counts[name] = per_tick
    assert counts["few"] == counts["many"] == [3, 3, 3]


def test_only_distinct_selectors_add_queries(prometheus: PromEnv) -> None:
    source = PrometheusSource(settings_for(prometheus))
    same = [target(CUSTOM_REF), target(TargetRef("blog", "api"), selector=CUSTOM), target(WEB)]
    source.observe(same, prometheus.anchor)
    before = source.queries_made
    source.observe(same, prometheus.anchor)
    assert source.queries_made - before == 4  # cpu, memory, default counter, one custom selector


def test_incremental_ticks_ask_only_for_the_new_window(prometheus: PromEnv) -> None:
    source = PrometheusSource(settings_for(prometheus))
    targets = [target(WEB), target(SHOP_API)]
    first = prometheus.anchor - 600
    source.observe(targets, first)
    assert {(r.purpose, r.start, r.end) for r in source.last_fetches} == {
        (FetchPurpose.HISTORY, first - 6 * HOURS, first)
    }
    cached = source.recorded(WEB, MetricKind.CPU)
    assert cached is not None
    loads = source.observe(targets, prometheus.anchor + 30)  # between two steps: aligned down
    assert {(r.purpose, r.start, r.end) for r in source.last_fetches} == {
        (FetchPurpose.UPDATE, first - STEP, prometheus.anchor)
    }
    assert all(r.points == 2 * 12 for r in source.last_fetches)  # 10 new steps, 1 overlap, 1 repeat
    grown = source.recorded(WEB, MetricKind.CPU)
    assert grown is not None
    # Ten new points at the end, and the cache (bounded to six hours) dropped ten at the start.
    assert len(grown) == len(cached)
    assert grown.index[-1].timestamp() == prometheus.anchor
    assert grown.index[0] == cached.index[10]
    sample = loads[WEB].get(MetricKind.CPU)
    assert sample is not None
    assert sample.at == prometheus.anchor  # the time it describes, not `now`


def test_a_new_target_among_known_ones_gets_its_own_history_fetch(prometheus: PromEnv) -> None:
    source = PrometheusSource(settings_for(prometheus))
    source.observe([target(WEB)], prometheus.anchor - 60)
    source.observe([target(WEB), target(BLOG_API)], prometheus.anchor)
    purposes = sorted((r.purpose.value, r.targets) for r in source.last_fetches)
    assert purposes == [("history", 1)] * 3 + [("update", 1)] * 3
    series = source.recorded(BLOG_API, MetricKind.CPU)
    assert series is not None
    assert len(series) == 6 * 60 + 1


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param({"max_points_per_query": 100}, id="points-per-series"),
        pytest.param({"max_answer_points": 200}, id="points-per-answer-two-targets"),
    ],
)
def test_chunked_history_equals_a_single_query(prometheus: PromEnv, limits: dict[str, int]) -> None:
    targets = [target(WEB, kinds=(MetricKind.CPU,)), target(GAPPY, kinds=(MetricKind.CPU,))]
    whole = PrometheusSource(settings_for(prometheus))
    chunked = PrometheusSource(settings_for(prometheus, **limits))
    whole.observe(targets, prometheus.anchor)
    chunked.observe(targets, prometheus.anchor)
    assert [r.queries for r in whole.last_fetches] == [1]
    assert [r.queries for r in chunked.last_fetches] == [4]  # 361 points in chunks of 100
    for ref in (WEB, GAPPY):
        a, b = whole.recorded(ref, MetricKind.CPU), chunked.recorded(ref, MetricKind.CPU)
        assert a is not None
        assert b is not None
        pd.testing.assert_series_equal(a, b)


def test_forgotten_targets_are_dropped_from_the_cache(prometheus: PromEnv) -> None:
    source = PrometheusSource(settings_for(prometheus))
    source.observe([target(WEB), target(BLOG_API)], prometheus.anchor)
    source.observe([target(WEB)], prometheus.anchor)
    assert source.recorded(BLOG_API, MetricKind.CPU) is None
    assert source.recorded(WEB, MetricKind.CPU) is not None


# --- what the cache keeps, and what a tick holds in flight --------------------------------------------


def test_a_history_read_for_a_seed_is_dropped_and_latest_still_served(prometheus: PromEnv) -> None:
    source = PrometheusSource(settings_for(prometheus, cache_s=600.0))  # the quality window
    targets = [target(WEB), target(SHOP_API)]
    first = prometheus.anchor - 600
    source.observe(targets, first)
    seed = source.recorded(WEB, MetricKind.CPU)
    assert seed is not None
    assert len(seed) == 6 * 60 + 1
    # Handed over: the cache now keeps the last ten minutes of it.
    kept = source.recorded(WEB, MetricKind.CPU)
    assert kept is not None
    assert kept.index[0].timestamp() >= first - 600
    assert kept.index[-1] == seed.index[-1]
    loads = source.observe(targets, prometheus.anchor)
    # Served as by a source that keeps every history.
    whole = PrometheusSource(settings_for(prometheus)).observe(targets, prometheus.anchor)
    for t in targets:
        for kind in BUILTIN_KINDS:
            got, expected = loads[t.state.ref].get(kind), whole[t.state.ref].get(kind)
            assert got is not None
            assert expected is not None
            assert (got.at, got.window_s) == (expected.at, expected.window_s)
            assert close_to(got.value, expected.value)
    after = source.recorded(WEB, MetricKind.CPU)
    assert after is not None
    assert after.index[0].timestamp() >= prometheus.anchor - 600
    assert after.index[-1].timestamp() == prometheus.anchor
    # Kinds not read yet keep their whole history for their seed.
    unread = source.recorded(SHOP_API, MetricKind.CPU)
    assert unread is not None
    assert len(unread) == 6 * 60 + 1


_END = 28_000_000 * STEP  # an epoch second on the step grid


def _history(cache: SeriesCache, key: tuple[TargetRef, MetricKind], span_s: float) -> int:
    times = np.arange(_END - int(span_s), _END + 1, STEP, dtype=np.int64)
    cache.store(key, int(times[0]), _END, times, np.linspace(1.0, 2.0, len(times)))
    return len(times)


def test_a_steady_tick_keeps_as_much_whatever_the_history_length() -> None:
    key = (WEB, MetricKind.CPU)
    held: dict[float, int] = {}
    for span_s in (6 * HOURS, 3 * 86400.0):
        cache = SeriesCache(PrometheusSettings(url="http://prometheus:9090", history_s=span_s,
                                               cache_s=600.0, quality_window_s=600.0))  # fmt: skip
        points = _history(cache, key, span_s)
        assert cache.held(key) == points
        seed = cache.recorded(*key)
        assert seed is not None
        assert len(seed) == points
        for tick in range(1, 31):
            now = _END + tick * STEP
            until = cache.fetched_until(key)
            assert until is not None
            times = np.arange(until - STEP, now + 1, STEP, dtype=np.int64)
            cache.store(key, int(times[0]), now, times, np.full(len(times), 3.0))
            sample = cache.latest(WEB, MetricKind.CPU, now, averaged=False)
            assert sample is not None
            assert sample.at == now
        held[span_s] = cache.held(key)
    # The last ten minutes and some room to append to, after three days as after six hours.
    assert held[6 * HOURS] == held[3 * 86400.0]
    assert 11 <= held[3 * 86400.0] <= 2 * 11 + 16


def test_a_series_back_after_a_long_gap_is_missing_not_new_once_its_history_is_dropped() -> None:
    key = (WEB, MetricKind.CPU)
    cache = SeriesCache(PrometheusSettings(url="http://prometheus:9090", history_s=6 * HOURS,
                                           cache_s=600.0, quality_window_s=600.0))  # fmt: skip
    _history(cache, key, 6 * HOURS)
    assert cache.recorded(*key) is not None
    now = _END + 20 * STEP  # gone for eighteen minutes, back for the last two
    back = np.array([now - STEP, now], dtype=np.int64)
    cache.store(key, _END, now, back, np.array([1.0, 1.0]))
    # Eight of the quality window's ten points are missing: a new Deployment would have none to miss.
    assert cache.latest(WEB, MetricKind.CPU, now, averaged=False) is None
    kept = cache.recorded(*key)
    assert kept is not None
    assert kept.index[0].timestamp() == now - STEP  # nothing of the history before the gap is left
    fresh = SeriesCache(cache.settings)
    fresh.store(key, now - 600, now, back, np.array([1.0, 1.0]))
    assert fresh.latest(WEB, MetricKind.CPU, now, averaged=False) is not None


def _totals(records: Sequence[FetchRecord]) -> dict[object, tuple[int, int, int, int]]:
    return {(r.purpose, r.kind, r.selector): (r.targets, r.series, r.points, r.dropped) for r in records}


def test_a_first_read_in_groups_caches_what_one_read_does(prometheus: PromEnv) -> None:
    targets = [target(w.ref) for w in prometheus.dataset.workloads]
    whole = PrometheusSource(settings_for(prometheus))
    # Six hours are 361 points a target: two targets a group.
    grouped = PrometheusSource(settings_for(prometheus, max_points_in_flight=800))
    loads = whole.observe(targets, prometheus.anchor)
    grouped_loads = grouped.observe(targets, prometheus.anchor)
    assert _totals(grouped.last_fetches) == _totals(whole.last_fetches)
    assert {r.groups for r in whole.last_fetches} == {1}
    assert max(r.groups for r in grouped.last_fetches) >= len(targets) // 2
    assert whole.most_points_in_flight > 800
    assert 0 < grouped.most_points_in_flight <= 800
    assert grouped_loads.keys() == loads.keys()
    for t in targets:
        ref = t.state.ref
        for kind in BUILTIN_KINDS:
            a, b = whole.recorded(ref, kind), grouped.recorded(ref, kind)
            assert (a is None) == (b is None), (ref, kind)
            if a is not None and b is not None:
                pd.testing.assert_series_equal(a, b)
            got, expected = (
                grouped_loads.get(ref, LoadSnapshot()).get(kind),
                loads.get(ref, LoadSnapshot()).get(kind),
            )
            assert (got is None) == (expected is None), (ref, kind)
            if got is not None and expected is not None:
                assert close_to(got.value, expected.value)
    # A steady tick: one query per kind and selector, as many as without groups.
    before = (whole.queries_made, grouped.queries_made)
    whole.observe(targets, prometheus.anchor)
    grouped.observe(targets, prometheus.anchor)
    assert grouped.queries_made - before[1] == whole.queries_made - before[0] == 4
    assert {r.groups for r in grouped.last_fetches} == {1}


@pytest.mark.parametrize("background", [pytest.param(False, id="in-the-tick"),
                                        pytest.param(True, id="in-the-background")])  # fmt: skip
def test_a_fleet_s_history_is_read_a_few_targets_a_tick_and_every_target_every_tick(
    prometheus: PromEnv, background: bool
) -> None:
    targets = [target(w.ref) for w in prometheus.dataset.workloads]
    keys = [(t.state.ref, kind) for t in targets for kind in t.config.metrics]
    whole = PrometheusSource(settings_for(prometheus))
    loads = whole.observe(targets, prometheus.anchor)
    # Six hours are 361 points a kind: one target's history a tick.
    paced = PrometheusSource(
        settings_for(prometheus, history_points_per_tick=len(ALL_KINDS) * 361),
        background_history=background,
    )
    waiting = []
    for _ in targets:
        paced_loads = paced.observe(targets, prometheus.anchor)
        assert paced.wait_for_history(30.0)
        # Those whose past is still to come are read from the recent window: all are decided.
        assert paced_loads.keys() == loads.keys()
        for ref, kind in keys:
            got = paced_loads.get(ref, LoadSnapshot()).get(kind)
            expected = loads.get(ref, LoadSnapshot()).get(kind)
            assert (got is None) == (expected is None), (ref, kind)
            if got is not None and expected is not None:
                assert close_to(got.value, expected.value)
        waiting.append(sum(paced.pending(ref, kind) for ref, kind in keys))
    assert waiting == [len(keys) - len(ALL_KINDS) * (n + 1) for n in range(len(targets))]
    for ref, kind in keys:
        a, b = whole.recorded(ref, kind), paced.recorded(ref, kind)
        assert (a is None) == (b is None), (ref, kind)
        if a is not None and b is not None:
            pd.testing.assert_series_equal(a, b)
    paced.close()
    whole.close()


HISTORY_QUERY = 'pod=~"(?:'  # only a history read confines its query to the targets' pods


def test_a_slow_history_read_in_the_background_never_holds_the_tick(prometheus: PromEnv) -> None:
    targets = [target(WEB), target(SHOP_API)]
    keys = [(t.state.ref, kind) for t in targets for kind in t.config.metrics]
    expected = PrometheusSource(settings_for(prometheus)).observe(targets, prometheus.anchor)
    with FaultProxy(prometheus.url) as proxy:
        # The history is answered an hour late, far beyond the transport's timeout: a tick that
        # waited for it would fail.
        proxy.set(Fault.SLOW, match=HISTORY_QUERY, delay_s=3600.0)
        source = PrometheusSource(
            replace(settings_for(prometheus), url=proxy.url, timeout_s=60.0),
            background_history=True,
        )
        loads = source.observe(targets, prometheus.anchor)
        assert loads.keys() == expected.keys()
        for ref, kind in keys:
            got, want = loads[ref].get(kind), expected[ref].get(kind)
            assert got is not None
            assert want is not None
            assert close_to(got.value, want.value), (ref, kind)
        assert all(source.pending(ref, kind) for ref, kind in keys)
        assert any(HISTORY_QUERY in q for q in proxy.queries)
    # The proxy gone, the read it held fails; the targets stay pending, for a later tick.
    assert source.wait_for_history(30.0)
    assert all(source.pending(ref, kind) for ref, kind in keys)
    source.close()


def test_a_failed_history_read_in_the_background_costs_no_tick_and_is_asked_again(
    prometheus: PromEnv,
) -> None:
    targets = [target(WEB), target(BLOG_API)]
    keys = [(t.state.ref, kind) for t in targets for kind in t.config.metrics]
    whole = PrometheusSource(settings_for(prometheus))
    expected = whole.observe(targets, prometheus.anchor)
    with FaultProxy(prometheus.url) as proxy:
        proxy.set(Fault.ERROR, match=HISTORY_QUERY)
        source = PrometheusSource(
            replace(settings_for(prometheus), url=proxy.url), background_history=True
        )
        loads = source.observe(targets, prometheus.anchor)
        assert source.wait_for_history(30.0)
        assert loads.keys() == expected.keys()
        assert proxy.faulted >= 1
        assert all(source.pending(ref, kind) for ref, kind in keys)
        proxy.heal()
        source.observe(targets, prometheus.anchor)  # submits the share again
        assert source.wait_for_history(30.0)
        assert not any(source.pending(ref, kind) for ref, kind in keys)
        for ref, kind in keys:
            got, want = source.recorded(ref, kind), whole.recorded(ref, kind)
            assert got is not None
            assert want is not None
            pd.testing.assert_series_equal(got, want)
        source.close()
    whole.close()


def test_a_background_history_is_stored_only_for_a_target_still_asked_for_with_its_selector() -> None:
    settings = PrometheusSettings(url="http://prometheus:9090", history_s=6 * HOURS,
                                  cache_s=600.0, quality_window_s=600.0)  # fmt: skip
    cache = SeriesCache(settings)
    cpu, requests = (WEB, MetricKind.CPU), (WEB, MetricKind.REQUESTS)
    times = np.arange(_END - 6 * 3600, _END + 1, STEP, dtype=np.int64)
    values = np.linspace(1.0, 2.0, len(times))
    cache.keep_only({requests: CUSTOM})
    # Dropped while it was read: not stored.
    assert not cache.store_history(cpu, None, int(times[0]), _END, times, values)
    assert not cache.has_history(cpu)
    # Read with a selector the workload no longer names: not stored either.
    assert not cache.store_history(requests, None, int(times[0]), _END, times, values)
    assert not cache.has_history(requests)
    assert cache.store_history(requests, CUSTOM, int(times[0]), _END, times, values)
    assert cache.has_history(requests)
    # Stored once: a second answer for the same history changes nothing.
    assert not cache.store_history(requests, CUSTOM, int(times[0]), _END, times, values * 2)


def test_a_background_history_ending_before_the_tick_s_points_keeps_them() -> None:
    settings = PrometheusSettings(url="http://prometheus:9090", history_s=6 * HOURS,
                                  cache_s=600.0, quality_window_s=600.0)  # fmt: skip
    cache = SeriesCache(settings)
    key = (WEB, MetricKind.CPU)
    cache.keep_only({key: None})
    # Ticks read the recent window while the history, asked for at _END, was on its way.
    now = _END + 5 * STEP
    recent = np.arange(_END - 600, now + 1, STEP, dtype=np.int64)
    cache.store(key, int(recent[0]), now, recent, np.full(len(recent), 7.0))
    history = np.arange(_END - 6 * 3600, _END + 1, STEP, dtype=np.int64)
    assert cache.store_history(key, None, int(history[0]), _END, history, np.ones(len(history)))
    sample = cache.latest(WEB, MetricKind.CPU, now, averaged=False)
    assert sample is not None
    assert (sample.at, sample.value) == (now, 7.0)
    seed = cache.recorded(*key)
    assert seed is not None
    assert seed.index[0].timestamp() == now - 6 * 3600  # the last `history_s`, as always
    assert seed.index[-1].timestamp() == now
    assert not seed.isna().any()
    assert (seed.loc[: pd.Timestamp(_END, unit="s", tz="UTC")] == 1.0).all()
    assert (seed.iloc[-5:] == 7.0).all()
    assert cache.fetched_until(key) == now


def test_a_rejected_selector_read_in_groups_costs_only_its_targets(prometheus: PromEnv) -> None:
    bad = parse_selector('app_hits_total{handler=~"/checkout{1001}"}')
    source = PrometheusSource(settings_for(prometheus, max_points_in_flight=400))  # a target a group
    targets = [target(CUSTOM_REF, selector=bad), target(BLOG_API, selector=bad), target(WEB)]
    loads = source.observe(targets, prometheus.anchor)
    assert [(r.ref, r.kind) for r in source.rejected()] == [
        (CUSTOM_REF, MetricKind.REQUESTS),
        (BLOG_API, MetricKind.REQUESTS),
    ]
    assert loads[WEB].get(MetricKind.REQUESTS) is not None
    assert loads[BLOG_API].get(MetricKind.CPU) is not None
    assert all(r.selector != bad for r in source.last_fetches)


# --- history series ---------------------------------------------------------------------------------


def test_history_is_a_regular_utc_series(
    observed: tuple[PrometheusSource, dict[TargetRef, LoadSnapshot]], prometheus: PromEnv
) -> None:
    series = observed[0].recorded(GAPPY, MetricKind.CPU)
    assert series is not None
    index = series.index
    assert isinstance(index, pd.DatetimeIndex)
    assert str(index.tz) == "UTC"
    assert index.freq == pd.Timedelta(seconds=STEP)
    assert index.is_monotonic_increasing
    assert index.is_unique
    assert index[-1].timestamp() == prometheus.anchor
    assert len(series) == 6 * 60 + 1
    # The 30-minute gap stays a gap (rate() bridges its first two minutes and needs two samples after
    # it); nothing else is missing.
    gap_start = prometheus.anchor - 3 * HOURS
    missing = series[series.isna()]
    assert 25 <= len(missing) <= 30
    assert all(gap_start <= t.timestamp() <= gap_start + 1800 for t in missing.index)


def test_regular_series_interpolates_short_gaps_only() -> None:
    step = 60
    times = np.array([0, 60, 240, 300, 660, 720], dtype=np.int64) + 1_800_000_000  # 2 and 5 missing
    values = np.array([1.0, 2.0, 5.0, 6.0, 12.0, 13.0])
    series = regular_series(times, values, step)
    assert len(series) == 13
    assert pd.DatetimeIndex(series.index).freq == pd.Timedelta(seconds=step)
    assert series.iloc[:6].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert series.iloc[6:11].isna().all()
    assert series.iloc[11:].tolist() == [12.0, 13.0]


def test_fetch_history_serves_a_backtest_without_touching_the_cache(prometheus: PromEnv) -> None:
    source = PrometheusSource(settings_for(prometheus))
    start, end = prometheus.anchor - 2 * HOURS, prometheus.anchor
    series = source.fetch_history(WEB, ALL_KINDS, start, end)
    assert set(series) == set(BUILTIN_KINDS)
    for kind, values in series.items():
        assert len(values) == 121
        assert values.index[0].timestamp() == start
        assert _compare_history(values, prometheus.dataset, WEB, kind) == 121
    assert all(r.purpose is FetchPurpose.BACKTEST and r.series == 1 for r in source.last_fetches)
    assert source.recorded(WEB, MetricKind.CPU) is None
    custom = source.fetch_history(CUSTOM_REF, [MetricKind.REQUESTS], start, end, selector=CUSTOM)
    assert (
        _compare_history(
            custom[MetricKind.REQUESTS], prometheus.dataset, CUSTOM_REF, MetricKind.REQUESTS
        )
        == 121
    )
    assert source.fetch_history(TargetRef("shop", "nothing"), ALL_KINDS, start, end) == {}


# --- failures ---------------------------------------------------------------------------------------


@pytest.fixture
def own_server(prometheus: PromEnv, tmp_path: Path) -> Iterator[PromServer]:
    """A private server on a copy of the data, which a test may stop, freeze and restart."""
    server = PromServer(PromServer.copy_blocks(prometheus.server.tsdb, tmp_path / "tsdb"))
    server.start()
    yield server
    server.stop()


def test_stopped_server_raises_after_retries_and_the_next_tick_recovers(
    prometheus: PromEnv, own_server: PromServer
) -> None:
    sleeps = Sleeps()
    settings = settings_for(prometheus, url=own_server.url, retries=2, backoff_s=0.5, parallel_queries=1)
    source = PrometheusSource(settings, sleep=sleeps)
    targets = [target(WEB), target(BLOG_API)]
    assert set(source.observe(targets, prometheus.anchor - 120)) == {WEB, BLOG_API}
    own_server.stop()
    before = source.queries_made
    with pytest.raises(PrometheusUnreachable) as raised:
        source.observe(targets, prometheus.anchor - 60)
    assert isinstance(raised.value, MetricsUnavailable)
    assert raised.value.temporary
    # One line an operator reads every tick: the server and the cause, not the query's URL.
    message = str(raised.value)
    assert message.startswith(f"cannot reach Prometheus at {own_server.url}: ")
    assert "Connection refused" in message
    assert "query" not in message, message
    assert len(message) < 200, message
    assert sleeps.calls == [0.5, 1.0]
    assert source.queries_made - before == 3
    own_server.start()
    loads = source.observe(targets, prometheus.anchor)
    assert set(loads) == {WEB, BLOG_API}
    cpu = loads[WEB].get(MetricKind.CPU)
    assert cpu is not None
    assert cpu.at == prometheus.anchor
    assert close_to(
        cpu.value, prometheus.dataset.expected(WEB, MetricKind.CPU, prometheus.anchor, WINDOW) or -1
    )
    # The failed tick's window is fetched by the next one: nothing is missing in between.
    series = source.recorded(WEB, MetricKind.CPU)
    assert series is not None
    assert series.iloc[-3:].notna().all()


def test_frozen_server_raises_a_timeout(prometheus: PromEnv, own_server: PromServer) -> None:
    source = PrometheusSource(settings_for(prometheus, url=own_server.url, timeout_s=0.3))
    own_server.pause()
    try:
        with pytest.raises(PrometheusTimeout) as raised:
            source.observe([target(WEB)], prometheus.anchor)
        assert "query" not in str(raised.value), raised.value
        assert len(str(raised.value)) < 200, raised.value
    finally:
        own_server.resume()
    assert WEB in source.observe([target(WEB)], prometheus.anchor)


def test_rejected_custom_selector_costs_only_its_targets(prometheus: PromEnv) -> None:
    # Built directly: the annotation grammar refuses lookaheads, which RE2 cannot run.
    bad = SeriesSelector("app_hits_total", (LabelMatcher("handler", MatchOp.REGEX, "(?=/)checkout"),))
    source = PrometheusSource(settings_for(prometheus))
    loads = source.observe([target(CUSTOM_REF, selector=bad), target(WEB)], prometheus.anchor)
    assert loads[CUSTOM_REF].get(MetricKind.REQUESTS) is None
    assert loads[CUSTOM_REF].get(MetricKind.CPU) is not None
    assert loads[WEB].get(MetricKind.REQUESTS) is not None
    assert [(r.ref, r.kind, r.key, r.value) for r in source.rejected()] == [
        (
            CUSTOM_REF,
            MetricKind.REQUESTS,
            PREFIX + "requests-metric",
            'app_hits_total{handler=~"(?=/)checkout"}',
        )
    ]
    with pytest.raises(PrometheusRejected) as raised:
        source.fetch_history(CUSTOM_REF, [MetricKind.REQUESTS], 0.0, prometheus.anchor, selector=bad)
    assert raised.value.status == 400
    assert not raised.value.temporary


def test_a_rejected_selector_is_named_per_target_as_written(prometheus: PromEnv) -> None:
    # RE2 refuses a repeat count above 1000; the grammar leaves that to Prometheus. Two Deployments
    # write the same selector with other blanks: one query, each named as its owner wrote it.
    written = (
        'app_hits_total{handler=~"/checkout{1001}"}',
        'app_hits_total{ handler =~ "/checkout{1001}" }',
    )
    first, second = (parse_selector(text) for text in written)
    assert first == second
    source = PrometheusSource(settings_for(prometheus))
    targets = [target(CUSTOM_REF, selector=first), target(BLOG_API, selector=second), target(WEB)]
    loads = source.observe(targets, prometheus.anchor)
    rejected = source.rejected()
    key = PREFIX + "requests-metric"
    assert [(r.ref, r.kind, r.key, r.value) for r in rejected] == [
        (CUSTOM_REF, MetricKind.REQUESTS, key, written[0]),
        (BLOG_API, MetricKind.REQUESTS, key, written[1]),
    ]
    # Prometheus' words, without the position in a query its owner never sees.
    assert rejected[0].error.startswith("parse error: ")
    assert "invalid repeat count" in rejected[0].error
    assert loads[WEB].get(MetricKind.REQUESTS) is not None
    assert loads[BLOG_API].get(MetricKind.CPU) is not None
    source.observe([target(CUSTOM_REF), target(BLOG_API), target(WEB)], prometheus.anchor)
    assert source.rejected() == (), "as of the latest observe"


def test_unreachable_url_never_leaks_a_requests_error(prometheus: PromEnv) -> None:
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    source = PrometheusSource(
        settings_for(prometheus, url=url, retries=1, parallel_queries=1), sleep=sleeps
    )
    with pytest.raises(PrometheusUnreachable):
        source.observe([target(WEB)], prometheus.anchor)
    assert sleeps.calls == [0.5]


def test_an_outage_stops_the_parallel_queries_not_yet_started(prometheus: PromEnv) -> None:
    sleeps = Sleeps()
    url = f"http://127.0.0.1:{free_port()}"
    source = PrometheusSource(
        settings_for(prometheus, url=url, retries=2, parallel_queries=2), sleep=sleeps
    )
    with pytest.raises(PrometheusUnreachable):
        source.observe([target(WEB)], prometheus.anchor)  # three queries, two at a time
    # However the two workers interleave, the first failure to exhaust its retries stops the queries
    # not yet started: at most two queries with three attempts each, never all three.
    assert 3 <= source.queries_made <= 6
    assert sorted(set(sleeps.calls)) == [0.5, 1.0]


# --- HTTP statuses and credentials (a scripted stand-in server) ----------------------------------------

_EMPTY = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'


class Scripted:
    """A stand-in HTTP server that answers query_range with scripted statuses, then success, and
    records the Authorization header of every request. Only statuses a real Prometheus cannot be made
    to return on demand are tested this way."""

    def __init__(self, script: list[tuple[int, bytes]]) -> None:
        self.script = list(script)
        self.auth: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.auth.append(self.headers.get("Authorization", ""))
                status, body = owner.script.pop(0) if owner.script else (200, _EMPTY)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[tuple[int, bytes]]], Scripted]]:
    servers: list[Scripted] = []

    def make(script: list[tuple[int, bytes]]) -> Scripted:
        servers.append(Scripted(script))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


_ERROR = b'{"status":"error","errorType":"bad_data","error":"scripted"}'


@pytest.mark.parametrize(
    ("script", "error", "queries", "sleeps"),
    [
        pytest.param([(400, _ERROR)], PrometheusRejected, 1, [], id="bad-query-not-retried"),
        pytest.param([(422, _ERROR)], PrometheusRejected, 1, [], id="unprocessable-not-retried"),
        pytest.param([(503, _ERROR)] * 3, PrometheusServerError, 3, [0.5, 1.0], id="unavailable"),
        pytest.param([(500, b"<html>oops</html>")] * 3, PrometheusServerError, 3, [0.5, 1.0],
                     id="server-error-retried"),
        pytest.param([(200, b"<html>proxy login</html>")] * 3, PrometheusServerError, 3, [0.5, 1.0],
                     id="not-json-retried"),
        pytest.param([(200, b'{"status":"success"}')] * 3, PrometheusServerError, 3, [0.5, 1.0],
                     id="not-a-query-result"),
        pytest.param([(403, _ERROR)] * 3, PrometheusRejected, 3, [0.5, 1.0], id="forbidden-re-read"),
        pytest.param([(429, _ERROR), (502, _ERROR)], None, 5, [0.5, 1.0], id="overloaded-then-fine"),
    ],
)  # fmt: skip
def test_http_failures_raise_typed_errors(
    scripted: Callable[[list[tuple[int, bytes]]], Scripted],
    script: list[tuple[int, bytes]],
    error: type[Exception] | None,
    queries: int,
    sleeps: list[float],
) -> None:
    server = scripted(script)
    recorded = Sleeps()
    settings = PrometheusSettings(url=server.url, retries=2, backoff_s=0.5, parallel_queries=1)
    source = PrometheusSource(settings, sleep=recorded)
    if error is None:
        assert source.observe([target(WEB)], 1_800_000_000.0) == {}  # no data, but no error
    else:
        with pytest.raises(error) as raised:
            source.observe([target(WEB)], 1_800_000_000.0)
        assert isinstance(raised.value, MetricsUnavailable)
    assert source.queries_made == queries
    assert recorded.calls == sleeps


def test_a_rejection_keeps_prometheus_words_short(
    scripted: Callable[[list[tuple[int, bytes]]], Scripted],
) -> None:
    words = "1:57: parse error: " + "x" * 500
    body = json.dumps({"status": "error", "errorType": "bad_data", "error": words}).encode()
    server = scripted([(200, _EMPTY), (400, body)])
    source = PrometheusSource(PrometheusSettings(url=server.url, parallel_queries=1))
    source.observe([target(CUSTOM_REF, kinds=(MetricKind.CPU, MetricKind.REQUESTS))], 1_800_000_000.0)
    [rejection] = source.rejected()
    assert rejection.value == 'app_hits_total{handler="/checkout"}'
    assert rejection.error == ("parse error: " + "x" * 500)[:199] + "…"


def test_a_rotated_bearer_token_is_read_again(
    scripted: Callable[[list[tuple[int, bytes]]], Scripted], tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    server = scripted([(401, _ERROR)])
    settings = PrometheusSettings(url=server.url, bearer_token_file=token, parallel_queries=1)

    # The token rotates while the source waits to retry the refused query.
    def rotate(_: float) -> None:
        token.write_text("two-rotated\n")

    source = PrometheusSource(settings, sleep=rotate)
    source.observe([target(WEB, kinds=(MetricKind.CPU,))], 1_800_000_000.0)
    assert server.auth == ["Bearer one", "Bearer two-rotated"]
    # A changed file is picked up without waiting for a refusal.
    token.write_text("three-rotated-again\n")
    source.observe([target(WEB, kinds=(MetricKind.CPU,))], 1_800_000_060.0)
    assert server.auth[-1] == "Bearer three-rotated-again"


# --- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"url": "localhost:9090"}, id="url-without-scheme"),
        pytest.param({"step_s": 0}, id="zero-step"),
        pytest.param({"rate_window": "2 minutes"}, id="bad-rate-window"),
        pytest.param({"retries": -1}, id="negative-retries"),
        pytest.param({"timeout_s": 0.0}, id="zero-timeout"),
        pytest.param({"max_missing_share": 1.0}, id="missing-share-one"),
        pytest.param({"max_points_per_query": 20_000}, id="beyond-prometheus-point-limit"),
        pytest.param({"default_requests_metric": "sum(x)"}, id="free-promql-as-default"),
        pytest.param({"cache_s": 60.0}, id="cache-shorter-than-quality-window"),
        pytest.param({"max_points_in_flight": 1}, id="no-point-in-flight"),
    ],
)
def test_invalid_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        replace(PrometheusSettings(url="http://prometheus:9090"), **changes)  # type: ignore[arg-type]


def test_default_settings() -> None:
    settings = PrometheusSettings(url="http://prometheus:9090")
    assert settings.step_s == 60
    assert settings.rate_window == "2m"
    assert settings.history_s == 3 * 86400
    # Once seeded, a target keeps its last hour: the quality window with room.
    assert settings.quality_window_s <= settings.cache_s <= 3600
    assert settings.default_requests_selector == SeriesSelector("http_requests_total")
