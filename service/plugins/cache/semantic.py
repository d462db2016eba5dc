"""The semantic path: embed the last user message (plus some context), find the nearest
cached entry of the same partition and scope, serve it when it is close enough.

Two seams keep it replaceable:

- :class:`Embedder`: turns texts into vectors (and says what that cost). The real one calls
  the configured embedding model through the service's own routing
  (``cache.semantic.embedding_model``); tests use hashed bag-of-words vectors.
- :class:`VectorIndex`: stores vectors with their entry id and finds the nearest one under a
  filter (partition, cache key, scope, not expired): ``index_builtin.py`` or ``index_qdrant.py``.

**Why the built-in index is the embedded default** (measured on this 2-core machine, 256-dim
vectors, 10 partitions; ``bench/cache.py --index``): qdrant-client's local mode evaluates a
payload filter in Python point by point: a filtered nearest-neighbour query took 10.8 ms with
1,000 points, 185 ms with 10,000 and 866 ms with 50,000, on the event loop's thread, and an
upsert 0.5 ms a point. Our lookups always filter (a tenant must never see another's
entries), so that is paid on every miss. The built-in index keeps one numpy matrix per
(namespace, partition, cache key, scope) and does an exact cosine search over it: 0.005 ms
for 100 vectors, 0.05 ms for 1,000. Against a Qdrant *server* (HNSW, payload indexes) the
filter is cheap, and the index is shared by every replica: that is the ``qdrant`` choice for
a fleet (``cache.semantic.qdrant_url``); without a URL, ``qdrant`` runs qdrant-client's local
mode at ``path`` (the same API, for small deployments that want it).

**Namespaces.** Vectors of different embedding models, or of one model at another dimension,
are never compared: the namespace is ``<embedding model>:<dimension>`` (a Qdrant collection
per namespace), so changing the model starts an empty index instead of matching garbage.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from service.plugins.cache.keys import message_text
from switchyard.config import SemanticCacheConfig
from switchyard.v1 import chat_pb2 as pb

if TYPE_CHECKING:  # the engine is bound at start (service/server.py); only its type is needed here
    from service.embeddings import EmbeddingsEngine


@dataclass(frozen=True, slots=True)
class EmbedResult:
    vectors: list[list[float]]
    prompt_tokens: int = 0
    cost: float | None = None  # USD; None: unpriced
    provider: str = ""  # who computed them
    model: str = ""


class Embedder(Protocol):
    """Texts -> vectors. ``model`` names the namespace the vectors belong to."""

    model: str

    async def embed(self, texts: Sequence[str], metadata: Sequence[tuple[str, str | bytes]]) -> EmbedResult:
        """``metadata``: the caller's call metadata, so the embedding call runs as the caller
        (its key, its budget) when the embedder goes through the service's own routing."""
        ...


class EngineEmbedder:
    """The real embedder: ``cache.semantic.embedding_model`` (a deployment id or
    ``provider/model``) through the service's embeddings engine, so the lookup gets routing,
    keys, retries, fallbacks and circuit breakers like any call. It runs no plugins of its own
    (``embed_texts``' default): it is part of the chat call, which accounts for its cost."""

    def __init__(self, model: str, engine: EmbeddingsEngine | None = None) -> None:
        self.model = model
        self.engine = engine  # bound once the engine exists (service/server.py)

    async def embed(self, texts: Sequence[str], metadata: Sequence[tuple[str, str | bytes]]) -> EmbedResult:
        if self.engine is None:
            raise RuntimeError("the cache's embedder is not bound to the embeddings engine")
        embedded = await self.engine.embed_texts(self.model, texts, metadata=metadata)
        return EmbedResult(
            embedded.vectors, embedded.usage.prompt_tokens, embedded.cost, embedded.provider, embedded.model
        )


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a semantic match may come from: only entries with all of these equal."""

    namespace: str  # "<embedding model>:<dimension>"
    partition: str
    cache_key: str
    scope: str  # keys.semantic_scope: everything but the embedded text


@dataclass(frozen=True, slots=True)
class Match:
    cache_id: str
    similarity: float


class VectorIndex(Protocol):
    name: str

    async def open(self) -> None: ...

    async def nearest(self, scope: Scope, vector: Sequence[float], now: float) -> Match | None: ...

    async def add(self, scope: Scope, cache_id: str, vector: Sequence[float], expires_at: float) -> None: ...

    async def delete(self, cache_ids: Sequence[str]) -> None: ...

    async def clear(self, partition: str, cache_key: str | None) -> None: ...

    async def count(self) -> int: ...

    async def aclose(self) -> None: ...


# ---------------------------------------------------------------- what gets embedded


@dataclass(frozen=True, slots=True)
class Probe:
    """A request's semantic question: the text to embed and how many messages it covers."""

    text: str
    embedded: int


def probe(request: pb.ChatCompletionRequest, config: SemanticCacheConfig) -> Probe | None:
    """The text to embed, or None when the request skips the semantic path: too long a
    conversation, tools (unless ``include_tools``), no user message last, or non-text content."""
    messages = request.messages
    if not messages or len(messages) > config.max_messages:
        return None
    if (request.tools or request.HasField("tool_choice_mode") or request.HasField("tool_choice_json")) and (
        not config.include_tools
    ):
        return None
    if messages[-1].role != "user":
        return None
    embedded = min(len(messages), 1 + config.context_messages)
    texts = []
    for message in messages[len(messages) - embedded :]:
        text = message_text(message)
        if text is None:
            return None
        texts.append(f"{message.role}: {text}" if embedded > 1 else text)
    return Probe("\n".join(texts), embedded)


def namespace_of(model: str, dimension: int) -> str:
    return f"{model}:{dimension}"


def open_index(config: SemanticCacheConfig) -> VectorIndex:
    """The configured index. Imported here, not at the top: numpy and qdrant-client are loaded
    only by a process whose semantic cache is on (with the cache off, nothing changes)."""
    if config.index == "qdrant":
        from service.plugins.cache.index_qdrant import QdrantIndex

        return QdrantIndex(config.qdrant_url, config.path)
    from service.plugins.cache.index_builtin import BuiltinIndex

    return BuiltinIndex(str(Path(config.path) / "vectors.db") if config.path else "")


# ---------------------------------------------------------------- a local embedder


class HashedEmbedder:
    """Hashed bag-of-words vectors: no model, no network. Paraphrases sharing most words are
    close, unrelated texts far apart. For tests and benchmarks (and the fake upstream's
    embeddings endpoint computes the same vectors), never for real semantic matching."""

    def __init__(self, model: str = "hashed-bow", dimension: int = 256) -> None:
        self.model = model
        self.dimension = dimension

    def vector(self, text: str) -> list[float]:
        out = [0.0] * self.dimension
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            slot = int.from_bytes(digest[:4], "little") % self.dimension
            out[slot] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in out)) or 1.0
        return [v / norm for v in out]

    async def embed(
        self, texts: Sequence[str], metadata: Sequence[tuple[str, str | bytes]] = ()
    ) -> EmbedResult:
        vectors = [self.vector(t) for t in texts]
        tokens = sum(len(t.split()) for t in texts)
        return EmbedResult(vectors, tokens, 0.0, "local", self.model)


__all__ = [
    "EmbedResult",
    "Embedder",
    "EngineEmbedder",
    "HashedEmbedder",
    "Match",
    "Probe",
    "Scope",
    "VectorIndex",
    "namespace_of",
    "open_index",
    "probe",
]
