"""Pieces every translating dialect (Anthropic, Bedrock, Gemini) uses to build canonical answers
from its upstream's JSON: checked numbers and strings, usage with cache reads and writes counted
apart, reasoning details and tool-call arguments.

The checks raise TypeError; a dialect's ``response_from`` turns that into ``502
upstream_bad_response`` (``HttpProvider.bad_response``), and its stream decoder into a skipped,
counted payload (``PayloadGuard``).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from switchyard.v1 import chat_pb2 as pb

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
