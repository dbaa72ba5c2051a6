"""PromQL building (`autoscaler.sources.promql`, grammar in `autoscaler.selectors`):

* escaping of cluster label values for `="…"` matchers and `=~"a|b"` alternations, checked against a
  decoder of PromQL strings and, for tricky values, against the real Prometheus (exact matches only);
* the request-selector grammar: accepted selectors and named rejections (quotes, braces, injected
  PromQL, regex tricks, reserved labels, newlines, empty, too long…);
* query builders: one query per metric kind for N targets (plus one per distinct request selector),
  every series selector confined to the targets' namespaces, optionally to their Deployments; a
  StatefulSet among the targets adds its own ownership and the `workload_kind` label that tells it
  from a Deployment of the same name, and a query for Deployments alone stays as documented.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from typing import Any

import pytest

from autoscaler.metrics import BUILTIN_KINDS, MetricKind
from autoscaler.model import Bounds, Target, TargetConfig, TargetRef, WorkloadKind, WorkloadState
from autoscaler.selectors import (
    MAX_MATCHERS,
    LabelMatcher,
    MatchOp,
    SelectorError,
    SeriesSelector,
    parse_selector,
)
from autoscaler.sources.promql import escape_regex_alternation, escape_string, group_targets, load_query
from tests.promserver import ESCAPE_PROBES, PromEnv

DEFAULT = SeriesSelector("http_requests_total")
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def decode_promql_string(inner: str) -> str:
    """What PromQL makes of the inside of a double-quoted string (the escapes `escape_string` uses)."""
    out: list[str] = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        assert ch not in '"\n', f"unescaped {ch!r} in {inner!r}"
        if ch != "\\":
            out.append(ch)
            i += 1
        elif inner[i + 1] == "x":
            out.append(chr(int(inner[i + 2 : i + 4], 16)))
            i += 4
        else:
            out.append(_UNESCAPES[inner[i + 1]])
            i += 2
    return "".join(out)


# --- escaping -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        pytest.param("web-1", "web-1", id="plain"),
        pytest.param('a"b', 'a\\"b', id="double-quote"),
        pytest.param("a\\b", "a\\\\b", id="backslash"),
        pytest.param("a\nb", "a\\nb", id="newline"),
        pytest.param("a\tb\rc", "a\\tb\\rc", id="tab-and-carriage-return"),
        pytest.param("a\x01b", "a\\x01b", id="control-character"),
        pytest.param('"} or vector(1) #', '\\"} or vector(1) #', id="injection-stays-inside-the-string"),
        pytest.param("é", "é", id="unicode-kept"),
    ],
)
def test_escape_string(value: str, escaped: str) -> None:
    assert escape_string(value) == escaped
    assert decode_promql_string(escape_string(value)) == value


@pytest.mark.parametrize(
    ("values", "matches", "misses"),
    [
        pytest.param(["a.b"], ["a.b"], ["axb", "a.bc", "xa.b"], id="dot-is-literal"),
        pytest.param(["ns1", "ns2"], ["ns1", "ns2"], ["ns", "ns12", "ns1|ns2"], id="exact-alternation"),
        pytest.param(["a|b"], ["a|b"], ["a", "b"], id="pipe-in-a-value"),
        pytest.param(["x.*"], ["x.*"], ["xyz", "x"], id="star-is-literal"),
        pytest.param(['q"}'], ['q"}'], ["q"], id="quote-and-brace"),
        pytest.param(["(a", "[b]", "{c}", "^d$", "e+", "f?"], ["(a", "[b]", "{c}", "^d$", "e+", "f?"],
                     ["a", "b", "c", "d", "ee", "f"], id="all-metacharacters"),
        pytest.param(["back\\slash"], ["back\\slash"], ["backslash"], id="backslash"),
    ],
)  # fmt: skip
def test_escape_regex_alternation(values: list[str], matches: list[str], misses: list[str]) -> None:
    pattern = re.compile(decode_promql_string(escape_regex_alternation(values)))
    for value in matches:
        assert pattern.fullmatch(value), value
    for value in misses:
        assert not pattern.fullmatch(value), value


def test_alternation_is_sorted_and_deduplicated() -> None:
    assert escape_regex_alternation(["b", "a", "b"]) == "a|b"
    with pytest.raises(ValueError, match="at least one"):
        escape_regex_alternation([])


def _instant(env: PromEnv, query: str) -> list[dict[str, Any]]:
    qs = urllib.parse.urlencode({"query": query, "time": env.anchor})
    with urllib.request.urlopen(f"{env.url}/api/v1/query?{qs}", timeout=10) as answer:
        body = json.loads(answer.read())
    assert body["status"] == "success"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_escaped_values_match_exactly_in_real_prometheus(prometheus: PromEnv) -> None:
    for value in ESCAPE_PROBES:
        equal = _instant(prometheus, f'escape_probe{{v="{escape_string(value)}"}}')
        assert [s["metric"]["v"] for s in equal] == [value]
        regex = _instant(prometheus, f'escape_probe{{v=~"{escape_regex_alternation([value])}"}}')
        assert [s["metric"]["v"] for s in regex] == [value]
    pair = _instant(prometheus, f'escape_probe{{v=~"{escape_regex_alternation(["a.b", "pipe|bar"])}"}}')
    assert sorted(s["metric"]["v"] for s in pair) == ["a.b", "pipe|bar"]


# --- the selector grammar ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("http_requests_total", SeriesSelector("http_requests_total"), id="bare-metric"),
        pytest.param("  app:hits_total  ", SeriesSelector("app:hits_total"), id="colon-and-blanks"),
        pytest.param("m{}", SeriesSelector("m"), id="empty-braces"),
        pytest.param(
            'http_requests_total{code!~"5..", handler="/api"}',
            SeriesSelector(
                "http_requests_total",
                (
                    LabelMatcher("code", MatchOp.NOT_REGEX, "5.."),
                    LabelMatcher("handler", MatchOp.EQUAL, "/api"),
                ),
            ),
            id="two-matchers",
        ),
        pytest.param(
            'm{a="1",b!="2",c=~"x|y",d!~"z.*",}',
            SeriesSelector(
                "m",
                (
                    LabelMatcher("a", MatchOp.EQUAL, "1"),
                    LabelMatcher("b", MatchOp.NOT_EQUAL, "2"),
                    LabelMatcher("c", MatchOp.REGEX, "x|y"),
                    LabelMatcher("d", MatchOp.NOT_REGEX, "z.*"),
                ),
            ),
            id="all-operators-trailing-comma",
        ),
        pytest.param(
            'm{path="a\\"b\\\\c"}',
            SeriesSelector("m", (LabelMatcher("path", MatchOp.EQUAL, 'a"b\\c'),)),
            id="escaped-quote-and-backslash",
        ),
        pytest.param(
            'm{\tservice = "checkout" }',
            SeriesSelector("m", (LabelMatcher("service", MatchOp.EQUAL, "checkout"),)),
            id="blanks-around-operator",
        ),
        pytest.param(
            'm{a=~".*\\"}"}',
            SeriesSelector("m", (LabelMatcher("a", MatchOp.REGEX, '.*"}'),)),
            id="escaped-quote-and-brace-stay-in-the-value",
        ),
        pytest.param(
            'm{a=~"(?i)get|(?P<verb>post)|(?-s:.)"}',
            SeriesSelector("m", (LabelMatcher("a", MatchOp.REGEX, "(?i)get|(?P<verb>post)|(?-s:.)"),)),
            id="flags-and-named-group",
        ),
        pytest.param(
            'm{route=~"/api/(v1|v2)/.+"}',
            SeriesSelector("m", (LabelMatcher("route", MatchOp.REGEX, "/api/(v1|v2)/.+"),)),
            id="regex-with-group",
        ),
        pytest.param(
            # RE2 allows no repeat count above 1000; only Prometheus can tell (an InvalidAnnotation
            # Event when it rejects the query).
            'm{a=~"x{1001}"}',
            SeriesSelector("m", (LabelMatcher("a", MatchOp.REGEX, "x{1001}"),)),
            id="repeat-count-left-to-prometheus",
        ),
        pytest.param(
            "m{" + ",".join(f'l{i}="v"' for i in range(MAX_MATCHERS)) + "}",
            SeriesSelector(
                "m", tuple(LabelMatcher(f"l{i}", MatchOp.EQUAL, "v") for i in range(MAX_MATCHERS))
            ),
            id="ten-matchers",
        ),
    ],
)
def test_selector_accepted(text: str, expected: SeriesSelector) -> None:
    parsed = parse_selector(text)
    assert parsed == expected
    # Messages name a selector as it was written; one built in code is written in the grammar.
    assert str(parsed) == text
    assert parse_selector(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("   ", "empty", id="only-blanks"),
        pytest.param("http_requests_total or vector(1)", "unexpected 'o'", id="or-vector"),
        pytest.param("rate(http_requests_total[5m])", "unexpected '\\('", id="function-call"),
        pytest.param("m[5m]", "unexpected '\\['", id="range-selector"),
        pytest.param('m{a="1"', "missing '}'", id="unbalanced-open-brace"),
        pytest.param('m{a="1"}}', "unexpected '}'", id="extra-close-brace"),
        pytest.param('m}{a="1"}', "unexpected '}'", id="brace-inside-name"),
        pytest.param("m{a='1'}", "double-quoted", id="single-quotes"),
        pytest.param("m{a=`1`}", "double-quoted", id="backticks"),
        pytest.param("`m`", "metric name", id="backtick-name"),
        pytest.param('m{a="1}', "unterminated", id="unterminated-string"),
        pytest.param('m{a="\\n"}', "escapes", id="other-escape"),
        pytest.param('m{a="1"} # comment', "unexpected '#'", id="trailing-text"),
        pytest.param('m{a="1"}\n', "newline", id="trailing-newline"),
        pytest.param('m{a="x\ny"}', "newline", id="newline-in-value"),
        pytest.param('m{namespace="other"}', "'namespace'", id="namespace-matcher"),
        pytest.param('m{pod=~".*"}', "'pod'", id="pod-matcher"),
        pytest.param('m{__name__=~".+"}', "'__name__'", id="name-matcher"),
        pytest.param('m{__meta_x="1"}', "'__meta_x'", id="double-underscore-label"),
        pytest.param('m{a=~".*"}"}', "unexpected '\"'", id="regex-closing-quote-and-brace"),
        pytest.param('m{a=~".*"} or vector(1)', "unexpected 'o'", id="regex-then-injection"),
        pytest.param('m{a=~"(x"}', "does not compile", id="unbalanced-group"),
        pytest.param('m{a=~"[x"}', "does not compile", id="unbalanced-class"),
        pytest.param('m{a=~"(?=x)y"}', "RE2", id="lookahead"),
        pytest.param('m{a=~"(x)\\\\1"}', "RE2", id="backreference"),
        pytest.param('m{a=~"x*+"}', "RE2", id="possessive-quantifier"),
        pytest.param('m{a=~"(?x) a b"}', "RE2", id="verbose-flag"),
        pytest.param('m{a=~"(?<=a)b"}', "RE2", id="lookbehind"),
        pytest.param(r'm{a=~"\\u0041"}', "RE2", id="unicode-escape"),
        pytest.param('m{a=~"' + "x" * 201 + '"}', "longer than 200", id="regex-too-long"),
        pytest.param(
            "m{" + ",".join(f'l{i}="v"' for i in range(11)) + "}", "at most 10", id="eleven-matchers"
        ),
        pytest.param("m" * 2001, "longer than", id="selector-too-long"),
        pytest.param("9m", "metric name", id="name-starts-with-digit"),
        pytest.param('m{a-b="1"}', "one of", id="bad-label-name"),
        pytest.param('m{a=="1"}', "double-quoted", id="double-equals"),
        pytest.param('m{a="1" b="2"}', "expected ','", id="missing-comma"),
        pytest.param('m{,a="1"}', "label name", id="leading-comma"),
        pytest.param('m{a="1"} and on() m', "unexpected 'a'", id="binary-operator"),
    ],
)
def test_selector_rejected(text: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        parse_selector(text)


def test_selector_error_is_a_value_error() -> None:
    assert issubclass(SelectorError, ValueError)


# --- query builders ---------------------------------------------------------------------------------


def _target(ns: str, name: str, kinds: tuple[MetricKind, ...] = BUILTIN_KINDS,
            selector: SeriesSelector | None = None) -> Target:  # fmt: skip
    selectors = {} if selector is None else {MetricKind.REQUESTS: selector}
    config = TargetConfig(metrics=kinds, bounds=Bounds(1, 10), per_pod={MetricKind.REQUESTS: 10.0},
                          selectors=selectors)  # fmt: skip
    return Target(WorkloadState(TargetRef(ns, name), 1, 1), config)


CUSTOM = SeriesSelector("app_hits_total", (LabelMatcher("handler", MatchOp.EQUAL, "/checkout"),))


def _namespace_regexes(query: str) -> set[str]:
    return {decode_promql_string(m) for m in re.findall(r'namespace=~"((?:[^"\\]|\\.)*)"', query)}


@pytest.mark.parametrize("n", [pytest.param(1, id="one-target"), pytest.param(60, id="sixty-targets")])
def test_one_group_per_kind_whatever_the_number_of_targets(n: int) -> None:
    targets = [_target(f"ns-{i % 4}", f"app-{i}") for i in range(n)]
    groups = group_targets(targets, DEFAULT)
    assert [(g.kind, g.selector) for g in groups] == [
        (MetricKind.CPU, None),
        (MetricKind.MEMORY, None),
        (MetricKind.REQUESTS, DEFAULT),
    ]
    assert all(len(g.refs) == n for g in groups)


def test_only_distinct_selectors_add_groups() -> None:
    targets = [
        _target("a", "x"),
        _target("a", "y", selector=CUSTOM),
        _target("b", "z", selector=SeriesSelector("app_hits_total", (CUSTOM.matchers[0],))),  # equal
        _target("b", "w", selector=DEFAULT),  # the default named explicitly
        _target("c", "cpu-only", kinds=(MetricKind.CPU,)),
    ]
    groups = group_targets(targets, DEFAULT)
    requests = [g for g in groups if g.kind is MetricKind.REQUESTS]
    assert [(g.selector, [r.name for r in g.refs]) for g in requests] == [
        (DEFAULT, ["x", "w"]),
        (CUSTOM, ["y", "z"]),
    ]
    memory = next(g for g in groups if g.kind is MetricKind.MEMORY)
    assert TargetRef("c", "cpu-only") not in memory.refs


@pytest.mark.parametrize("kind", [pytest.param(k, id=k.value) for k in BUILTIN_KINDS])
def test_every_selector_of_a_query_is_confined_to_the_targets_namespaces(kind: MetricKind) -> None:
    refs = [TargetRef("shop", "web"), TargetRef("blog", "api"), TargetRef("shop", "api")]
    query = load_query(kind, refs, rate_window="2m", start=0, end=600, selector=DEFAULT)
    # The data series and both ownership series each carry the matcher.
    assert query.count('namespace=~"blog|shop"') == 3
    assert _namespace_regexes(query) == {"blog|shop"}
    assert "owner_name=~" not in query
    assert "pod=~" not in query
    assert query.startswith("sum by (namespace, deployment) (")


def test_deployments_can_be_confined_too() -> None:
    refs = [TargetRef("a", "web.v2"), TargetRef("b", "api"), TargetRef("b", "x" * 50)]
    query = load_query(
        MetricKind.CPU, refs, rate_window="5m", start=0, end=60, restrict_deployments=True
    )
    # Exactly on the ownership side, by pod name prefix (generated names are cut) on the data side.
    assert f'owner_name=~"api|web\\\\.v2|{"x" * 50}"' in query
    assert f'pod=~"(?:api|web\\\\.v2|{"x" * 40}).*"' in query
    assert "[5m]" in query


@pytest.mark.parametrize(
    ("refs", "owners", "labels"),
    [
        pytest.param(
            [TargetRef("shop", "web"), TargetRef("shop", "web", WorkloadKind.STATEFULSET)],
            ['kube_replicaset_owner{owner_kind="Deployment",namespace=~"shop",owner_name=~"web"}',
             'kube_pod_owner{owner_kind="StatefulSet",namespace=~"shop",owner_name=~"web"}'],
            "deployment, workload_kind",
            id="same-name-both-kinds",
        ),
        pytest.param(
            [TargetRef("shop", "db", WorkloadKind.STATEFULSET), TargetRef("blog", "api")],
            ['kube_replicaset_owner{owner_kind="Deployment",namespace=~"blog|shop",owner_name=~"api"}',
             'kube_pod_owner{owner_kind="StatefulSet",namespace=~"blog|shop",owner_name=~"db"}'],
            "deployment, workload_kind",
            id="each-kind-confined-to-its-own-names",
        ),
        pytest.param(
            [TargetRef("shop", "db", WorkloadKind.STATEFULSET)],
            ['kube_pod_owner{owner_kind="StatefulSet",namespace=~"shop",owner_name=~"db"}'],
            "deployment, workload_kind",
            id="statefulsets-alone-join-no-replicaset",
        ),
    ],
)  # fmt: skip
def test_statefulsets_are_joined_by_their_own_ownership(
    refs: list[TargetRef], owners: list[str], labels: str
) -> None:
    query = load_query(MetricKind.CPU, refs, rate_window="2m", start=0, end=60,
                       restrict_deployments=True)  # fmt: skip
    assert query.startswith(f"sum by (namespace, {labels}) (")
    assert f"* on (namespace, pod) group_left ({labels}) " in query
    assert [o for o in owners if o in query] == owners
    assert ("kube_replicaset_owner" in query) == any(r.kind is WorkloadKind.DEPLOYMENT for r in refs)
    # The StatefulSet's kind is its pods' owner kind, kept beside its name.
    assert '"workload_kind", "$1", "owner_kind", "(.*)"' in query


def test_ownership_is_read_once_over_the_whole_range() -> None:
    query = load_query(MetricKind.MEMORY, [TargetRef("a", "b")], rate_window="2m", start=1000, end=4600)
    # The range plus Prometheus' five-minute lookback, evaluated at the end of the range.
    assert query.count("[3900s] @ 4600)") == 2
    with pytest.raises(ValueError, match="end >= start"):
        load_query(MetricKind.MEMORY, [TargetRef("a", "b")], rate_window="2m", start=10, end=0)


def test_user_matchers_are_escaped_and_the_namespace_is_ours() -> None:
    selector = SeriesSelector("m", (LabelMatcher("path", MatchOp.REGEX, '/a"b\\.c'),))
    query = load_query(MetricKind.REQUESTS, [TargetRef("ns", "d")], rate_window="2m", start=0, end=0,
                       selector=selector)  # fmt: skip
    assert 'rate(m{path=~"/a\\"b\\\\.c",namespace=~"ns"}[2m])' in query


def test_default_queries_are_the_documented_ones() -> None:
    ref = [TargetRef("ns", "d")]
    ownership = (
        "max by (namespace, pod, deployment) ("
        "max by (namespace, pod, replicaset) (label_replace(max_over_time("
        'kube_pod_owner{owner_kind="ReplicaSet",namespace=~"ns"}[960s] @ 1800),'
        ' "replicaset", "$1", "owner_name", "(.*)"))'
        " * on (namespace, replicaset) group_left (deployment) "
        "max by (namespace, replicaset, deployment) (label_replace(max_over_time("
        'kube_replicaset_owner{owner_kind="Deployment",namespace=~"ns"}[960s] @ 1800),'
        ' "deployment", "$1", "owner_name", "(.*)")))'
    )
    containers = 'container!="",container!="POD",namespace=~"ns"'
    data = {
        MetricKind.CPU: f"rate(container_cpu_usage_seconds_total{{{containers}}}[2m])",
        MetricKind.MEMORY: f"container_memory_working_set_bytes{{{containers}}}",
        MetricKind.REQUESTS: 'rate(http_requests_total{namespace=~"ns"}[2m])',
    }
    for kind, per_pod in data.items():
        assert load_query(kind, ref, rate_window="2m", start=1140, end=1800, selector=DEFAULT) == (
            f"sum by (namespace, deployment) (sum by (namespace, pod) ({per_pod})"
            f" * on (namespace, pod) group_left (deployment) {ownership})"
        )


def test_a_requests_query_needs_a_selector_and_targets() -> None:
    with pytest.raises(ValueError, match="selector"):
        load_query(MetricKind.REQUESTS, [TargetRef("a", "b")], rate_window="2m", start=0, end=0)
    with pytest.raises(ValueError, match="at least one"):
        load_query(MetricKind.CPU, [], rate_window="2m", start=0, end=0)
