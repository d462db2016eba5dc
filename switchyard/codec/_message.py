"""ChatMessage: a request message, a response choice's ``message`` and a stream ``delta``.

Everything but ``content`` follows the default rules; ``content`` is the JSON union
string | array of parts | null, held in the proto oneof text | parts | null_content.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import struct_pb2

from switchyard.v1 import chat_pb2 as pb

from ._common import Decoder, Encoder, bad_type, decoder, define_decoder, define_encoder, encoder

__all__ = ["MESSAGE_DECODER", "MESSAGE_ENCODER"]

_PARTS: Final = decoder(pb.ContentParts.DESCRIPTOR)
_NULL_CONTENT: Final = ("null_content", struct_pb2.NULL_VALUE)


def _content(v: Any) -> tuple[str, Any]:
    if isinstance(v, str):
        return ("text", v)
    if v is None:
        return _NULL_CONTENT
    if isinstance(v, list):
        return ("parts", _PARTS(v))
    raise bad_type("a string, an array of content parts or null", v)


def _null(_value: Any) -> None:
    return None


MESSAGE_DECODER: Final[Decoder] = define_decoder(
    pb.ChatMessage.DESCRIPTOR,
    overrides={"content": ("", _content)},
    exclude={"text", "parts", "null_content"},
)

MESSAGE_ENCODER: Final[Encoder] = define_encoder(
    pb.ChatMessage.DESCRIPTOR,
    overrides={
        "text": ("content", None),
        "parts": ("content", encoder(pb.ContentParts.DESCRIPTOR)),
        "null_content": ("content", _null),
    },
)
