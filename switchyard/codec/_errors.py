"""The contract's error body: ErrorBody <-> JSON."""

from __future__ import annotations

from typing import Any, Final

from switchyard.v1 import chat_pb2 as pb

from ._common import BadValue, CodecError, bad_type, define_decoder, define_encoder, many
from ._response import ATTEMPT_ENCODER

__all__ = ["error_from_dict", "error_to_dict"]


def _code(v: Any) -> str:
    # OpenAI sends a string; some upstreams send a number.
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    raise bad_type("a string", v)


define_decoder(pb.ErrorDetail.DESCRIPTOR, overrides={"code": ("code", _code)})
_decode: Final = define_decoder(pb.ErrorBody.DESCRIPTOR)


def _new_error_body() -> dict[str, Any]:
    return {
        "type": "",
        "is_bifrost_error": False,
        "status_code": 0,
        "error": {"message": ""},
        "extra_fields": {"provider": "", "model_requested": "", "request_type": ""},
    }


def _new_error_detail() -> dict[str, Any]:
    return {"message": ""}


def _new_error_extra_fields() -> dict[str, Any]:
    return {"provider": "", "model_requested": "", "request_type": ""}


define_encoder(pb.ErrorDetail.DESCRIPTOR, new=_new_error_detail)
define_encoder(
    pb.ErrorExtraFields.DESCRIPTOR,
    new=_new_error_extra_fields,
    overrides={"attempts": ("attempts", many(ATTEMPT_ENCODER))},
)
_encode: Final = define_encoder(pb.ErrorBody.DESCRIPTOR, new=_new_error_body)


def error_to_dict(err: pb.ErrorBody) -> dict[str, Any]:
    """ErrorBody -> the contract's error JSON: type, is_bifrost_error, status_code,
    error.message and extra_fields.{provider, model_requested, request_type} always; the
    optional keys (event_id, error.type/code/param/event_id, attempts) only when set."""
    return _encode(err)


def error_from_dict(d: dict[str, Any]) -> pb.ErrorBody:
    """The contract's error JSON -> ErrorBody (nulls are unset; unknown keys are dropped,
    as ErrorBody has no extra_json). Raises CodecError on a wrong type."""
    try:
        kw = _decode(d)
    except BadValue as e:
        raise e.public("body") from None
    try:
        return pb.ErrorBody(**kw)
    except (ValueError, TypeError) as e:
        raise CodecError("body", f"Invalid body: {e}") from None
