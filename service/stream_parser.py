"""Upstream SSE payloads -> canonical chunks, tolerating the odd malformed payload.

Real upstreams (and the proxies in front of them) sometimes send one garbled event in
an otherwise good stream. Dropping a whole answer for it is worse than skipping it, so
a single bad payload is skipped, logged and counted (``ServiceStats``); only a run of
bad payloads, or a stream with nothing valid in it, fails as ``upstream_bad_response``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson

from service.errors import FailureClass, GatewayError
from service.routing import Target
from service.stats import ServiceStats
from switchyard import codec
from switchyard.request_id import current_request_id
from switchyard.v1 import chat_pb2 as pb

log = logging.getLogger("switchyard.service")

# Bad payloads in a row that end the stream: one or two is noise, three is a broken upstream.
MAX_BAD_IN_A_ROW = 3


class StreamParser:
    def __init__(self, target: Target, stats: ServiceStats) -> None:
        self._target = target
        self._stats = stats
        self.valid = 0
        self.skipped = 0
        self._bad_in_a_row = 0

    async def chunks(self, payloads: AsyncIterator[bytes]) -> AsyncIterator[pb.ChatCompletionChunk]:
        """The chunks of an upstream stream of SSE ``data:`` payloads; raises GatewayError."""
        try:
            async for data in payloads:
                chunk = self.parse(data)
                if chunk is not None:
                    yield chunk
        except GatewayError:
            self._check_end()  # nothing valid came before the break: that is the failure to report
            raise
        finally:
            await payloads.aclose()  # type: ignore[attr-defined]
        self._check_end()

    def _check_end(self) -> None:
        if not self.valid and self.skipped:
            raise self._error(f"the upstream stream carried no valid chunk ({self.skipped} malformed)")

    def parse(self, data: bytes) -> pb.ChatCompletionChunk | None:
        """The chunk in ``data``, or None when it is malformed and skipped."""
        try:
            parsed = orjson.loads(data)
            if not isinstance(parsed, dict):
                raise TypeError("not a JSON object")
            chunk = codec.response_from_dict(parsed, pb.ChatCompletionChunk)
        except (orjson.JSONDecodeError, TypeError, codec.CodecError) as exc:
            self._skip(exc)
            return None
        self.valid += 1
        self._bad_in_a_row = 0
        return chunk

    def _skip(self, exc: Exception) -> None:
        self.skipped += 1
        self._bad_in_a_row += 1
        self._stats.malformed_stream_chunks += 1
        reason = exc.message if isinstance(exc, codec.CodecError) else str(exc)
        log.warning(
            "skipped a malformed chunk from %s (%s) request_id=%s",
            self._target.label,
            reason[:200],
            current_request_id.get(),
        )
        if self._bad_in_a_row >= MAX_BAD_IN_A_ROW:
            raise self._error(f"the upstream sent {self._bad_in_a_row} malformed chunks in a row")

    def _error(self, message: str) -> GatewayError:
        return GatewayError(
            502,
            "upstream_bad_response",
            message,
            failure=FailureClass.TRANSIENT,
            provider=self._target.provider,
            model=self._target.model,
        )
