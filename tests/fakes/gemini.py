"""A real HTTP fake of Google's Gemini API (AI Studio) and Vertex AI, with Vertex's OAuth token endpoint.

The server, its thread, the reply queues and the request recording are ``FakeUpstream``'s
(``tests/fakes/upstream.py``); this module speaks Google's formats:

- AI Studio: ``POST /{v1beta|v1}/models/{model}:generateContent`` and
  ``:streamGenerateContent?alt=sse`` (without ``alt=sse``: a JSON array, as the real API), with the
  key in ``x-goog-api-key`` (or ``?key=``);
- Vertex AI: ``POST /{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{model}:…``,
  the same bodies, with ``Authorization: Bearer`` a token this fake issued;
- Claude on Vertex: ``…/publishers/anthropic/models/{model}:rawPredict`` / ``:streamRawPredict``,
  Anthropic's Messages format (``tests/fakes/anthropic.py`` renders it; script its ``Reply``);
- ``POST /token``: an OAuth 2.0 token endpoint for service-account JWT grants (RFC 7523). It checks
  the grant's signature against the key of a service account made by :meth:`service_account`, so
  a client that signs wrongly gets ``invalid_grant``, as from Google::

    with FakeGemini() as fake:
        fake.script(Reply.error("RESOURCE_EXHAUSTED", retry_delay="7s"), Reply.ok("hi", thought="hmm"))
        info = fake.service_account()          # its token_uri is this fake's /token
        ...                                    # point the code under test at fake.url
        assert fake.requests[0].header("x-goog-api-key") == "AIza…"

By default it answers ``"echo: "`` and the last user turn's text, with realistic usage. Like the real
API it refuses a request without a key or token, with a body that is not a GenerateContentRequest
(no contents, a role other than user/model, a turn without parts, a part without data, a function
call or response without a name): 400 INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import re
import secrets
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qs

import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes import anthropic as ant
from tests.fakes.upstream import FakeUpstream, Recorded, _close

# Google's status names and the HTTP code each comes with (its own table, not the adapter's: a
# test comparing the two would otherwise compare a table with itself).
STATUS_CODES: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# The audience Google wants in a grant, whichever token_uri it is sent to.
GRANT_AUDIENCE = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
THOUGHT_SIGNATURE = base64.b64encode(b"\x0a\x24fake thought signature").decode()

_GEMINI_PATH = re.compile(
    r"/(v1beta|v1)/(models|tunedModels)/([^/:]+):(generateContent|streamGenerateContent)"
)
_VERTEX_PATH = re.compile(
    r"/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/(google|anthropic)/models/([^/:]+)"
    r":(generateContent|streamGenerateContent|rawPredict|streamRawPredict)"
)
_DATA_FIELDS = frozenset(
    {
        "text",
        "inlineData",
        "fileData",
        "functionCall",
        "functionResponse",
        "executableCode",
        "codeExecutionResult",
    }
)
_TEXT_PIECE = 6  # characters of text (and thought) per streamed event


@dataclass(frozen=True)
class FunctionCall:
    name: str
    args: Mapping[str, Any] = field(default_factory=dict)
    # AI Studio sends no id unless asked; Vertex and the Live API do.
    id: str | None = None
    thought_signature: str | None = None


@dataclass(frozen=True)
class Usage:
    prompt: int
    candidates: int
    cached: int = 0
    thoughts: int = 0
    tool_use_prompt: int = 0

    def to_json(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "promptTokenCount": self.prompt,
            "candidatesTokenCount": self.candidates,
            "totalTokenCount": self.prompt + self.candidates + self.thoughts + self.tool_use_prompt,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt}],
        }
        # Like the real API, counts that are zero are left out.
        for key, value in (
            ("cachedContentTokenCount", self.cached),
            ("thoughtsTokenCount", self.thoughts),
            ("toolUsePromptTokenCount", self.tool_use_prompt),
        ):
            if value:
                meta[key] = value
        return meta


@dataclass(frozen=True)
class Reply:
    """One answer. Build it with the class methods. Success replies stream when the request asks.

    ``text=None`` echoes the last user turn (unless the reply calls functions).
    """

    kind: Literal["ok", "error", "blocked"] = "ok"
    text: str | None = None
    thought: str | None = None
    calls: tuple[FunctionCall, ...] = ()
    usage: Usage | None = None
    finish_reason: str | None = None
    status: str = ""
    message: str = ""
    reason: str | None = None  # an ErrorInfo reason (API_KEY_INVALID…)
    retry_delay: str | None = None  # a RetryInfo delay ("7s")
    headers: Mapping[str, str] = field(default_factory=dict)
    block_reason: str = ""
    # Streams only: content events sent before the connection closes.
    break_after: int | None = None
    # Streams only: seconds to wait after the first event (a client leaving ends the wait).
    hang_s: float = 0.0

    @classmethod
    def ok(
        cls,
        text: str | None = None,
        *,
        thought: str | None = None,
        calls: Sequence[FunctionCall] = (),
        usage: Usage | None = None,
        finish_reason: str | None = None,
    ) -> Reply:
        return cls(text=text, thought=thought, calls=tuple(calls), usage=usage, finish_reason=finish_reason)

    @classmethod
    def function_call(cls, name: str, args: Mapping[str, Any] | None = None, **ok: Any) -> Reply:
        return cls.ok(calls=[FunctionCall(name, dict(args or {}))], **ok)

    @classmethod
    def error(
        cls,
        status: str,
        message: str | None = None,
        *,
        reason: str | None = None,
        retry_delay: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An HTTP error with Google's ``status`` name (and its code)."""
        return cls(
            kind="error",
            status=status,
            message=message or f"fake {status}",
            reason=reason,
            retry_delay=retry_delay,
            headers=dict(headers or {}),
        )

    @classmethod
    def blocked(cls, reason: str = "SAFETY") -> Reply:
        """A 200 answer with no candidates: the prompt was blocked (``promptFeedback.blockReason``)."""
        return cls(kind="blocked", block_reason=reason)

    @classmethod
    def broken(cls, after: int, reply: Reply | None = None) -> Reply:
        """A stream that closes its connection after ``after`` content events."""
        return replace(reply or cls.ok(), break_after=after)

    @classmethod
    def hang(cls, seconds: float, reply: Reply | None = None) -> Reply:
        """A stream that stalls ``seconds`` after its first event."""
        return replace(reply or cls.ok(), hang_s=seconds)


