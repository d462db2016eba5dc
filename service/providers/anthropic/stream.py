"""Anthropic's stream events -> OpenAI-shaped chunks.

Anthropic streams content blocks (``content_block_start`` / ``_delta`` / ``_stop``, each with
the block's ``index``), then ``message_delta`` (stop reason, final usage) and ``message_stop``.
OpenAI streams one message's deltas: text as ``content``, tool calls as ``tool_calls`` entries
numbered from 0 in call order, then a chunk with ``finish_reason``, then one with ``usage``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from service.providers.canonical import ChunkBuilder, reasoning_detail, redacted_detail, tool_arguments
from switchyard.v1 import chat_pb2 as pb

from .errors import anthropic_error
from .response import finish_reason, usage_from

Event = Mapping[str, Any]


class StreamTranslator(ChunkBuilder):
    """The state of one stream (a ``StreamDecoder``): feed it each event, get back the chunks to send.

    A malformed event raises KeyError/TypeError/ValueError; an ``error`` event raises UpstreamError.
    """

    end_marker = "message_stop"

    def __init__(self, model: str, provider: str) -> None:
        super().__init__(model)  # its id and model come with message_start
        self._target_model = model
        self._provider = provider
        self.finished = False  # message_delta (stop reason and final usage) has arrived
        self.stopped = False  # message_stop has arrived
        self._usage: dict[str, Any] = {}
        self._tools: dict[int, int] = {}  # block index -> tool_calls index
        self._tools_without_arguments: set[int] = set()
        self._reasoning: dict[int, int] = {}  # block index -> reasoning_details index
        self._handlers: dict[str, Callable[[Event], list[pb.ChatCompletionChunk]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    @property
    def ended(self) -> bool:
        return self.stopped

    @property
    def complete(self) -> bool:
        return self.finished

    def feed(self, name: bytes, data: bytes) -> list[pb.ChatCompletionChunk]:
        event = orjson.loads(data)
        if not isinstance(event, dict):
            raise TypeError("not a JSON object")
        # `ping`, and event types Anthropic may add later, carry nothing to pass on.
        handler = self._handlers.get(event["type"])
        return handler(event) if handler is not None else []

    # -- the events

    def _message_start(self, event: Event) -> list[pb.ChatCompletionChunk]:
        message = event["message"]
        self.id = str(message.get("id") or self.id)
        self.model = str(message.get("model") or self.model)
        self._add_usage(message.get("usage"))
        return [self._delta(pb.ChatMessage(role="assistant", text=""))]

    def _block_start(self, event: Event) -> list[pb.ChatCompletionChunk]:
        index: int = event["index"]
        block = event["content_block"]
        kind = block["type"]
        if kind == "text" and block.get("text"):
            return [self._delta(pb.ChatMessage(text=block["text"]))]
        if kind == "tool_use":
            self._tools[index] = len(self._tools)
            arguments = tool_arguments(block["input"]) if block.get("input") else ""
            if not arguments:
                self._tools_without_arguments.add(index)
            function = pb.FunctionCall(name=block["name"], arguments=arguments)
            call = pb.ToolCall(index=self._tools[index], id=block["id"], type="function", function=function)
            return [self._delta(pb.ChatMessage(tool_calls=[call]))]
        if kind == "thinking":
            self._reasoning[index] = len(self._reasoning)
            if block.get("thinking"):
                return [self._thinking(index, text=block["thinking"])]
        elif kind == "redacted_thinking":
            self._reasoning[index] = len(self._reasoning)
            detail = redacted_detail(self._reasoning[index], block["data"])
            return [self._delta(pb.ChatMessage(reasoning_details=[detail]))]
        return []

    def _block_delta(self, event: Event) -> list[pb.ChatCompletionChunk]:
        index: int = event["index"]
        delta = event["delta"]
        kind = delta["type"]
        if kind == "text_delta":
            return [self._delta(pb.ChatMessage(text=delta["text"]))]
        if kind == "input_json_delta" and delta["partial_json"]:
            self._tools_without_arguments.discard(index)
            return [self._arguments(index, delta["partial_json"])]
        if kind == "thinking_delta":
            return [self._thinking(index, text=delta["thinking"])]
        if kind == "signature_delta":
            return [self._thinking(index, signature=delta["signature"])]
        return []

    def _block_stop(self, event: Event) -> list[pb.ChatCompletionChunk]:
        index: int = event["index"]
        if index in self._tools_without_arguments:
            # A call without arguments: OpenAI clients expect JSON text, not an empty string.
            self._tools_without_arguments.discard(index)
            return [self._arguments(index, "{}")]
        return []

    def _message_delta(self, event: Event) -> list[pb.ChatCompletionChunk]:
        finish = finish_reason(event["delta"].get("stop_reason"))
        self._add_usage(event.get("usage"))
        usage = usage_from(self._usage)
        self.finished = True
        done = self._chunk([pb.Choice(index=0, delta=pb.ChatMessage(), finish_reason=finish)])
        # Always sent: the engine needs it for accounting and drops it if the caller did not ask.
        usage_chunk = self._chunk([])
        usage_chunk.usage.CopyFrom(usage)
        return [done, usage_chunk]

    def _message_stop(self, event: Event) -> list[pb.ChatCompletionChunk]:
        self.stopped = True
        return []

    def _error(self, event: Event) -> list[pb.ChatCompletionChunk]:
        raise anthropic_error(None, event, {}, provider=self._provider, model=self._target_model)

    # -- building chunks

    def _add_usage(self, usage: object) -> None:
        # message_start has the prompt's counts, message_delta the final output count (and,
        # in newer API versions, the prompt's again); the latest value of each wins.
        if isinstance(usage, Mapping):
            self._usage.update((key, value) for key, value in usage.items() if value is not None)

    def _arguments(self, index: int, text: str) -> pb.ChatCompletionChunk:
        call = pb.ToolCall(index=self._tools[index], function=pb.FunctionCall(arguments=text))
        return self._delta(pb.ChatMessage(tool_calls=[call]))

    def _thinking(self, index: int, *, text: str = "", signature: str = "") -> pb.ChatCompletionChunk:
        detail = reasoning_detail(self._reasoning[index], text, signature)
        delta = pb.ChatMessage(reasoning_details=[detail])
        if text:
            delta.reasoning = text
        return self._delta(delta)
