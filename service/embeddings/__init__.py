"""Embeddings: the engine (``engine.py``: routing, retries, fallbacks and governance as for chat,
plus ``embed_texts`` for in-process callers such as the response cache), its value checks
(``validation.py``) and its gRPC servicer (``servicer.py``). The providers' side is
``service/providers/embeddings.py``."""

from __future__ import annotations

from service.embeddings.engine import Embedded, EmbeddingsEngine, Pricer
from service.embeddings.servicer import EmbeddingsServicer

__all__ = ["Embedded", "EmbeddingsEngine", "EmbeddingsServicer", "Pricer"]
