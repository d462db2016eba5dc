"""Chat messages -> Converse's ``system`` blocks and its user/assistant ``messages``.

Converse wants the system prompt apart and the rest as user/assistant turns of content blocks,
each block a one-key union (``{"text": …}``, ``{"image": …}``, ``{"toolUse": …}``…), tool
results inside user turns, first in them. So: system and developer messages are hoisted (in
order) into ``system``; a tool message becomes a ``toolResult`` block of a user turn;
consecutive messages of one role merge into one turn.

A block has no room for extra keys, so what the caller adds to a message or part is either
understood (``cache_control`` -> a ``cachePoint`` block after it; ``is_error`` on a tool
result) or refused with a 400 naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
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
_S3_URL = re.compile(r"s3://", re.IGNORECASE)
IMAGE_FORMATS: Mapping[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_IMAGE_SUFFIXES: Mapping[str, str] = {
    "png": "png",
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "gif": "gif",
    "webp": "webp",
}
DOCUMENT_FORMATS: Mapping[str, str] = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}
# Converse's document names: letters, digits, single spaces, hyphens, parentheses, brackets.
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9\-()\[\] ]+")
# Content part types that are Converse blocks already: {"type": "video", "video": {...}} -> {"video": {...}}.
NATIVE_BLOCKS = frozenset({"cachePoint", "document", "video", "guardContent", "searchResult"})
_SYSTEM_BLOCKS = ("text", "cachePoint", "guardContent")
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def convert_messages(messages: Sequence[pb.ChatMessage]) -> tuple[list[Block], list[Turn]]:
    """The request's messages -> (``system`` blocks, ``messages`` turns)."""
    system: list[Block] = []
    turns: list[Turn] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.role
        if role not in _ROLES:
            raise invalid_request(f"Bedrock has no message role {role!r}", f"{where}.role")
        if message.HasField("name"):
            raise invalid_request("Bedrock has no per-message `name`; leave it out", f"{where}.name")
        if role in ("system", "developer"):
            system.extend(_message_keys(message, _system_blocks(message, where), where))
            continue
        if role == "user":
            blocks = _content_blocks(message, where)
        elif role == "tool":
            blocks, role = [_tool_result(message, where)], "user"
        else:
            blocks = _assistant_blocks(message, where)
        blocks = _message_keys(message, blocks, where)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise invalid_request("Bedrock needs at least one user or assistant message", "messages")
    for turn in turns:
        if turn["role"] == "user":
            # Claude (and so Converse in front of it) wants a turn's tool results before anything else.
            turn["content"].sort(key=lambda block: "toolResult" not in block)
    return system, turns


def has_tool_blocks(turns: Iterable[Turn]) -> bool:
    return any("toolUse" in block or "toolResult" in block for turn in turns for block in turn["content"])


def cache_point(value: object, where: str) -> Block:
    """A ``cache_control`` (Anthropic's cache breakpoint) -> Converse's ``cachePoint`` block."""
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise invalid_request('cache_control must be {"type": "ephemeral"} (with an optional ttl)', where)
    point: Block = {"type": "default"}
    if "ttl" in value:
        point["ttl"] = value["ttl"]
    return {"cachePoint": point}


def with_cache_point(blocks: list[Block], extra_json: str, where: str) -> list[Block]:
    """``blocks`` and, if the extra keys hold ``cache_control``, a cache point after them."""
    return _with_extra(blocks, codec.loads(extra_json.encode()) if extra_json else {}, where)


def _with_extra(blocks: list[Block], extra: Mapping[str, Any], where: str) -> list[Block]:
    # A Converse block is a one-key union: an extra key has nowhere to go but a 400.
    for key, value in extra.items():
        if key == "cache_control":
            if blocks:
                blocks.append(cache_point(value, f"{where}.cache_control"))
        elif value is not None:
            raise invalid_request(f"Bedrock has no `{key}` here", f"{where}.{key}")
    return blocks


def _system_blocks(message: pb.ChatMessage, where: str) -> list[Block]:
    blocks = _content_blocks(message, where)
    for j, block in enumerate(blocks):
        if not any(kind in block for kind in _SYSTEM_BLOCKS):
            raise invalid_request("Bedrock's system prompt takes text only", f"{where}.content[{j}]")
    return blocks


def _content_blocks(message: pb.ChatMessage, where: str) -> list[Block]:
    return content_blocks(message, where, _text, _part)


def _text(text: str) -> list[Block]:
    # Converse refuses blank text blocks; an empty string says nothing anyway.
    return [{"text": text}] if text else []


def _part(part: pb.ContentPart, where: str) -> list[Block]:
    kind = part.type
    extra_json = part.extra_json
    if kind == "text":
        blocks = _text(part.text)
    elif kind == "image_url":
        blocks = [_image(part.image_url, f"{where}.image_url")]
    elif kind == "file":
        blocks = [_document(part.file, where)]
    elif kind == "refusal":
        blocks = _text(refusal_text(part))
        extra_json = ""
    elif kind in NATIVE_BLOCKS:
        native = codec.loads(extra_json.encode()) if extra_json else {}
        if kind not in native:
            raise invalid_request(f"a {kind!r} part needs its `{kind}` object", f"{where}.{kind}")
        return _with_extra([{kind: native.pop(kind)}], native, where)
    else:
        raise invalid_request(f"Bedrock's Converse API does not take {kind!r} content", f"{where}.type")
    return with_cache_point(blocks, extra_json, where)


