"""Request bodies in Kubernetes' protobuf encoding, for the kinds whose typed client writes them here.

client-go's typed clientsets for built-in kinds send protobuf (`application/vnd.kubernetes.protobuf`)
and accept JSON back; Helm stores its release records as Secrets through one. A body is the magic
`k8s\\x00` followed by a `runtime.Unknown` whose `raw` is the object's message; field numbers are those
of k8s.io/api/core/v1 and k8s.io/apimachinery/pkg/apis/meta/v1 generated.proto. Only Secrets, Namespaces
and DeleteOptions are decoded: any other kind, or a field these decoders do not know, is refused with the
415 a server that cannot read the body gives, so a test never runs on a silently dropped field.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from tests.fakekube import errors

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

Field = tuple[int, int, Any]  # number, wire type, value (int for varints, bytes otherwise)


class _Undecodable(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise _Undecodable("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[Field]:
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == _LEN:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise _Undecodable("truncated field")
            yield number, wire, data[pos : pos + length]
            pos += length
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            yield number, wire, data[pos : pos + size]
            pos += size
        else:
            raise _Undecodable(f"wire type {wire}")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(value: bytes) -> str:
    return value.decode("utf-8")


def _entry(value: bytes) -> tuple[str, bytes]:
    key, item = "", b""
    for number, _, part in _fields(value):
        if number == 1:
            key = _text(part)
        elif number == 2:
            item = part
    return key, item


def _time(value: bytes) -> str | None:
    seconds = next((_signed(v) for n, _, v in _fields(value) if n == 1), 0)
    if not seconds:
        return None  # the zero Time, which JSON writes as null
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decode(kind: str, data: bytes, handlers: dict[int, Callable[[Any, dict[str, Any]], None]]) -> Any:
    obj: dict[str, Any] = {}
    for number, _, value in _fields(data):
        handler = handlers.get(number)
        if handler is None:
            raise _Undecodable(f"{kind} field {number}")
        handler(value, obj)
    return obj


def _set(
    key: str, convert: Callable[[Any], Any], *, omitempty: bool = True
) -> Callable[[Any, dict[str, Any]], None]:
    """A scalar or message field. Go's protobuf writes non-pointer fields even when empty, where
    JSON's omitempty leaves them out: `omitempty` drops them again; pointer fields keep a zero."""

    def handle(value: Any, obj: dict[str, Any]) -> None:
        converted = convert(value)
        if converted is None or (omitempty and converted in ("", 0)):
            return
        obj[key] = converted

    return handle


def _map(key: str, convert: Callable[[bytes], Any]) -> Callable[[Any, dict[str, Any]], None]:
    def handle(value: Any, obj: dict[str, Any]) -> None:
        name, item = _entry(value)
        obj.setdefault(key, {})[name] = convert(item)

    return handle


def _append(key: str, convert: Callable[[Any], Any]) -> Callable[[Any, dict[str, Any]], None]:
    def handle(value: Any, obj: dict[str, Any]) -> None:
        obj.setdefault(key, []).append(convert(value))

    return handle


_OBJECT_META = {
    1: _set("name", _text),
    2: _set("generateName", _text),
    3: _set("namespace", _text),
    4: _set("selfLink", _text),
    5: _set("uid", _text),
    6: _set("resourceVersion", _text),
    7: _set("generation", _signed),
    8: _set("creationTimestamp", _time),
    9: _set("deletionTimestamp", _time),
    10: _set("deletionGracePeriodSeconds", _signed, omitempty=False),
    11: _map("labels", _text),
    12: _map("annotations", _text),
    14: _append("finalizers", _text),
}


def _meta(value: bytes) -> Any:
    return _decode("ObjectMeta", value, _OBJECT_META)


_SECRET = {
    1: _set("metadata", _meta),
    2: _map("data", lambda raw: base64.b64encode(raw).decode("ascii")),
    3: _set("type", _text),
    4: _map("stringData", _text),
    5: _set("immutable", bool, omitempty=False),
}


def _preconditions(value: bytes) -> Any:
    return _decode("Preconditions", value, {1: _set("uid", _text), 2: _set("resourceVersion", _text)})


_DELETE_OPTIONS = {
    1: _set("gracePeriodSeconds", _signed, omitempty=False),
    2: _set("preconditions", _preconditions),
    3: _set("orphanDependents", bool, omitempty=False),
    4: _set("propagationPolicy", _text),
    5: _append("dryRun", _text),
}


def _namespace_spec(value: bytes) -> Any:
    return _decode("NamespaceSpec", value, {1: _append("finalizers", _text)})


def _namespace_status(value: bytes) -> Any:
    return _decode("NamespaceStatus", value, {1: _set("phase", _text)})


# `kubectl create namespace` sends one.
_NAMESPACE = {
    1: _set("metadata", _meta),
    2: _set("spec", _namespace_spec),
    3: _set("status", _namespace_status),
}

_KINDS = {
    ("v1", "Secret"): _SECRET,
    ("v1", "Namespace"): _NAMESPACE,
    ("v1", "DeleteOptions"): _DELETE_OPTIONS,
    ("meta.k8s.io/v1", "DeleteOptions"): _DELETE_OPTIONS,
}


def decode(body: bytes) -> dict[str, Any]:
    """The JSON-shaped object of a protobuf request body (kind and apiVersion included)."""
    try:
        if not body.startswith(_MAGIC):
            raise _Undecodable("no k8s protobuf magic")
        envelope = {n: v for n, _, v in _fields(body[len(_MAGIC) :])}
        type_meta = {n: _text(v) for n, _, v in _fields(envelope.get(1, b""))}
        api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
        handlers = _KINDS.get((api_version, kind))
        if handlers is None:
            raise _Undecodable(f"kind {api_version}/{kind}")
        obj: dict[str, Any] = _decode(kind, envelope.get(2, b""), handlers)
    except (_Undecodable, UnicodeDecodeError) as exc:
        raise errors.unsupported_media_type(
            f"{CONTENT_TYPE} ({exc}, which fakekube does not decode)", ["application/json"]
        ) from exc
    return {"kind": kind, "apiVersion": api_version, **obj}
