"""Server-sent events: a byte stream -> ``(event, data)`` pairs.

OpenAI's dialect uses only ``data:`` lines (and ends with ``data: [DONE]``); Anthropic's names
each event (``event: content_block_delta``) and ends with ``message_stop``. Both come out of
this one reader; each provider decides what the events mean.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager


async def iter_sse(
    chunks: AsyncIterator[bytes],
    read_errors: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> AsyncIterator[tuple[bytes, bytes]]:
    """One ``(event, data)`` per event; ``event`` is ``b""`` when the event has no name, and
    multi-line data is joined with newlines. Comments, ``id:`` and ``retry:`` are skipped.

    ``read_errors`` wraps the reading (a provider maps transport errors there): here rather
    than in a generator around this one, which would cost a hop per event."""
    buffer = b""
    event = b""
    data_lines: list[bytes] = []
    with read_errors():
        async for chunk in chunks:
            buffer += chunk
            while True:
                newline = buffer.find(b"\n")
                if newline < 0:
                    break
                line = buffer[:newline].rstrip(b"\r")
                buffer = buffer[newline + 1 :]
                if not line:
                    if data_lines:
                        yield event, b"\n".join(data_lines)
                        data_lines = []
                    event = b""
                elif line.startswith(b"data:"):
                    data_lines.append(line[6:] if line[5:6] == b" " else line[5:])
                elif line.startswith(b"event:"):
                    event = line[6:].strip()
    if data_lines:
        yield event, b"\n".join(data_lines)
