"""Chat messages -> Gemini's ``systemInstruction`` and its ``contents`` turns.

Gemini wants the system prompt apart and the rest as ``user``/``model`` turns of parts. So: system
and developer messages are hoisted (in order) into ``systemInstruction``; an assistant message is a
``model`` turn (text, and a ``functionCall`` part per tool call); a tool message is a
``functionResponse`` part of a ``user`` turn, named after the call it answers (Gemini matches
results to calls by name, OpenAI by id); consecutive messages of one role merge into one turn.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from service.errors import invalid_request
from service.providers.canonical import content_blocks, refusal_text, tool_call_input
from switchyard import codec
from switchyard.v1 import chat_pb2 as pb

Part = dict[str, Any]
Turn = dict[str, Any]

_DATA_URL = re.compile(r"data:([^;,]+);base64,(.*)", re.DOTALL)
# http(s) URLs, and Cloud Storage URIs (which Vertex reads directly).
_FILE_URI = re.compile(r"(?:https?|gs)://", re.IGNORECASE)
# OpenAI's input_audio formats -> MIME types Gemini takes.
AUDIO_FORMATS = {"wav": "audio/wav", "mp3": "audio/mp3"}
# A URL whose extension says nothing is most likely an image: these parts are `image_url`s.
_DEFAULT_IMAGE_TYPE = "image/jpeg"


def convert_messages(messages: Sequence[pb.ChatMessage]) -> tuple[list[Part], list[Turn]]:
    """The request's messages -> (``systemInstruction`` parts, ``contents`` turns)."""
    system: list[Part] = []
    turns: list[Turn] = []
    calls: dict[str, str] = {}  # tool call id -> function name, for the results that answer them
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.role
        if role in ("system", "developer"):
            system.extend(_text_parts(message, where))
            continue
        if role == "user":
            parts, role = _user_parts(message, where), "user"
        elif role == "assistant":
            parts, role = _model_parts(message, where, calls), "model"
        elif role == "tool":
            parts, role = [_function_response(message, where, calls)], "user"
        else:
            raise invalid_request(f"Gemini has no message role {role!r}", f"{where}.role")
        if not parts:
            continue  # Gemini refuses a turn without parts; an empty message says nothing anyway
        if turns and turns[-1]["role"] == role:
            turns[-1]["parts"].extend(parts)
        else:
            turns.append({"role": role, "parts": parts})
    if not turns:
        raise invalid_request("Gemini needs at least one user or assistant message", "messages")
    return system, turns


def _user_parts(message: pb.ChatMessage, where: str) -> list[Part]:
    return content_blocks(message, where, _text, _part)


def _text_parts(message: pb.ChatMessage, where: str) -> list[Part]:
    """Content that may only be text (system prompts)."""
    parts = _user_parts(message, where)
    for j, part in enumerate(parts):
        if "text" not in part:
            raise invalid_request("Gemini's system instruction takes text only", f"{where}.content[{j}]")
    return parts


def _text(text: str) -> list[Part]:
    return [{"text": text}] if text else []


def _part(content: pb.ContentPart, where: str) -> list[Part]:
    kind = content.type
    if kind == "text":
        return _text(content.text)
    if kind == "image_url":
        return [_media(content.image_url.url, f"{where}.image_url.url")]
    if kind == "input_audio":
        audio = content.input_audio
        mime = AUDIO_FORMATS.get(audio.format)
        if mime is None:
            raise invalid_request(
                f"Gemini takes input_audio as {' or '.join(AUDIO_FORMATS)}, not {audio.format!r}",
                f"{where}.input_audio.format",
            )
        return [{"inlineData": {"mimeType": mime, "data": audio.data}}]
    if kind == "file":
        return [_file(content.file, where)]
    if content.extra_json:
        # A Gemini-native part (e.g. {"type": "fileData", "fileData": {...}} for a video) goes out
        # as the caller wrote it, without the OpenAI `type`.
        native: Part = {}
        codec.merge_extra(native, content.extra_json)
        return [native]
    raise invalid_request(f"Gemini does not take {kind!r} content", f"{where}.type")


