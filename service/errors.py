"""Failures inside the service, and how each one is classed.

    GatewayError                 anything that ends a request with an error body
    └── UpstreamError            a provider answered with an error, or could not be reached

Retry and fallback decisions read ``FailureClass`` only (never status codes or
message text): see ``service/resilience.py``. Each provider maps its own error
payloads (``service/providers/``); httpx's exceptions are mapped once, at the
transport (``service/providers/transport.py``).
"""

from __future__ import annotations

import contextlib
import email.utils
import enum
import time
from collections.abc import Mapping

from switchyard.errors import error_body
from switchyard.v1 import chat_pb2 as pb


class FailureClass(enum.Enum):
    CALLER = "caller"  # the request itself is wrong (400, 404, 422, content filter): never retried
    CREDENTIAL = "credential"  # 401/403 from upstream: try another key
    RATE_LIMIT = "rate_limit"  # 429: another key now, or the same one after Retry-After
    TRANSIENT = "transient"  # 5xx, network errors: retry with backoff
    TIMEOUT = "timeout"  # the upstream did not answer in time: retry
    CONFIG = "config"  # nothing to call (no keys, unknown provider)

    @property
    def retryable(self) -> bool:
        return self in (FailureClass.RATE_LIMIT, FailureClass.TRANSIENT, FailureClass.TIMEOUT)

    @property
    def falls_back(self) -> bool:
        return self is not FailureClass.CALLER


class GatewayError(Exception):
    """A failure that ends in the contract's error body with ``status`` as its HTTP status."""

    # True only when the provider itself answered with this error (its status passes through).
    from_upstream: bool = False
    # True for governance's refusals (service/governance.py ``Refused``): counted apart in metrics.
    refusal: bool = False

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        failure: FailureClass = FailureClass.CALLER,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        retry_after_s: float | None = None,
        provider: str = "",
        model: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.failure = failure
        self.code = code
        self.param = param
        self.error_type = error_type
        self.retry_after_s = retry_after_s
        self.provider = provider
        self.model = model

    def to_body(
        self,
        *,
        model_requested: str,
        request_type: str,
        attempts: list[pb.Attempt],
        event_id: str | None = None,
    ) -> pb.ErrorBody:
        return error_body(
            self.status,
            self.type,
            self.message,
            code=self.code,
            param=self.param,
            error_type=self.error_type,
            provider=self.provider,
            model_requested=model_requested,
            request_type=request_type,
            attempts=attempts,
            from_gateway=not self.from_upstream,
            event_id=event_id,
        )

    def to_attempt(self) -> pb.Attempt:
        return pb.Attempt(
            provider=self.provider,
            model=self.model,
            status_code=self.status if self.from_upstream else 0,
            error_type=self.type,
            message=self.message[:300],
        )


class UpstreamError(GatewayError):
    """The provider failed. ``from_upstream`` is False for network errors and timeouts."""

    from_upstream: bool = True


def invalid_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, "invalid_request_error", message, param=param)


_CLASS_BY_STATUS = {
    401: FailureClass.CREDENTIAL,
    403: FailureClass.CREDENTIAL,
    408: FailureClass.TIMEOUT,
    409: FailureClass.TRANSIENT,
    429: FailureClass.RATE_LIMIT,
}

_TYPE_BY_CLASS = {
    FailureClass.CALLER: "invalid_request_error",
    FailureClass.CREDENTIAL: "authentication_error",
    FailureClass.RATE_LIMIT: "rate_limit_error",
    FailureClass.TRANSIENT: "upstream_error",
    FailureClass.TIMEOUT: "timeout",
}


def classify_status(status: int) -> FailureClass:
    if status in _CLASS_BY_STATUS:
        return _CLASS_BY_STATUS[status]
    if status >= 500:
        return FailureClass.TRANSIENT
    return FailureClass.CALLER


# The canonical code of "the prompt does not fit the model's context window": OpenAI and Azure
# send it as the error's code; dialects without a code of their own map to it from their
# message (``overflow_code``), in their own errors module. It is a caller error (never an
# ordinary fallback), but one a deployment's ``context_fallbacks`` (bigger models) can fix.
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"


def overflow_code(status: int, message: str | None, phrases: tuple[str, ...]) -> str | None:
    """``CONTEXT_LENGTH_EXCEEDED`` for a 400 whose message has one of the dialect's documented
    phrases (lower case), for providers that give the case no code; else None."""
    if status != 400 or not message:
        return None
    text = message.lower()
    return CONTEXT_LENGTH_EXCEEDED if any(phrase in text for phrase in phrases) else None


def upstream_error(
    status: int,
    headers: Mapping[str, str],
    *,
    message: str | None,
    failure: FailureClass | None = None,
    type_: str | None = None,
    error_type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    provider: str,
    model: str,
) -> UpstreamError:
    """The error a provider answered with, as each dialect's parser has read it; what it leaves
    out comes from the status (class, type) and the headers (Retry-After)."""
    failure = failure or classify_status(status)
    type_ = type_ or type_for(status, failure)
    return UpstreamError(
        status,
        type_,
        message or f"upstream returned HTTP {status}",
        failure=failure,
        code=code,
        param=param,
        error_type=error_type or type_,
        retry_after_s=parse_retry_after(headers),
        provider=provider,
        model=model,
    )


def str_or_none(value: object) -> str | None:
    """A JSON field as text, or None when it is missing or null."""
    return None if value is None else str(value)


def type_for(status: int, failure: FailureClass) -> str:
    """The contract's error ``type`` for an upstream status (providers refine it, e.g. content_filter)."""
    return "not_found" if status == 404 else _TYPE_BY_CLASS[failure]


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from retry-after-ms, x-ms-retry-after-ms or retry-after (seconds or HTTP date)."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            with contextlib.suppress(ValueError):
                return max(0.0, float(value) / 1000.0)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(value) if value else None
    if parsed is None:
        return None
    return max(0.0, parsed.timestamp() - time.time())
