"""Value checks on an embeddings request, in the service so gRPC and REST callers get the same 400s.

The limits are OpenAI's documented ones: at most 2048 inputs a call, no empty input, and
``encoding_format`` ``float`` or ``base64``. Per-input token limits (8192 for OpenAI's models)
are the upstream's to enforce: only it knows its model's tokenizer.
"""

from __future__ import annotations

import orjson

from service.errors import invalid_request
from switchyard.codec import MAX_JSON_DEPTH, json_text_depth_over
from switchyard.v1 import embeddings_pb2 as epb

MAX_INPUTS = 2048
ENCODING_FORMATS = ("float", "base64")


def validate_embeddings(request: epb.EmbeddingsRequest) -> None:
    """Raise a 400 GatewayError naming the first bad field."""
    kind = request.WhichOneof("input")
    if kind is None:
        raise invalid_request("`input` is required: a string or an array of strings", "input")
    if kind == "input_text":
        if not request.input_text:
            raise invalid_request("`input` must not be an empty string", "input")
    else:
        items: list[object]
        if kind == "input_texts":
            items = list(request.input_texts.values)
        elif kind == "input_tokens":
            items = [request.input_tokens.values]  # one input, of token ids
        else:
            items = [ids.values for ids in request.input_token_lists.lists]
        if not items or (kind == "input_tokens" and not request.input_tokens.values):
            raise invalid_request("`input` must be a non-empty array", "input")
        if len(items) > MAX_INPUTS:
            raise invalid_request(
                f"`input` holds {len(items)} items; at most {MAX_INPUTS} are allowed",
                "input",
            )
        if kind != "input_tokens":
            for i, item in enumerate(items):
                if not item:
                    raise invalid_request("an input must not be empty", f"input[{i}]")
    if request.HasField("encoding_format") and request.encoding_format not in ENCODING_FORMATS:
        raise invalid_request(
            f"`encoding_format` must be {' or '.join(ENCODING_FORMATS)}, got {request.encoding_format!r}",
            "encoding_format",
        )
    if request.HasField("dimensions") and request.dimensions < 1:
        raise invalid_request(f"`dimensions` must be at least 1, got {request.dimensions}", "dimensions")
    if request.extra_json:
        _check_extra(request.extra_json)


def _check_extra(text: str) -> None:
    """Unknown keys from a gRPC caller: a JSON object, not nested too deep (REST callers' were
    checked as the body was parsed), so the upstream body can always be built."""
    try:
        too_deep = json_text_depth_over(text)
        value = orjson.loads(text) if not too_deep else None
    except ValueError:
        raise invalid_request("`extra_json` is not valid JSON", "body") from None
    if too_deep:
        raise invalid_request(f"the body nests JSON deeper than {MAX_JSON_DEPTH} levels", "body")
    if not isinstance(value, dict):
        raise invalid_request("`extra_json` must be a JSON object", "body")
