"""PromQL for the Prometheus metrics source, built by pure functions (no I/O).

One tick asks one query per metric kind for all targets, grouped `by (namespace, deployment)`; request
rates add one query per distinct counter selector. Every query is confined with `namespace=~"…"` to the
namespaces of the targets it serves, label values taken from the cluster are escaped, and the only user
text that reaches a query is a request selector validated by `parse_request_selector` (a metric name
and label matchers, never free PromQL).

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

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autoscaler.model import LabelMatcher, MatchOp, MetricKind, RequestSelector, Target, TargetRef

__all__ = [
    "MAX_MATCHERS",
    "MAX_REGEX_LENGTH",
    "QueryGroup",
    "SelectorError",
    "escape_regex_alternation",
    "escape_string",
    "format_selector",
    "group_targets",
    "load_query",
    "parse_request_selector",
]

MAX_MATCHERS = 10
MAX_REGEX_LENGTH = 200
# An annotation longer than this is not a selector anybody meant to write.
_MAX_SELECTOR_LENGTH = 2000

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPS = (MatchOp.REGEX, MatchOp.NOT_REGEX, MatchOp.NOT_EQUAL, MatchOp.EQUAL)  # longest first
# The autoscaler sets these itself; a user matcher on them could widen or redirect a target's query.
_RESERVED_LABELS = frozenset({"namespace", "pod"})
# Python's `re` accepts these but Prometheus' RE2 does not, so the query would be rejected at run time:
# groups other than (?:…), (?P<name>…) and the i/m/s flags (lookaround, atomic, conditional, comments,
# other flags), backreferences, \Z, \u/\U/\N escapes and possessive quantifiers.
_RE2_UNSUPPORTED = re.compile(r"\(\?(?![imsU]*(?:-[imsU]*)?[:)]|P<)|\\[1-9ZuUN]|[*+?}]\+")
# Characters RE2 gives a meaning to outside a character class; escaped with a backslash, which RE2
# accepts before any ASCII punctuation.
_REGEX_META = frozenset("\\.+*?()|[]{}^$")
_CPU_METRIC = "container_cpu_usage_seconds_total"
_MEMORY_METRIC = "container_memory_working_set_bytes"
# cAdvisor also exports a pod-level cgroup (container="") and the pause container ("POD").
_CONTAINER_FILTER = 'container!="",container!="POD"'
# Prometheus' default lookback: a series counts at a step if it has a sample this recent.
_LOOKBACK_S = 300
# Pod names start with this much of their Deployment's name (generated names are cut to 58 characters).
_POD_PREFIX = 40


class SelectorError(ValueError):
    """A request selector annotation that is not a metric name with simple label matchers."""


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


class _Parser:
    """Hand-written recursive descent over the selector grammar:

    selector := metric [ "{" [ matcher { "," matcher } [ "," ] ] "}" ]
    matcher  := label op string          op := "=~" | "!~" | "!=" | "="
    string   := '"' { any character but '"', '\\' and newline | '\\"' | '\\\\' } '"'

    with spaces and tabs allowed between tokens.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> SelectorError:
        return SelectorError(f"invalid requests selector: {what} at position {self.pos}")

    def skip_blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def name(self, pattern: re.Pattern[str], what: str) -> str:
        match = pattern.match(self.text, self.pos)
        if match is None:
            found = self.peek()
            raise self.fail(f"expected {what}, found {found!r}" if found else f"expected {what}")
        self.pos = match.end()
        return match.group()

    def op(self) -> MatchOp:
        for op in _OPS:
            if self.text.startswith(op.value, self.pos):
                self.pos += len(op.value)
                return op
        raise self.fail("expected one of =, !=, =~, !~")

    def string(self) -> str:
        if self.peek() != '"':
            raise self.fail("expected a double-quoted value")
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if ch == "":
                raise self.fail("unterminated string")
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                nxt = self.text[self.pos + 1 : self.pos + 2]
                if nxt not in ('"', "\\"):
                    raise self.fail('only \\" and \\\\ escapes are allowed')
                out.append(nxt)
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1

    def matcher(self) -> LabelMatcher:
        label = self.name(_LABEL_NAME, "a label name")
        if label in _RESERVED_LABELS or label.startswith("__"):
            raise self.fail(f"label {label!r} is set by the autoscaler and may not be matched")
        self.skip_blanks()
        op = self.op()
        self.skip_blanks()
        value = self.string()
        if op in (MatchOp.REGEX, MatchOp.NOT_REGEX):
            _check_regex(label, value)
        return LabelMatcher(label, op, value)

    def selector(self) -> RequestSelector:
        self.skip_blanks()
        metric = self.name(_METRIC_NAME, "a metric name")
        self.skip_blanks()
        matchers: list[LabelMatcher] = []
        if self.peek() == "{":
            self.pos += 1
            self.skip_blanks()
            while self.peek() != "}":
                if len(matchers) == MAX_MATCHERS:
                    raise self.fail(f"at most {MAX_MATCHERS} label matchers are allowed")
                matchers.append(self.matcher())
                self.skip_blanks()
                if self.peek() == ",":
                    self.pos += 1
                    self.skip_blanks()
                elif self.peek() != "}":
                    found = self.peek()
                    raise self.fail(f"expected ',' or '}}', found {found!r}" if found else "missing '}'")
            self.pos += 1
            self.skip_blanks()
        if self.pos < len(self.text):
            raise self.fail(f"unexpected {self.text[self.pos]!r} after the selector")
        return RequestSelector(metric, tuple(matchers))


