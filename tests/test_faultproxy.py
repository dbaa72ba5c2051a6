"""`FaultProxy` in front of the real Prometheus of `tests.promserver`, queried with the real
`prometheus_api_client.PrometheusConnect`: what a client sees for each fault, that `match` limits a
fault to the queries it matches, that a healed proxy answers exactly as Prometheus does, that form
bodies are forwarded and read, and the request, fault and query counts."""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from tests.faultproxy import Fault, FaultProxy
from tests.promserver import PromEnv

CPU = 'sum by (namespace) (rate(container_cpu_usage_seconds_total{container="app"}[2m]))'
MEMORY = 'sum by (namespace) (container_memory_working_set_bytes{container="app", namespace!="shop"})'
SHOP_CPU = 'sum(rate(container_cpu_usage_seconds_total{container="app", namespace="shop"}[2m]))'
BLOG_CPU = 'sum(rate(container_cpu_usage_seconds_total{container="app", namespace="blog"}[2m]))'
HOUR = 3600.0
STEP = 60


def connect(url: str, timeout_s: float = 5.0, method: str = "GET") -> PrometheusConnect:
    # No retries: the client's default retries 503s and resets with a backoff of seconds.
    return PrometheusConnect(url=url, retry=Retry(total=0, read=False), timeout=timeout_s, method=method)


def range_query(client: PrometheusConnect, env: PromEnv, query: str = CPU) -> list[Any]:
    result: list[Any] = client.custom_query_range(
        query,
        datetime.fromtimestamp(env.anchor - HOUR, tz=UTC),
        datetime.fromtimestamp(env.anchor, tz=UTC),
        str(STEP),
    )
    return result


def instant_query(client: PrometheusConnect, env: PromEnv, query: str = CPU) -> list[Any]:
    result: list[Any] = client.custom_query(query, params={"time": str(env.anchor)})
    return result


