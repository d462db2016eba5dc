"""The one place the gateway turns a failure into an HTTP response or SSE error event."""

from __future__ import annotations

import math

import orjson
from starlette.responses import Response

from switchyard import codec
from switchyard.errors import DecodedError, error_body


def error_response(error: DecodedError) -> Response:
    headers: dict[str, str] = {}
    if error.retry_after_s is not None:
        headers["retry-after"] = str(math.ceil(error.retry_after_s))
        headers["retry-after-ms"] = str(int(error.retry_after_s * 1000))
    return Response(
        orjson.dumps(codec.error_to_dict(error.body)),
        status_code=error.http_status,
        headers=headers,
        media_type="application/json",
    )


def gateway_error(
    status: int, type_: str, message: str, *, param: str | None = None, event_id: str | None = None
) -> Response:
    """An error the gateway finds itself (unparseable JSON, body too large)."""
    body = error_body(status, type_, message, param=param, event_id=event_id)
    return error_response(DecodedError(http_status=status, body=body, retry_after_s=None))


def sse_error_event(error: DecodedError) -> bytes:
    """A mid-stream failure: one `data:` event with the error body; no [DONE] follows."""
    return b"data: " + orjson.dumps(codec.error_to_dict(error.body)) + b"\n\n"
