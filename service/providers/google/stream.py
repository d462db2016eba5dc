"""Gemini's stream (``streamGenerateContent?alt=sse``) -> OpenAI-shaped chunks.

Each SSE event is a whole ``GenerateContentResponse`` holding the candidates' new parts (text,
thought summaries, whole function calls) and the usage so far; the last event of a candidate
carries its ``finishReason``. There is no end marker: the stream is whole once every candidate
that spoke has finished, and the connection closing after that is the normal end. Closing
before it is a broken stream (``502 upstream_stream_broken``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from service.providers.canonical import REASONING_TEXT, ChunkBuilder
from switchyard.v1 import chat_pb2 as pb

from .errors import google_error
from .response import (
    check_prompt,
    finish_reason,
    logprobs_from,
    parts_of,
    response_id,
    tool_call,
    usage_from,
)


class GeminiStream(ChunkBuilder):
    """One stream's state (a ``StreamDecoder``): feed it each event, get back the chunks to send.

    A malformed event raises KeyError/TypeError/ValueError; an error event or a blocked prompt
    raises UpstreamError.
    """

    # Named in the error when the stream stops before it.
    end_marker = "finishReason"
    # Nothing marks the end but the last candidate's finishReason, after which the upstream
    # closes: the shared loop then ends the stream as a success because it is `complete`.
    ended = False

    def __init__(self, model: str, provider: str) -> None:
        super().__init__(model)  # its id and model come with the first event
        self._target_model = model
        self._provider = provider
        self.complete = False  # every candidate has finished and the usage chunk has gone out
        self._usage = pb.Usage()
        self._started: set[int] = set()  # candidates whose role chunk has gone out
        self._finished: set[int] = set()
        self._calls: dict[int, int] = {}  # candidate -> tool calls so far
        self._thoughts: dict[int, int] = {}  # candidate -> thought summaries so far

    def feed(self, name: bytes, data: bytes) -> list[pb.ChatCompletionChunk]:
        event = orjson.loads(data)
        if not isinstance(event, dict):
            raise TypeError("not a JSON object")
        if "error" in event:
            raise google_error(None, event, {}, provider=self._provider, model=self._target_model)
        check_prompt(event, provider=self._provider, model=self._target_model)
        if not self.id:
            self.id = response_id(event)
        self.model = str(event.get("modelVersion") or self.model)
        if "usageMetadata" in event:
            self._usage = usage_from(event["usageMetadata"])  # each event's is the whole count so far
        chunks: list[pb.ChatCompletionChunk] = []
        for position, candidate in enumerate(event.get("candidates") or ()):
            index = int(candidate.get("index", position))
            chunks += self._candidate(index, candidate)
        if self._finished and self._finished >= self._started and not self.complete:
            self.complete = True
            # Always sent: the engine needs it for accounting and drops it if the caller did not ask.
            last = self._chunk([])
            last.usage.CopyFrom(self._usage)
            chunks.append(last)
        return chunks

    def _candidate(self, index: int, candidate: Mapping[str, Any]) -> list[pb.ChatCompletionChunk]:
        delta = pb.ChatMessage()
        texts: list[str] = []
        thoughts: list[str] = []
        for part in parts_of(candidate):
            if "functionCall" in part:
                calls = self._calls.get(index, 0)
                delta.tool_calls.append(tool_call(part, calls))
                self._calls[index] = calls + 1
            elif "text" in part:
                text = part["text"]
                if not isinstance(text, str):
                    raise TypeError("text is not a string")
                (thoughts if part.get("thought") else texts).append(text)
        if texts:
            delta.text = "".join(texts)
        if thoughts:
            delta.reasoning = "".join(thoughts)
            count = self._thoughts.get(index, 0)
            delta.reasoning_details.add(type=REASONING_TEXT, index=count, text=delta.reasoning)
            self._thoughts[index] = count + 1
        first = index not in self._started
        if first:
            self._started.add(index)
            delta.role = "assistant"
            if not delta.tool_calls and not delta.text:
                delta.text = ""  # OpenAI's first chunk: role and empty content
        chunks: list[pb.ChatCompletionChunk] = []
        choice = pb.Choice(index=index, delta=delta)
        logprobs = logprobs_from(candidate.get("logprobsResult"))
        if logprobs is not None:
            choice.logprobs.CopyFrom(logprobs)
        if first or delta.text or delta.tool_calls or delta.reasoning or logprobs is not None:
            chunks.append(self._chunk([choice]))
        finish = candidate.get("finishReason")
        if finish and index not in self._finished:
            self._finished.add(index)
            reason = finish_reason(finish, index in self._calls)
            chunks.append(self._chunk([pb.Choice(index=index, delta=pb.ChatMessage(), finish_reason=reason)]))
        return chunks
