"""Fast, hand-written converters between JSON dicts (as parsed by orjson) and the
``switchyard.v1`` protos, for the hot path (2-4 conversions per request).

Not ``google.protobuf.json_format``: that one is slow, drops the presence of zero values
and turns int64 into strings. Dicts returned by the ``*_to_dict`` functions may contain
``orjson.Fragment`` values (the exact text of the ``*_json`` fields): serialise them with
``orjson.dumps``.
"""

from __future__ import annotations

from ._common import MAX_JSON_DEPTH, CodecError, json_depth_over, json_text_depth_over, loads, merge_extra
from ._embeddings import (
    embeddings_request_from_dict,
    embeddings_request_to_dict,
    embeddings_response_from_dict,
    embeddings_response_to_dict,
    vector_floats,
)
from ._errors import error_from_dict, error_to_dict
from ._generic import message_to_json
from ._request import request_from_dict, request_to_dict
from ._response import response_from_dict, response_to_dict

__all__ = [
    "MAX_JSON_DEPTH",
    "CodecError",
    "embeddings_request_from_dict",
    "embeddings_request_to_dict",
    "embeddings_response_from_dict",
    "embeddings_response_to_dict",
    "error_from_dict",
    "error_to_dict",
    "json_depth_over",
    "json_text_depth_over",
    "loads",
    "merge_extra",
    "message_to_json",
    "request_from_dict",
    "request_to_dict",
    "response_from_dict",
    "response_to_dict",
    "vector_floats",
]
