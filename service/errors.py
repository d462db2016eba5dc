"""Failures inside the service, and how each one is classed.

    GatewayError                 anything that ends a request with an error body
    └── UpstreamError            a provider answered with an error, or could not be reached

Retry and fallback decisions read ``FailureClass`` only (never status codes or
message text): see ``service/resilience.py``. Foreign exceptions (httpx) are
mapped once, in :func:`map_transport_errors`.
"""

from __future__ import annotations

import contextlib
import email.utils
import enum
import time
from collections.abc import Iterator, Mapping

import httpx

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


def upstream_http_error(
    status: int, payload: object, headers: Mapping[str, str], *, provider: str, model: str
) -> UpstreamError:
    """An upstream error response -> UpstreamError, keeping the provider's message, type and code."""
    failure = classify_status(status)
    message, error_type, code, param = f"upstream returned HTTP {status}", None, None, None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or message)
        error_type = _str_or_none(error.get("type"))
        code = _str_or_none(error.get("code"))
        param = _str_or_none(error.get("param"))
    elif isinstance(error, str):
        message = error
    type_ = "not_found" if status == 404 else _TYPE_BY_CLASS[failure]
    if code == "content_filter":
        type_ = "content_filter"
    return UpstreamError(
        status,
        type_,
        message,
        failure=failure,
        code=code,
        param=param,
        error_type=error_type or type_,
        retry_after_s=parse_retry_after(headers),
        provider=provider,
        model=model,
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


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


@contextlib.contextmanager
def map_transport_errors(provider: str, model: str, *, mid_stream: bool = False) -> Iterator[None]:
    """httpx's exceptions -> UpstreamError, in this one place.

    ``mid_stream``: the response had started, so a broken connection is a broken stream.
    """
    try:
        yield
    except httpx.TransportError as exc:
        # The aiohttp transport reports a dropped connection as ConnectTimeout, so a
        # timeout is only a timeout when its root cause is one.
        cause = exc.__cause__
        if isinstance(exc, httpx.TimeoutException) and (cause is None or isinstance(cause, TimeoutError)):
            status, type_, failure = 504, "timeout", FailureClass.TIMEOUT
            message = f"upstream timed out ({type(exc).__name__})"
        else:
            status, failure = 502, FailureClass.TRANSIENT
            name = type(cause or exc).__name__
            if mid_stream:
                type_, message = (
                    "upstream_stream_broken",
                    f"the upstream connection broke mid-stream ({name})",
                )
            else:
                type_, message = "upstream_unreachable", f"could not reach the upstream ({name})"
        err = UpstreamError(status, type_, message, failure=failure, provider=provider, model=model)
        err.from_upstream = False
        raise err from exc
