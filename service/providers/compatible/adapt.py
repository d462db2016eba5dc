"""An upstream's own names -> the contract's, on the parsed JSON before the codec reads it (and the
way back for what the caller sends): reasoning text under ``reasoning_content`` (DeepSeek, xAI,
vLLM), usage counts at the top of ``usage`` (Perplexity's citation tokens, DeepSeek's cache hits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def reasoning_from_upstream(data: dict[str, Any], key: str, field: str) -> None:
    """Move each choice's ``key`` (``message`` or ``delta``) reasoning from ``field`` to ``reasoning``."""
    choices = data.get("choices")
    if not isinstance(choices, list):
        return
    for choice in choices:
        message = choice.get(key) if isinstance(choice, dict) else None
        if not isinstance(message, dict) or field not in message:
            continue
        if message.get("reasoning") is None:
            message["reasoning"] = message.pop(field)
        elif message["reasoning"] == message[field]:
            del message[field]  # the same text under both names (newer vLLM): once is enough


def reasoning_to_upstream(messages: Iterable[dict[str, Any]], field: str) -> None:
    """A conversation's ``reasoning`` goes back under ``field`` (DeepSeek needs it back after a
    tool call in thinking mode)."""
    for message in messages:
        if "reasoning" in message and field not in message:
            message[field] = message.pop("reasoning")


def usage_from_upstream(data: dict[str, Any], fields: Mapping[str, str]) -> None:
    """Move ``usage`` counts to where the contract has them (``fields``: upstream key -> dotted
    path inside ``usage``). A place the upstream already filled itself is left as it is."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return
    for source, target in fields.items():
        if usage.get(source) is None:
            continue
        *parents, leaf = target.split(".")
        node = usage
        for name in parents:
            child = node.get(name)
            if child is None:
                child = node[name] = {}
            if not isinstance(child, dict):
                break
            node = child
        else:
            if node.get(leaf) is None:
                node[leaf] = usage.pop(source)
