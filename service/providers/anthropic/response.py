"""An Anthropic Message -> the canonical (OpenAI-shaped) chat completion.

Also the pieces the stream shares: stop reasons, usage, and reasoning details.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from google.protobuf import struct_pb2

from switchyard.v1 import chat_pb2 as pb

from .messages import THINKING_REDACTED, THINKING_TEXT

STOP_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    # A server tool's long turn paused; what there is so far is a whole answer.
    "pause_turn": "stop",
}


def finish_reason(stop_reason: object) -> str:
    return STOP_REASONS.get(stop_reason if isinstance(stop_reason, str) else "", "stop")


def usage_from(usage: object) -> pb.Usage:
    """Anthropic counts cache reads and writes apart from ``input_tokens``; OpenAI's
    ``prompt_tokens`` includes them, with the cached share in the details (so cost prices
    each at its own rate). Raises TypeError/ValueError on a count that is not a number."""
    if not isinstance(usage, Mapping):
        raise TypeError("usage is not an object")
    uncached, written, read, output = (
        _count(usage, key)
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    )
    prompt = uncached + written + read
    return pb.Usage(
        prompt_tokens=prompt,
        completion_tokens=output,
        total_tokens=prompt + output,
        prompt_tokens_details=pb.PromptTokensDetails(
            cached_tokens=read, cached_read_tokens=read, cached_write_tokens=written
        ),
    )


def _count(usage: Mapping[str, object], key: str) -> int:
    value = usage.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"usage.{key} is not a whole number")
    return value


def thinking_detail(index: int, text: str = "", signature: str = "") -> pb.ReasoningDetail:
    detail = pb.ReasoningDetail(type=THINKING_TEXT, index=index)
    if text:
        detail.text = text
    if signature:
        detail.signature = signature
    return detail


def redacted_detail(index: int, data: str) -> pb.ReasoningDetail:
    return pb.ReasoningDetail(type=THINKING_REDACTED, index=index, data=data)


def tool_arguments(value: object) -> str:
    return orjson.dumps(value if value is not None else {}).decode()


def message_from(content: list[Any]) -> pb.ChatMessage:
    """Content blocks -> the assistant message. Raises KeyError/TypeError on a malformed block."""
    texts: list[str] = []
    thoughts: list[str] = []
    details: list[pb.ReasoningDetail] = []
    calls: list[pb.ToolCall] = []
    for block in content:
        kind = block["type"]
        if kind == "text":
            texts.append(_str(block["text"]))
        elif kind == "tool_use":
            function = pb.FunctionCall(name=_str(block["name"]), arguments=tool_arguments(block.get("input")))
            calls.append(pb.ToolCall(id=_str(block["id"]), type="function", function=function))
        elif kind == "thinking":
            thought = _str(block["thinking"])
            thoughts.append(thought)
            details.append(thinking_detail(len(details), thought, _str(block.get("signature") or "")))
        elif kind == "redacted_thinking":
            details.append(redacted_detail(len(details), _str(block["data"])))
        # Other blocks (server tool calls and their results) have no OpenAI shape.
    message = pb.ChatMessage(role="assistant", tool_calls=calls, reasoning_details=details)
    if texts or not calls:
        message.text = "".join(texts)
    else:
        message.null_content = struct_pb2.NULL_VALUE  # OpenAI's `content: null` beside tool calls
    if thoughts:
        message.reasoning = "".join(thoughts)
    return message


def response_from(data: Mapping[str, Any], model: str) -> pb.ChatCompletionResponse:
    """A Messages API answer -> ChatCompletionResponse. Raises KeyError/TypeError/ValueError
    when the answer is not a usable Message."""
    content = data["content"]
    if not isinstance(content, list):
        raise TypeError("content is not a list")
    choice = pb.Choice(
        index=0, message=message_from(content), finish_reason=finish_reason(data.get("stop_reason"))
    )
    return pb.ChatCompletionResponse(
        id=_str(data.get("id") or ""),
        object="chat.completion",
        created=int(time.time()),
        model=_str(data.get("model") or model),
        choices=[choice],
        usage=usage_from(data.get("usage") or {}),
    )


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
