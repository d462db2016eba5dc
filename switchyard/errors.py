"""The contract's error body, and its trip through gRPC, in one place.

The service turns every failure into an ``ErrorBody`` and sends it as a
``google.rpc.Status`` with three details: ``ErrorInfo`` (reason = error type,
metadata carries the HTTP status, since e.g. 402 has no gRPC code),
``RetryInfo`` (when the caller should wait) and the ``ErrorBody`` itself. The
gateway decodes that status and renders the body with the same HTTP status a
REST caller of the upstream would have seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from switchyard.v1 import chat_pb2 as pb

ERROR_DOMAIN = "switchyard"

# HTTP status -> gRPC code (google.rpc.Code's canonical mapping, read in reverse).
_GRPC_CODE_FOR_HTTP: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    402: grpc.StatusCode.FAILED_PRECONDITION,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

# gRPC code -> HTTP status, for statuses that carry no ErrorBody (e.g. the service is down).
HTTP_FOR_GRPC_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


def grpc_code_for_http(status: int) -> grpc.StatusCode:
    if status in _GRPC_CODE_FOR_HTTP:
        return _GRPC_CODE_FOR_HTTP[status]
    if 400 <= status < 500:
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.UNKNOWN


def error_body(
    status: int,
    type_: str,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    error_type: str | None = None,
    provider: str = "",
    model_requested: str = "",
    request_type: str = "",
    attempts: Iterable[pb.Attempt] = (),
    from_gateway: bool = True,
    event_id: str | None = None,
) -> pb.ErrorBody:
    """Build the contract's error body. ``error_type`` defaults to ``type_``.

    ``from_gateway`` (the contract's ``is_bifrost_error``) is False only for an
    error the upstream provider answered with.
    """
    detail = pb.ErrorDetail(message=message, type=error_type or type_)
    if code is not None:
        detail.code = code
    if param is not None:
        detail.param = param
    body = pb.ErrorBody(
        type=type_,
        is_bifrost_error=from_gateway,
        status_code=status,
        error=detail,
        extra_fields=pb.ErrorExtraFields(
            provider=provider,
            model_requested=model_requested,
            request_type=request_type,
            attempts=list(attempts),
        ),
    )
    if event_id is not None:
        # The request id: the same value as the x-request-id header and the request-log entry.
        body.event_id = event_id
        body.error.event_id = event_id
    return body


@dataclass(frozen=True, slots=True)
class DecodedError:
    """What the gateway needs from a failed call."""

    http_status: int
    body: pb.ErrorBody
    retry_after_s: float | None


def encode_status(
    body: pb.ErrorBody, retry_after_s: float | None = None
) -> tuple[grpc.StatusCode, str, tuple]:
    """-> (code, details, trailing_metadata) for ``context.abort``."""
    code = grpc_code_for_http(body.status_code)
    info = error_details_pb2.ErrorInfo(
        reason=body.type,
        domain=ERROR_DOMAIN,
        metadata={"http_status": str(body.status_code)},
    )
    details = [_pack(info)]
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after_s * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    details.append(_pack(body))
    status = status_pb2.Status(code=code.value[0], message=body.error.message, details=details)
    grpc_status = rpc_status.to_status(status)
    return grpc_status.code, grpc_status.details, grpc_status.trailing_metadata


def decode_status(
    code: grpc.StatusCode, details: str | None, trailing_metadata: Iterable[tuple[str, str | bytes]] | None
) -> DecodedError:
    """The inverse of :func:`encode_status`; also copes with plain gRPC errors."""
    status = _status_from_metadata(trailing_metadata)
    body: pb.ErrorBody | None = None
    retry_after: float | None = None
    if status is not None:
        for detail in status.details:
            if detail.Is(pb.ErrorBody.DESCRIPTOR):
                body = pb.ErrorBody()
                detail.Unpack(body)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                retry_after = info.retry_delay.ToNanoseconds() / 1e9
    if body is None:
        http = HTTP_FOR_GRPC_CODE.get(code, 500)
        type_ = {
            grpc.StatusCode.UNAVAILABLE: "service_unavailable",
            grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
            grpc.StatusCode.CANCELLED: "cancelled",
        }.get(code, "internal_error")
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            # Our own rate limits always carry an ErrorBody; a bare RESOURCE_EXHAUSTED comes
            # from gRPC itself: a message over server.max_message_bytes.
            http, type_ = 413, "message_too_large"
        body = error_body(http, type_, details or code.name.lower())
    return DecodedError(http_status=body.status_code or 500, body=body, retry_after_s=retry_after)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _status_from_metadata(
    trailing_metadata: Iterable[tuple[str, str | bytes]] | None,
) -> status_pb2.Status | None:
    for key, value in trailing_metadata or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status()
            status.MergeFromString(value)
            return status
    return None


__all__ = [
    "HTTP_FOR_GRPC_CODE",
    "DecodedError",
    "decode_status",
    "encode_status",
    "error_body",
    "grpc_code_for_http",
]
