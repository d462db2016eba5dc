"""A real HTTP fake of the Azure OpenAI and OpenAI chat-completions APIs, for tests and benchmarks.

It listens on loopback in a background thread, answers ``POST .../chat/completions`` in JSON or SSE
and ``POST .../embeddings`` with hashed bag-of-words vectors (``tests/fakes/embeddings.py``),
plays scripted replies (errors, slow answers, broken or hanging streams, dropped connections) and
records every request so tests can check URL, headers, api-version and body::

    with FakeUpstream() as fake:
        fake.script(Reply.status(429, headers={"retry-after": "0"}), Reply.ok(), match="deployment-a")
        ...  # point the code under test at fake.url and exercise it
        assert fake.requests[0].api_version == "2024-10-21"

Run it in the foreground (default replies only) with ``python -m tests.fakes.upstream --port 8001``.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import itertools
import re
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NoReturn

import orjson
from aiohttp import web
from multidict import CIMultiDict

from tests.fakes import embeddings as fake_embeddings

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional
    uvloop = None

DEFAULT_PIECES: tuple[str, ...] = ("Hel", "lo", " world")
"""Content pieces of a default streamed reply."""

_AZURE_PATH = re.compile(r"/openai/deployments/([^/]+)/(?:chat/completions|embeddings)$")
_CHAT_SUFFIX = "/chat/completions"
_EMBEDDINGS_SUFFIX = "/embeddings"
_SSE_DONE = b"data: [DONE]\n\n"
_ARGUMENT_FRAGMENT = 8  # characters of tool-call arguments per streamed delta

# Azure's "nothing was filtered" annotations, serialised once and embedded as-is.
_SAFE = {"filtered": False, "severity": "safe"}
_UNDETECTED = {"filtered": False, "detected": False}
_CHOICE_FILTERS = orjson.Fragment(
    orjson.dumps(
        {
            "hate": _SAFE,
            "protected_material_code": _UNDETECTED,
            "protected_material_text": _UNDETECTED,
            "self_harm": _SAFE,
            "sexual": _SAFE,
            "violence": _SAFE,
        }
    )
)
_PROMPT_FILTER_LIST = [
    {
        "prompt_index": 0,
        "content_filter_results": {
            "hate": _SAFE,
            "jailbreak": _UNDETECTED,
            "self_harm": _SAFE,
            "sexual": _SAFE,
            "violence": _SAFE,
        },
    }
]
_PROMPT_FILTERS = orjson.Fragment(orjson.dumps(_PROMPT_FILTER_LIST))
# The chunk Azure streams before the role chunk when prompt filtering is on.
_AZURE_FILTER_CHUNK = orjson.dumps(
    {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": _PROMPT_FILTERS,
    },
)

# status -> (error type, error code) of the default error body.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", "timeout"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
}

_CONTENT_FILTER_BODY: dict[str, Any] = {
    "error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content "
        "management policy. Please modify your prompt and retry.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                "hate": _SAFE,
                "jailbreak": _UNDETECTED,
                "self_harm": _SAFE,
                "sexual": _SAFE,
                "violence": {"filtered": True, "severity": "high"},
            },
        },
    }
}


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class ToolCall:
    """A tool call the fake answers with; ``name=None`` calls the request's first tool."""

    name: str | None = None
    arguments: str | Mapping[str, Any] = "{}"
    id: str | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts reported in ``usage``; by default the fake estimates them (~4 chars a token)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        """The OpenAI ``usage`` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


@dataclass(frozen=True)
class Reply:
    """One answer of the fake upstream. Build it with the class methods, not the constructor.

    Success replies stream or not as the request's ``"stream"`` asks. ``content`` is the whole
    message of a non-streamed answer; ``pieces`` are the deltas of a streamed one (each defaults
    from the other; with neither, non-streamed answers echo the last user message and streamed
    answers send ``DEFAULT_PIECES``).
    """

    kind: Literal["ok", "error", "drop"] = "ok"
    status_code: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    content: str | None = None
    pieces: tuple[str, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | Mapping[str, Any] | None = None
    finish_reason: str | None = None
    delay_s: float = 0.0
    delay_between_s: float = 0.0
    break_after: int | None = None
    hang_s: float = 0.0
    hang_interval_s: float = 0.05
    hang_tick: str = ""
    azure_filter_chunk: bool = False
    reset: bool = False
    omit_done: bool = False
    malformed_at: tuple[int, ...] = ()
    reasoning: str | None = None
    reasoning_key: str = "reasoning_content"
    extra: Mapping[str, Any] = field(default_factory=dict)
    usage_always: bool = False

    @classmethod
    def ok(
        cls,
        content: str | None = None,
        *,
        tool_calls: Sequence[ToolCall] = (),
        usage: Usage | Mapping[str, Any] | None = None,
        finish_reason: str | None = None,
        headers: Mapping[str, str] | None = None,
        reasoning: str | None = None,
        reasoning_key: str = "reasoning_content",
        extra: Mapping[str, Any] | None = None,
    ) -> Reply:
        """A normal success; ``usage`` as a mapping is sent verbatim. ``reasoning`` goes in the
        message under ``reasoning_key`` (DeepSeek's name by default); ``extra`` adds top-level keys
        (Perplexity's ``search_results``, ``citations``…) to the body, or to a stream's last chunk."""
        return cls(
            content=content,
            tool_calls=tuple(tool_calls),
            usage=usage,
            finish_reason=finish_reason,
            headers=dict(headers or {}),
            reasoning=reasoning,
            reasoning_key=reasoning_key,
            extra=dict(extra or {}),
        )

    @classmethod
    def tool_call(cls, name: str | None = None, arguments: str | Mapping[str, Any] = "{}") -> Reply:
        """A success calling one tool (by default the request's first; plain text if it has none)."""
        return cls.ok(tool_calls=[ToolCall(name, arguments)])

    @classmethod
    def stream(
        cls,
        pieces: Sequence[str] | None = None,
        *,
        delay_between_s: float = 0.0,
        break_after: int | None = None,
        tool_calls: Sequence[ToolCall] = (),
        usage: Usage | Mapping[str, Any] | None = None,
        finish_reason: str | None = None,
        headers: Mapping[str, str] | None = None,
        azure_filter_chunk: bool = False,
        omit_done: bool = False,
        malformed_at: Sequence[int] = (),
        reasoning: str | None = None,
        reasoning_key: str = "reasoning_content",
        extra: Mapping[str, Any] | None = None,
        usage_always: bool = False,
    ) -> Reply:
        """A success with stream control.

        ``break_after=k`` sends k content (or tool-call) chunks, then closes the connection without
        a final chunk or ``[DONE]`` (a non-streamed request gets half its JSON body instead).
        ``azure_filter_chunk`` sends Azure's leading ``prompt_filter_results`` chunk (``choices: []``).
        ``omit_done`` sends everything but the closing ``data: [DONE]``; ``malformed_at=(k, …)``
        sends a garbled ``data:`` event before body event k. ``reasoning`` is streamed (word by
        word, under ``reasoning_key``) before the content; ``extra`` goes on the last chunk before
        ``[DONE]``; ``usage_always`` sends the usage chunk even when the request did not ask for it
        (as Perplexity and Mistral do).
        """
        return cls(
            reasoning=reasoning,
            reasoning_key=reasoning_key,
            extra=dict(extra or {}),
            usage_always=usage_always,
            omit_done=omit_done,
            malformed_at=tuple(malformed_at),
            pieces=None if pieces is None else tuple(pieces),
            delay_between_s=delay_between_s,
            break_after=break_after,
            tool_calls=tuple(tool_calls),
            usage=usage,
            finish_reason=finish_reason,
            headers=dict(headers or {}),
            azure_filter_chunk=azure_filter_chunk,
        )

    @classmethod
    def hang_stream(
        cls,
        first_piece: str | None = "Hel",
        *,
        duration_s: float = 30.0,
        interval_s: float = 0.05,
        tick: str = "",
    ) -> Reply:
        """A stream that sends the role chunk (and ``first_piece``), then a ``tick`` chunk every
        ``interval_s`` for ``duration_s`` before finishing. A non-streamed request just waits.
        """
        pieces = () if first_piece is None else (first_piece,)
        return cls(pieces=pieces, hang_s=duration_s, hang_interval_s=interval_s, hang_tick=tick)

    @classmethod
    def status(
        cls,
        code: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        message: str | None = None,
        error_code: str | None = None,
    ) -> Reply:
        """An HTTP error. ``body=None`` sends ``{"error": {"message", "type", "param", "code"}}``;
        a dict/list body is sent as JSON, a str/bytes body as-is (text/plain unless headers say).
        """
        if body is None:
            error_type, default_code = _ERROR_KINDS.get(
                code, ("server_error" if code >= 500 else "invalid_request_error", None)
            )
            try:
                phrase = http.HTTPStatus(code).phrase
            except ValueError:
                phrase = ""
            body = {
                "error": {
                    "message": message or f"Fake upstream error {code} {phrase}".rstrip(),
                    "type": error_type,
                    "param": None,
                    "code": error_code or default_code,
                }
            }
        return cls(kind="error", status_code=code, body=body, headers=dict(headers or {}))

    @classmethod
    def content_filter(cls, headers: Mapping[str, str] | None = None) -> Reply:
        """Azure's 400 for a prompt blocked by content filtering (``code: "content_filter"``)."""
        return cls.status(400, body=_CONTENT_FILTER_BODY, headers=headers)

    @classmethod
    def slow(cls, delay_s: float, reply: Reply | None = None) -> Reply:
        """``reply`` (default: a success) sent only after ``delay_s``; a client leaving cancels it."""
        return replace(reply or cls.ok(), delay_s=delay_s)

    @classmethod
    def drop(cls, *, reset: bool = False) -> Reply:
        """Close the connection without any response (``reset=True``: with a TCP RST, not a FIN)."""
        return cls(kind="drop", reset=reset)


# --------------------------------------------------------------------------- recording


@dataclass
class Recorded:
    """One request as it arrived. ``headers`` keys are lower-cased; times are ``time.monotonic()``."""

    seq: int
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    body: Any
    received_at: float
    finished_at: float | None = None
    disconnected: bool = False
    reply: Reply | None = None

    def header(self, name: str) -> str | None:
        """A request header, by case-insensitive name."""
        return self.headers.get(name.lower())

    @property
    def is_azure(self) -> bool:
        """Whether the path is Azure's ``/openai/deployments/{deployment}/chat/completions`` (or
        ``…/embeddings``)."""
        return self.deployment is not None

    @property
    def deployment(self) -> str | None:
        """The Azure deployment named in the path, if any."""
        found = _AZURE_PATH.search(self.path)
        return found.group(1) if found else None

    @property
    def api_version(self) -> str | None:
        """The ``api-version`` query parameter, if any."""
        return self.query.get("api-version")

    @property
    def model(self) -> str | None:
        """The body's ``model``, if any."""
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def stream(self) -> bool:
        """Whether the body asks for a stream."""
        return isinstance(self.body, dict) and self.body.get("stream") is True


# --------------------------------------------------------------------------- wire format


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _split_words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\S+\s*|\s+", text))


class _Exchange:
    """What the renderers need from one chat-completions request, parsed once."""

    def __init__(self, rec: Recorded) -> None:
        body = rec.body if isinstance(rec.body, dict) else {}
        self.rec = rec
        self.azure = rec.is_azure
        self.model = str(body.get("model") or rec.deployment or "fake-model")
        self.stream = body.get("stream") is True
        n = body.get("n")
        self.n = n if isinstance(n, int) and n > 1 else 1
        options = body.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self.messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        tools = body.get("tools") if isinstance(body.get("tools"), list) else []
        self.tool_names = [
            t["function"]["name"]
            for t in tools
            if isinstance(t, dict) and isinstance(t.get("function"), dict) and "name" in t["function"]
        ]
        self.id = f"chatcmpl-fake{rec.seq:08d}"
        self.created = int(time.time())

    def prompt_tokens(self) -> int:
        texts = [_text_of(m.get("content")) for m in self.messages if isinstance(m, dict)]
        return max(1, sum(_tokens(text) + 3 for text in texts))

    def echo(self) -> str:
        for message in reversed(self.messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return f"echo: {_text_of(message.get('content'))}"
        return "echo:"

    def tool_calls(self, reply: Reply) -> list[dict[str, Any]]:
        calls = []
        for i, call in enumerate(reply.tool_calls):
            name = call.name or (self.tool_names[0] if self.tool_names else None)
            if name is None:
                continue
            args = call.arguments
            if not isinstance(args, str):
                args = orjson.dumps(args).decode()
            call_id = call.id or f"call_fake{self.rec.seq}_{i}"
            calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})
        return calls

    def usage(self, reply: Reply, completion_tokens: int) -> Any:
        if isinstance(reply.usage, Mapping):
            return dict(reply.usage)
        return (reply.usage or Usage(self.prompt_tokens(), completion_tokens)).to_json()

    def completion(self, reply: Reply) -> bytes:
        """The non-streamed response body."""
        tool_calls = self.tool_calls(reply)
        if tool_calls:
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": tool_calls}
            finish, tokens = "tool_calls", sum(_tokens(c["function"]["arguments"]) for c in tool_calls)
        else:
            content = reply.content
            if content is None:
                content = "".join(reply.pieces) if reply.pieces is not None else self.echo()
            message, finish, tokens = {"role": "assistant", "content": content}, "stop", _tokens(content)
        if reply.reasoning is not None:
            message = {**message, reply.reasoning_key: reply.reasoning}
        finish_reason = reply.finish_reason or finish
        choices = []
        for index in range(self.n):
            choice = {"index": index, "message": message, "logprobs": None, "finish_reason": finish_reason}
            if self.azure:
                choice["content_filter_results"] = _CHOICE_FILTERS
            choices.append(choice)
        body = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
            "usage": self.usage(reply, tokens * self.n),
        }
        if self.azure:
            body["prompt_filter_results"] = _PROMPT_FILTERS
        body.update(reply.extra)
        return orjson.dumps(body)

    def chunk(
        self,
        choices: list[dict[str, Any]],
        usage: Any = None,
        *,
        with_usage: bool | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> bytes:
        """One SSE event carrying a ``chat.completion.chunk`` (``usage`` included when the request
        asked for it, or when ``with_usage`` says so)."""
        obj = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
        }
        if self.include_usage if with_usage is None else with_usage:
            obj["usage"] = usage
        if extra:
            obj.update(extra)
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def delta(
        self,
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self.chunk([choice], extra=extra)

    def stream_events(self, reply: Reply) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """The SSE events of a streamed reply: (head, body, tail); ``break_after`` counts body events."""
        indexes = range(self.n)
        head: list[bytes] = []
        if self.azure and reply.azure_filter_chunk:
            head.append(b"data: " + _AZURE_FILTER_CHUNK + b"\n\n")
        tool_calls = self.tool_calls(reply)
        body: list[bytes] = []
        if tool_calls:
            head += [self.delta(i, {"role": "assistant", "content": None}) for i in indexes]
            for t, call in enumerate(tool_calls):
                function = call["function"]
                start = {"index": t, "id": call["id"], "type": "function"}
                start["function"] = {"name": function["name"], "arguments": ""}
                body += [self.delta(i, {"tool_calls": [start]}) for i in indexes]
                args = function["arguments"]
                for k in range(0, len(args), _ARGUMENT_FRAGMENT):
                    fragment = {"index": t, "function": {"arguments": args[k : k + _ARGUMENT_FRAGMENT]}}
                    body += [self.delta(i, {"tool_calls": [fragment]}) for i in indexes]
            finish = "tool_calls"
            tokens = sum(_tokens(c["function"]["arguments"]) for c in tool_calls)
        else:
            head += [self.delta(i, {"role": "assistant", "content": ""}) for i in indexes]
            if reply.reasoning is not None:
                body += [
                    self.delta(i, {reply.reasoning_key: piece})
                    for piece in _split_words(reply.reasoning)
                    for i in indexes
                ]
            pieces = reply.pieces
            if pieces is None:
                pieces = DEFAULT_PIECES if reply.content is None else _split_words(reply.content)
            body += [self.delta(i, {"content": piece}) for piece in pieces for i in indexes]
            finish, tokens = "stop", _tokens("".join(pieces))
        for k in sorted(reply.malformed_at, reverse=True):
            body.insert(k, b'data: {"choices": [{"delta": {"content": "oops\n\n')
        usage_chunk = self.include_usage or reply.usage_always
        last = self.n - 1 if not usage_chunk else None
        tail = [
            self.delta(i, {}, reply.finish_reason or finish, reply.extra if i == last else None)
            for i in indexes
        ]
        if usage_chunk:
            usage = self.usage(reply, tokens * self.n)
            tail.append(self.chunk([], usage=usage, with_usage=True, extra=reply.extra))
        if not reply.omit_done:
            tail.append(_SSE_DONE)
        return head, body, tail


# --------------------------------------------------------------------------- server


def _new_loop() -> asyncio.AbstractEventLoop:
    return uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()


def _headers(seq: int, content_type: str, extra: Mapping[str, str]) -> CIMultiDict[str]:
    """Response headers: the defaults, overridden case-insensitively by the reply's own."""
    headers = CIMultiDict({"content-type": content_type, "x-request-id": f"req_fake{seq}"})
    headers.update(extra)
    return headers


class FakeUpstream:
    """A chat-completions server on ``host:port`` (port 0: a free one) run in a background thread.

    Scripted replies (``script``) are consumed one per chat-completions request, FIFO; a request
    takes from the first scope whose ``match`` is a substring of its path or body ``model``, else
    from the unscoped queue, else it gets ``default_reply``. Every request is recorded in
    ``requests`` (unless ``record=False``); requests whose client went away before the response
    finished are also in ``disconnects``. All methods are safe to call from any thread.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, default: Reply | None = None, record: bool = True
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._record_requests = record
        self._initial_default = self._default = default or Reply.ok()
        self._cond = threading.Condition()
        self._unscoped: deque[Reply] = deque()
        self._scoped: dict[str, deque[Reply]] = {}
        self._requests: list[Recorded] = []
        self._disconnects: list[Recorded] = []
        self._count = 0
        self._seq = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # -- lifecycle

    @property
    def port(self) -> int:
        """The port listened on (only once started)."""
        if self._port is None:
            raise RuntimeError("FakeUpstream is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``; OpenAI clients want ``url + "/v1"``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeUpstream:
        """Bind and serve in a daemon thread; returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run, args=(sock, ready, errors), name=f"fake-upstream:{self._port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or errors:
            self.stop()
            raise RuntimeError("FakeUpstream failed to start") from (errors[0] if errors else None)
        return self

    def stop(self) -> None:
        """Stop serving; in-flight requests are cut (and not counted as disconnects)."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        self._stopping = True
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = self._loop = None
        self._port = None
        self._stopping = False

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self, sock: socket.socket, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = self._loop = _new_loop()
        asyncio.set_event_loop(loop)
        try:
            runner = loop.run_until_complete(self._open(sock))
        except BaseException as exc:
            errors.append(exc)
            sock.close()
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    async def _open(self, sock: socket.socket) -> web.AppRunner:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.2)
        await runner.setup()
        await web.SockSite(runner, sock, backlog=1024).start()
        return runner

    # -- scripting

    def script(self, *replies: Reply, match: str | None = None) -> None:
        """Queue replies for the next requests (of the scope ``match``, if given)."""
        if match == "":
            raise ValueError("match must be a non-empty substring")
        with self._cond:
            queue = self._unscoped if match is None else self._scoped.setdefault(match, deque())
            queue.extend(replies)

    def pending(self, match: str | None = None) -> int:
        """How many scripted replies of the scope ``match`` (None: unscoped) are still queued."""
        with self._cond:
            return len(self._unscoped if match is None else self._scoped.get(match, ()))

    @property
    def default_reply(self) -> Reply:
        """The reply given when no script applies."""
        return self._default

    @default_reply.setter
    def default_reply(self, reply: Reply) -> None:
        self._default = reply

    def reset(self, *, default: Reply | None = None) -> None:
        """Forget scripts, recordings and disconnects; restore the initial default reply (or set one)."""
        with self._cond:
            self._unscoped.clear()
            self._scoped.clear()
            self._requests.clear()
            self._disconnects.clear()
            self._count = 0
            self._default = default or self._initial_default

    def _next_reply(self, rec: Recorded) -> Reply:
        model = rec.model or ""
        with self._cond:
            for key, queue in self._scoped.items():
                if queue and (key in rec.path or key in model):
                    return queue.popleft()
            return self._unscoped.popleft() if self._unscoped else self._default

    # -- recording

    @property
    def requests(self) -> list[Recorded]:
        """A snapshot of the recorded requests, oldest first."""
        with self._cond:
            return list(self._requests)

    @property
    def disconnects(self) -> list[Recorded]:
        """A snapshot of the requests whose client left before the response finished."""
        with self._cond:
            return list(self._disconnects)

    @property
    def request_count(self) -> int:
        """Requests received since the last reset (counted even with ``record=False``)."""
        return self._count

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        """Block until ``n`` requests have arrived since the last reset; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count >= n, timeout)

    def wait_for_disconnect(self, timeout: float = 5.0, count: int = 1) -> bool:
        """Block until ``count`` client disconnects were seen since the last reset; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._disconnects) >= count, timeout)

    async def wait_for_requests_async(self, n: int, timeout: float = 5.0) -> bool:  # noqa: ASYNC109
        """``wait_for_requests`` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_for_requests, n, timeout)

    async def wait_for_disconnect_async(self, timeout: float = 5.0, count: int = 1) -> bool:  # noqa: ASYNC109
        """``wait_for_disconnect`` without blocking the caller's event loop."""
        return await asyncio.to_thread(self.wait_for_disconnect, timeout, count)

    # -- serving (runs on the server thread)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        rec = Recorded(
            seq=next(self._seq),
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            raw=raw,
            body=body,
            received_at=time.monotonic(),
        )
        with self._cond:
            self._count += 1
            if self._record_requests:
                self._requests.append(rec)
            self._cond.notify_all()
        try:
            return await self._answer(request, rec)
        except asyncio.CancelledError:  # aiohttp cancels the handler when the client goes away
            self._note_disconnect(rec)
            raise
        except ConnectionResetError:  # a write found the connection closed
            self._note_disconnect(rec)
            return web.Response()  # aiohttp fails to send it and ignores that quietly
        except _Dropped:
            return web.Response()
        finally:
            rec.finished_at = time.monotonic()

    def _note_disconnect(self, rec: Recorded) -> None:
        if self._stopping:
            return
        rec.disconnected = True
        with self._cond:
            self._disconnects.append(rec)
            self._cond.notify_all()

    async def _answer(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        if request.method == "POST" and rec.path.endswith(_EMBEDDINGS_SUFFIX):
            return await self._embeddings(request, rec)
        if request.method != "POST" or not rec.path.endswith(_CHAT_SUFFIX):
            reply = Reply.status(404, message=f"No route for {request.method} {rec.path}")
            return self._error(rec, reply)
        if not isinstance(rec.body, dict):
            return self._error(rec, Reply.status(400, message="The request body is not a JSON object."))
        reply = rec.reply = self._next_reply(rec)
        exchange = _Exchange(rec)
        delay = reply.delay_s + (0.0 if exchange.stream else reply.hang_s)
        if delay > 0:
            await asyncio.sleep(delay)
        if reply.kind == "drop":
            _close(request, reset=reply.reset)
        if reply.kind == "error":
            return self._error(rec, reply)
        if exchange.stream:
            return await self._stream(request, exchange, reply)
        payload = exchange.completion(reply)
        headers = _headers(rec.seq, "application/json", reply.headers)
        if reply.break_after is None:
            return web.Response(body=payload, headers=headers)
        headers["content-length"] = str(len(payload))
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        _close(request)

    async def _embeddings(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        """``POST …/embeddings``: scripted replies apply as for chat (errors, ``slow``, ``drop``,
        ``break_after``); a success is computed from the body (``tests/fakes/embeddings.py``)."""
        if not isinstance(rec.body, dict):
            return self._error(rec, Reply.status(400, message="The request body is not a JSON object."))
        reply = rec.reply = self._next_reply(rec)
        if reply.delay_s + reply.hang_s > 0:
            await asyncio.sleep(reply.delay_s + reply.hang_s)
        if reply.kind == "drop":
            _close(request, reset=reply.reset)
        if reply.kind == "error":
            return self._error(rec, reply)
        model = str(rec.body.get("model") or rec.deployment or "fake-embedding-model")
        usage = reply.usage.to_json() if isinstance(reply.usage, Usage) else reply.usage
        body = fake_embeddings.answer(rec.body, model, usage)
        if isinstance(body, str):
            return self._error(rec, Reply.status(400, message=body))
        payload = orjson.dumps({**body, **reply.extra})
        headers = _headers(rec.seq, "application/json", reply.headers)
        if reply.break_after is None:
            return web.Response(body=payload, headers=headers)
        headers["content-length"] = str(len(payload))
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        _close(request)

    def _error(self, rec: Recorded, reply: Reply) -> web.Response:
        body = reply.body
        content_type = "text/plain; charset=utf-8"
        if isinstance(body, dict | list):
            body, content_type = orjson.dumps(body), "application/json"
        elif isinstance(body, str):
            body = body.encode()
        headers = _headers(rec.seq, content_type, reply.headers)
        return web.Response(status=reply.status_code, body=body, headers=headers)

    async def _stream(self, request: web.Request, exchange: _Exchange, reply: Reply) -> web.StreamResponse:
        head, body, tail = exchange.stream_events(reply)
        headers = _headers(exchange.rec.seq, "text/event-stream; charset=utf-8", reply.headers)
        headers.setdefault("cache-control", "no-cache")
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        if not (reply.delay_between_s or reply.break_after is not None or reply.hang_s):
            await response.write(b"".join(head + body + tail))
            await response.write_eof()
            return response
        await response.write(b"".join(head))
        sent = body if reply.break_after is None else body[: reply.break_after]
        for k, event in enumerate(sent):
            if k and reply.delay_between_s:
                await asyncio.sleep(reply.delay_between_s)
            await response.write(event)
        if reply.break_after is not None:
            _close(request)
        if reply.hang_s:
            tick = exchange.delta(0, {"content": reply.hang_tick})
            deadline = time.monotonic() + reply.hang_s
            while time.monotonic() < deadline:
                await asyncio.sleep(reply.hang_interval_s)
                await response.write(tick)
        await response.write(b"".join(tail))
        await response.write_eof()
        return response


class _Dropped(Exception):
    """Raised after the fake closed a connection on purpose (not a client disconnect)."""


def _close(request: web.Request, *, reset: bool = False) -> NoReturn:
    """Close the connection after flushing what was written (``reset``: send a TCP RST instead)."""
    transport = request.transport
    if transport is not None:
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
    raise _Dropped


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fake in the foreground with default replies until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.upstream", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="latency added to every reply")
    parser.add_argument("--record", action="store_true", help="keep requests in memory (off by default)")
    args = parser.parse_args(argv)
    default = Reply.slow(args.delay_ms / 1000) if args.delay_ms > 0 else Reply.ok()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with FakeUpstream(args.host, args.port, default=default, record=args.record) as fake:
        print(f"fake upstream listening on {fake.url}", flush=True)
        try:
            while not done.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
