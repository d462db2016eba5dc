"""Counters the service keeps about itself, shown by the Admin API's ``GetStats`` (``/api/stats``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ServiceStats:
    # Upstream stream payloads that were not a valid chunk and were skipped.
    malformed_stream_chunks: int = 0
    # Streams ended with 503 server_shutting_down because the shutdown grace ran out.
    streams_ended_at_shutdown: int = 0
