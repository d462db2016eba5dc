"""Chat messages -> Anthropic's top-level ``system`` and its alternating ``messages`` turns.

OpenAI lets messages of any role follow each other; Anthropic wants ``system`` apart and the
rest as user/assistant turns made of content blocks, tool results inside user turns, first
in them. So: system and developer messages are hoisted (in order) into ``system``; a tool
message becomes a ``tool_result`` block of a user turn; consecutive messages of one role
merge into one turn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from service.errors import invalid_request
from service.providers.canonical import (
    REASONING_REDACTED,
    REASONING_TEXT,
    content_blocks,
    refusal_text,
    tool_call_input,
)
from switchyard import codec
from switchyard.v1 import chat_pb2 as pb

Block = dict[str, Any]
Turn = dict[str, Any]

_DATA_URL = re.compile(r"data:([^;,]+);base64,(.*)", re.DOTALL)
_HTTP_URL = re.compile(r"https?://", re.IGNORECASE)
# Message-level keys with a meaning in Anthropic's format, put on the message's last block:
# `cache_control` marks a cache breakpoint; `is_error` flags a failed tool result. Other unknown
# message keys (e.g. `function_call: null` in replayed OpenAI answers) have no home and are dropped.
_MESSAGE_KEYS = ("cache_control", "is_error")


def convert_messages(messages: Sequence[pb.ChatMessage]) -> tuple[list[Block], list[Turn]]:
    """The request's messages -> (``system`` text blocks, ``messages`` turns)."""
    system: list[Block] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.role
        if role in ("system", "developer"):
            system.extend(_with_message_keys(message, _text_blocks(message, where)))
            continue
        if role == "user":
            blocks = _user_blocks(message, where)
        elif role == "tool":
            blocks, role = [_tool_result(message, where)], "user"
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        else:
            raise invalid_request(f"Anthropic has no message role {role!r}", f"{where}.role")
        blocks = _with_message_keys(message, blocks)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise invalid_request("Anthropic needs at least one user or assistant message", "messages")
    for turn in turns:
        if turn["role"] == "user":
            # Anthropic wants a user turn's tool results before anything else in it.
            turn["content"].sort(key=lambda block: block.get("type") != "tool_result")
    return system, turns


def _user_blocks(message: pb.ChatMessage, where: str) -> list[Block]:
    return content_blocks(message, where, _text, _part)


def _text_blocks(message: pb.ChatMessage, where: str) -> list[Block]:
    """Content that may only be text (system prompts)."""
    blocks = _user_blocks(message, where)
    for j, block in enumerate(blocks):
        if block["type"] != "text":
            raise invalid_request(
                f"Anthropic's system prompt takes text only, not {block['type']!r}", f"{where}.content[{j}]"
            )
    return blocks


def _text(text: str, extra: str = "") -> list[Block]:
    # Anthropic refuses empty text blocks; an empty string says nothing anyway.
    if not text:
        return []
    block: Block = {"type": "text", "text": text}
    if extra:
        codec.merge_extra(block, extra)
    return [block]


def _part(part: pb.ContentPart, where: str) -> list[Block]:
    kind = part.type
    if kind == "text":
        return _text(part.text, part.extra_json)
    if kind == "image_url":
        block = {"type": "image", "source": _source(part.image_url.url, f"{where}.image_url.url")}
    elif kind == "file":
        block = _document(part.file, where)
    elif kind in ("input_audio", "refusal"):
        raise invalid_request(f"Anthropic does not take {kind!r} content", f"{where}.type")
    else:
        # Anthropic's own block types (e.g. "document", "search_result") go through as written.
        block = {"type": kind}
    if part.extra_json:
        codec.merge_extra(block, part.extra_json)
    return [block]


def _source(url: str, where: str) -> Block:
    data = _DATA_URL.fullmatch(url)
    if data:
        return {"type": "base64", "media_type": data.group(1), "data": data.group(2)}
    if _HTTP_URL.match(url):
        return {"type": "url", "url": url}
    raise invalid_request("Anthropic takes a base64 data URL or an http(s) URL here", where)


def _document(file: pb.FilePart, where: str) -> Block:
    if not file.HasField("file_data"):
        raise invalid_request(
            "Anthropic takes files as `file_data` (a base64 data URL) only", f"{where}.file"
        )
    block: Block = {"type": "document", "source": _source(file.file_data, f"{where}.file.file_data")}
    if file.HasField("filename"):
        block["title"] = file.filename
    return block


def _tool_result(message: pb.ChatMessage, where: str) -> Block:
    if not message.tool_call_id:
        raise invalid_request("a tool message needs the `tool_call_id` it answers", f"{where}.tool_call_id")
    block: Block = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if message.WhichOneof("content") == "text":
        block["content"] = message.text
    else:
        block["content"] = _user_blocks(message, where)
    return block


def _assistant_blocks(message: pb.ChatMessage, where: str) -> list[Block]:
    blocks = list(_thinking(message.reasoning_details))
    if message.WhichOneof("content") == "text":
        blocks += _text(message.text)
    elif message.WhichOneof("content") == "parts":
        for j, part in enumerate(message.parts.parts):
            if part.type == "text":
                blocks += _text(part.text, part.extra_json)
            elif part.type == "refusal":
                # OpenAI lets an assistant's refusal be a content part; to Anthropic it is text.
                blocks += _text(refusal_text(part))
            else:
                raise invalid_request("assistant content parts must be text", f"{where}.content[{j}]")
    for j, call in enumerate(message.tool_calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
    return blocks


def _thinking(details: Iterable[pb.ReasoningDetail]) -> Iterable[Block]:
    """Signed thinking goes back as it came: Anthropic checks the signature, and a tool-using
    turn with thinking on must start with its thinking block. Unsigned reasoning (a summary,
    another provider's) cannot be verified, so it stays behind."""
    for detail in details:
        if detail.type == REASONING_TEXT and detail.signature:
            yield {"type": "thinking", "thinking": detail.text, "signature": detail.signature}
        elif detail.type == REASONING_REDACTED and detail.data:
            yield {"type": "redacted_thinking", "data": detail.data}


def _tool_use(call: pb.ToolCall, where: str) -> Block:
    arguments = tool_call_input(call, where, "Anthropic sends them as `input`")
    return {
        "type": "tool_use",
        "id": call.id,
        "name": call.function.name,
        "input": arguments,
    }


def _with_message_keys(message: pb.ChatMessage, blocks: list[Block]) -> list[Block]:
    if not message.extra_json or not blocks:
        return blocks
    extra = codec.loads(message.extra_json.encode())
    for key in _MESSAGE_KEYS:
        if key in extra:
            blocks[-1][key] = extra[key]
    return blocks
