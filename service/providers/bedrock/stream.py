"""ConverseStream events -> OpenAI-shaped chunks.

Converse streams ``messageStart``, then content blocks (``contentBlockStart`` for a tool call,
``contentBlockDelta``s, ``contentBlockStop``, each with its ``contentBlockIndex``), then
``messageStop`` (the stop reason) and ``metadata`` (usage), after which the stream ends.
OpenAI streams one message's deltas: text as ``content``, tool calls as ``tool_calls`` entries
numbered from 0 in call order, then a chunk with ``finish_reason``, then one with ``usage``.

Exceptions inside the stream are frames of their own, raised by the framing reader
(``eventstream.py``) before they reach this translator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from service.providers.canonical import ChunkBuilder, reasoning_detail, redacted_detail
from switchyard.v1 import chat_pb2 as pb

from .response import completion_id, finish_reason, usage_from

Event = Mapping[str, Any]


class StreamTranslator(ChunkBuilder):
    """The state of one stream (a ``StreamDecoder``): feed it each event, get back the chunks to
    send. A malformed event raises KeyError/TypeError/ValueError."""

    end_marker = "metadata"

    def __init__(self, model: str) -> None:
        super().__init__(model, completion_id())
        self.stopped = False  # messageStop (the stop reason) has arrived
        self.ended = False  # metadata (the usage), the stream's last event, has arrived
        self._tools: dict[int, int] = {}  # block index -> tool_calls index
        self._tools_without_arguments: set[int] = set()
        self._reasoning: dict[int, int] = {}  # block index -> reasoning_details index
        self._handlers: dict[bytes, Callable[[Event], list[pb.ChatCompletionChunk]]] = {
            b"messageStart": self._message_start,
            b"contentBlockStart": self._block_start,
            b"contentBlockDelta": self._block_delta,
            b"contentBlockStop": self._block_stop,
            b"messageStop": self._message_stop,
            b"metadata": self._metadata,
        }

    @property
    def complete(self) -> bool:
        return self.stopped and self.ended

    def feed(self, name: bytes, data: bytes) -> list[pb.ChatCompletionChunk]:
        handler = self._handlers.get(name)
        if handler is None:
            return []  # event types Bedrock may add later carry nothing to pass on
        event = orjson.loads(data)
        if not isinstance(event, dict):
            raise TypeError("not a JSON object")
        return handler(event)

    # -- the events

    def _message_start(self, event: Event) -> list[pb.ChatCompletionChunk]:
        return [self._delta(pb.ChatMessage(role="assistant", text=""))]

    def _block_start(self, event: Event) -> list[pb.ChatCompletionChunk]:
        index: int = event["contentBlockIndex"]
        use = event["start"].get("toolUse")
        if use is None:
            return []
        self._tools[index] = len(self._tools)
        self._tools_without_arguments.add(index)
        function = pb.FunctionCall(name=use["name"], arguments="")
        call = pb.ToolCall(index=self._tools[index], id=use["toolUseId"], type="function", function=function)
        return [self._delta(pb.ChatMessage(tool_calls=[call]))]

    def _block_delta(self, event: Event) -> list[pb.ChatCompletionChunk]:
        index: int = event["contentBlockIndex"]
        delta = event["delta"]
        if "text" in delta:
            return [self._delta(pb.ChatMessage(text=delta["text"]))]
        if "toolUse" in delta:
            arguments = delta["toolUse"]["input"]
            if not arguments:
                return []
            self._tools_without_arguments.discard(index)
            return [self._arguments(index, arguments)]
        if "reasoningContent" in delta:
            return self._reasoning_delta(index, delta["reasoningContent"])
        return []

    def _reasoning_delta(self, index: int, delta: Event) -> list[pb.ChatCompletionChunk]:
        if index not in self._reasoning:
            self._reasoning[index] = len(self._reasoning)
        position = self._reasoning[index]
        if "redactedContent" in delta:
            detail = redacted_detail(position, delta["redactedContent"])
            return [self._delta(pb.ChatMessage(reasoning_details=[detail]))]
        text, signature = delta.get("text") or "", delta.get("signature") or ""
        if not (text or signature):
            return []
        message = pb.ChatMessage(reasoning_details=[reasoning_detail(position, text, signature)])
        if text:
            message.reasoning = text
        return [self._delta(message)]

    def _block_stop(self, event: Event) -> list[pb.ChatCompletionChunk]:
        index: int = event["contentBlockIndex"]
        if index in self._tools_without_arguments:
            # A call without arguments: OpenAI clients expect JSON text, not an empty string.
            self._tools_without_arguments.discard(index)
            return [self._arguments(index, "{}")]
        return []

    def _message_stop(self, event: Event) -> list[pb.ChatCompletionChunk]:
        finish = finish_reason(event["stopReason"])
        self.stopped = True
        return [self._chunk([pb.Choice(index=0, delta=pb.ChatMessage(), finish_reason=finish)])]

    def _metadata(self, event: Event) -> list[pb.ChatCompletionChunk]:
        usage = usage_from(event["usage"])
        self.ended = True
        # Always sent: the engine needs it for accounting and drops it if the caller did not ask.
        chunk = self._chunk([])
        chunk.usage.CopyFrom(usage)
        return [chunk]

    # -- building chunks

    def _arguments(self, index: int, text: str) -> pb.ChatCompletionChunk:
        call = pb.ToolCall(index=self._tools[index], function=pb.FunctionCall(arguments=text))
        return self._delta(pb.ChatMessage(tool_calls=[call]))