def error_body(status: str, message: str, reason: str | None = None, retry_delay: str | None = None) -> dict:
    details: list[dict[str, Any]] = []
    if reason:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        )
    if retry_delay:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
    error: dict[str, Any] = {"code": STATUS_CODES.get(status, 500), "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _pieces(text: str, size: int) -> list[str]:
    return [text[k : k + size] for k in range(0, len(text), size)] or [""]


def _texts(parts: Any) -> str:
    return "".join(
        part["text"]
        for part in (parts if isinstance(parts, list) else ())
        if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought")
    )


def _problem(body: Any) -> str | None:
    """What the real API would refuse in this GenerateContentRequest, or None."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            return f"* GenerateContentRequest.contents[{i}]: not an object"
        if content.get("role", "user") not in ("user", "model"):
            return "Please use a valid role: user, model."
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
        for j, part in enumerate(parts):
            where = f"* GenerateContentRequest.contents[{i}].parts[{j}]"
            if not isinstance(part, dict) or len(_DATA_FIELDS & part.keys()) != 1:
                return f"{where}.data: required oneof field 'data' must have one initialized field"
            for kind in ("functionCall", "functionResponse"):
                if kind in part and not (isinstance(part[kind], dict) and part[kind].get("name")):
                    return f"{where}.{kind}.name: Name cannot be empty."
    return None


class _Exchange:
    """One generateContent request and the answer the reply makes of it."""

    def __init__(self, rec: Recorded, reply: Reply, model: str) -> None:
        body = rec.body
        self.rec = rec
        self.reply = reply
        self.model = model
        self.id = f"fake-response-{rec.seq:08d}"
        self.contents = [c for c in body["contents"] if isinstance(c, dict)]
        config = body.get("generationConfig") if isinstance(body.get("generationConfig"), dict) else {}
        count = config.get("candidateCount")
        self.n = count if isinstance(count, int) and count > 1 else 1
        self.logprobs = config.get("responseLogprobs") is True
        system = body.get("systemInstruction")
        self.system = _texts(system.get("parts")) if isinstance(system, dict) else ""

    def echo(self) -> str:
        for content in reversed(self.contents):
            text = _texts(content.get("parts"))
            if content.get("role", "user") == "user" and text:
                return f"echo: {text}"
        return "echo:"

    def text(self) -> str | None:
        reply = self.reply
        if reply.text is not None:
            return reply.text
        return None if reply.calls else self.echo()

    def call_parts(self) -> list[dict[str, Any]]:
        parts = []
        for call in self.reply.calls:
            function: dict[str, Any] = {"name": call.name, "args": dict(call.args)}
            if call.id:
                function["id"] = call.id
            part: dict[str, Any] = {"functionCall": function}
            if call.thought_signature:
                part["thoughtSignature"] = call.thought_signature
            parts.append(part)
        return parts

    def usage(self) -> Usage:
        if self.reply.usage is not None:
            return self.reply.usage
        prompt = self.system + "".join(_texts(c.get("parts")) for c in self.contents)
        output = (self.text() or "") + "".join(orjson.dumps(dict(c.args)).decode() for c in self.reply.calls)
        thoughts = _tokens(self.reply.thought) if self.reply.thought else 0
        return Usage(
            prompt=_tokens(prompt) + 2 * len(self.contents), candidates=_tokens(output), thoughts=thoughts
        )

    def finish(self) -> str:
        return self.reply.finish_reason or "STOP"

    def candidates(self, parts: list[dict[str, Any]], finish: bool) -> list[dict[str, Any]]:
        out = []
        for index in range(self.n):
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": index}
            if finish:
                candidate["finishReason"] = self.finish()
            if self.logprobs:
                candidate["logprobsResult"] = _logprobs(parts)
            out.append(candidate)
        return out

    def envelope(self, candidates: list[dict[str, Any]], usage: dict[str, Any]) -> dict[str, Any]:
        return {
            "candidates": candidates,
            "usageMetadata": usage,
            "modelVersion": self.model,
            "responseId": self.id,
        }

    def response(self) -> bytes:
        parts: list[dict[str, Any]] = []
        if self.reply.thought is not None:
            parts.append({"text": self.reply.thought, "thought": True})
        text = self.text()
        if text is not None:
            parts.append({"text": text})
        parts += self.call_parts()
        return orjson.dumps(self.envelope(self.candidates(parts, True), self.usage().to_json()))

    def events(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The stream's responses: (the content events, the last one with finishReason and usage)."""
        usage = self.usage()
        step: list[list[dict[str, Any]]] = []
        if self.reply.thought is not None:
            step += [[{"text": piece, "thought": True}] for piece in _pieces(self.reply.thought, _TEXT_PIECE)]
        text = self.text()
        if text is not None:
            step += [[{"text": piece}] for piece in _pieces(text, _TEXT_PIECE)]
        step += [[part] for part in self.call_parts()]
        last_parts = step.pop() if step else [{"text": ""}]
        body = []
        for k, parts in enumerate(step, 1):
            # Every event carries the usage so far; the candidates' count grows to its total.
            running = {
                "promptTokenCount": usage.prompt,
                "candidatesTokenCount": max(1, usage.candidates * k // (len(step) + 1)),
            }
            running["totalTokenCount"] = running["promptTokenCount"] + running["candidatesTokenCount"]
            body.append(self.envelope(self.candidates(parts, False), running))
        return body, self.envelope(self.candidates(last_parts, True), usage.to_json())


def _logprobs(parts: list[dict[str, Any]]) -> dict[str, Any]:
    words = re.findall(r"\S+\s*", "".join(p.get("text", "") for p in parts if not p.get("thought")))
    chosen = [{"token": w, "tokenId": i, "logProbability": -0.1 * (i + 1)} for i, w in enumerate(words)]
    top = [
        {"candidates": [c, {"token": "~", "tokenId": 99, "logProbability": c["logProbability"] - 2}]}
        for c in chosen
    ]
    return {"topCandidates": top, "chosenCandidates": chosen}


def _sse(data: Any) -> bytes:
    # Google separates events with CRLF pairs.
    return b"data: " + orjson.dumps(data) + b"\r\n\r\n"


@functools.cache
def _private_key() -> rsa.RSAPrivateKey:
    # One key for the whole test run: RSA generation is slow and any key proves the signing.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeGemini(FakeUpstream):
    """``FakeUpstream``'s server and scripting, answering as Gemini, Vertex AI and Google's token
    endpoint.

    ``script(...)`` takes this module's ``Reply`` (and, for Claude on Vertex, ``tests.fakes.
    anthropic.Reply``); ``match`` scopes a reply to requests whose path contains it (the model).
    ``requests`` are the model calls; ``token_requests`` the token endpoint's.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, default: Reply | None = None, token_ttl_s: int = 3600
    ) -> None:
        super().__init__(host, port, default=default or Reply.ok())  # type: ignore[arg-type]
        self.token_ttl_s = token_ttl_s
        # Keys that are valid; empty: any non-empty key is.
        self.api_keys: set[str] = set()
        self._accounts: dict[str, bytes] = {}  # client_email -> public key (PEM)
        self._issued: set[str] = set()
        self._token_failures: deque[tuple[str, str]] = deque()
        self._token_seq = itertools.count(1)

    # -- service accounts and tokens

    def service_account(
        self, email: str = "switchyard-test@test-project.iam.gserviceaccount.com"
    ) -> dict[str, Any]:
        """A service-account key whose grants this fake's ``/token`` accepts."""
        key = _private_key()
        self._accounts[email] = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return {
            "type": "service_account",
            "project_id": "test-project",
            "private_key_id": "fake-key-id-0001",
            "private_key": pem.decode(),
            "client_email": email,
            "client_id": "100000000000000000001",
            "token_uri": f"{self.url}/token",
        }

    def fail_next_token(
        self, error: str = "invalid_grant", description: str = "Invalid JWT Signature."
    ) -> None:
        self._token_failures.append((error, description))

    @property
    def issued_tokens(self) -> set[str]:
        with self._cond:
            return set(self._issued)

    @property
    def requests(self) -> list[Recorded]:
        return [rec for rec in super().requests if rec.path != "/token"]

    @property
    def token_requests(self) -> list[Recorded]:
        return [rec for rec in super().requests if rec.path == "/token"]

    def reset(self, *, default: Reply | None = None) -> None:  # type: ignore[override]
        super().reset(default=default)  # type: ignore[arg-type]
        with self._cond:
            self._token_failures.clear()
        self.api_keys = set()

    # -- serving

    async def _answer(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        if request.method == "POST" and rec.path == "/token":
            return self._token(rec)
        gemini = _GEMINI_PATH.fullmatch(rec.path)
        vertex = _VERTEX_PATH.fullmatch(rec.path)
        if request.method != "POST" or not (gemini or vertex):
            return _error(rec, "NOT_FOUND", f"The requested URL {rec.path} was not found on this server.")
        refused = self._api_key_refusal(rec) if gemini else self._token_refusal(rec)
        if refused is not None:
            return refused
        if vertex and vertex.group(4) == "anthropic":
            return await self._claude(request, rec, vertex.group(5), vertex.group(6) == "streamRawPredict")
        problem = _problem(rec.body)
        if problem is not None:
            return _error(rec, "INVALID_ARGUMENT", problem)
        model, method = gemini.group(3, 4) if gemini else vertex.group(5, 6)  # type: ignore[union-attr]
        reply = self._next_reply(rec)
        if not isinstance(reply, Reply):
            reply = Reply.ok()
        rec.reply = reply  # type: ignore[assignment]
        if reply.kind == "error":
            body = error_body(reply.status, reply.message, reply.reason, reply.retry_delay)
            return _json(rec, STATUS_CODES.get(reply.status, 500), body, reply.headers)
        exchange = _Exchange(rec, reply, model)
        if reply.kind == "blocked":
            blocked = {
                "promptFeedback": {
                    "blockReason": reply.block_reason,
                    "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}],
                },
                "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
                "modelVersion": model,
                "responseId": exchange.id,
            }
            payload = _sse(blocked) if method == "streamGenerateContent" else orjson.dumps(blocked)
            kind = "text/event-stream" if method == "streamGenerateContent" else "application/json"
            return web.Response(body=payload, headers=_headers(rec, kind))
        if method == "generateContent":
            return web.Response(body=exchange.response(), headers=_headers(rec, "application/json"))
        return await self._stream(request, exchange, sse=rec.query.get("alt") == "sse")

    def _api_key_refusal(self, rec: Recorded) -> web.Response | None:
        key = rec.header("x-goog-api-key") or rec.query.get("key")
        if not key:
            return _error(
                rec,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if self.api_keys and key not in self.api_keys:
            # The real API's answer to a wrong key: 400, with the reason in an ErrorInfo.
            return _error(
                rec, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"
            )
        return None

    def _token_refusal(self, rec: Recorded) -> web.Response | None:
        auth = rec.header("authorization") or ""
        if not auth.startswith("Bearer ") or auth[len("Bearer ") :] not in self.issued_tokens:
            return _error(
                rec,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                "cookie or other valid authentication credential.",
            )
        return None

    def _token(self, rec: Recorded) -> web.Response:
        form = {k: v[0] for k, v in parse_qs(rec.raw.decode(errors="replace")).items()}
        failure = self._token_failures.popleft() if self._token_failures else None
        if form.get("grant_type") != JWT_GRANT:
            failure = ("unsupported_grant_type", "Invalid grant_type")
        elif failure is None:
            failure = self._check_grant(form.get("assertion", ""))
        if failure is not None:
            body = {"error": failure[0], "error_description": failure[1]}
            return web.Response(
                status=400, body=orjson.dumps(body), headers=_headers(rec, "application/json")
            )
        token = f"ya29.fake-{next(self._token_seq)}-{secrets.token_urlsafe(16)}"
        with self._cond:
            self._issued.add(token)
        body = {"access_token": token, "expires_in": self.token_ttl_s, "token_type": "Bearer"}
        return web.Response(body=orjson.dumps(body), headers=_headers(rec, "application/json"))

    def _check_grant(self, assertion: str) -> tuple[str, str] | None:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            public_key = self._accounts[unverified["iss"]]
            claims = jwt.decode(assertion, public_key, algorithms=["RS256"], audience=GRANT_AUDIENCE)
        except (jwt.PyJWTError, KeyError):
            return ("invalid_grant", "Invalid JWT Signature.")
        if SCOPE not in str(claims.get("scope", "")).split():
            return ("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        if not claims.get("exp") or claims["exp"] < time.time():
            return ("invalid_grant", "Invalid JWT: Token must be a short-lived token")
        return None

    async def _stream(self, request: web.Request, exchange: _Exchange, *, sse: bool) -> web.StreamResponse:
        reply = exchange.reply
        body, last = exchange.events()
        response = web.StreamResponse(
            headers=_headers(exchange.rec, "text/event-stream" if sse else "application/json")
        )
        await response.prepare(request)
        if not sse:
            # Without alt=sse the API streams one JSON array of responses.
            await response.write(orjson.dumps([*body, last]))
            await response.write_eof()
            return response
        sent = body if reply.break_after is None else body[: reply.break_after]
        for k, event in enumerate(sent):
            await response.write(_sse(event))
            if k == 0 and reply.hang_s:
                await asyncio.sleep(reply.hang_s)
        if reply.break_after is not None:
            await asyncio.sleep(0.01)  # let the bytes leave before the connection goes
            _close(request)
        await response.write(_sse(last))
        await response.write_eof()
        return response

    async def _claude(
        self, request: web.Request, rec: Recorded, model: str, stream: bool
    ) -> web.StreamResponse:
        """Claude on Vertex: Anthropic's Messages format, the model named in the URL."""
        body = rec.body
        if not isinstance(body, dict) or not body.get("anthropic_version"):
            return _anthropic_error(rec, "invalid_request_error", "anthropic_version: Field required")
        for required in ("max_tokens", "messages"):
            if required not in body:
                return _anthropic_error(rec, "invalid_request_error", f"{required}: Field required")
        reply = self._next_reply(rec)
        rec.reply = reply
        if isinstance(reply, Reply) and reply.kind == "error":
            # The platform's errors (quota, permissions) come in Google's shape.
            google = error_body(reply.status, reply.message, reply.reason, reply.retry_delay)
            return _json(rec, STATUS_CODES.get(reply.status, 500), google, reply.headers)
        claude = reply if isinstance(reply, ant.Reply) else ant.Reply.ok()
        if claude.kind == "error":
            return _json(
                rec, claude.status, ant.error_body(claude.error_type, claude.message, rec.seq), claude.headers
            )
        exchange = ant._Exchange(rec, claude)
        exchange.model = model
        if not stream:
            return web.Response(body=exchange.message(), headers=_headers(rec, "application/json"))
        head, events, tail = exchange.events()
        response = web.StreamResponse(headers=_headers(rec, "text/event-stream; charset=utf-8"))
        await response.prepare(request)
        if claude.break_after is not None:
            await response.write(b"".join(head + events[: claude.break_after]))
            await asyncio.sleep(0.01)
            _close(request)
        await response.write(b"".join(head + events + tail))
        await response.write_eof()
        return response


def _headers(rec: Recorded, content_type: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {"content-type": content_type, "x-fake-request": str(rec.seq), **(extra or {})}


def _json(rec: Recorded, status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), headers=_headers(rec, "application/json", headers)
    )


def _error(rec: Recorded, status: str, message: str, reason: str | None = None) -> web.Response:
    return _json(rec, STATUS_CODES[status], error_body(status, message, reason))


def _anthropic_error(rec: Recorded, error_type: str, message: str) -> web.Response:
    return _json(rec, ant.ERROR_STATUS[error_type], ant.error_body(error_type, message, rec.seq))
