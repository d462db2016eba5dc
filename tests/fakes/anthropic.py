"""A real HTTP fake of Anthropic's Messages API (``POST /v1/messages``), for tests.

The server, its thread, the reply queues and the request recording are ``FakeUpstream``'s
(``tests/fakes/upstream.py``); this module only speaks Anthropic's format: Message bodies, the
named SSE events of a stream, and ``{"type": "error", "error": {...}}`` error bodies::

    with FakeAnthropic() as fake:
        fake.script(Reply.error("overloaded_error"), Reply.ok("hi", thinking="hmm"))
        ...  # point the code under test at fake.url
        assert fake.requests[0].header("x-api-key") == "sk-ant-…"

By default it answers with ``"echo: "`` and the last user message's text, and realistic usage.
Like the real API it refuses a request without a key (``x-api-key``, or a Bearer token as
newer SDKs send it: 401), without ``anthropic-version`` or without ``max_tokens`` (400).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson
from aiohttp import web

from tests.fakes.upstream import FakeUpstream, Recorded, _close

DEFAULT_MODEL = "claude-sonnet-4-5-20250929"
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
_ARGUMENT_FRAGMENT = 8  # characters of tool input JSON per input_json_delta

# Anthropic's error types and the HTTP status each comes with (its own table, not the
# adapter's: a test comparing the two would otherwise compare a table with itself).
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def to_json(self, *, output: bool = True) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            # message_start reports the output so far (next to nothing), message_delta the total.
            "output_tokens": self.output_tokens if output else 1,
        }


@dataclass(frozen=True)
class Reply:
    """One answer. Build it with the class methods. Success replies stream when the request asks.

    ``text=None`` echoes the last user message (unless the reply calls tools).
    """

    kind: Literal["ok", "error"] = "ok"
    text: str | None = None
    tool_uses: tuple[ToolUse, ...] = ()
    thinking: str | None = None
    signature: str = SIGNATURE
    redacted_thinking: str | None = None
    usage: Usage | None = None
    stop_reason: str | None = None
    status: int = 200
    error_type: str = ""
    message: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    # Streams only: body events (after message_start and ping) sent before ...
    break_after: int | None = None  # ... the connection closes
    error_event_after: int | None = None  # ... an `error` event ends the stream
    omit_message_stop: bool = False

    @classmethod
    def ok(
        cls,
        text: str | None = None,
        *,
        tool_uses: Sequence[ToolUse] = (),
        thinking: str | None = None,
        signature: str = SIGNATURE,
        redacted_thinking: str | None = None,
        usage: Usage | None = None,
        stop_reason: str | None = None,
        omit_message_stop: bool = False,
    ) -> Reply:
        return cls(
            text=text,
            tool_uses=tuple(tool_uses),
            thinking=thinking,
            signature=signature,
            redacted_thinking=redacted_thinking,
            usage=usage,
            stop_reason=stop_reason,
            omit_message_stop=omit_message_stop,
        )

    @classmethod
    def tool_use(cls, name: str, input: Mapping[str, Any] | None = None, **ok: Any) -> Reply:
        return cls.ok(tool_uses=[ToolUse(name, dict(input or {}))], **ok)

    @classmethod
    def error(
        cls,
        error_type: str,
        message: str | None = None,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An HTTP error of Anthropic's ``error_type``; a rate limit says ``retry-after: 7``."""
        headers = dict(headers or {})
        if error_type == "rate_limit_error":
            headers.setdefault("retry-after", "7")
        return cls(
            kind="error",
            status=status or ERROR_STATUS.get(error_type, 500),
            error_type=error_type,
            message=message or f"fake {error_type}",
            headers=headers,
        )

    @classmethod
    def broken(cls, after: int, reply: Reply | None = None) -> Reply:
        """A stream that closes its connection after ``after`` body events."""
        return replace(reply or cls.ok(), break_after=after)

    @classmethod
    def error_event(cls, error_type: str = "overloaded_error", *, after: int = 1) -> Reply:
        """A stream that sends ``after`` body events, then an ``error`` event, and ends."""
        return replace(cls.ok(), error_event_after=after, error_type=error_type, message="Overloaded")