def _media(url: str, where: str, mime: str | None = None) -> Part:
    data = _DATA_URL.fullmatch(url)
    if data:
        return {"inlineData": {"mimeType": data.group(1), "data": data.group(2)}}
    if _FILE_URI.match(url):
        guessed = mime or mimetypes.guess_type(urlsplit(url).path)[0] or _DEFAULT_IMAGE_TYPE
        return {"fileData": {"mimeType": guessed, "fileUri": url}}
    raise invalid_request("Gemini takes a base64 data URL, an http(s) URL or a gs:// URI here", where)


def _file(file: pb.FilePart, where: str) -> Part:
    if file.HasField("file_data"):
        return _media(file.file_data, f"{where}.file.file_data")
    if file.HasField("file_id") and _FILE_URI.match(file.file_id):
        # A Gemini Files API URI or a gs:// object: its type comes from the file name, if given.
        mime = mimetypes.guess_type(file.filename)[0] if file.HasField("filename") else None
        return _media(file.file_id, f"{where}.file.file_id", mime)
    raise invalid_request(
        "Gemini takes files as `file_data` (a base64 data URL) or a `file_id` that is a file URI",
        f"{where}.file",
    )


def _model_parts(message: pb.ChatMessage, where: str, calls: dict[str, str]) -> list[Part]:
    parts: list[Part] = []
    kind = message.WhichOneof("content")
    if kind == "text":
        parts += _text(message.text)
    elif kind == "parts":
        for j, content in enumerate(message.parts.parts):
            if content.type == "text":
                parts += _text(content.text)
            elif content.type == "refusal":
                # OpenAI lets an assistant's refusal be a content part; to Gemini it is text.
                parts += _text(refusal_text(content))
            else:
                raise invalid_request("assistant content parts must be text", f"{where}.content[{j}]")
    for j, call in enumerate(message.tool_calls):
        parts.append(_function_call(call, f"{where}.tool_calls[{j}]"))
        if call.id:
            calls[call.id] = call.function.name
    return parts


def _function_call(call: pb.ToolCall, where: str) -> Part:
    if not call.function.name:
        raise invalid_request("a tool call needs `function.name`", f"{where}.function.name")
    arguments = tool_call_input(call, where, "Gemini sends them as `args`")
    function: dict[str, Any] = {"name": call.function.name, "args": arguments}
    if call.id:
        function["id"] = call.id
    part: Part = {"functionCall": function}
    signature = thought_signature(call.extra_json)
    if signature:
        # Gemini checks that a turn's function calls come back with the signature they carried.
        part["thoughtSignature"] = signature
    return part


def thought_signature(extra_json: str) -> str | None:
    """The signature Gemini gave a function call, as the answer carried it to the caller:
    ``extra_content.google.thought_signature`` (the place Google's own OpenAI-compatible API
    uses, so clients written for it work here)."""
    if not extra_json:
        return None
    extra = codec.loads(extra_json.encode()).get("extra_content")
    google = extra.get("google") if isinstance(extra, Mapping) else None
    signature = google.get("thought_signature") if isinstance(google, Mapping) else None
    return signature if isinstance(signature, str) and signature else None


def _function_response(message: pb.ChatMessage, where: str, calls: Mapping[str, str]) -> Part:
    if not message.tool_call_id:
        raise invalid_request("a tool message needs the `tool_call_id` it answers", f"{where}.tool_call_id")
    name = calls.get(message.tool_call_id) or (message.name if message.HasField("name") else "")
    if not name:
        raise invalid_request(
            "Gemini names a tool result after its function: no assistant tool call with this id "
            "comes before it",
            f"{where}.tool_call_id",
        )
    if message.WhichOneof("content") == "parts":
        text = "".join(part.text for part in message.parts.parts if part.type == "text")
    else:
        text = message.text
    return {"functionResponse": {"id": message.tool_call_id, "name": name, "response": _result(text)}}


def _result(text: str) -> Any:
    """Gemini takes a tool's result as a JSON object: a result that is one goes as its exact text,
    anything else under ``output`` (the key Gemini's documentation gives for a function's output)."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return orjson.Fragment(text)
    return {"output": text}
