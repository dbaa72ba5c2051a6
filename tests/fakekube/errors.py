"""API errors as the real server reports them: an HTTP code plus a `meta/v1` Status body."""

from __future__ import annotations

from typing import Any

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

# The texts kube-apiserver itself uses, so log-scraping tests see familiar messages.
MESSAGES = {
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected fault",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted",
}


class ApiError(Exception):
    """Raised anywhere in the fake; the HTTP layer turns it into a Status response."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details = dict(self.details or {})
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            body["details"] = details
        return body


def _details(group: str, plural: str, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": plural}
    if group:
        details["group"] = group
    return details


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    message = f'{_qualified(group, plural)} "{name}" not found'
    return ApiError(404, message, details=_details(group, plural, name))


def already_exists(group: str, plural: str, name: str) -> ApiError:
    message = f'{_qualified(group, plural)} "{name}" already exists'
    return ApiError(409, message, reason="AlreadyExists", details=_details(group, plural, name))


def conflict(group: str, plural: str, name: str, why: str | None = None) -> ApiError:
    why = (
        why
        or "the object has been modified; please apply your changes to the latest version and try again"
    )
    message = f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": {why}'
    return ApiError(409, message, details=_details(group, plural, name))


def invalid(group: str, kind: str, name: str, causes: list[tuple[str, Any, str]]) -> ApiError:
    """`causes` are (field, bad value, why) triples, as in field.ErrorList."""
    texts = [f"{field}: Invalid value: {json_text(value)}: {why}" for field, value, why in causes]
    shown = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    qualified = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {json_text(value)}: {why}",
                "field": field,
            }
            for field, value, why in causes
        ],
    }
    if group:
        details["group"] = group
    return ApiError(422, f'{qualified} "{name}" is invalid: {shown}', details=details)


def forbidden_field(group: str, kind: str, name: str, field: str, why: str) -> ApiError:
    """422 Invalid for a change the field's validation forbids (field.Forbidden), not a bad value."""
    qualified = f"{kind}.{group}" if group else kind
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [{"reason": "FieldValueForbidden", "message": f"Forbidden: {why}", "field": field}],
    }
    if group:
        details["group"] = group
    return ApiError(422, f'{qualified} "{name}" is invalid: {field}: Forbidden: {why}', details=details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def method_not_allowed() -> ApiError:
    return ApiError(405, "the server does not allow this method on the requested resource")


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    message = (
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)} (got {content_type or 'none'})"
    )
    return ApiError(415, message)


def expired(message: str) -> ApiError:
    return ApiError(410, message, reason="Expired")


def path_not_found() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", details={})


def fault(code: int, retry_after: int | None = None) -> ApiError:
    return ApiError(code, MESSAGES.get(code, f"injected fault {code}"), retry_after=retry_after)


def json_text(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
