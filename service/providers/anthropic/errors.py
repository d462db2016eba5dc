"""Anthropic's error payloads -> UpstreamError.

Anthropic names every error with a ``type`` (``{"type": "error", "error": {"type", "message"}}``),
both in HTTP error bodies and in a stream's ``error`` event. The type decides the failure class;
the HTTP status, when there is one, is kept as the status the caller sees.
"""

from __future__ import annotations

from collections.abc import Mapping

from service.errors import FailureClass, UpstreamError, overflow_code, str_or_none, upstream_error

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


# "prompt is too long: 208000 tokens > 200000 maximum" (an invalid_request_error with no code).
OVERFLOW_PHRASES = ("prompt is too long",)


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
        error_type = str_or_none(error.get("type"))
        message = str_or_none(error.get("message"))
    elif isinstance(payload, dict):
        message = str_or_none(payload.get("message"))
    known = ERROR_TYPES.get(error_type or "")
    if status is None:
        # A stream's error event comes inside a 200 response: its type is all there is.
        status = known[0] if known else 500
    return upstream_error(
        status,
        headers,
        message=message,
        failure=known[1] if known else None,
        error_type=error_type,
        code=overflow_code(status, message, OVERFLOW_PHRASES),
        provider=provider,
        model=model,
    )
