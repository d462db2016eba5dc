"""Anthropic's error payloads -> UpstreamError.

Anthropic names every error with a ``type`` (``{"type": "error", "error": {"type", "message"}}``),
both in HTTP error bodies and in a stream's ``error`` event. The type decides the failure class;
the HTTP status, when there is one, is kept as the status the caller sees.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.errors import FailureClass, UpstreamError, classify_status, parse_retry_after, type_for

# Anthropic's error type -> (its HTTP status, our failure class).
ERROR_TYPES: Mapping[str, tuple[int, FailureClass]] = {
    "invalid_request_error": (400, FailureClass.CALLER),
    "authentication_error": (401, FailureClass.CREDENTIAL),
    # Billing belongs to the key's organisation: another key may well be in good standing.
    "billing_error": (402, FailureClass.CREDENTIAL),
    "permission_error": (403, FailureClass.CREDENTIAL),
    "not_found_error": (404, FailureClass.CALLER),
    "request_too_large": (413, FailureClass.CALLER),
    "rate_limit_error": (429, FailureClass.RATE_LIMIT),
    "api_error": (500, FailureClass.TRANSIENT),
    "timeout_error": (504, FailureClass.TIMEOUT),
    # Anthropic as a whole is busy, not this request or key: retry, then fall back.
    "overloaded_error": (529, FailureClass.TRANSIENT),
}


def anthropic_error(
    status: int | None,
    payload: object,
    headers: Mapping[str, str],
    *,
    provider: str,
    model: str,
) -> UpstreamError:
    """An Anthropic error body (HTTP ``status``) or ``error`` event (``status=None``) -> UpstreamError."""
    error = payload.get("error") if isinstance(payload, dict) else None
    error_type = message = None
    if isinstance(error, dict):
        error_type = _str_or_none(error.get("type"))
        message = _str_or_none(error.get("message"))
    elif isinstance(payload, dict):
        message = _str_or_none(payload.get("message"))
    known = ERROR_TYPES.get(error_type or "")
    if status is None:
        # A stream's error event comes inside a 200 response: its type is all there is.
        status = known[0] if known else 500
    failure = known[1] if known else classify_status(status)
    type_ = type_for(status, failure)
    return UpstreamError(
        status,
        type_,
        message or f"upstream returned HTTP {status}",
        failure=failure,
        error_type=error_type or type_,
        retry_after_s=parse_retry_after(headers),
        provider=provider,
        model=model,
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
