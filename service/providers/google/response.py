"""A ``GenerateContentResponse`` -> the canonical (OpenAI-shaped) chat completion.

Also the pieces the stream shares: finish reasons, usage, candidate parts and log probabilities.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from google.protobuf import struct_pb2

from service.providers.canonical import REASONING_TEXT, text, tool_arguments, whole_number
from switchyard.v1 import chat_pb2 as pb

from .errors import blocked_prompt_error

FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
# Reasoning details of Gemini's thought summaries (OpenRouter's names, which the contract uses).


def finish_reason(value: object, has_calls: bool) -> str:
    """Gemini's finishReason -> OpenAI's. Gemini says STOP after function calls too; OpenAI's
    clients look for ``tool_calls``. Reasons with no OpenAI match (OTHER, LANGUAGE,
    MALFORMED_FUNCTION_CALL…) end the answer as it stands: ``stop``."""
    if value == "MAX_TOKENS":
        return "length"
    if value in FILTERED:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def usage_from(meta: object) -> pb.Usage:
    """Gemini's usageMetadata -> OpenAI's accounting. ``promptTokenCount`` already includes the
    cached tokens, as OpenAI's ``prompt_tokens`` does; the tool-use prompt (e.g. search results) and
    the thoughts are counted apart, so they are added to the prompt and the completion, where
    OpenAI counts them and where they are billed. Raises TypeError on a count that is not a number."""
    if not isinstance(meta, Mapping):
        raise TypeError("usageMetadata is not an object")
    prompt = count(meta, "promptTokenCount") + count(meta, "toolUsePromptTokenCount")
    cached = count(meta, "cachedContentTokenCount")
    thoughts = count(meta, "thoughtsTokenCount")
    completion = count(meta, "candidatesTokenCount") + thoughts
    details = pb.PromptTokensDetails(cached_tokens=cached, cached_read_tokens=cached)
    for entry in meta.get("promptTokensDetails") or ():
        field = _MODALITIES.get(str(entry.get("modality"))) if isinstance(entry, Mapping) else None
        if field is not None:
            setattr(details, field, count(entry, "tokenCount"))
    return pb.Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=details,
        completion_tokens_details=pb.CompletionTokensDetails(reasoning_tokens=thoughts),
    )


_MODALITIES = {"TEXT": "text_tokens", "AUDIO": "audio_tokens", "IMAGE": "image_tokens"}


def count(counts: Mapping[str, Any], key: str) -> int:
    """A usageMetadata count, checked."""
    return whole_number(counts, key, "usageMetadata")


def call_id(function_call: Mapping[str, Any]) -> str:
    """The call's id; Gemini's API leaves it out unless asked, and OpenAI's clients need one to
    answer the call with."""
    given = function_call.get("id")
    return given if isinstance(given, str) and given else f"call_{secrets.token_hex(12)}"


def tool_call(part: Mapping[str, Any], index: int | None = None) -> pb.ToolCall:
    """A ``functionCall`` part -> a tool call (a whole one: Gemini never splits a call's arguments)."""
    function_call = part["functionCall"]
    function = pb.FunctionCall(
        name=text(function_call["name"]), arguments=tool_arguments(function_call.get("args"))
    )
    call = pb.ToolCall(id=call_id(function_call), type="function", function=function)
    if index is not None:
        call.index = index
    signature = part.get("thoughtSignature")
    if isinstance(signature, str) and signature:
        # Sent back by the caller with the call; see contents.thought_signature.
        extra = {"extra_content": {"google": {"thought_signature": signature}}}
        call.extra_json = orjson.dumps(extra).decode()
    return call


def parts_of(candidate: Mapping[str, Any]) -> Sequence[Mapping[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, Mapping) else None
    if parts is None:
        return ()  # a candidate stopped by a filter may come without content
    if not isinstance(parts, list):
        raise TypeError("content.parts is not a list")
    return parts


def message_from(parts: Sequence[Mapping[str, Any]]) -> pb.ChatMessage:
    """A candidate's parts -> the assistant message. Raises KeyError/TypeError on a malformed part."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[pb.ToolCall] = []
    for part in parts:
        if "functionCall" in part:
            calls.append(tool_call(part))
        elif "text" in part:
            (thoughts if part.get("thought") else texts).append(text(part["text"]))
        # Other parts (executable code, inline images from image models) have no OpenAI shape.
    message = pb.ChatMessage(role="assistant", tool_calls=calls)
    if texts or not calls:
        message.text = "".join(texts)
    else:
        message.null_content = struct_pb2.NULL_VALUE  # OpenAI's `content: null` beside tool calls
    if thoughts:
        message.reasoning = "".join(thoughts)
        message.reasoning_details.add(type=REASONING_TEXT, index=0, text=message.reasoning)
    return message


def logprobs_from(result: object) -> pb.LogProbs | None:
    """``logprobsResult`` (chosen tokens, with the top alternatives at each step) -> OpenAI's."""
    if not isinstance(result, Mapping):
        return None
    tops = result.get("topCandidates") or []
    logprobs = pb.LogProbs()
    for i, chosen in enumerate(result.get("chosenCandidates") or []):
        entry = _token(chosen)
        alternatives = tops[i].get("candidates") if i < len(tops) else None
        entry.top_logprobs.extend(_token(alt) for alt in alternatives or ())
        logprobs.content.append(entry)
    return logprobs


def _token(candidate: Mapping[str, Any]) -> pb.TokenLogProb:
    token = text(candidate.get("token") or "")
    return pb.TokenLogProb(
        token=token, logprob=float(candidate.get("logProbability") or 0.0), bytes=list(token.encode())
    )


def check_prompt(data: Mapping[str, Any], *, provider: str, model: str) -> None:
    """Raise the content-filter error when Gemini refused the prompt (no candidates at all)."""
    feedback = data.get("promptFeedback")
    if not data.get("candidates") and isinstance(feedback, Mapping) and feedback.get("blockReason"):
        raise blocked_prompt_error(feedback, provider=provider, model=model)


def response_from(data: Mapping[str, Any], *, provider: str, model: str) -> pb.ChatCompletionResponse:
    """A generateContent answer -> ChatCompletionResponse. Raises the content-filter UpstreamError
    for a blocked prompt, and KeyError/TypeError/ValueError for an answer that is not usable."""
    check_prompt(data, provider=provider, model=model)
    candidates = data["candidates"]
    if not isinstance(candidates, list) or not candidates:
        raise ValueError("no candidates")
    choices = []
    for position, candidate in enumerate(candidates):
        message = message_from(parts_of(candidate))
        choice = pb.Choice(
            index=int(candidate.get("index", position)),
            message=message,
            finish_reason=finish_reason(candidate.get("finishReason"), bool(message.tool_calls)),
        )
        logprobs = logprobs_from(candidate.get("logprobsResult"))
        if logprobs is not None:
            choice.logprobs.CopyFrom(logprobs)
        choices.append(choice)
    return pb.ChatCompletionResponse(
        id=response_id(data),
        object="chat.completion",
        created=int(time.time()),
        model=text(data.get("modelVersion") or model),
        choices=choices,
        usage=usage_from(data.get("usageMetadata") or {}),
    )


def response_id(data: Mapping[str, Any]) -> str:
    given = data.get("responseId")
    return given if isinstance(given, str) and given else f"chatcmpl-{secrets.token_hex(12)}"
