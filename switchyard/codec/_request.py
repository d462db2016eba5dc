"""The chat completions request: caller JSON body <-> ChatCompletionRequest."""

from __future__ import annotations

from typing import Any, Final

import orjson

from switchyard.v1 import chat_pb2 as pb

from ._common import (
    BadValue,
    CodecError,
    bad_type,
    decoder,
    define_decoder,
    define_encoder,
    encoder,
    json_text,
    list_of,
    many,
    skip,
)
from ._message import MESSAGE_DECODER, MESSAGE_ENCODER

__all__ = ["request_from_dict", "request_to_dict"]

_STOP_LIST: Final = decoder(pb.StringList.DESCRIPTOR)


def _stop(v: Any) -> tuple[str, Any] | None:
    if isinstance(v, str):
        return ("stop_string", v)
    if v is None:
        return None
    if isinstance(v, list):
        return ("stop_list", _STOP_LIST(v))
    raise bad_type("a string, an array of strings or null", v)


def _tool_choice(v: Any) -> tuple[str, str] | None:
    if isinstance(v, str):
        return ("tool_choice_mode", v)
    if v is None:
        return None
    if isinstance(v, dict):
        return ("tool_choice_json", json_text(v))
    raise bad_type("a string or an object", v)


_decode: Final = define_decoder(
    pb.ChatCompletionRequest.DESCRIPTOR,
    overrides={
        "messages": ("messages", list_of(MESSAGE_DECODER)),
        "stop": ("", _stop),
        "tool_choice": ("", _tool_choice),
    },
    # deployment_id and api_version come from the URL, never from the body; `cache` from the
    # x-bf-cache-* headers (the service reads them): a body key "cache" is an unknown key.
    exclude={
        "deployment_id",
        "api_version",
        "cache",
        "stop_string",
        "stop_list",
        "tool_choice_mode",
        "tool_choice_json",
    },
)

_encode: Final = define_encoder(
    pb.ChatCompletionRequest.DESCRIPTOR,
    overrides={
        "messages": ("messages", many(MESSAGE_ENCODER)),
        "deployment_id": (None, skip),
        "api_version": (None, skip),
        "cache": (None, skip),
        "stop_string": ("stop", None),
        "stop_list": ("stop", encoder(pb.StringList.DESCRIPTOR)),
        "tool_choice_mode": ("tool_choice", None),
        "tool_choice_json": ("tool_choice", orjson.Fragment),
    },
)


def request_from_dict(
    body: dict[str, Any], *, deployment_id: str = "", api_version: str | None = None
) -> pb.ChatCompletionRequest:
    """The caller's JSON body (parsed by orjson) -> ChatCompletionRequest.

    Checks JSON types only (not ranges). JSON null leaves an optional field unset
    (except ``content: null``, which is kept as ``null_content``). Unknown keys go to the
    ``extra_json`` of the object they appear in. Raises CodecError on a wrong type.
    """
    try:
        kw = _decode(body)
    except BadValue as e:
        raise e.public("body") from None
    if deployment_id:
        kw["deployment_id"] = deployment_id
    if api_version is not None:
        kw["api_version"] = api_version
    try:
        return pb.ChatCompletionRequest(**kw)
    except (ValueError, TypeError) as e:  # e.g. a str with lone surrogates from a Python caller
        raise CodecError("body", f"Invalid body: {e}") from None


def request_to_dict(req: pb.ChatCompletionRequest) -> dict[str, Any]:
    """ChatCompletionRequest -> the OpenAI wire body (set fields only; no deployment_id or
    api_version; ``fallbacks`` kept). ``*_json`` fields are embedded as ``orjson.Fragment``,
    so serialise the result with orjson."""
    return _encode(req)
