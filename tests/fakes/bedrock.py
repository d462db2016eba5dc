"""A real HTTP fake of AWS Bedrock's Converse API (``POST /model/{modelId}/converse`` and
``/converse-stream``), for tests.

The server, its thread, the reply queues and the request recording are ``FakeUpstream``'s
(``tests/fakes/upstream.py``); this module speaks Bedrock's format: Converse JSON answers, the
``application/vnd.amazon.eventstream`` binary frames of ConverseStream, and AWS error responses
(``x-amzn-errortype`` + ``{"message"}``)::

    with FakeBedrock() as fake:
        fake.script(Reply.error("ThrottlingException"), Reply.ok("hi"))
        ...  # point the code under test at fake.url, signing with ACCESS_KEY_ID / SECRET_ACCESS_KEY
        assert fake.signatures[0].access_key_id == ACCESS_KEY_ID

Like the real service it checks every request's SigV4 signature (recomputed with botocore's
signer from the raw path, the signed headers and the body) and refuses a missing (403
MissingAuthenticationTokenException), unknown (403 UnrecognizedClientException) or wrong
(403 InvalidSignatureException) one; and it refuses a body Converse would refuse (400
ValidationException): blocks that are not one-key unions, blank text, tool blocks without a
``toolConfig``, a conversation that does not start with the user.

By default it answers ``"echo: "`` and the last user message's text, with realistic usage.
Stream events carry the random ``"p"`` padding field the real service adds.
"""

from __future__ import annotations

import asyncio
import binascii
import datetime
import re
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes.upstream import FakeUpstream, Recorded, _close

ACCESS_KEY_ID = "AKIAFAKEBEDROCK0001"
SECRET_ACCESS_KEY = "fakeSecretAccessKey/abcdefghij0123456789XYZ"
SESSION_TOKEN = "FwoGZXIvYXdzEFake//SessionToken+0123456789="
SIGNATURE = "ErcBCkgIAhABGAIiQFakeSignatureOfTheReasoning=="
_ARGUMENT_FRAGMENT = 8  # characters of tool input JSON per toolUse delta
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
_ROUTE = re.compile(r"/model/([^/]+)/(converse|converse-stream)")
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
    r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})"
)
_MAX_SKEW = datetime.timedelta(minutes=15)  # AWS refuses requests signed further off than this

# Bedrock's exception types and their HTTP status (the service model's table, not the adapter's).
ERROR_STATUS: dict[str, int] = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "MissingAuthenticationTokenException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
_BLOCK_KEYS = frozenset(
    {
        "text",
        "image",
        "document",
        "video",
        "toolUse",
        "toolResult",
        "guardContent",
        "cachePoint",
        "reasoningContent",
    }
)
_SYSTEM_KEYS = frozenset({"text", "guardContent", "cachePoint"})


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_write_input_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            # Bedrock's total counts the cache reads and writes too.
            "totalTokens": self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens
            + self.cache_write_input_tokens,
            "cacheReadInputTokens": self.cache_read_input_tokens,
            "cacheWriteInputTokens": self.cache_write_input_tokens,
        }


@dataclass(frozen=True)
class Reply:
    """One answer. Build it with the class methods. Success replies stream on /converse-stream.

    ``text=None`` echoes the last user message (unless the reply calls tools).
    """

    kind: Literal["ok", "error"] = "ok"
    text: str | None = None
    tool_uses: tuple[ToolUse, ...] = ()
    reasoning: str | None = None
    signature: str = SIGNATURE
    usage: Usage | None = None
    stop_reason: str | None = None
    status: int = 200
    error_type: str = ""
    message: str = ""
    # Streams only: body events (after messageStart) sent before ...
    break_after: int | None = None  # ... the connection closes
    exception_after: int | None = None  # ... an exception frame of `error_type` ends the stream
    corrupt_after: int | None = None  # ... a frame with a wrong CRC
    hang_after: int | None = None  # ... the stream waits (up to 30 s) for the client to go away
    omit_metadata: bool = False

    @classmethod
    def ok(
        cls,
        text: str | None = None,
        *,
        tool_uses: Sequence[ToolUse] = (),
        reasoning: str | None = None,
        usage: Usage | None = None,
        stop_reason: str | None = None,
        omit_metadata: bool = False,
    ) -> Reply:
        return cls(
            text=text,
            tool_uses=tuple(tool_uses),
            reasoning=reasoning,
            usage=usage,
            stop_reason=stop_reason,
            omit_metadata=omit_metadata,
        )

    @classmethod
    def tool_use(cls, name: str, input: Mapping[str, Any] | None = None, **ok: Any) -> Reply:
        return cls.ok(tool_uses=[ToolUse(name, dict(input or {}))], **ok)

    @classmethod
    def error(cls, error_type: str, message: str | None = None, *, status: int | None = None) -> Reply:
        """An HTTP error of Bedrock's exception ``error_type``."""
        return cls(
            kind="error",
            status=status or ERROR_STATUS.get(error_type, 500),
            error_type=error_type,
            message=message or f"fake {error_type}",
        )

    @classmethod
    def broken(cls, after: int, reply: Reply | None = None) -> Reply:
        """A stream that closes its connection after ``after`` body events."""
        return replace(reply or cls.ok(), break_after=after)

    @classmethod
    def exception(cls, error_type: str = "ThrottlingException", *, after: int = 1) -> Reply:
        """A stream that sends ``after`` body events, then an exception frame, and ends."""
        return replace(cls.ok(), exception_after=after, error_type=error_type, message=f"fake {error_type}")

    @classmethod
    def hang(cls, *, after: int = 1) -> Reply:
        """A stream that sends ``after`` body events, then nothing until the client leaves
        (a disconnect the fake records, as the real service would stop generating)."""
        return replace(cls.ok(), hang_after=after)

    @classmethod
    def corrupt(cls, *, after: int = 1) -> Reply:
        """A stream whose frame after ``after`` body events fails its CRC."""
        return replace(cls.ok(), corrupt_after=after)


