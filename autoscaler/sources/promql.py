"""PromQL for the Prometheus metrics source, built by pure functions (no I/O).

One tick asks one query per metric kind for all targets, grouped `by (namespace, deployment)`; kinds
whose series each workload names (request rates) add one query per distinct selector. Every query is
confined with `namespace=~"…"` to the namespaces of the targets it serves, label values taken from
the cluster are escaped, and the only user text that reaches a query is a selector validated by
`autoscaler.selectors` (a metric name and label matchers, never free PromQL). Which series measure a
kind, and whether its load is their rate or their value, is `autoscaler.metrics`' table.

What a cluster must provide for each metric kind:

* cpu (cores): cAdvisor through the kubelet, `container_cpu_usage_seconds_total` with `namespace`, `pod`
  and `container` labels;
* memory (bytes): cAdvisor's `container_memory_working_set_bytes`, same labels;
* requests (req/s): an application counter (default `http_requests_total`) with `namespace` and `pod`
  labels of the pod that serves, as a ServiceMonitor or PodMonitor of the Prometheus Operator produces;
* all kinds: kube-state-metrics' `kube_pod_owner` and `kube_replicaset_owner`, which map pods to their
  Deployment through the ReplicaSet;
* Prometheus 2.33 or later (or a compatible server), for the `@` modifier.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autoscaler.metrics import METRICS, MetricKind, Signal
from autoscaler.model import Target, TargetRef
from autoscaler.selectors import LabelMatcher, SeriesSelector

__all__ = [
    "QueryGroup",
    "escape_regex_alternation",
    "escape_string",
    "format_selector",
    "group_targets",
    "load_query",
]

# Characters RE2 gives a meaning to outside a character class; escaped with a backslash, which RE2
# accepts before any ASCII punctuation.
_REGEX_META = frozenset("\\.+*?()|[]{}^$")
# Prometheus' default lookback: a series counts at a step if it has a sample this recent.
_LOOKBACK_S = 300
# Pod names start with this much of their Deployment's name (generated names are cut to 58 characters).
_POD_PREFIX = 40


def escape_string(value: str) -> str:
    """`value` as the inside of a double-quoted PromQL string, e.g. for `label="…"`."""
    out: list[str] = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _escape_regex(value: str) -> str:
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in value)


def escape_regex_alternation(values: Iterable[str]) -> str:
    """The inside of `label=~"…"` matching exactly the given values and nothing else (Prometheus
    anchors regexes); sorted and de-duplicated so the same set always gives the same query."""
    unique = sorted(set(values))
    if not unique:
        raise ValueError("an alternation needs at least one value")
    return escape_string("|".join(_escape_regex(v) for v in unique))


def format_selector(metric: str, matchers: Sequence[str]) -> str:
    """`metric{m1,m2}` from already formatted matchers."""
    return f"{metric}{{{','.join(matchers)}}}" if matchers else metric


def _format_matcher(matcher: LabelMatcher) -> str:
    return f'{matcher.name}{matcher.op.value}"{escape_string(matcher.value)}"'


@dataclass(frozen=True, slots=True)
class QueryGroup:
    """Targets served by one query: one group per metric kind, and for a kind whose series each
    workload names, one per distinct selector. `selector` is None for kinds with series of their own."""

    kind: MetricKind
    selector: SeriesSelector | None
    refs: tuple[TargetRef, ...]


def group_targets(targets: Sequence[Target], default: SeriesSelector) -> tuple[QueryGroup, ...]:
    """Group targets by what has to be queried for them, in a stable order (the table's kinds in
    turn, selectors in order of first appearance); a target is in a kind's group only if it uses
    that kind. `default` is the selector of targets that name none."""
    by_key: dict[tuple[MetricKind, SeriesSelector | None], list[TargetRef]] = {
        (kind, None): [] for kind, spec in METRICS.items() if spec.series is not None
    }
    for target in targets:
        for kind in target.config.metrics:
            selector = None
            if METRICS[kind].series is None:
                selector = target.config.selectors.get(kind) or default
            by_key.setdefault((kind, selector), []).append(target.state.ref)
    order = {kind: i for i, kind in enumerate(METRICS)}
    keys = sorted((k for k, refs in by_key.items() if refs), key=lambda k: order[k[0]])
    return tuple(QueryGroup(kind, selector, tuple(by_key[kind, selector])) for kind, selector in keys)


def _ownership(namespaces: str, deployments: str | None, start: int, end: int) -> str:
    """One series per (namespace, pod) with value 1 and the Deployment's name as `deployment`.

    Ownership never changes over a pod's life, so it is read once, at the end of the range (`@ end`)
    over the whole range plus the lookback, instead of at every step: Prometheus evaluates such a
    step-invariant expression once, which makes long ranges several times cheaper, and a missed
    kube-state-metrics scrape drops no load point. The `max by` on both sides collapses the duplicate
    series that two kube-state-metrics replicas export, which would otherwise double count or break
    the one-to-one join."""
    over = f"[{end - start + _LOOKBACK_S}s] @ {end}"
    pod_owner = format_selector(
        "kube_pod_owner", ['owner_kind="ReplicaSet"', f'namespace=~"{namespaces}"']
    )
    rs_matchers = ['owner_kind="Deployment"', f'namespace=~"{namespaces}"']
    if deployments is not None:
        rs_matchers.append(f'owner_name=~"{deployments}"')
    rs_owner = format_selector("kube_replicaset_owner", rs_matchers)
    return (
        "max by (namespace, pod, deployment) ("
        "max by (namespace, pod, replicaset) ("
        f'label_replace(max_over_time({pod_owner}{over}), "replicaset", "$1", "owner_name", "(.*)"))'
        " * on (namespace, replicaset) group_left (deployment) "
        "max by (namespace, replicaset, deployment) ("
        f'label_replace(max_over_time({rs_owner}{over}), "deployment", "$1", "owner_name", "(.*)")))'
    )


def load_query(
    kind: MetricKind,
    refs: Sequence[TargetRef],
    *,
    rate_window: str,
    start: int,
    end: int,
    selector: SeriesSelector | None = None,
    restrict_deployments: bool = False,
) -> str:
    """The aggregate load per Deployment of `kind` in the namespaces of `refs`, one series per
    (namespace, deployment), for a range query over [start, end] (epoch seconds).

    `selector` is the workload's series for kinds that have none of their own (required for them).
    `restrict_deployments` also confines
    the query to the Deployments named in `refs`, on the ownership side exactly and on the data side by
    pod name prefix (a Deployment's pods are named `<deployment>-<hash>-<hash>`, cut to 58 characters);
    worth it when the answer is long (a history), not when it is a few points."""
    if not refs:
        raise ValueError("a query needs at least one target")
    if end < start:
        raise ValueError("a query range needs end >= start")
    namespaces = escape_regex_alternation(ref.namespace for ref in refs)
    confine = [f'namespace=~"{namespaces}"']
    deployments = None
    if restrict_deployments:
        deployments = escape_regex_alternation(ref.name for ref in refs)
        prefixes = escape_regex_alternation(ref.name[:_POD_PREFIX] for ref in refs)
        confine.append(f'pod=~"(?:{prefixes}).*"')
    spec = METRICS[kind]
    series = spec.series or selector
    if series is None:
        raise ValueError(f"a {kind.value} query needs a series selector")
    per_pod = format_selector(series.metric, [_format_matcher(m) for m in series.matchers] + confine)
    if spec.signal is Signal.COUNTER:
        per_pod = f"rate({per_pod}[{rate_window}])"
    ownership = _ownership(namespaces, deployments, start, end)
    return (
        f"sum by (namespace, deployment) (sum by (namespace, pod) ({per_pod})"
        f" * on (namespace, pod) group_left (deployment) {ownership})"
    )
