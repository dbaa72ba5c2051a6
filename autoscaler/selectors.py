"""Series selectors: a metric name and label matchers, never free PromQL, and the grammar a user
writes them in (`predictive-autoscaler.io/requests-metric`, `--requests-metric`).

Pure values and a hand-written parser: a selector that parses here can be put into a query by
`autoscaler.sources.promql` without any way to widen or redirect it. The labels the autoscaler sets
itself (`namespace`, `pod`) may not be matched, and regexes are limited to what Prometheus' RE2
accepts, so that a query is not rejected at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "MAX_MATCHERS",
    "MAX_REGEX_LENGTH",
    "LabelMatcher",
    "MatchOp",
    "SelectorError",
    "SeriesSelector",
    "parse_selector",
]

MAX_MATCHERS = 10
MAX_REGEX_LENGTH = 200
# An annotation longer than this is not a selector anybody meant to write.
_MAX_SELECTOR_LENGTH = 2000

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# The autoscaler sets these itself; a user matcher on them could widen or redirect a target's query.
_RESERVED_LABELS = frozenset({"namespace", "pod"})
# Python's `re` accepts these but Prometheus' RE2 does not, so the query would be rejected at run time:
# groups other than (?:…), (?P<name>…) and the i/m/s flags (lookaround, atomic, conditional, comments,
# other flags), backreferences, \Z, \u/\U/\N escapes and possessive quantifiers.
_RE2_UNSUPPORTED = re.compile(r"\(\?(?![imsU]*(?:-[imsU]*)?[:)]|P<)|\\[1-9ZuUN]|[*+?}]\+")


class MatchOp(Enum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


_OPS = (MatchOp.REGEX, MatchOp.NOT_REGEX, MatchOp.NOT_EQUAL, MatchOp.EQUAL)  # longest first


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """One label matcher of a selector; the value is kept unescaped and escaped only when a query
    is built."""

    name: str
    op: MatchOp
    value: str


@dataclass(frozen=True, slots=True)
class SeriesSelector:
    """Which per-pod series measure a load: a metric name and label matchers. The target's own
    namespace and pods are always added when the query is built.

    `text` is the selector as the user wrote it, kept for messages that must name the value as it
    was annotated; it takes no part in equality, so selectors that differ only in blanks are one."""

    metric: str
    matchers: tuple[LabelMatcher, ...] = ()
    text: str = field(default="", compare=False, repr=False)

    def __str__(self) -> str:
        """As written, or in the grammar for a selector built in code."""
        if self.text:
            return self.text
        if not self.matchers:
            return self.metric
        inner = ",".join(f"{m.name}{m.op.value}{_quoted(m.value)}" for m in self.matchers)
        return f"{self.metric}{{{inner}}}"


def _quoted(value: str) -> str:
    """A label value as the grammar writes it: in double quotes, a backslash before each backslash
    and double quote."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class SelectorError(ValueError):
    """A selector that is not a metric name with simple label matchers."""


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
        return SelectorError(f"invalid selector: {what} at position {self.pos}")

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

    def selector(self) -> SeriesSelector:
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
        return SeriesSelector(metric, tuple(matchers), text=self.text)


def _check_regex(label: str, value: str) -> None:
    if len(value) > MAX_REGEX_LENGTH:
        raise SelectorError(f"invalid selector: regex for {label!r} is longer than {MAX_REGEX_LENGTH}")
    try:
        re.compile(value)
    except re.error as err:
        raise SelectorError(f"invalid selector: regex for {label!r} does not compile: {err}") from None
    if _RE2_UNSUPPORTED.search(value):
        raise SelectorError(
            f"invalid selector: regex for {label!r} uses what Prometheus' RE2 lacks"
            " (lookaround, backreference, atomic group, possessive quantifier, flag other than i, m, s)"
        )


def parse_selector(text: str) -> SeriesSelector:
    """Parse a selector such as `http_requests_total{code!~"5..", handler="/api"}`; raises
    `SelectorError` for anything else."""
    if not text.strip():
        raise SelectorError("invalid selector: empty")
    if len(text) > _MAX_SELECTOR_LENGTH:
        raise SelectorError(f"invalid selector: longer than {_MAX_SELECTOR_LENGTH} characters")
    for bad, what in (("\n", "a newline"), ("\r", "a carriage return")):
        if bad in text:
            raise SelectorError(f"invalid selector: contains {what}")
    return _Parser(text).selector()
