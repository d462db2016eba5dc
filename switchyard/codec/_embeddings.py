"""Embeddings: the caller's JSON body <-> EmbeddingsRequest <-> the upstream's body, and the
upstream's answer <-> EmbeddingsResponse <-> the caller's JSON.

Vectors are the bulk of every answer (1536 numbers a text is common), so they never pass
through a Python loop of our own: a float array goes from orjson's list straight into the
``FloatList`` (upb copies it in C) and back out with ``list()``; a base64 vector is decoded to
its bytes once (``binascii``, in C) and encoded again only for a JSON caller. Neither form is
ever turned into the other here.
"""

from __future__ import annotations

import array
import base64
import binascii
import sys
from typing import Any, Final

from switchyard.v1 import chat_pb2
from switchyard.v1 import embeddings_pb2 as epb

from ._common import (
    BadValue,
    CodecError,
    bad_type,
    define_decoder,
    define_encoder,
    encoder,
    merge_extra,
    skip,
)
from ._response import ATTEMPT_ENCODER  # noqa: F401  (defines the chat encoders this module reuses first)

__all__ = [
    "embeddings_request_from_dict",
    "embeddings_request_to_dict",
    "embeddings_response_from_dict",
    "embeddings_response_to_dict",
    "vector_floats",
]

_INPUT_TYPES: Final = "a string, an array of strings, an array of token ids or an array of token-id arrays"
_ITEM_KINDS: Final = "a string, a token id or an array of token ids"
_ITEM_NAMES: Final = {str: "a string", int: "a token id (an integer)", list: "an array of token ids"}

# ------------------------------------------------------------------ request


def _input(v: Any) -> tuple[str, Any] | None:
    if isinstance(v, str):
        return ("input_text", v)
    if v is None:
        return None
    if not isinstance(v, list):
        raise bad_type(_INPUT_TYPES, v)
    if not v or all(type(x) is str for x in v):
        return ("input_texts", {"values": v})  # an empty list is the service's 400, with its reason
    if all(type(x) is int for x in v):
        return ("input_tokens", {"values": v})
    if all(type(x) is list and all(type(t) is int for t in x) for x in v):
        return ("input_token_lists", {"lists": [{"values": x} for x in v]})
    # Name the first item of the wrong kind (rare path: only on errors).
    kind = type(v[0])
    for i, x in enumerate(v):
        if type(x) is not kind or kind not in _ITEM_NAMES:
            expected = f"{_ITEM_NAMES[kind]} like the first item" if kind in _ITEM_NAMES else _ITEM_KINDS
            raise bad_type(expected, x).under(f"[{i}]")
        for j, token in enumerate(x if kind is list else ()):
            if type(token) is not int:
                raise bad_type("a token id (an integer)", token).under(f"[{j}]").under(f"[{i}]")
    raise bad_type(_INPUT_TYPES, v)


_decode_request: Final = define_decoder(
    epb.EmbeddingsRequest.DESCRIPTOR,
    overrides={"input": ("", _input)},
    # deployment_id and api_version come from the URL, never from the body.
    exclude={
        "deployment_id",
        "api_version",
        *(f.name for f in epb.EmbeddingsRequest.DESCRIPTOR.oneofs_by_name["input"].fields),
    },
)


def _token_ids(ids: epb.TokenIds) -> list[int]:
    return list(ids.values)


def _token_id_lists(lists: epb.TokenIdLists) -> list[list[int]]:
    return [list(ids.values) for ids in lists.lists]


_encode_request: Final = define_encoder(
    epb.EmbeddingsRequest.DESCRIPTOR,
    overrides={
        "deployment_id": (None, skip),
        "api_version": (None, skip),
        "input_text": ("input", None),
        "input_texts": ("input", encoder(chat_pb2.StringList.DESCRIPTOR)),
        "input_tokens": ("input", _token_ids),
        "input_token_lists": ("input", _token_id_lists),
    },
)


def embeddings_request_from_dict(
    body: Any, *, deployment_id: str = "", api_version: str | None = None
) -> epb.EmbeddingsRequest:
    """The caller's JSON body (parsed by orjson) -> EmbeddingsRequest.

    Checks JSON types only; values (an empty input, too many inputs, an unknown
    ``encoding_format``) are the service's to refuse, so gRPC callers meet the same rules.
    Unknown keys go to ``extra_json``. Raises CodecError on a wrong type."""
    try:
        kw = _decode_request(body)
    except BadValue as e:
        raise e.public("body") from None
    if deployment_id:
        kw["deployment_id"] = deployment_id
    if api_version is not None:
        kw["api_version"] = api_version
    try:
        return epb.EmbeddingsRequest(**kw)
    except (ValueError, TypeError) as e:  # a token id beyond int64, a lone surrogate
        raise CodecError("input" if "input" in body else "body", f"Invalid body: {e}") from None


