"""A cached answer: what is stored, how it is (de)serialised, and a stream folded into one.

An entry keeps the answer as a unary ``ChatCompletionResponse`` (whatever the call that made
it), without ``extra_fields`` and without ``usage.cost``: those describe the call that made it,
not the call it serves. A stream is folded into that form once it has completed
(:func:`fold_stream`); the engine turns it back into chunks for a streaming hit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from switchyard.v1 import chat_pb2 as pb


@dataclass(frozen=True, slots=True)
class Entry:
    cache_id: str
    partition: str  # "key:<id>", "team:<id>" or "shared"
    cache_key: str  # the x-bf-cache-key that narrowed it ("" for none)
    provider: str  # who made the answer
    model: str
    created_at: float  # unix seconds
    expires_at: float
    answer: bytes  # a serialised pb.ChatCompletionResponse

    def response(self) -> pb.ChatCompletionResponse:
        return pb.ChatCompletionResponse.FromString(self.answer)

    @property
    def size(self) -> int:
        return len(self.answer)

    def dumps(self) -> bytes:
        """One value for a key-value store: a JSON header line, then the answer's bytes."""
        header = orjson.dumps(
            {
                "id": self.cache_id,
                "partition": self.partition,
                "cache_key": self.cache_key,
                "provider": self.provider,
                "model": self.model,
                "created_at": self.created_at,
                "expires_at": self.expires_at,
            }
        )
        return header + b"\n" + self.answer

    @classmethod
    def loads(cls, data: bytes) -> Entry:
        header, _, answer = data.partition(b"\n")
        meta = orjson.loads(header)
        return cls(
            meta["id"],
            meta["partition"],
            meta["cache_key"],
            meta["provider"],
            meta["model"],
            float(meta["created_at"]),
            float(meta["expires_at"]),
            answer,
        )


def storable(response: pb.ChatCompletionResponse) -> bytes:
    """The answer as it is stored: the call's own ``extra_fields`` and cost left out."""
    copy = pb.ChatCompletionResponse()
    copy.CopyFrom(response)
    copy.ClearField("extra_fields")
    if copy.HasField("usage"):
        copy.usage.ClearField("cost")
    return copy.SerializeToString()


def complete(response: pb.ChatCompletionResponse) -> bool:
    """Worth storing: every choice finished (a cut answer is never served again)."""
    return bool(response.choices) and all(c.finish_reason for c in response.choices)


def fold_stream(chunks: Sequence[pb.ChatCompletionChunk]) -> pb.ChatCompletionResponse | None:
    """A completed stream as one unary answer, or None when it cannot be folded faithfully.

    Text, refusals and reasoning are concatenated, tool calls merged by their index (the id,
    type and name from the first delta, the arguments concatenated), log probabilities and
    annotations appended, provider keys (Azure's filter results) kept as the last seen.
    Deltas carrying audio, content parts, reasoning details or unknown keys are not folded:
    such a stream is simply not cached (correct first)."""
    if not chunks:
        return None
    out = pb.ChatCompletionResponse(object="chat.completion")
    choices: dict[int, pb.Choice] = {}
    texts: dict[int, list[str]] = {}
    refusals: dict[int, list[str]] = {}
    reasoning: dict[int, list[str]] = {}
    calls: dict[int, dict[int, pb.ToolCall]] = {}
    arguments: dict[tuple[int, int], list[str]] = {}
    for chunk in chunks:
        if chunk.id and not out.id:
            out.id = chunk.id
        if chunk.created and not out.created:
            out.created = chunk.created
        if chunk.model and not out.model:
            out.model = chunk.model
        if chunk.HasField("system_fingerprint"):
            out.system_fingerprint = chunk.system_fingerprint
        if chunk.HasField("service_tier"):
            out.service_tier = chunk.service_tier
        if chunk.HasField("usage"):
            out.usage.CopyFrom(chunk.usage)
        out.search_results.extend(chunk.search_results)
        out.videos.extend(chunk.videos)
        out.citations.extend(chunk.citations)
        if chunk.extra_json and not out.extra_json:
            out.extra_json = chunk.extra_json  # Azure's prompt_filter_results: top level, as unary
        for piece in chunk.choices:
            choice = choices.get(piece.index)
            if choice is None:
                choice = choices[piece.index] = pb.Choice(index=piece.index)
                choice.message.role = "assistant"
            if piece.HasField("finish_reason"):
                choice.finish_reason = piece.finish_reason
            if piece.extra_json:
                choice.extra_json = piece.extra_json  # Azure's content_filter_results: the last
            if piece.HasField("logprobs"):
                choice.logprobs.content.extend(piece.logprobs.content)
                choice.logprobs.refusal.extend(piece.logprobs.refusal)
            if not piece.HasField("delta"):
                continue
            delta = piece.delta
            if (
                delta.HasField("audio")
                or delta.WhichOneof("content") == "parts"
                or delta.reasoning_details
                or delta.extra_json
            ):
                return None
            if delta.HasField("role") and delta.role:
                choice.message.role = delta.role
            if delta.WhichOneof("content") == "text":
                texts.setdefault(piece.index, []).append(delta.text)
            if delta.HasField("refusal"):
                refusals.setdefault(piece.index, []).append(delta.refusal)
            if delta.HasField("reasoning"):
                reasoning.setdefault(piece.index, []).append(delta.reasoning)
            choice.message.annotations.extend(delta.annotations)
            for call in delta.tool_calls:
                position = call.index if call.HasField("index") else 0
                merged = calls.setdefault(piece.index, {}).get(position)
                if merged is None:
                    merged = calls[piece.index][position] = pb.ToolCall()
                if call.HasField("id") and call.id:
                    merged.id = call.id
                if call.HasField("type") and call.type:
                    merged.type = call.type
                if call.HasField("function"):
                    if call.function.HasField("name") and call.function.name:
                        merged.function.name = call.function.name
                    if call.function.HasField("arguments"):
                        arguments.setdefault((piece.index, position), []).append(call.function.arguments)
    for index, choice in sorted(choices.items()):
        message = choice.message
        if index in texts:
            message.text = "".join(texts[index])
        if index in refusals:
            message.refusal = "".join(refusals[index])
        if index in reasoning:
            message.reasoning = "".join(reasoning[index])
        for position, call in sorted(calls.get(index, {}).items()):
            if (index, position) in arguments:
                call.function.arguments = "".join(arguments[(index, position)])
            message.tool_calls.append(call)
        if message.tool_calls and index not in texts:
            message.null_content = 0  # as a unary answer that only calls tools: content null
        out.choices.append(choice)
    return out
