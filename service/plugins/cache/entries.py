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
    # One ListFields() per message, dispatched by name: each protobuf accessor is a call into
    # upb (~0.5-2 us here), and a chunk sets only a few of its fields.
    for chunk in chunks:
        for fd, value in chunk.ListFields():
            name = fd.name
            if name == "choices":
                continue
            if name in ("id", "created", "model"):
                if not getattr(out, name):
                    setattr(out, name, value)
            elif name in ("system_fingerprint", "service_tier"):
                setattr(out, name, value)
            elif name == "usage":
                out.usage.CopyFrom(value)
            elif name in ("search_results", "videos", "citations"):
                getattr(out, name).extend(value)
            elif name == "extra_json" and not out.extra_json:
                out.extra_json = value  # Azure's prompt_filter_results: top level, as unary
        for piece in chunk.choices:
            index = piece.index
            choice = choices.get(index)
            if choice is None:
                choice = choices[index] = pb.Choice(index=index)
                choice.message.role = "assistant"
            for fd, value in piece.ListFields():
                name = fd.name
                if name == "finish_reason":
                    choice.finish_reason = value
                elif name == "extra_json":
                    choice.extra_json = value  # Azure's content_filter_results: the last
                elif name == "logprobs":
                    choice.logprobs.content.extend(value.content)
                    choice.logprobs.refusal.extend(value.refusal)
                elif name == "delta" and not _fold_delta(
                    value, index, choice, texts, refusals, reasoning, calls, arguments
                ):
                    return None
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


def _fold_delta(
    delta: pb.ChatMessage,
    index: int,
    choice: pb.Choice,
    texts: dict[int, list[str]],
    refusals: dict[int, list[str]],
    reasoning: dict[int, list[str]],
    calls: dict[int, dict[int, pb.ToolCall]],
    arguments: dict[tuple[int, int], list[str]],
) -> bool:
    """Fold one delta into its choice; False when it holds what cannot be folded faithfully."""
    for fd, value in delta.ListFields():
        name = fd.name
        if name == "text":
            texts.setdefault(index, []).append(value)
        elif name == "role":
            if value:
                choice.message.role = value
        elif name == "refusal":
            refusals.setdefault(index, []).append(value)
        elif name == "reasoning":
            reasoning.setdefault(index, []).append(value)
        elif name == "annotations":
            choice.message.annotations.extend(value)
        elif name == "tool_calls":
            for call in value:
                position = call.index if call.HasField("index") else 0
                merged = calls.setdefault(index, {}).get(position)
                if merged is None:
                    merged = calls[index][position] = pb.ToolCall()
                if call.id:
                    merged.id = call.id
                if call.type:
                    merged.type = call.type
                if call.HasField("function"):
                    function = call.function
                    if function.name:
                        merged.function.name = function.name
                    if function.HasField("arguments"):
                        arguments.setdefault((index, position), []).append(function.arguments)
        elif name != "null_content":  # audio, content parts, reasoning details, unknown keys
            return False
    return True
