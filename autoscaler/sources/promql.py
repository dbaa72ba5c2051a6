"""PromQL for the Prometheus metrics source, built by pure functions (no I/O).

One tick asks one query per metric kind for all targets, grouped `by (namespace, deployment)` (and
`workload_kind`, once a StatefulSet is among them); kinds
whose series each workload names (request rates) add one query per distinct selector, and so do the
metrics workloads declare themselves (one per distinct declaration, however many workloads share
it). Every query is confined with `namespace=~"…"` to the namespaces of the targets it serves, label
values taken from the cluster are escaped, and the only user text that reaches a query is a selector
validated by `autoscaler.selectors` (a metric name and label matchers, never free PromQL). Which
series measure a kind, and whether its load is their rate or their value, is `autoscaler.metrics`'
table, or the workload's own declaration.

What a cluster must provide for each metric kind:

* cpu (cores): cAdvisor through the kubelet, `container_cpu_usage_seconds_total` with `namespace`, `pod`
  and `container` labels;
* memory (bytes): cAdvisor's `container_memory_working_set_bytes`, same labels;
* requests (req/s): an application counter (default `http_requests_total`) with `namespace` and `pod`
  labels of the pod that serves, as a ServiceMonitor or PodMonitor of the Prometheus Operator produces;
* a workload's own metrics (`metric.<name>`): the series it declares; a per-pod one with `namespace`
  and `pod` labels of the pod that exports it, a total one with a `namespace` label only (a queue
  exporter's series, say): a total is summed over the namespace and never joined to pods;
* all kinds measured per pod: kube-state-metrics' `kube_pod_owner` and `kube_replicaset_owner`, which
  map pods to their Deployment through the ReplicaSet; a StatefulSet's pods name it in
  `kube_pod_owner` directly;
* Prometheus 2.33 or later (or a compatible server), for the `@` modifier.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autoscaler.metrics import METRICS, MetricKind, MetricSpec, Scope, Signal
from autoscaler.model import Target, TargetRef, WorkloadKind
from autoscaler.selectors import LabelMatcher, SeriesSelector

__all__ = [
    "WORKLOAD_KIND_LABEL",
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
# Pod names start with this much of their workload's name (generated names are cut to 58 characters).
_POD_PREFIX = 40
# In a load query's answer, the kind of a workload that is not a Deployment (a Deployment's series
# have no such label, which keeps a query for Deployments alone as it always was).
WORKLOAD_KIND_LABEL = "workload_kind"


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
    # The declaration of a metric the workloads name themselves; None for a built-in kind.
    custom: MetricSpec | None = None

    @property
    def spec(self) -> MetricSpec:
        return self.custom if self.custom is not None else METRICS[self.kind]


def group_targets(targets: Sequence[Target], default: SeriesSelector) -> tuple[QueryGroup, ...]:
    """Group targets by what has to be queried for them, in a stable order (the table's kinds in
    turn, selectors in order of first appearance); a target is in a kind's group only if it uses
    that kind. `default` is the selector of targets that name none."""
    by_key: dict[tuple[MetricKind, SeriesSelector | None, MetricSpec | None], list[TargetRef]] = {
        (kind, None, None): [] for kind, spec in METRICS.items() if spec.series is not None
    }
    for target in targets:
        for kind in target.config.metrics:
            custom = target.config.custom.get(kind)
            selector = None
            if custom is not None:
                selector = custom.series
            elif METRICS[kind].series is None:
                selector = target.config.selectors.get(kind) or default
            by_key.setdefault((kind, selector, custom), []).append(target.state.ref)
    order = {kind: i for i, kind in enumerate(METRICS)}
    # Built-in kinds in the table's order, then declared ones by name; within a kind, stable.
    keys = sorted(
        (k for k, refs in by_key.items() if refs),
        key=lambda k: (order.get(k[0], len(order)), "" if k[0] in order else k[0].value),
    )
    return tuple(QueryGroup(k[0], k[1], tuple(by_key[k]), k[2]) for k in keys)


def _owner_labels(refs: Sequence[TargetRef]) -> str:
    """The labels that name a workload in a load query's answer: `deployment` (its name, whatever
    its kind), and `workload_kind` beside it once a StatefulSet is among `refs`, which tells it from
    a Deployment of the same name in the same namespace."""
    if all(ref.kind is WorkloadKind.DEPLOYMENT for ref in refs):
        return "deployment"
    return f"deployment, {WORKLOAD_KIND_LABEL}"


def _ownership(namespaces: str, refs: Sequence[TargetRef], restrict: bool, start: int, end: int) -> str:
    """One series per (namespace, pod) with value 1 and its workload's name as `deployment`, for
    the kinds of workload among `refs` (with `restrict`, for their names only): a Deployment's pods
    through their ReplicaSet, a StatefulSet's directly, since kube-state-metrics names it as their
    owner, with `workload_kind="StatefulSet"` beside the name.

    Ownership never changes over a pod's life, so it is read once, at the end of the range (`@ end`)
    over the whole range plus the lookback, instead of at every step: Prometheus evaluates such a
    step-invariant expression once, which makes long ranges several times cheaper, and a missed
    kube-state-metrics scrape drops no load point. The `max by` on both sides collapses the duplicate
    series that two kube-state-metrics replicas export, which would otherwise double count or break
    the one-to-one join."""
    over = f"[{end - start + _LOOKBACK_S}s] @ {end}"

    def names(kind: WorkloadKind) -> str | None:
        return escape_regex_alternation(r.name for r in refs if r.kind is kind) if restrict else None

    kinds = {ref.kind for ref in refs}
    parts = []
    if WorkloadKind.DEPLOYMENT in kinds:
        parts.append(_deployment_ownership(namespaces, names(WorkloadKind.DEPLOYMENT), over))
    if WorkloadKind.STATEFULSET in kinds:
        parts.append(_statefulset_ownership(namespaces, names(WorkloadKind.STATEFULSET), over))
    if len(parts) == 1:
        return parts[0]
    # Bracketed: `*` binds tighter than `or`. A pod has one owning controller, so the union never
    # holds a pod twice; `on (namespace, pod)` would keep the join one-to-one even if it did.
    return "(" + " or on (namespace, pod) ".join(parts) + ")"


def _deployment_ownership(namespaces: str, deployments: str | None, over: str) -> str:
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


def _statefulset_ownership(namespaces: str, statefulsets: str | None, over: str) -> str:
    matchers = ['owner_kind="StatefulSet"', f'namespace=~"{namespaces}"']
    if statefulsets is not None:
        matchers.append(f'owner_name=~"{statefulsets}"')
    owner = f"max_over_time({format_selector('kube_pod_owner', matchers)}{over})"
    named = f'label_replace({owner}, "deployment", "$1", "owner_name", "(.*)")'
    return (
        f"max by (namespace, pod, deployment, {WORKLOAD_KIND_LABEL}) ("
        f'label_replace({named}, "{WORKLOAD_KIND_LABEL}", "$1", "owner_kind", "(.*)"))'
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
    custom: MetricSpec | None = None,
) -> str:
    """The aggregate load per workload of `kind` in the namespaces of `refs`, one series per
    (namespace, deployment) (and `workload_kind`, see `_owner_labels`), for a range query over
    [start, end] (epoch seconds).

    `selector` is the workload's series for kinds that have none of their own (required for them).
    `restrict_deployments` also confines
    the query to the workloads named in `refs`, on the ownership side exactly and on the data side by
    pod name prefix (a Deployment's pods are named `<deployment>-<hash>-<hash>`, cut to 58 characters,
    a StatefulSet's `<statefulset>-<ordinal>`);
    worth it when the answer is long (a history), not when it is a few points."""
    if not refs:
        raise ValueError("a query needs at least one target")
    if end < start:
        raise ValueError("a query range needs end >= start")
    namespaces = escape_regex_alternation(ref.namespace for ref in refs)
    confine = [f'namespace=~"{namespaces}"']
    if restrict_deployments:
        prefixes = escape_regex_alternation(ref.name[:_POD_PREFIX] for ref in refs)
        confine.append(f'pod=~"(?:{prefixes}).*"')
    spec = custom if custom is not None else METRICS.get(kind)
    if spec is None or spec.kind is not kind:
        raise ValueError(f"the {kind.value} metric needs its declaration")
    series = spec.series or selector
    if series is None:
        raise ValueError(f"a {kind.value} query needs a series selector")
    if spec.scope is Scope.NAMESPACE:
        # A total belongs to no pod: summed per namespace, it is every target's there that
        # declared it (the source hands it to each of them).
        confine = [f'namespace=~"{namespaces}"']
    per_pod = format_selector(series.metric, [_format_matcher(m) for m in series.matchers] + confine)
    if spec.signal is Signal.COUNTER:
        per_pod = f"rate({per_pod}[{rate_window}])"
    if spec.scope is Scope.NAMESPACE:
        return f"sum by (namespace) ({per_pod})"
    ownership = _ownership(namespaces, refs, restrict_deployments, start, end)
    owner = _owner_labels(refs)
    return (
        f"sum by (namespace, {owner}) (sum by (namespace, pod) ({per_pod})"
        f" * on (namespace, pod) group_left ({owner}) {ownership})"
    )
