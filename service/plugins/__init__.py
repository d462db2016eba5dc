"""Plugins: cross-cutting concerns that hook into the one request path (``service/pipeline.py``).

Each plugin is a :class:`~service.pipeline.Plugin` subclass in its own module (a folder once
it grows) and is put in the pipeline by ``service/server.py``, in order: tracing, metrics and
the access log first (outermost, so their post hooks see every call, refused ones too), then
governance, which refuses before the upstream is reached and records every call at the end.
"""

from __future__ import annotations

from service.plugins.access_log import AccessLogPlugin
from service.plugins.governance import GovernancePlugin
from service.plugins.metrics import MetricsPlugin
from service.plugins.tracing import TracingPlugin

__all__ = ["AccessLogPlugin", "GovernancePlugin", "MetricsPlugin", "TracingPlugin"]
