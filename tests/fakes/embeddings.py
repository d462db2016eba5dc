"""The fake upstream's embeddings: hashed bag-of-words vectors, and OpenAI's embeddings answer.

A text's vector is its words (lower-cased, stop words dropped, a plural ``s`` trimmed), each
hashed into one of ``dims`` buckets with a hashed sign, summed and L2-normalised. Texts that
share most of their words (paraphrases) are close (cosine similarity well above 0.5); texts
that share none are nearly orthogonal (about 0). The values are rounded to float32, so a
``float`` answer and a ``base64`` one (little-endian float32, as OpenAI sends it) decode to
the same numbers, and a test can compute the expected vector with :func:`embed`::

    assert response.data[0].embedding == embed("the text")
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_DIMS = 256

_STOP_WORDS_TEXT = """a an and are as at be can could do does for from how i in is it me my of on or
please the this to was what were with would you your"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """The words a vector is made of."""
    found = []
    for word in _WORD.findall(text.lower()):
        if word in STOP_WORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.append(word)
    return found


def embed(text: str, dims: int = DEFAULT_DIMS) -> list[float]:
    """The fake's vector for ``text``: float32 values, unit length (all zeros for a text of stop
    words only)."""
    vector = [0.0] * dims
    for word in words(text):
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vector[digest % dims] += 1.0 if (digest >> 40) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm:
        vector = [v / norm for v in vector]
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *vector)))


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


def texts_of(value: Any) -> list[str] | None:
    """The texts of an embeddings ``input`` (token ids become ``tok<id>`` words); None if malformed."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(x, str) for x in value):
        return list(value)
    if all(isinstance(x, int) for x in value):
        return [" ".join(f"tok{t}" for t in value)]
    if all(isinstance(x, list) and all(isinstance(t, int) for t in x) for x in value):
        return [" ".join(f"tok{t}" for t in x) for x in value]
    return None


def answer(body: Mapping[str, Any], model: str, usage: Any = None) -> dict[str, Any] | str:
    """OpenAI's embeddings answer to ``body``, or the message of a 400 for a body it would refuse."""
    texts = texts_of(body.get("input"))
    if texts is None:
        return "'input' must be a non-empty string, array of strings or array of token arrays."
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return f"'encoding_format' must be 'float' or 'base64', not {encoding!r}."
    dims = body.get("dimensions", DEFAULT_DIMS)
    if not isinstance(dims, int) or dims < 1:
        return "'dimensions' must be a positive integer."
    data = []
    for index, text in enumerate(texts):
        vector = embed(text, dims)
        value: Any = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(max(1, len(text.split())) for text in texts)
    if usage is None:
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model, "usage": usage}
