"""Request ids: the caller's ``x-request-id``, or one Switchyard makes.

The gateway takes the header (or makes an id) and forwards it as call metadata; the
service takes it from the metadata (a gRPC caller may send it too) and puts it in its
log lines, the request-log entry and error bodies (the contract's ``event_id``); both
edges return it (the HTTP header, gRPC initial metadata). One id per call, so a caller
can match its response to a log entry.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from contextvars import ContextVar

HEADER = "x-request-id"
_HEADER_BYTES = HEADER.encode()

# Printable ASCII without spaces, as proxies and tracing systems send it; anything else
# (too long, control characters) is replaced rather than echoed back or logged.
_VALID = re.compile(r"[\x21-\x7e]{1,128}")

# The id of the request the current task serves, for log lines deep in the service.
current_request_id: ContextVar[str] = ContextVar("switchyard_request_id", default="-")


def new_request_id() -> str:
    return uuid.uuid4().hex


def checked(value: str | bytes | None) -> str | None:
    """``value`` if it is a usable request id, else None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value if _VALID.fullmatch(value) else None


def request_id_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The request id in gRPC call metadata, or a new one."""
    for name, value in metadata:
        if name == HEADER:
            found = checked(value)
            if found is not None:
                return found
    return new_request_id()


def request_id_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request id in raw ASGI headers, or a new one."""
    for name, value in headers:
        if name == _HEADER_BYTES:
            found = checked(value)
            if found is not None:
                return found
    return new_request_id()
