"""Label selectors (equality- and set-based, as `labels.Parse` reads them) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_NOT_EXISTS = re.compile(rf"^!\s*({_KEY})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\((.*)\)$")
_COMPARE = re.compile(rf"^({_KEY})\s*(==|=|!=|>|<)\s*({_VALUE})$")
_EXISTS = re.compile(rf"^({_KEY})$")


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class _Requirement:
    key: str
    test: Callable[[str | None], bool]


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SelectorError(f"for 'Gt', 'Lt' operators, the value must be an integer: {text}") from None


def _requirement(text: str) -> _Requirement:
    if match := _NOT_EXISTS.match(text):
        return _Requirement(match[1], lambda have: have is None)
    if match := _SET.match(text):
        values = {value.strip() for value in match[3].split(",") if value.strip()}
        if match[2] == "in":
            return _Requirement(match[1], lambda have: have in values)
        return _Requirement(match[1], lambda have: have not in values)
    if match := _COMPARE.match(text):
        key, op, value = match[1], match[2], match[3]
        if op in ("=", "=="):
            return _Requirement(key, lambda have: have == value)
        if op == "!=":
            return _Requirement(key, lambda have: have != value)
        bound = _integer(value)
        if op == ">":
            return _Requirement(
                key, lambda have: have is not None and have.isdigit() and int(have) > bound
            )
        return _Requirement(key, lambda have: have is not None and have.isdigit() and int(have) < bound)
    if match := _EXISTS.match(text):
        return _Requirement(match[1], lambda have: have is not None)
    raise SelectorError(f"unable to parse requirement: {text!r}")


class LabelSelector:
    def __init__(self, text: str | None) -> None:
        self.text = (text or "").strip()
        parts = _split_top_level(self.text) if self.text else []
        if any(not part for part in parts):
            raise SelectorError(f"unable to parse requirement: found empty requirement in {self.text!r}")
        self._requirements = [_requirement(part) for part in parts]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(req.test(labels.get(req.key)) for req in self._requirements)


class FieldSelector:
    """`path=value`, `path==value`, `path!=value`, joined by commas, on any dotted path of the object.

    The real server allows only a few paths per kind; being lenient here costs a test nothing."""

    def __init__(self, text: str | None) -> None:
        self.text = (text or "").strip()
        self._terms: list[tuple[str, bool, str]] = []
        for part in _split_unescaped(self.text, ",") if self.text else []:
            for op, equal in (("!=", False), ("==", True), ("=", True)):
                if op in part:
                    path, value = part.split(op, 1)
                    self._terms.append((path.strip(), equal, _unescape(value.strip())))
                    break
            else:
                raise SelectorError(f"invalid selector: '{self.text}'; can't understand '{part}'")

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, path) == value) == equal for path, equal, value in self._terms)

    def single_name(self) -> str | None:
        """The name a `metadata.name=X` selector pins, which lets a watch skip everything else."""
        for path, equal, value in self._terms:
            if path == "metadata.name" and equal:
                return value
        return None


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector object in its string form, as `Scale.status.selector` carries it."""
    if not selector:
        return ""
    terms: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        terms.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), sorted(expr.get("values") or [])
        if op == "In":
            terms.append((key, f"{key} in ({','.join(values)})"))
        elif op == "NotIn":
            terms.append((key, f"{key} notin ({','.join(values)})"))
        elif op == "Exists":
            terms.append((key, key))
        elif op == "DoesNotExist":
            terms.append((key, f"!{key}"))
    return ",".join(text for _, text in sorted(terms))


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether a LabelSelector object selects these labels (empty selects everything)."""
    return LabelSelector(selector_string(selector)).matches(labels)