def error_body(error_type: str, message: str, seq: int = 0) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": f"req_fake{seq}",
    }


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            block["text"]
            for block in content
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
        )
    return ""


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _pieces(text: str, size: int) -> list[str]:
    return [text[k : k + size] for k in range(0, len(text), size)] or [""]


class _Exchange:
    """One Messages request and the answer the reply makes of it."""

    def __init__(self, rec: Recorded, reply: Reply) -> None:
        body = rec.body
        self.rec = rec
        self.reply = reply
        self.model = str(body.get("model") or DEFAULT_MODEL)
        self.stream = body.get("stream") is True
        self.id = f"msg_fake{rec.seq:08d}"
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        self.messages = [m for m in messages if isinstance(m, dict)]
        self.system = _text_of(body.get("system"))

    def echo(self) -> str:
        for message in reversed(self.messages):
            text = _text_of(message.get("content"))
            if message.get("role") == "user" and text:
                return f"echo: {text}"
        return "echo:"

    def blocks(self) -> list[dict[str, Any]]:
        reply = self.reply
        blocks: list[dict[str, Any]] = []
        if reply.thinking is not None:
            blocks.append({"type": "thinking", "thinking": reply.thinking, "signature": reply.signature})
        if reply.redacted_thinking is not None:
            blocks.append({"type": "redacted_thinking", "data": reply.redacted_thinking})
        text = reply.text if reply.text is not None or reply.tool_uses else self.echo()
        prefill = self.prefill()
        if text is not None and prefill:
            # Like the real API, a final assistant turn is the answer's start: only the rest comes
            # back (a scripted text that does not start with it is sent whole, as a model restarting).
            text = text[len(prefill) :] if text.startswith(prefill) else text
        if text is not None:
            blocks.append({"type": "text", "text": text})
        for i, use in enumerate(reply.tool_uses):
            call_id = use.id or f"toolu_fake{self.rec.seq}_{i}"
            blocks.append({"type": "tool_use", "id": call_id, "name": use.name, "input": dict(use.input)})
        return blocks

    def prefill(self) -> str:
        """The text of a final assistant turn (a prefill), or ""."""
        if self.messages and self.messages[-1].get("role") == "assistant":
            return _text_of(self.messages[-1].get("content"))
        return ""

    def usage(self, blocks: list[dict[str, Any]]) -> Usage:
        if self.reply.usage is not None:
            return self.reply.usage
        prompt = self.system + "".join(_text_of(m.get("content")) for m in self.messages)
        output = "".join(str(b.get("text") or b.get("thinking") or b.get("input") or "") for b in blocks)
        return Usage(input_tokens=_tokens(prompt) + 3 * len(self.messages), output_tokens=_tokens(output))

    def stop_reason(self) -> str:
        return self.reply.stop_reason or ("tool_use" if self.reply.tool_uses else "end_turn")

    def message(self) -> bytes:
        blocks = self.blocks()
        return orjson.dumps(
            {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": blocks,
                "stop_reason": self.stop_reason(),
                "stop_sequence": None,
                "usage": self.usage(blocks).to_json(),
            }
        )

    def events(self) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """The stream's SSE events: (head, body, tail)."""
        blocks = self.blocks()
        usage = self.usage(blocks)
        start = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage.to_json(output=False),
        }
        head = [_event("message_start", message=start), _event("ping")]
        body: list[bytes] = []
        for index, block in enumerate(blocks):
            body += _block_events(index, block)
        delta = {"stop_reason": self.stop_reason(), "stop_sequence": None}
        tail = [_event("message_delta", delta=delta, usage={"output_tokens": usage.output_tokens})]
        if not self.reply.omit_message_stop:
            tail.append(_event("message_stop"))
        return head, body, tail