def _check_regex(label: str, value: str) -> None:
    if len(value) > MAX_REGEX_LENGTH:
        raise SelectorError(
            f"invalid requests selector: regex for {label!r} is longer than {MAX_REGEX_LENGTH}"
        )
    try:
        re.compile(value)
    except re.error as err:
        raise SelectorError(
            f"invalid requests selector: regex for {label!r} does not compile: {err}"
        ) from None
    if _RE2_UNSUPPORTED.search(value):
        raise SelectorError(
            f"invalid requests selector: regex for {label!r} uses what Prometheus' RE2 lacks"
            " (lookaround, backreference, atomic group, possessive quantifier, flag other than i, m, s)"
        )


def parse_request_selector(text: str) -> RequestSelector:
    """Parse the `predictive-autoscaler.io/requests-metric` annotation, e.g.
    `http_requests_total{code!~"5..", handler="/api"}`; raises `SelectorError` for anything else."""
    if not text.strip():
        raise SelectorError("invalid requests selector: empty")
    if len(text) > _MAX_SELECTOR_LENGTH:
        raise SelectorError(f"invalid requests selector: longer than {_MAX_SELECTOR_LENGTH} characters")
    for bad, what in (("\n", "a newline"), ("\r", "a carriage return")):
        if bad in text:
            raise SelectorError(f"invalid requests selector: contains {what}")
    return _Parser(text).selector()


@dataclass(frozen=True, slots=True)
class QueryGroup:
    """Targets served by one query: one group per metric kind, and for request rates one per
    distinct counter selector. `selector` is None for cpu and memory."""

    kind: MetricKind
    selector: RequestSelector | None
    refs: tuple[TargetRef, ...]


def group_targets(
    targets: Sequence[Target], default_requests: RequestSelector
) -> tuple[QueryGroup, ...]:
    """Group targets by what has to be queried for them, in a stable order (cpu, memory, then request
    selectors in order of first appearance); a target is in a kind's group only if it uses that kind."""
    cpu: list[TargetRef] = []
    memory: list[TargetRef] = []
    requests: dict[RequestSelector, list[TargetRef]] = {}
    for target in targets:
        ref = target.state.ref
        kinds = target.config.metrics
        if MetricKind.CPU in kinds:
            cpu.append(ref)
        if MetricKind.MEMORY in kinds:
            memory.append(ref)
        if MetricKind.REQUESTS in kinds:
            selector = target.config.requests_selector or default_requests
            requests.setdefault(selector, []).append(ref)
    groups: list[QueryGroup] = []
    if cpu:
        groups.append(QueryGroup(MetricKind.CPU, None, tuple(cpu)))
    if memory:
        groups.append(QueryGroup(MetricKind.MEMORY, None, tuple(memory)))
    groups.extend(QueryGroup(MetricKind.REQUESTS, sel, tuple(refs)) for sel, refs in requests.items())
    return tuple(groups)


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
    selector: RequestSelector | None = None,
    restrict_deployments: bool = False,
) -> str:
    """The aggregate load per Deployment of `kind` in the namespaces of `refs`, one series per
    (namespace, deployment), for a range query over [start, end] (epoch seconds).

    `selector` is the request counter (required for requests). `restrict_deployments` also confines
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
    if kind is MetricKind.CPU:
        per_pod = f"rate({format_selector(_CPU_METRIC, [_CONTAINER_FILTER, *confine])}[{rate_window}])"
    elif kind is MetricKind.MEMORY:
        per_pod = format_selector(_MEMORY_METRIC, [_CONTAINER_FILTER, *confine])
    else:
        if selector is None:
            raise ValueError("a requests query needs a counter selector")
        matchers = [_format_matcher(m) for m in selector.matchers] + confine
        per_pod = f"rate({format_selector(selector.metric, matchers)}[{rate_window}])"
    ownership = _ownership(namespaces, deployments, start, end)
    return (
        f"sum by (namespace, deployment) (sum by (namespace, pod) ({per_pod})"
        f" * on (namespace, pod) group_left (deployment) {ownership})"
    )