def _image(image: pb.ImageUrl, where: str) -> Block:
    for key, value in (codec.loads(image.extra_json.encode()) if image.extra_json else {}).items():
        if value is not None:
            raise invalid_request(f"Bedrock has no image `{key}`", f"{where}.{key}")
    if image.HasField("detail") and image.detail != "auto":
        raise invalid_request(
            "Bedrock has no image `detail` setting; leave it unset or auto", f"{where}.detail"
        )
    url = image.url
    data = _DATA_URL.fullmatch(url)
    if data:
        media_type = data.group(1).lower()
        if media_type not in IMAGE_FORMATS:
            raise invalid_request(
                f"Bedrock takes png, jpeg, gif and webp images, not {media_type!r}", f"{where}.url"
            )
        # Converse's JSON carries bytes as base64: the data URL's text goes as it is.
        return {"image": {"format": IMAGE_FORMATS[media_type], "source": {"bytes": data.group(2)}}}
    if _S3_URL.match(url):
        suffix = url.rsplit(".", 1)[-1].lower()
        if suffix not in _IMAGE_SUFFIXES:
            raise invalid_request(
                "an s3:// image must end in .png, .jpg, .jpeg, .gif or .webp (its format)", f"{where}.url"
            )
        return {"image": {"format": _IMAGE_SUFFIXES[suffix], "source": {"s3Location": {"uri": url}}}}
    if _HTTP_URL.match(url):
        raise invalid_request(
            "Bedrock's Converse API takes image bytes, not web URLs: send the image as a base64 data URL "
            "(data:image/png;base64,…) or an s3:// URI",
            f"{where}.url",
        )
    raise invalid_request("an image must be a base64 data URL or an s3:// URI", f"{where}.url")


def _document(file: pb.FilePart, where: str) -> Block:
    if not file.HasField("file_data"):
        raise invalid_request("Bedrock takes files as `file_data` (a base64 data URL) only", f"{where}.file")
    data = _DATA_URL.fullmatch(file.file_data)
    if data is None:
        raise invalid_request("`file_data` must be a base64 data URL", f"{where}.file.file_data")
    media_type = data.group(1).lower()
    if media_type not in DOCUMENT_FORMATS:
        known = ", ".join(DOCUMENT_FORMATS.values())
        raise invalid_request(
            f"Bedrock takes documents of formats {known}, not {media_type!r}", f"{where}.file.file_data"
        )
    stem = file.filename.rsplit(".", 1)[0] if file.HasField("filename") else ""
    name = " ".join(_NOT_IN_NAME.sub(" ", stem).split())[:200] or "document"
    document = {"format": DOCUMENT_FORMATS[media_type], "name": name, "source": {"bytes": data.group(2)}}
    return {"document": document}


def _tool_result(message: pb.ChatMessage, where: str) -> Block:
    if not message.tool_call_id:
        raise invalid_request("a tool message needs the `tool_call_id` it answers", f"{where}.tool_call_id")
    if message.WhichOneof("content") == "text":
        content = _text(message.text)
    else:
        content = _content_blocks(message, where)
    return {"toolResult": {"toolUseId": message.tool_call_id, "content": content}}


def _assistant_blocks(message: pb.ChatMessage, where: str) -> list[Block]:
    blocks = list(_reasoning(message.reasoning_details))
    kind = message.WhichOneof("content")
    if kind == "text":
        blocks += _text(message.text)
    elif kind == "parts":
        for j, part in enumerate(message.parts.parts):
            if part.type not in ("text", "refusal"):
                raise invalid_request("assistant content parts must be text", f"{where}.content[{j}]")
            blocks += _part(part, f"{where}.content[{j}]")
    if message.HasField("refusal"):
        blocks += _text(message.refusal)
    if message.HasField("audio"):
        raise invalid_request("Bedrock cannot replay an assistant's audio", f"{where}.audio")
    for j, call in enumerate(message.tool_calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{j}]"))
    return blocks


def _reasoning(details: Iterable[pb.ReasoningDetail]) -> Iterable[Block]:
    """Signed reasoning goes back as it came: Claude checks the signature, and a tool-using turn
    with thinking on must start with it. Unsigned reasoning (a summary, another provider's)
    cannot be verified, so it stays behind."""
    for detail in details:
        if detail.type == REASONING_TEXT and detail.signature:
            text = {"text": detail.text, "signature": detail.signature}
            yield {"reasoningContent": {"reasoningText": text}}
        elif detail.type == REASONING_REDACTED and detail.data:
            yield {"reasoningContent": {"redactedContent": detail.data}}


def _tool_use(call: pb.ToolCall, where: str) -> Block:
    arguments = tool_call_input(call, where, "Bedrock sends them as `input`")
    use = {"toolUseId": call.id, "name": call.function.name, "input": arguments}
    return {"toolUse": use}


def _message_keys(message: pb.ChatMessage, blocks: list[Block], where: str) -> list[Block]:
    """A message's extra keys: ``cache_control`` puts a cache point after its blocks;
    ``is_error`` marks a tool result as failed."""
    if not message.extra_json:
        return blocks
    extra = codec.loads(message.extra_json.encode())
    is_error = extra.pop("is_error", None)
    if is_error is not None:
        if message.role != "tool" or not isinstance(is_error, bool):
            raise invalid_request("`is_error` is a tool message's flag (true or false)", f"{where}.is_error")
        if is_error:
            blocks[0]["toolResult"]["status"] = "error"
    return _with_extra(blocks, extra, where)