def _event(kind: str, **fields: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    kind = block["type"]
    events: list[bytes] = []
    if kind == "text":
        events.append(_event("content_block_start", index=index, content_block={"type": "text", "text": ""}))
        for piece in _pieces(block["text"], 5):
            events.append(
                _event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
            )
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        events.append(_event("content_block_start", index=index, content_block=start))
        for piece in _pieces(block["thinking"], 6):
            delta = {"type": "thinking_delta", "thinking": piece}
            events.append(_event("content_block_delta", index=index, delta=delta))
        delta = {"type": "signature_delta", "signature": block["signature"]}
        events.append(_event("content_block_delta", index=index, delta=delta))
    elif kind == "redacted_thinking":
        events.append(_event("content_block_start", index=index, content_block=block))
    elif kind == "tool_use":
        start = {**block, "input": {}}
        events.append(_event("content_block_start", index=index, content_block=start))
        arguments = orjson.dumps(block["input"]).decode() if block["input"] else ""
        # Like the real API: an empty fragment first, then the input's JSON text in pieces.
        for piece in ["", *(_pieces(arguments, _ARGUMENT_FRAGMENT) if arguments else [])]:
            delta = {"type": "input_json_delta", "partial_json": piece}
            events.append(_event("content_block_delta", index=index, delta=delta))
    events.append(_event("content_block_stop", index=index))
    return events


class FakeAnthropic(FakeUpstream):
    """``FakeUpstream``'s server and scripting, answering in Anthropic's Messages format.

    ``script(...)`` takes this module's ``Reply``; ``requests`` are ``Recorded`` (path, headers,
    JSON body). ``match`` scopes a reply to requests whose path or body ``model`` contains it.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, default: Reply | None = None) -> None:
        super().__init__(host, port, default=default or Reply.ok())  # type: ignore[arg-type]

    async def _answer(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        refused = self._refusal(request, rec)
        if refused is not None:
            return refused
        reply: Reply = self._next_reply(rec)  # type: ignore[assignment]
        rec.reply = reply  # type: ignore[assignment]
        if reply.kind == "error":
            return self._json(
                rec, reply.status, error_body(reply.error_type, reply.message, rec.seq), reply.headers
            )
        exchange = _Exchange(rec, reply)
        if not exchange.stream:
            return web.Response(body=exchange.message(), headers=self._headers(rec, "application/json", {}))
        return await self._stream(request, exchange)

    def _refusal(self, request: web.Request, rec: Recorded) -> web.Response | None:
        """What the real API refuses before looking at the model: wrong route, no key, bad body."""
        if request.method != "POST" or rec.path != "/v1/messages":
            return self._error(rec, "not_found_error", f"no route for {request.method} {rec.path}")
        # The API takes the key as x-api-key or, as newer SDKs send it, a Bearer token.
        if not rec.header("x-api-key") and not (rec.header("authorization") or "").startswith("Bearer "):
            return self._error(rec, "authentication_error", "x-api-key header is required")
        if not rec.header("anthropic-version"):
            return self._error(rec, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(rec.body, dict):
            return self._error(rec, "invalid_request_error", "the body must be a JSON object")
        for required in ("model", "max_tokens", "messages"):
            if required not in rec.body:
                return self._error(rec, "invalid_request_error", f"{required}: Field required")
        messages = rec.body["messages"]
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            last = messages[-1]
            if (
                last.get("role") == "assistant"
                and _text_of(last.get("content")) != _text_of(last.get("content")).rstrip()
            ):
                message = "final assistant content cannot end with trailing whitespace"
                return self._error(rec, "invalid_request_error", message)
        return None

    def _error(self, rec: Recorded, error_type: str, message: str) -> web.Response:
        return self._json(rec, ERROR_STATUS[error_type], error_body(error_type, message, rec.seq), {})

    def _json(self, rec: Recorded, status: int, body: Any, headers: Mapping[str, str]) -> web.Response:
        return web.Response(
            status=status, body=orjson.dumps(body), headers=self._headers(rec, "application/json", headers)
        )

    @staticmethod
    def _headers(rec: Recorded, content_type: str, extra: Mapping[str, str]) -> dict[str, str]:
        return {"content-type": content_type, "request-id": f"req_fake{rec.seq}", **extra}

    async def _stream(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        reply = exchange.reply
        head, body, tail = exchange.events()
        response = web.StreamResponse(
            headers=self._headers(exchange.rec, "text/event-stream; charset=utf-8", {})
        )
        await response.prepare(request)
        if reply.error_event_after is not None:
            error = error_body(reply.error_type, reply.message)
            await response.write(
                b"".join([*head, *body[: reply.error_event_after], _event("error", **error)])
            )
        elif reply.break_after is not None:
            await response.write(b"".join(head + body[: reply.break_after]))
            await asyncio.sleep(0.01)  # let the bytes leave before the connection goes
            _close(request)
        else:
            await response.write(b"".join(head + body + tail))
        await response.write_eof()
        return response