@dataclass(frozen=True)
class Signed:
    """How one request was signed, as the fake verified it."""

    seq: int
    access_key_id: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    session_token: str | None
    raw_path: str


# --------------------------------------------------------------------------- eventstream frames


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One ``application/vnd.amazon.eventstream`` message: prelude (total and headers lengths,
    CRC32), string-typed headers, payload, CRC32 of everything before it. botocore only decodes,
    so the fake has its own encoder; botocore's decoder (and boto3) checking it is the test."""
    header_bytes = b"".join(
        struct.pack(">B", len(name.encode()))
        + name.encode()
        + b"\x07"
        + struct.pack(">H", len(value.encode()))
        + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(header_bytes))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + header_bytes + payload
    return message + struct.pack(">I", binascii.crc32(message))


def event_frame(event_type: str, body: Mapping[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, orjson.dumps({**body, "p": _PADDING[: 1 + len(event_type) % 40]}))


def exception_frame(error_type: str, message: str) -> bytes:
    # In a stream the exception types are the union's member names: throttlingException…
    name = error_type[:1].lower() + error_type[1:]
    headers = {":exception-type": name, ":content-type": "application/json", ":message-type": "exception"}
    return encode_frame(headers, orjson.dumps({"message": message}))


# --------------------------------------------------------------------------- signatures


class SignatureRefused(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def verify_signature(
    request: web.Request, body: bytes, keys: Mapping[str, tuple[str, str | None]], seq: int
) -> Signed:
    """Recompute the request's SigV4 signature with botocore; raise SignatureRefused as AWS would."""
    authorization = request.headers.get("authorization")
    if not authorization:
        raise SignatureRefused("MissingAuthenticationTokenException", "Missing Authentication Token")
    parsed = _AUTH.fullmatch(authorization.strip())
    if parsed is None:
        raise SignatureRefused("IncompleteSignatureException", "Authorization header requires valid SigV4")
    access_key_id, day, region, service, signed, signature = parsed.groups()
    known = keys.get(access_key_id)
    token = request.headers.get("x-amz-security-token")
    if known is None or known[1] != token:
        raise SignatureRefused(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    signed_headers = tuple(signed.split(";"))
    if "host" not in signed_headers or "x-amz-date" not in signed_headers:
        raise SignatureRefused("IncompleteSignatureException", "host and x-amz-date must be signed")
    if token is not None and "x-amz-security-token" not in signed_headers:
        raise SignatureRefused("IncompleteSignatureException", "x-amz-security-token must be signed")
    amz_date = request.headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise SignatureRefused(
            "IncompleteSignatureException", "X-Amz-Date is not a SigV4 timestamp"
        ) from None
    if abs(datetime.datetime.now(datetime.UTC) - when) > _MAX_SKEW or amz_date[:8] != day:
        raise SignatureRefused("InvalidSignatureException", "Signature expired or not yet current")
    auth = SigV4Auth(Credentials(access_key_id, known[0], token), service, region)
    url = f"http://{request.headers.get('host', '')}{request.raw_path}"
    headers = {name: request.headers.get(name, "") for name in signed_headers}
    aws_request = AWSRequest(method=request.method, url=url, headers=headers, data=body)
    aws_request.context["timestamp"] = amz_date
    expected = auth.signature(
        auth.string_to_sign(aws_request, auth.canonical_request(aws_request)), aws_request
    )
    if expected != signature:
        raise SignatureRefused(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return Signed(seq, access_key_id, region, service, signed_headers, token, request.raw_path)


# --------------------------------------------------------------------------- answers


def _text_of(content: Any) -> str:
    if not isinstance(content, list):
        return ""
    return "".join(b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str))


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def _pieces(text: str, size: int) -> list[str]:
    return [text[k : k + size] for k in range(0, len(text), size)] or [""]


def validation_problem(body: Any) -> str | None:
    """What Converse's validation would say about ``body`` (None: it passes)."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: must not be empty"
    if messages[0].get("role") != "user":
        return "A conversation must start with a user message."
    tool_blocks = False
    for i, message in enumerate(messages):
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: must be user or assistant"
        content = message.get("content")
        if not isinstance(content, list) or not content:
            return f"messages.{i}.content: must not be empty"
        for j, block in enumerate(content):
            if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _BLOCK_KEYS:
                return f"messages.{i}.content.{j}: a content block must have exactly one known member"
            if "text" in block and not str(block["text"]).strip():
                return f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank."
            tool_blocks = tool_blocks or "toolUse" in block or "toolResult" in block
    for j, block in enumerate(body.get("system") or []):
        if not isinstance(block, dict) or len(block) != 1 or next(iter(block)) not in _SYSTEM_KEYS:
            return f"system.{j}: a system block must have exactly one known member"
    if tool_blocks and "toolConfig" not in body:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    return None


class _Exchange:
    """One Converse request and the answer the reply makes of it."""

    def __init__(self, rec: Recorded, reply: Reply) -> None:
        body = rec.body
        self.rec = rec
        self.reply = reply
        self.messages: list[dict[str, Any]] = body["messages"]
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
        if reply.reasoning is not None:
            text = {"text": reply.reasoning, "signature": reply.signature}
            blocks.append({"reasoningContent": {"reasoningText": text}})
        text = reply.text if reply.text is not None or reply.tool_uses else self.echo()
        if text is not None:
            blocks.append({"text": text})
        for i, use in enumerate(reply.tool_uses):
            call_id = use.id or f"tooluse_fake{self.rec.seq}_{i}"
            blocks.append({"toolUse": {"toolUseId": call_id, "name": use.name, "input": dict(use.input)}})
        return blocks

    def usage(self, blocks: list[dict[str, Any]]) -> Usage:
        if self.reply.usage is not None:
            return self.reply.usage
        prompt = self.system + "".join(_text_of(m.get("content")) for m in self.messages)
        output = "".join(
            str(b.get("text") or b.get("toolUse") or b.get("reasoningContent") or "") for b in blocks
        )
        return Usage(input_tokens=_tokens(prompt) + 3 * len(self.messages), output_tokens=_tokens(output))

    def stop_reason(self) -> str:
        return self.reply.stop_reason or ("tool_use" if self.reply.tool_uses else "end_turn")

    def answer(self) -> bytes:
        blocks = self.blocks()
        return orjson.dumps(
            {
                "output": {"message": {"role": "assistant", "content": blocks}},
                "stopReason": self.stop_reason(),
                "usage": self.usage(blocks).to_json(),
                "metrics": {"latencyMs": 42},
            }
        )

    def frames(self) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """The stream's frames: (head, body, tail)."""
        blocks = self.blocks()
        body: list[bytes] = []
        for index, block in enumerate(blocks):
            body += _block_frames(index, block)
        tail = [event_frame("messageStop", {"stopReason": self.stop_reason()})]
        if not self.reply.omit_metadata:
            metadata = {"usage": self.usage(blocks).to_json(), "metrics": {"latencyMs": 42}}
            tail.append(event_frame("metadata", metadata))
        return [event_frame("messageStart", {"role": "assistant"})], body, tail


def _block_frames(index: int, block: dict[str, Any]) -> list[bytes]:
    frames: list[bytes] = []

    def delta(value: dict[str, Any]) -> None:
        frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": index, "delta": value}))

    if "text" in block:
        for piece in _pieces(block["text"], 5):
            delta({"text": piece})
    elif "reasoningContent" in block:
        reasoning = block["reasoningContent"]["reasoningText"]
        for piece in _pieces(reasoning["text"], 6):
            delta({"reasoningContent": {"text": piece}})
        delta({"reasoningContent": {"signature": reasoning["signature"]}})
    elif "toolUse" in block:
        use = block["toolUse"]
        start = {"toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}
        frames.append(event_frame("contentBlockStart", {"contentBlockIndex": index, "start": start}))
        arguments = orjson.dumps(use["input"]).decode() if use["input"] else ""
        for piece in _pieces(arguments, _ARGUMENT_FRAGMENT) if arguments else []:
            delta({"toolUse": {"input": piece}})
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": index}))
    return frames


class FakeBedrock(FakeUpstream):
    """``FakeUpstream``'s server and scripting, answering in Bedrock's Converse format.

    ``script(...)`` takes this module's ``Reply``; ``requests`` are ``Recorded`` (decoded path,
    headers, JSON body); ``signatures`` says how each accepted request was signed. ``match``
    scopes a reply to requests whose path (so the model id) contains it. Requests are signed
    with ``ACCESS_KEY_ID``/``SECRET_ACCESS_KEY`` (any session token, or none, as ``allow`` says).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, default: Reply | None = None) -> None:
        super().__init__(host, port, default=default or Reply.ok())  # type: ignore[arg-type]
        self._keys: dict[str, tuple[str, str | None]] = {ACCESS_KEY_ID: (SECRET_ACCESS_KEY, None)}
        self._signatures: list[Signed] = []

    def allow(self, access_key_id: str, secret_access_key: str, session_token: str | None = None) -> None:
        """Accept requests signed with this key (replacing what was known of it)."""
        self._keys[access_key_id] = (secret_access_key, session_token)

    @property
    def signatures(self) -> list[Signed]:
        with self._cond:
            return list(self._signatures)

    def reset(self, *, default: Reply | None = None) -> None:  # type: ignore[override]
        super().reset(default=default)  # type: ignore[arg-type]
        with self._cond:
            self._signatures.clear()
            self._keys = {ACCESS_KEY_ID: (SECRET_ACCESS_KEY, None)}

    async def _answer(self, request: web.Request, rec: Recorded) -> web.StreamResponse:
        route = _ROUTE.fullmatch(request.raw_path.split("?", 1)[0])
        if request.method != "POST" or route is None:
            return self._error(
                rec, "UnknownOperationException", f"no route for {request.method} {rec.path}", 404
            )
        try:
            signed = verify_signature(request, rec.raw, self._keys, rec.seq)
        except SignatureRefused as refused:
            status = 400 if refused.error_type == "IncompleteSignatureException" else 403
            return self._error(rec, refused.error_type, refused.message, status)
        with self._cond:
            self._signatures.append(signed)
        problem = validation_problem(rec.body)
        if problem is not None:
            return self._error(rec, "ValidationException", problem)
        reply: Reply = self._next_reply(rec)  # type: ignore[assignment]
        rec.reply = reply  # type: ignore[assignment]
        if reply.kind == "error":
            return self._error(rec, reply.error_type, reply.message, reply.status)
        exchange = _Exchange(rec, reply)
        if route.group(2) == "converse":
            return web.Response(body=exchange.answer(), headers=_headers("application/json"))
        return await self._stream(request, exchange)

    @staticmethod
    def model_id(rec: Recorded) -> str:
        """The model id the request named (``rec.path`` is decoded already)."""
        return rec.path.split("/model/", 1)[1].rsplit("/", 1)[0]

    def _error(self, rec: Recorded, error_type: str, message: str, status: int | None = None) -> web.Response:
        headers = _headers("application/json")
        headers["x-amzn-errortype"] = f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
        return web.Response(
            status=status or ERROR_STATUS.get(error_type, 400),
            body=orjson.dumps({"message": message}),
            headers=headers,
        )

    async def _stream(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        reply = exchange.reply
        head, body, tail = exchange.frames()
        response = web.StreamResponse(headers=_headers("application/vnd.amazon.eventstream"))
        await response.prepare(request)
        if reply.exception_after is not None:
            frames = [*head, *body[: reply.exception_after], exception_frame(reply.error_type, reply.message)]
            await response.write(b"".join(frames))
        elif reply.corrupt_after is not None:
            bad = bytearray(body[reply.corrupt_after])
            bad[-1] ^= 0xFF  # the message CRC no longer matches
            await response.write(b"".join([*head, *body[: reply.corrupt_after], bytes(bad), *tail]))
        elif reply.hang_after is not None:
            await response.write(b"".join(head + body[: reply.hang_after]))
            await asyncio.sleep(30)  # cancelled (and recorded) when the client disconnects
        elif reply.break_after is not None:
            await response.write(b"".join(head + body[: reply.break_after]))
            await asyncio.sleep(0.01)  # let the bytes leave before the connection goes
            _close(request)
        else:
            await response.write(b"".join(head + body + tail))
        await response.write_eof()
        return response


def _headers(content_type: str) -> dict[str, str]:
    return {"content-type": content_type, "x-amzn-requestid": str(uuid.uuid4())}
