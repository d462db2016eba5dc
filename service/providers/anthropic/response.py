"""An Anthropic Message -> the canonical (OpenAI-shaped) chat completion.

Also the pieces the stream shares: stop reasons, usage, and reasoning details.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

from service.providers.canonical import (
    cache_split_usage,
    reasoning_detail,
    redacted_detail,
    text,
    tool_arguments,
    whole_number,
)
from switchyard.v1 import chat_pb2 as pb

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


# Uncached input, cache writes, cache reads, output: cache_split_usage's order.
USAGE_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


def usage_from(usage: object) -> pb.Usage:
    """Anthropic counts cache reads and writes apart from ``input_tokens`` (see
    ``cache_split_usage``). Raises TypeError on a count that is not a whole number."""
    if not isinstance(usage, Mapping):
        raise TypeError("usage is not an object")
    return cache_split_usage(
        *(
            whole_number(usage, key)
            for key in (
                "input_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "output_tokens",
            )
        )
    )


def message_from(content: list[Any]) -> pb.ChatMessage:
    """Content blocks -> the assistant message. Raises KeyError/TypeError on a malformed block."""
    texts: list[str] = []
    thoughts: list[str] = []
    details: list[pb.ReasoningDetail] = []
    calls: list[pb.ToolCall] = []
    for block in content:
        kind = block["type"]
        if kind == "text":
            texts.append(text(block["text"]))
        elif kind == "tool_use":
            function = pb.FunctionCall(name=text(block["name"]), arguments=tool_arguments(block.get("input")))
            calls.append(pb.ToolCall(id=text(block["id"]), type="function", function=function))
        elif kind == "thinking":
            thought = text(block["thinking"])
            thoughts.append(thought)
            details.append(reasoning_detail(len(details), thought, text(block.get("signature") or "")))
        elif kind == "redacted_thinking":
            details.append(redacted_detail(len(details), text(block["data"])))
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
        id=text(data.get("id") or ""),
        object="chat.completion",
        created=int(time.time()),
        model=text(data.get("model") or model),
        choices=[choice],
        usage=usage_from(data.get("usage") or {}),
    )
