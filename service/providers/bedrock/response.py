"""A Converse answer -> the canonical (OpenAI-shaped) chat completion.

Also the pieces the stream shares: stop reasons, usage, reasoning details and ids.
"""

from __future__ import annotations

import time
import uuid
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
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    # The model's output did not parse; what came is all there is, and OpenAI has no other word.
    "malformed_model_output": "stop",
    "malformed_tool_use": "stop",
}


def finish_reason(stop_reason: object) -> str:
    return STOP_REASONS.get(stop_reason if isinstance(stop_reason, str) else "", "stop")


def completion_id() -> str:
    # Converse answers carry no id (the request id is a header); callers expect one.
    return f"chatcmpl-{uuid.uuid4().hex}"


# Uncached input, cache writes, cache reads, output: cache_split_usage's order.
USAGE_KEYS = ("inputTokens", "cacheWriteInputTokens", "cacheReadInputTokens", "outputTokens")


def usage_from(usage: object) -> pb.Usage:
    """Bedrock counts cache reads and writes apart from ``inputTokens`` (see
    ``cache_split_usage``). Raises TypeError on a count that is not a whole number."""
    if not isinstance(usage, Mapping):
        raise TypeError("usage is not an object")
    return cache_split_usage(*(whole_number(usage, key) for key in USAGE_KEYS))


def message_from(content: list[Any]) -> pb.ChatMessage:
    texts: list[str] = []
    thoughts: list[str] = []
    details: list[pb.ReasoningDetail] = []
    calls: list[pb.ToolCall] = []
    for block in content:
        if "text" in block:
            texts.append(text(block["text"]))
        elif "toolUse" in block:
            use = block["toolUse"]
            function = pb.FunctionCall(name=text(use["name"]), arguments=tool_arguments(use.get("input")))
            calls.append(pb.ToolCall(id=text(use["toolUseId"]), type="function", function=function))
        elif "reasoningContent" in block:
            reasoning = block["reasoningContent"]
            if "reasoningText" in reasoning:
                thought = text(reasoning["reasoningText"]["text"])
                thoughts.append(thought)
                signature = text(reasoning["reasoningText"].get("signature") or "")
                details.append(reasoning_detail(len(details), thought, signature))
            elif "redactedContent" in reasoning:
                details.append(redacted_detail(len(details), text(reasoning["redactedContent"])))
        # Other blocks (citations, images a model drew) have no OpenAI shape.
    message = pb.ChatMessage(role="assistant", tool_calls=calls, reasoning_details=details)
    if texts or not calls:
        message.text = "".join(texts)
    else:
        message.null_content = struct_pb2.NULL_VALUE  # OpenAI's `content: null` beside tool calls
    if thoughts:
        message.reasoning = "".join(thoughts)
    return message


def response_from(data: Mapping[str, Any], model: str) -> pb.ChatCompletionResponse:
    """A Converse answer -> ChatCompletionResponse. Raises KeyError/TypeError/ValueError when the
    answer is not a usable Converse response."""
    content = data["output"]["message"]["content"]
    if not isinstance(content, list):
        raise TypeError("output.message.content is not a list")
    choice = pb.Choice(
        index=0, message=message_from(content), finish_reason=finish_reason(data.get("stopReason"))
    )
    return pb.ChatCompletionResponse(
        id=completion_id(),
        object="chat.completion",
        created=int(time.time()),
        model=model,
        choices=[choice],
        usage=usage_from(data.get("usage") or {}),
    )
