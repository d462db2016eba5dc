"""Pieces every translating dialect (Anthropic, Bedrock, Gemini) shares, both ways.

Canonical messages in: a message's content as the dialect's blocks, a refusal part's text, a tool
call's arguments checked as a JSON object (a 400 naming the field otherwise).

Upstream answers out: checked numbers and strings, usage with cache reads and writes counted
apart, reasoning details and tool-call arguments. Those checks raise TypeError; a dialect's
``response_from`` turns that into ``502 upstream_bad_response`` (``HttpProvider.bad_response``),
and its stream decoder into a skipped, counted payload (``PayloadGuard``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import orjson

from service.errors import invalid_request
from switchyard import codec
from switchyard.v1 import chat_pb2 as pb

B = TypeVar("B")

# ReasoningDetail types, as OpenRouter names them (the contract's reasoning_details).
REASONING_TEXT = "reasoning.text"
REASONING_REDACTED = "reasoning.encrypted"


def whole_number(counts: Mapping[str, object], key: str, where: str = "usage") -> int:
    """``counts[key]`` as a whole number (0 when absent); ``where`` names the object in the error."""
    value = counts.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}.{key} is not a whole number")
    return value


def text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def cache_split_usage(uncached: int, written: int, read: int, output: int) -> pb.Usage:
    """Usage for upstreams that count cache reads and writes apart from the other input tokens
    (Anthropic, Bedrock): OpenAI's ``prompt_tokens`` includes them, with the cached share in the
    details, so cost prices each at its own rate."""
    prompt = uncached + written + read
    return pb.Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        total_tokens=prompt + output,
        prompt_tokens_details=pb.PromptTokensDetails(
            cached_tokens=read, cached_read_tokens=read, cached_write_tokens=written
        ),
    )


def reasoning_detail(index: int, text: str = "", signature: str = "") -> pb.ReasoningDetail:
    detail = pb.ReasoningDetail(type=REASONING_TEXT, index=index)
    if text:
        detail.text = text
    if signature:
        detail.signature = signature
    return detail


def redacted_detail(index: int, data: str) -> pb.ReasoningDetail:
    return pb.ReasoningDetail(type=REASONING_REDACTED, index=index, data=data)


def tool_arguments(value: object) -> str:
    """A tool call's input object as the JSON text OpenAI's ``arguments`` carries."""
    return orjson.dumps(value if value is not None else {}).decode()


class ChunkBuilder:
    """What a dialect's stream translator shares: the stream's id, creation time and model, and
    the canonical chunks made from them (one choice's ``delta``, or any choices)."""

    def __init__(self, model: str, completion_id: str = "") -> None:
        self.id = completion_id
        self.model = model  # until the upstream names the model that answers
        self.created = int(time.time())

    def _delta(self, delta: pb.ChatMessage) -> pb.ChatCompletionChunk:
        return self._chunk([pb.Choice(index=0, delta=delta)])

    def _chunk(self, choices: list[pb.Choice]) -> pb.ChatCompletionChunk:
        return pb.ChatCompletionChunk(
            id=self.id,
            object="chat.completion.chunk",
            created=self.created,
            model=self.model,
            choices=choices,
        )


# ---------------------------------------------------------------- canonical messages in


def content_blocks(
    message: pb.ChatMessage,
    where: str,
    text_blocks: Callable[[str], list[B]],
    part_blocks: Callable[[pb.ContentPart, str], list[B]],
) -> list[B]:
    """A message's content (a string, or parts) as the dialect's blocks; ``where`` names the
    message in errors (``messages[2]``), and each part is named ``{where}.content[j]``."""
    kind = message.WhichOneof("content")
    if kind == "text":
        return text_blocks(message.text)
    if kind == "parts":
        return [
            block
            for j, part in enumerate(message.parts.parts)
            for block in part_blocks(part, f"{where}.content[{j}]")
        ]
    return []


def stop_sequences(request: pb.ChatCompletionRequest) -> list[str]:
    """``stop`` as a list, whether the caller sent one string or several."""
    kind = request.WhichOneof("stop")
    if kind == "stop_string":
        return [request.stop_string]
    if kind == "stop_list":
        return list(request.stop_list.values)
    return []


def refusal_text(part: pb.ContentPart) -> str:
    """An assistant's refusal content part (its text kept in the part's extra JSON)."""
    if not part.extra_json:
        return ""
    refusal = codec.loads(part.extra_json.encode()).get("refusal")
    return refusal if isinstance(refusal, str) else ""


def tool_call_input(call: pb.ToolCall, where: str, sent_as: str) -> orjson.Fragment:
    """A tool call's arguments, checked to be a JSON object (the dialects send an object, as
    ``sent_as``), then passed on as the caller's exact text."""
    arguments = call.function.arguments or "{}"
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise invalid_request(
            f"tool call arguments must be a JSON object ({sent_as})", f"{where}.function.arguments"
        )
    return orjson.Fragment(arguments)


def named_function(tool_choice_json: str) -> str:
    """The function a ``tool_choice`` object names (``{"type": "function", "function": {"name"}}``),
    or a 400 naming ``tool_choice``."""
    try:
        value = orjson.loads(tool_choice_json)
    except orjson.JSONDecodeError:
        value = None
    function = value.get("function") if isinstance(value, dict) and value.get("type") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise invalid_request(
            'tool_choice must be auto, none, required or {"type": "function", "function": {"name": …}}',
            "tool_choice",
        )
    return name