def embeddings_request_to_dict(req: epb.EmbeddingsRequest) -> dict[str, Any]:
    """EmbeddingsRequest -> OpenAI's embeddings body (set fields only, ``fallbacks`` kept; no
    deployment_id or api_version). Raises ValueError if ``extra_json`` is not a JSON object."""
    return _encode_request(req)


# ------------------------------------------------------------------ response


def _vector(v: Any) -> tuple[str, Any] | None:
    if isinstance(v, list):
        return ("floats", {"values": v})  # upb checks the numbers as it copies them, in C
    if isinstance(v, str):
        try:
            return ("float32_le", base64.b64decode(v, validate=True))
        except binascii.Error:
            raise BadValue("value", "not valid base64.") from None
    if v is None:
        return None
    raise bad_type("an array of numbers or a base64 string", v)


define_decoder(
    epb.Embedding.DESCRIPTOR,
    overrides={"embedding": ("", _vector)},
    exclude={"floats", "float32_le"},
)
_decode_response: Final = define_decoder(epb.EmbeddingsResponse.DESCRIPTOR)

_encode_extra_fields: Final = encoder(chat_pb2.ExtraFields.DESCRIPTOR)
_encode_cost: Final = encoder(chat_pb2.Cost.DESCRIPTOR)


def embeddings_response_from_dict(d: dict[str, Any]) -> epb.EmbeddingsResponse:
    """An upstream (OpenAI/Azure) embeddings answer -> EmbeddingsResponse. Lenient as the chat
    decoder is (null is unset, unknown keys kept in ``extra_json``); a value of the wrong type,
    a vector that is neither numbers nor base64, raises CodecError."""
    try:
        kw = _decode_response(d)
    except BadValue as e:
        raise e.public("body") from None
    try:
        return epb.EmbeddingsResponse(**kw)
    except (ValueError, TypeError) as e:  # e.g. a string among a vector's numbers
        raise CodecError("body", f"Invalid body: {e}") from None


def _usage(usage: chat_pb2.Usage) -> dict[str, Any]:
    # OpenAI's embeddings usage has no completion_tokens: the chat encoder's template would add it.
    out: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.total_tokens}
    if usage.HasField("cost"):
        out["cost"] = _encode_cost(usage.cost)
    if usage.extra_json:
        merge_extra(out, usage.extra_json)
    return out


def _embedding(item: epb.Embedding) -> dict[str, Any]:
    out: dict[str, Any] = {"object": item.object or "embedding", "index": item.index}
    which = item.WhichOneof("vector")
    if which == "float32_le":
        out["embedding"] = base64.b64encode(item.float32_le).decode("ascii")
    else:
        out["embedding"] = list(item.floats.values)  # a C copy; orjson writes the doubles
    if item.extra_json:
        merge_extra(out, item.extra_json)
    return out


def embeddings_response_to_dict(resp: epb.EmbeddingsResponse) -> dict[str, Any]:
    """EmbeddingsResponse -> the JSON the OpenAI SDK parses: ``object``, ``data`` (each vector in
    the form the upstream sent), ``model``, ``usage`` and ``extra_fields``."""
    out: dict[str, Any] = {
        "object": resp.object or "list",
        "data": [_embedding(item) for item in resp.data],
        "model": resp.model,
    }
    if resp.HasField("usage"):
        out["usage"] = _usage(resp.usage)
    if resp.HasField("extra_fields"):
        out["extra_fields"] = _encode_extra_fields(resp.extra_fields)
    if resp.extra_json:
        merge_extra(out, resp.extra_json)
    return out


def vector_floats(item: epb.Embedding) -> list[float]:
    """One embedding as Python floats, whichever form it came in (for in-process callers such
    as the cache: float32 bytes are unpacked by ``array``, in C)."""
    if item.WhichOneof("vector") == "float32_le":
        raw = item.float32_le
        if len(raw) % 4:
            raise ValueError(f"a base64 embedding of {len(raw)} bytes is not a whole number of float32s")
        floats = array.array("f", raw)
        if sys.byteorder == "big":  # OpenAI's bytes are little-endian
            floats.byteswap()
        return floats.tolist()
    return list(item.floats.values)
