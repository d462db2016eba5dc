"""Google's error payloads -> UpstreamError.

Every Google API answers errors as ``{"error": {"code", "message", "status", "details"}}``, where
``status`` is the canonical gRPC code name (``RESOURCE_EXHAUSTED``…). The name decides the failure
class; two of the ``details`` refine it: an ``ErrorInfo`` whose ``reason`` says the API key itself
is bad (Gemini answers an invalid key with 400 INVALID_ARGUMENT, which is no fault of the caller's),
and a ``RetryInfo`` whose ``retryDelay`` says when to come back (Gemini sends it instead of a
Retry-After header).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from service.errors import FailureClass, UpstreamError, overflow_code, str_or_none, upstream_error

# Google's status name -> (the HTTP status Google pairs it with, our failure class).
STATUSES: Mapping[str, tuple[int, FailureClass]] = {
    "INVALID_ARGUMENT": (400, FailureClass.CALLER),
    "OUT_OF_RANGE": (400, FailureClass.CALLER),
    # "User location is not supported", "enable billing": the key's project, not the request, is
    # at fault, so another key (or another provider) may well work.
    "FAILED_PRECONDITION": (400, FailureClass.CREDENTIAL),
    "UNAUTHENTICATED": (401, FailureClass.CREDENTIAL),
    "PERMISSION_DENIED": (403, FailureClass.CREDENTIAL),
    "NOT_FOUND": (404, FailureClass.CALLER),
    "ALREADY_EXISTS": (409, FailureClass.CALLER),
    "ABORTED": (409, FailureClass.TRANSIENT),
    "RESOURCE_EXHAUSTED": (429, FailureClass.RATE_LIMIT),
    "CANCELLED": (499, FailureClass.TRANSIENT),
    "UNKNOWN": (500, FailureClass.TRANSIENT),
    "INTERNAL": (500, FailureClass.TRANSIENT),
    "DATA_LOSS": (500, FailureClass.TRANSIENT),
    # The model does not do what was asked (an unsupported feature): retrying cannot help.
    "UNIMPLEMENTED": (501, FailureClass.CALLER),
    "UNAVAILABLE": (503, FailureClass.TRANSIENT),
    "DEADLINE_EXCEEDED": (504, FailureClass.TIMEOUT),
}

# ErrorInfo reasons that blame the API key, and the status that says so.
KEY_REASONS: Mapping[str, int] = {
    "API_KEY_INVALID": 401,
    "API_KEY_EXPIRED": 401,
    "API_KEY_SERVICE_BLOCKED": 403,
    "API_KEY_HTTP_REFERRER_BLOCKED": 403,
    "API_KEY_IP_ADDRESS_BLOCKED": 403,
    "API_KEY_ANDROID_APP_BLOCKED": 403,
    "API_KEY_IOS_APP_BLOCKED": 403,
}

_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?)s\s*")


def is_google_error(payload: object) -> bool:
    """Whether ``payload`` is Google's error shape (Vertex's Anthropic models answer in Anthropic's
    own shape for model errors, and in Google's for the platform's: quota, auth, routing)."""
    error = _error_object(payload)
    return error is not None and ("status" in error or isinstance(error.get("code"), int))


# "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."
OVERFLOW_PHRASES = ("input token count", "exceeds the maximum number of tokens")


def google_error(
    status: int | None, payload: object, headers: Mapping[str, str], *, provider: str, model: str
) -> UpstreamError:
    """A Google error body (HTTP ``status``) or an error inside a stream (``status=None``)."""
    error = _error_object(payload)
    message = name = reason = None
    retry_delay: float | None = None
    if error is not None:
        message = str_or_none(error.get("message"))
        name = str_or_none(error.get("status"))
        if status is None and isinstance(error.get("code"), int):
            status = error["code"]
        reason, retry_delay = _details(error.get("details"))
    elif isinstance(payload, Mapping):
        message = str_or_none(payload.get("message"))
    known = STATUSES.get(name or "")
    failure = known[1] if known else None
    if status is None:
        status = known[0] if known else 500
    if reason is not None and reason in KEY_REASONS:
        status, failure = KEY_REASONS[reason], FailureClass.CREDENTIAL
    err = upstream_error(
        status,
        headers,
        message=message,
        failure=failure,
        error_type=name,
        code=reason or overflow_code(status, message, OVERFLOW_PHRASES),
        provider=provider,
        model=model,
    )
    if err.retry_after_s is None:
        err.retry_after_s = retry_delay
    return err


def _error_object(payload: object) -> Mapping[str, Any] | None:
    # Some Google endpoints wrap the error in a one-element list.
    if isinstance(payload, list) and payload:
        payload = payload[0]
    error = payload.get("error") if isinstance(payload, Mapping) else None
    return error if isinstance(error, Mapping) else None


def _details(details: object) -> tuple[str | None, float | None]:
    """(the ErrorInfo reason, the RetryInfo delay in seconds), where present."""
    reason: str | None = None
    delay: float | None = None
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, Mapping):
            continue
        kind = detail.get("@type")
        if kind == _ERROR_INFO and isinstance(detail.get("reason"), str):
            reason = detail["reason"]
        elif kind == _RETRY_INFO:
            match = _DURATION.fullmatch(str(detail.get("retryDelay") or ""))
            if match:
                delay = float(match.group(1))
    return reason, delay


def blocked_prompt_error(feedback: Mapping[str, Any], *, provider: str, model: str) -> UpstreamError:
    """Gemini refused the prompt itself (``promptFeedback.blockReason``), in a 200 answer.

    It is the caller's content, so it is theirs to change: a 400 ``content_filter`` (as Azure's
    filter answers), never retried and never sent to a fallback, which would only see it again.
    """
    reason = str(feedback.get("blockReason") or "BLOCKED_REASON_UNSPECIFIED")
    detail = feedback.get("blockReasonMessage")
    message = f"the prompt was blocked by Gemini's safety filters (blockReason {reason})"
    if isinstance(detail, str) and detail:
        message += f": {detail}"
    return upstream_error(
        400,
        {},
        message=message,
        failure=FailureClass.CALLER,
        # Typed and coded as Azure's content filter is, so callers need one check for both.
        type_="content_filter",
        code="content_filter",
        param="messages",
        provider=provider,
        model=model,
    )
