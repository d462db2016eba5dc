"""ConverseStream's ``application/vnd.amazon.eventstream`` framing -> ``(event type, payload)`` pairs.

Each frame is a binary message (prelude, headers, payload, CRCs), decoded by botocore's own
parser (``EventStreamBuffer``), never by hand. The ``:message-type`` header says what a frame
is: an ``event`` (its ``:event-type`` names it: ``messageStart``, ``contentBlockDelta``…), an
``exception`` (``:exception-type``, e.g. ``throttlingException``, with ``{"message"}`` as its
payload) or an ``error`` (``:error-code`` and ``:error-message`` headers). Events go to the
stream translator; exceptions and errors end the stream as the mapped UpstreamError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager

import orjson
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from service.errors import GatewayError

# (error type, payload) -> the error to raise; the provider binds its name and model.
ErrorFactory = Callable[[str, object], GatewayError]
# why -> the error for framing that cannot be read (a corrupt frame cannot be skipped: what
# follows it cannot be found).
BadFraming = Callable[[str], GatewayError]


async def iter_events(
    chunks: AsyncIterator[bytes],
    read_errors: Callable[[], AbstractContextManager[None]],
    error: ErrorFactory,
    bad_framing: BadFraming,
) -> AsyncIterator[tuple[bytes, bytes]]:
    """One ``(event type, payload)`` per event frame; exception and error frames raise."""
    buffer = EventStreamBuffer()
    with read_errors():
        async for chunk in chunks:
            buffer.add_data(chunk)
            while True:
                try:
                    message = buffer.next()
                except StopIteration:
                    break
                except ParserError as exc:
                    raise bad_framing(f"{type(exc).__name__}: {exc}") from None
                yield _event(message, error)


def _event(message: EventStreamMessage, error: ErrorFactory) -> tuple[bytes, bytes]:
    headers = message.headers
    kind = headers.get(":message-type")
    if kind == "event":
        return str(headers.get(":event-type", "")).encode(), message.payload
    if kind == "exception":
        try:
            payload: object = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            payload = {"message": message.payload[:500].decode("utf-8", "replace")}
        raise error(str(headers.get(":exception-type", "")), payload)
    # An `error` frame (or a type this reader does not know): its headers say what went wrong.
    code = str(headers.get(":error-code") or kind or "")
    raise error(code, {"message": headers.get(":error-message")})