def raw(url: str, path: str, params: dict[str, str], form: bool = False) -> dict[str, Any]:
    """The whole JSON answer (not just `data.result`), by GET or by a form-encoded POST."""
    encoded = urllib.parse.urlencode(params)
    if form:
        request = urllib.request.Request(url + path, data=encoded.encode(), method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    else:
        request = urllib.request.Request(f"{url}{path}?{encoded}")
    with urllib.request.urlopen(request, timeout=5) as answer:
        payload: dict[str, Any] = json.load(answer)
    return payload


def labels(result: list[Any]) -> list[dict[str, str]]:
    return [series["metric"] for series in result]


@pytest.fixture
def proxy(prometheus: PromEnv) -> Iterator[FaultProxy]:
    with FaultProxy(prometheus.url) as running:
        yield running


@pytest.fixture(scope="module")
def upstream(prometheus: PromEnv) -> Iterator[PrometheusConnect]:
    client = connect(prometheus.url)
    yield client
    client.close()


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[PrometheusConnect]:
    through = connect(proxy.url)
    yield through
    through.close()


def test_healed_proxy_answers_as_upstream(
    prometheus: PromEnv, proxy: FaultProxy, client: PrometheusConnect, upstream: PrometheusConnect
) -> None:
    expected_range = range_query(upstream, prometheus)
    expected_instant = instant_query(upstream, prometheus)
    assert len(expected_range) >= 3  # shop, blog, bulk

    assert range_query(client, prometheus) == expected_range
    assert instant_query(client, prometheus) == expected_instant
    proxy.set(Fault.EMPTY)
    assert range_query(client, prometheus) == []
    proxy.heal()
    assert proxy.fault is None
    assert range_query(client, prometheus) == expected_range
    assert (proxy.requests, proxy.faulted) == (4, 1)


def test_error_raises_the_client_exception(
    prometheus: PromEnv, proxy: FaultProxy, client: PrometheusConnect
) -> None:
    proxy.set(Fault.ERROR)
    with pytest.raises(PrometheusApiClientException, match=r"HTTP Status Code 503") as caught:
        range_query(client, prometheus)
    assert '"errorType": "unavailable"' in str(caught.value)
    with pytest.raises(urllib.error.HTTPError) as http_error:
        raw(proxy.url, "/api/v1/query", {"query": CPU})
    assert http_error.value.code == 503
    body = json.loads(http_error.value.read())
    assert (body["status"], body["errorType"]) == ("error", "unavailable")


def test_bad_query_answers_400_bad_data(
    prometheus: PromEnv, proxy: FaultProxy, client: PrometheusConnect
) -> None:
    proxy.set(Fault.BAD_QUERY)
    with pytest.raises(PrometheusApiClientException, match=r"HTTP Status Code 400"):
        instant_query(client, prometheus)
    with pytest.raises(urllib.error.HTTPError) as http_error:
        raw(proxy.url, "/api/v1/query", {"query": CPU})
    assert http_error.value.code == 400
    body = json.loads(http_error.value.read())
    assert (body["status"], body["errorType"]) == ("error", "bad_data")
    assert "parse error" in body["error"]


def test_empty_gives_no_series_of_the_upstream_type(
    prometheus: PromEnv, proxy: FaultProxy, client: PrometheusConnect
) -> None:
    proxy.set(Fault.EMPTY)
    assert range_query(client, prometheus) == []
    assert instant_query(client, prometheus) == []
    instant = raw(proxy.url, "/api/v1/query", {"query": CPU, "time": str(prometheus.anchor)})
    ranged = raw(
        proxy.url,
        "/api/v1/query_range",
        {"query": CPU, "start": str(prometheus.anchor - HOUR), "end": str(prometheus.anchor),
         "step": str(STEP)},
    )  # fmt: skip
    assert instant == {"status": "success", "data": {"resultType": "vector", "result": []}}
    assert ranged == {"status": "success", "data": {"resultType": "matrix", "result": []}}


def test_nan_replaces_every_value_and_keeps_series_and_times(
    prometheus: PromEnv, proxy: FaultProxy, client: PrometheusConnect, upstream: PrometheusConnect
) -> None:
    expected = range_query(upstream, prometheus)
    proxy.set(Fault.NAN)
    result = range_query(client, prometheus)
    assert labels(result) == labels(expected)
    for got, want in zip(result, expected, strict=True):
        assert [t for t, _ in got["values"]] == [t for t, _ in want["values"]]
        assert all(math.isnan(float(v)) for _, v in got["values"])
    (instant,) = instant_query(client, prometheus, SHOP_CPU)
    assert math.isnan(float(instant["value"][1]))


def test_stale_removes_the_recent_points(
    prometheus: PromEnv, proxy: FaultProxy, client: PrometheusConnect, upstream: PrometheusConnect
) -> None:
    expected = range_query(upstream, prometheus)
    cutoff = prometheus.anchor - 600
    assert any(t > cutoff for series in expected for t, _ in series["values"])

    proxy.set(Fault.STALE, stale_s=600)
    result = range_query(client, prometheus)
    assert labels(result) == labels(expected)
    for got, want in zip(result, expected, strict=True):
        assert got["values"] == [point for point in want["values"] if point[0] <= cutoff]
        assert got["values"]
    # An instant vector carries the evaluation time: at the anchor, every series is too recent.
    assert instant_query(client, prometheus) == []
    # Series with no point older than the cutoff are left out altogether.
    proxy.set(Fault.STALE, stale_s=2 * HOUR)
    assert range_query(client, prometheus) == []


def test_partial_drops_only_the_matching_series(
    prometheus: PromEnv, proxy: FaultProxy, client: PrometheusConnect, upstream: PrometheusConnect
) -> None:
    expected = range_query(upstream, prometheus)
    assert {"namespace": "shop"} in labels(expected)
    proxy.set(Fault.PARTIAL, drop={"namespace": "shop"})
    result = range_query(client, prometheus)
    assert result == [s for s in expected if s["metric"] != {"namespace": "shop"}]
    assert len(result) == len(expected) - 1
    assert instant_query(client, prometheus, SHOP_CPU) == instant_query(
        upstream, prometheus, SHOP_CPU
    )  # no namespace label on that series: nothing to drop


def test_slow_delays_the_answer(
    prometheus: PromEnv, proxy: FaultProxy, client: PrometheusConnect, upstream: PrometheusConnect
) -> None:
    expected = instant_query(upstream, prometheus)
    proxy.set(Fault.SLOW, delay_s=0.3)
    began = time.monotonic()
    result = instant_query(client, prometheus)
    assert time.monotonic() - began >= 0.3
    assert result == expected


def test_slow_beyond_the_client_timeout_times_out(prometheus: PromEnv, proxy: FaultProxy) -> None:
    proxy.set(Fault.SLOW, delay_s=2.0)
    impatient = connect(proxy.url, timeout_s=0.2)
    with pytest.raises(requests.Timeout):
        instant_query(impatient, prometheus)
    impatient.close()


def test_reset_raises_a_connection_error_and_healing_recovers(
    prometheus: PromEnv, proxy: FaultProxy, client: PrometheusConnect, upstream: PrometheusConnect
) -> None:
    instant_query(client, prometheus)  # a pooled keep-alive connection for the reset to hit
    proxy.set(Fault.RESET)
    with pytest.raises(requests.ConnectionError):
        instant_query(client, prometheus)
    with pytest.raises(requests.ConnectionError):
        range_query(client, prometheus)
    proxy.heal()
    assert instant_query(client, prometheus) == instant_query(upstream, prometheus)
    assert proxy.faulted == 2


def test_match_restricts_the_fault_to_matching_queries(
    prometheus: PromEnv, proxy: FaultProxy, client: PrometheusConnect, upstream: PrometheusConnect
) -> None:
    proxy.set(Fault.EMPTY, match="container_cpu_usage_seconds_total")
    assert range_query(client, prometheus, CPU) == []
    memory = range_query(client, prometheus, MEMORY)
    assert memory == range_query(upstream, prometheus, MEMORY)
    assert memory

    # A compiled pattern is searched for: break one namespace's query only.
    proxy.set(Fault.ERROR, match=re.compile(r'namespace="shop"'))
    with pytest.raises(PrometheusApiClientException, match="503"):
        instant_query(client, prometheus, SHOP_CPU)
    assert instant_query(client, prometheus, BLOG_CPU) == instant_query(upstream, prometheus, BLOG_CPU)
    # A plain string is a substring, not a pattern: its brackets and braces are literal.
    proxy.set(Fault.ERROR, match='{container="app", namespace="blog"}[2m]')
    with pytest.raises(PrometheusApiClientException, match="503"):
        instant_query(client, prometheus, BLOG_CPU)
    instant_query(client, prometheus, SHOP_CPU)
    assert proxy.faulted == 3


def test_post_forms_are_forwarded_and_matched(
    prometheus: PromEnv, proxy: FaultProxy, upstream: PrometheusConnect
) -> None:
    expected = instant_query(upstream, prometheus)
    params = {"query": CPU, "time": str(prometheus.anchor)}
    posted = raw(proxy.url, "/api/v1/query", params, form=True)
    assert posted["data"]["result"] == expected
    # The client's POST mode keeps its parameters in the URL; both places are read.
    poster = connect(proxy.url, method="POST")
    assert instant_query(poster, prometheus) == expected

    proxy.set(Fault.EMPTY, match="container_cpu_usage_seconds_total")
    assert raw(proxy.url, "/api/v1/query", params, form=True)["data"]["result"] == []
    assert instant_query(poster, prometheus) == []
    poster.close()
    assert proxy.queries == [CPU] * 4


def test_counts_requests_faults_and_queries(
    prometheus: PromEnv, proxy: FaultProxy, client: PrometheusConnect
) -> None:
    proxy.set(Fault.NAN, match=MEMORY)
    range_query(client, prometheus, CPU)
    range_query(client, prometheus, MEMORY)
    with urllib.request.urlopen(f"{proxy.url}/-/ready", timeout=5) as ready:
        assert ready.status == 200  # no query: forwarded, never matched, not logged
    assert (proxy.requests, proxy.faulted) == (3, 1)
    assert proxy.queries == [CPU, MEMORY]


def test_set_rejects_inconsistent_options(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="drop"):
        proxy.set(Fault.PARTIAL)
    with pytest.raises(ValueError, match="PARTIAL only"):
        proxy.set(Fault.EMPTY, drop={"namespace": "shop"})
    assert proxy.fault is None


def test_stopped_proxy_refuses_connections(prometheus: PromEnv) -> None:
    with FaultProxy(prometheus.url) as proxy:
        url = proxy.url
        client = connect(url)
        instant_query(client, prometheus)  # leaves an idle keep-alive connection in the pool
    with pytest.raises(RuntimeError, match="not running"):
        _ = proxy.url
    with pytest.raises(requests.ConnectionError):
        instant_query(client, prometheus)
    client.close()
