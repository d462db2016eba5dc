"""Log output for every process: readable text for people, or one JSON object a line.

``logging.format: json`` gives each record as ``{"time", "level", "logger", "message",
"request_id", "trace_id", ...}``, plus the request's fields on the access line
(``switchyard.access``: key id, team, model, provider, status, latency…). The request and
trace ids come from context variables the service sets for the task serving a call, so
every line a call causes carries them without being passed along.

Log lines never carry secrets: nothing here adds a header or a key; the access line holds
key *ids* only.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

from switchyard.config import LoggingConfig
from switchyard.request_id import current_request_id

# The trace id (32 hex digits) of the span the current task serves, when tracing is on.
current_trace_id: ContextVar[str | None] = ContextVar("switchyard_trace_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
ACCESS_LOGGER = "switchyard.access"


def configure(config: LoggingConfig) -> None:
    """Install the chosen format on the root logger (uvicorn's loggers propagate to it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level.upper())
    # What no format here shows, not gathered for every record: the "Optimization" knobs of the
    # logging docs (thread, process and task names cost a few µs a record).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # httpx logs every upstream request at INFO: noise, and CPU on the hot path.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not config.access_log:
        logging.getLogger(ACCESS_LOGGER).setLevel(logging.WARNING)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's own fields, without the empty ones: its ``fields`` mapping (the access
    line's, see :func:`log_fields`), else whatever ``extra=`` put on it."""
    attributes = record.__dict__
    given = attributes.get("fields")
    if isinstance(given, dict):
        return {k: v for k, v in given.items() if v is not None}
    return {
        k: v for k, v in attributes.items() if v is not None and k not in _STANDARD and not k.startswith("_")
    }


def log_fields(logger: logging.Logger, level: int, message: str, fields: dict[str, Any]) -> None:
    """Log ``message`` with ``fields``, the cheap way, for a line written on every request.

    ``logger.info(..., extra=…)`` costs ~22 µs here: it walks the stack for the caller's file and
    line, and copies each extra onto the record. This makes the record directly, with the fields
    as one attribute, and hands it to the handlers (a filter or level still applies)."""
    if not logger.isEnabledFor(level):
        return
    record = logger.makeRecord(logger.name, level, "", 0, message, (), None)
    record.fields = fields
    logger.handle(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id.get()
        if request_id != "-":
            entry["request_id"] = request_id
        trace_id = current_trace_id.get()
        if trace_id:
            entry["trace_id"] = trace_id
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level logger: message``, then the record's fields as ``name=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if not fields:
            return line
        first, newline, rest = line.partition("\n")  # an exception's traceback stays below
        pairs = " ".join(f"{k}={v}" for k, v in fields.items() if v != "")
        return f"{first} {pairs}{newline}{rest}"


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"
