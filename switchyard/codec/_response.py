"""Chat completion responses and stream chunks: upstream JSON <-> proto <-> client JSON.

ChatCompletionResponse and ChatCompletionChunk have the same field names and numbers, so
one decoder serves both (it builds constructor kwargs, keyed by field name); the encoders
are per class only because the tables are keyed by field descriptor.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar, overload

from switchyard.v1 import chat_pb2 as pb

from ._common import BadValue, CodecError, define_decoder, define_encoder, many
from ._message import MESSAGE_DECODER, MESSAGE_ENCODER

__all__ = ["ATTEMPT_ENCODER", "response_from_dict", "response_to_dict"]

M = TypeVar("M", pb.ChatCompletionResponse, pb.ChatCompletionChunk)


def _same_shape(a: type[Any], b: type[Any]) -> bool:
    def shape(cls: type[Any]) -> list[tuple[str, int, int, bool]]:
        return [(f.name, f.number, f.type, f.is_repeated) for f in cls.DESCRIPTOR.fields]

    return shape(a) == shape(b)


if not _same_shape(pb.ChatCompletionResponse, pb.ChatCompletionChunk):
    raise RuntimeError("ChatCompletionResponse and ChatCompletionChunk have drifted apart")

# ------------------------------------------------------------------ decoding
# Defaults everywhere (nulls skipped, unknown keys -> extra_json where the message has one),
# plus: choices carry ChatMessage's content rules, and the contract's `log_probs` spelling
# is read as `logprobs`.

_logprobs = define_decoder(pb.LogProbs.DESCRIPTOR)
define_decoder(
    pb.Choice.DESCRIPTOR,
    overrides={
        "message": ("message", MESSAGE_DECODER),
        "delta": ("delta", MESSAGE_DECODER),
        "log_probs": ("logprobs", _logprobs),
    },
)
_decode: Final = define_decoder(pb.ChatCompletionResponse.DESCRIPTOR)

# ------------------------------------------------------------------ encoding
# Key templates for what is always emitted (the OpenAI SDK expects these keys).


def _new_attempt() -> dict[str, Any]:
    return {"provider": "", "model": "", "status_code": 0, "error_type": "", "message": ""}


def _new_extra_fields() -> dict[str, Any]:
    return {"request_type": "", "provider": "", "model_requested": "", "model_deployment": "", "latency": 0}


def _new_usage() -> dict[str, Any]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _new_choice() -> dict[str, Any]:
    return {"index": 0, "finish_reason": None}


def _new_top_logprob() -> dict[str, Any]:
    return {"token": "", "logprob": 0.0, "bytes": []}


def _new_token_logprob() -> dict[str, Any]:
    return {"token": "", "logprob": 0.0, "bytes": [], "top_logprobs": []}


def _new_top() -> dict[str, Any]:
    return {"id": "", "object": "", "created": 0, "model": "", "choices": []}


define_encoder(pb.Usage.DESCRIPTOR, new=_new_usage)  # before Attempt, which holds one
ATTEMPT_ENCODER: Final = define_encoder(pb.Attempt.DESCRIPTOR, new=_new_attempt)
define_encoder(
    pb.ExtraFields.DESCRIPTOR,
    new=_new_extra_fields,
    overrides={"attempts": ("attempts", many(ATTEMPT_ENCODER))},
)
# The entries of top_logprobs have no nested top_logprobs key; content/refusal entries do.
_top_logprob = define_encoder(pb.TokenLogProb.DESCRIPTOR, new=_new_top_logprob)
_token_logprob = define_encoder(
    pb.TokenLogProb.DESCRIPTOR,
    new=_new_token_logprob,
    overrides={"top_logprobs": ("top_logprobs", many(_top_logprob))},
    register=False,
)
define_encoder(
    pb.LogProbs.DESCRIPTOR,
    overrides={
        "content": ("content", many(_token_logprob)),
        "refusal": ("refusal", many(_token_logprob)),
    },
)
define_encoder(
    pb.Choice.DESCRIPTOR,
    new=_new_choice,
    overrides={"message": ("message", MESSAGE_ENCODER), "delta": ("delta", MESSAGE_ENCODER)},
)
_ENCODERS: Final = {
    cls: define_encoder(cls.DESCRIPTOR, new=_new_top)
    for cls in (pb.ChatCompletionResponse, pb.ChatCompletionChunk)
}


@overload
def response_from_dict(d: dict[str, Any]) -> pb.ChatCompletionResponse: ...
@overload
def response_from_dict(d: dict[str, Any], cls: type[M]) -> M: ...


def response_from_dict(d: dict[str, Any], cls: type[Any] = pb.ChatCompletionResponse) -> Any:
    """An upstream (OpenAI/Azure) response or stream chunk -> ``cls``.

    Lenient about what upstreams do: JSON null is "unset", unknown keys are kept in the
    ``extra_json`` of their object. Our own ``extra_fields`` is read too. A value of the
    wrong JSON type raises CodecError.
    """
    try:
        kw = _decode(d)
    except BadValue as e:
        raise e.public("body") from None
    try:
        return cls(**kw)
    except (ValueError, TypeError) as e:
        raise CodecError("body", f"Invalid body: {e}") from None


def response_to_dict(msg: pb.ChatCompletionResponse | pb.ChatCompletionChunk) -> dict[str, Any]:
    """A response or chunk -> the JSON shape the OpenAI SDK parses: id/object/created/model/
    choices always, everything else only when set. ``raw_request``/``raw_response`` are
    ``orjson.Fragment`` values, so serialise the result with orjson."""
    return _ENCODERS[type(msg)](msg)
