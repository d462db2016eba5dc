"""Plugins: cross-cutting concerns that hook into the one request path (``service/pipeline.py``).

Each plugin is a :class:`~service.pipeline.Plugin` subclass in its own module (a folder once
it grows) and is put in the pipeline by ``service/server.py``, in order. Governance comes
first: it refuses before anything else runs and records every call at the end.
"""

from __future__ import annotations

from service.plugins.governance import GovernancePlugin

__all__ = ["GovernancePlugin"]
