"""The provider seam: the canonical request in, the canonical answer out.

Inside the service the proto messages are the one model; a provider is the only code that
knows its upstream's dialect (URL, auth, body, stream framing, how a stream ends, error
payloads and their failure class, usage accounting). Its whole surface is four methods:

- ``prepare(request, target, stream=…)``: the request in the provider's wire format, built
  once per target so every retry and key reuses it;
- ``send(prepared, key)``: one attempt with one key -> ``pb.ChatCompletionResponse``;
- ``stream(prepared, key)``: one attempt -> ``pb.ChatCompletionChunk``s;
- ``aclose()``.

Everything raises :class:`~service.errors.GatewayError` (mostly ``UpstreamError``), classed
by ``FailureClass`` so the engine can retry and fall back without knowing the dialect.

:class:`HttpProvider` holds the HTTP work every dialect shares (one pooled transport, the
request, error bodies, the stream loop, tolerance of the odd malformed stream payload); a
dialect fills in a few hooks. Streams are SSE unless a dialect reads its own framing
(``events``: Bedrock's binary event stream). See ``openai_wire.py``, ``anthropic/``, ``bedrock/``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import httpx
import orjson

from service.errors import FailureClass, GatewayError, UpstreamError
from service.providers.sse import iter_sse
from service.providers.transport import (
    map_transport_errors,
    pooled_transport,
    read_capped,
    timeout_extensions,
)
from service.routing import Target
from service.stats import ServiceStats
from switchyard.config import KeyConfig, ProviderConfig, TimeoutConfig
from switchyard.request_id import current_request_id
from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import embeddings_pb2 as epb

log = logging.getLogger("switchyard.service")

# Headers for the upstream request of the attempt the current task is making, besides the
# dialect's own: the tracing plugin puts the attempt's W3C ``traceparent`` here.
upstream_headers: ContextVar[Mapping[str, str] | None] = ContextVar(
    "switchyard_upstream_headers", default=None
)

# Bad stream payloads in a row that end a stream: one or two is noise, three is a broken upstream.
MAX_BAD_IN_A_ROW = 3


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What every provider is built with, besides its own config."""

    timeouts: TimeoutConfig = field(default_factory=TimeoutConfig)
    stats: ServiceStats = field(default_factory=ServiceStats)
    # Put the upstream request and response bodies in extra_fields (logging.raw_request).
    keep_raw: bool = False
    # Replaces the pooled transport (tests pass an ``httpx.MockTransport``).
    transport: httpx.AsyncBaseTransport | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request in one provider's wire format, for one target, reused by every attempt."""

    target: Target
    body: bytes
    stream: bool
    caller_api_version: str | None = None
    # Dialect details the provider wants back at send time (e.g. whether usage was asked for).
    extra: Mapping[str, Any] = field(default_factory=dict)


class StreamDecoder(Protocol):
    """One stream's state in a dialect: what each event means, and when the stream is over.

    :meth:`HttpProvider.stream` runs the loop every dialect shares around it: malformed payloads
    skipped (``PayloadGuard``), the end marker, and a stream that stops without one.
    """

    @property
    def end_marker(self) -> str:
        """Named in the error when the stream stops before it ("[DONE]")."""
        ...

    @property
    def ended(self) -> bool:
        """The end marker has come."""
        ...

    @property
    def complete(self) -> bool:
        """The answer is whole (final chunk and usage), end marker or not."""
        ...

    def feed(self, event: bytes, data: bytes) -> Sequence[pb.ChatCompletionChunk]:
        """The chunks this event makes (the end marker may carry the last ones: Bedrock's
        ``metadata`` has the usage). A malformed payload raises one of ``MALFORMED``; an error
        the upstream sends in the stream raises GatewayError."""
        ...


# What a decoder raises for a payload it cannot read (CodecError and JSON errors are ValueErrors).
MALFORMED = (KeyError, TypeError, ValueError, AttributeError)


class Provider(Protocol):
    name: str
    config: ProviderConfig

    def prepare(self, request: pb.ChatCompletionRequest, target: Target, *, stream: bool) -> Prepared:
        """The request in this provider's wire format; raises GatewayError (400) for what it cannot send."""
        ...

    async def send(self, prepared: Prepared, key: KeyConfig) -> pb.ChatCompletionResponse: ...

    def stream(self, prepared: Prepared, key: KeyConfig) -> AsyncIterator[pb.ChatCompletionChunk]: ...

    async def aclose(self) -> None: ...

    def accepts_prefill(self, target: Target) -> bool:
        """Does ``target`` continue a trailing assistant message (a prefill) rather than answer
        after it? Mid-stream failover continues a broken answer only on targets that do."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """The embeddings capability, which a provider declares by having these two methods
    (``embeddings.py``'s ``OpenAIEmbeddings`` gives them to the OpenAI dialect's providers).
    A provider without them serves no embeddings: a clear 400 as a primary target, a skipped
    fallback otherwise (``service/embeddings/``)."""

    name: str
    config: ProviderConfig

    def prepare_embeddings(self, request: epb.EmbeddingsRequest, target: Target) -> Prepared:
        """The request in this provider's wire format; raises GatewayError (400) for what it cannot send."""
        ...

    async def embed(self, prepared: Prepared, key: KeyConfig) -> epb.EmbeddingsResponse:
        """One attempt with one key -> the canonical answer, or a classed GatewayError."""
        ...


class HttpProvider:
    """The HTTP plumbing shared by every dialect. Subclasses implement ``prepare`` and the hooks
    ``url``, ``headers``, ``response_from``, ``stream_decoder`` and ``error_from`` (and
    ``events`` when their stream is not SSE)."""

    # The Accept header of a stream request; None sends none (AWS's own SDK sends none to Bedrock).
    stream_accept: str | None = "text/event-stream"

    def __init__(self, config: ProviderConfig, context: ProviderContext) -> None:
        self.name = config.name
        self.config = config
        self._stats = context.stats
        self._keep_raw = context.keep_raw
        self._transport = context.transport or pooled_transport(config.max_connections)
        self._extensions = timeout_extensions(config.timeouts)
        # A deployment target's own limits, by value: few distinct ones exist.
        self._target_extensions: dict[TimeoutConfig, dict[str, Any]] = {}
        # Parsing a URL is a noticeable share of a request's cost and a gateway sees few
        # distinct ones, so parsed URLs are kept, keyed by their full text: whatever decides
        # the URL (model, stream, api-version, key), a cached one is never the wrong one.
        self._urls: dict[str, httpx.URL] = {}

    # Does this dialect continue a trailing assistant message? Anthropic's does; OpenAI's answers
    # after it instead. ``assistant_prefill`` in a provider's config overrides it.
    continues_prefill = False

    def accepts_prefill(self, target: Target) -> bool:
        own = self.config.assistant_prefill
        return self.continues_prefill if own is None else own

    # -- hooks for the dialects

    def prepare(self, request: pb.ChatCompletionRequest, target: Target, *, stream: bool) -> Prepared:
        raise NotImplementedError

    def url(self, prepared: Prepared, key: KeyConfig) -> str:
        raise NotImplementedError

    def headers(self, prepared: Prepared, key: KeyConfig) -> dict[str, str]:
        raise NotImplementedError

    def response_from(self, data: dict[str, Any], prepared: Prepared) -> pb.ChatCompletionResponse:
        """The upstream's JSON answer -> the canonical response (raise GatewayError if unusable)."""
        raise NotImplementedError

    def stream_decoder(self, prepared: Prepared) -> StreamDecoder:
        """A fresh decoder for one stream of this dialect."""
        raise NotImplementedError

    def error_from(
        self, status: int, payload: object, headers: httpx.Headers, prepared: Prepared
    ) -> UpstreamError:
        """An upstream error response (its parsed JSON, or ``{"message": text}``) -> UpstreamError."""
        raise NotImplementedError

    def events(self, response: httpx.Response, prepared: Prepared) -> AsyncIterator[tuple[bytes, bytes]]:
        """A stream's ``(event name, payload)`` pairs, for ``stream_decoder``'s ``feed``: SSE by
        default. Reading errors must come out mapped (``map_transport_errors(mid_stream=True)``);
        an error the framing itself signals may raise GatewayError."""
        model = prepared.target.model
        return iter_sse(
            response.aiter_bytes(), lambda: map_transport_errors(self.name, model, mid_stream=True)
        )

    # -- the shared work

    async def send(self, prepared: Prepared, key: KeyConfig) -> pb.ChatCompletionResponse:
        # `post` written out: as calls, it and `json_object` cost the chat hot path ~2,900
        # instructions a unary call (callgrind on bench.engine_cpu: 628.4k against 625.5k), ~0.5 %,
        # nearly all of it the extra coroutine; `json_object` is a plain call.
        with map_transport_errors(self.name, prepared.target.model):
            response = await self._transport.handle_async_request(
                self._request(prepared, key, self.url(prepared, key))
            )
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        if response.status_code >= 400:
            raise self._error(response.status_code, content, response.headers, prepared)
        answer = self.response_from(self.json_object(prepared, content), prepared)
        if self._keep_raw:
            extra = answer.extra_fields
            extra.raw_request_json = prepared.body.decode()
            extra.raw_response_json = content.decode()
        return answer

    async def post(self, prepared: Prepared, key: KeyConfig, url: str) -> bytes:
        """One unary exchange: ``prepared``'s body to ``url`` -> the answer's body, or the dialect's
        error for an error status (raised). For the embeddings capability (``send`` has it inline)."""
        with map_transport_errors(self.name, prepared.target.model):
            response = await self._transport.handle_async_request(self._request(prepared, key, url))
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        if response.status_code >= 400:
            raise self._error(response.status_code, content, response.headers, prepared)
        return content

    def json_object(self, prepared: Prepared, content: bytes) -> dict[str, Any]:
        """An answer's body as a JSON object, or 502 ``upstream_bad_response``."""
        try:
            data = orjson.loads(content)
            if not isinstance(data, dict):
                raise TypeError("not an object")
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise self.bad_response(prepared, f"not a JSON object ({exc})") from None
        return data

    async def stream(self, prepared: Prepared, key: KeyConfig) -> AsyncIterator[pb.ChatCompletionChunk]:
        model = prepared.target.model
        with map_transport_errors(self.name, model):
            response = await self._transport.handle_async_request(
                self._request(prepared, key, self.url(prepared, key))
            )
        try:
            if response.status_code >= 400:
                with map_transport_errors(self.name, model):
                    content = await read_capped(response)
                raise self._error(response.status_code, content, response.headers, prepared)
            events = self.events(response, prepared)
            decoder = self.stream_decoder(prepared)
            guard = PayloadGuard(self, prepared)
            try:
                async for name, data in events:
                    try:
                        chunks = decoder.feed(name, data)
                    except MALFORMED as exc:
                        guard.bad(f"{type(exc).__name__}: {exc}")
                        continue
                    if decoder.ended:
                        guard.check_end()  # the end marker alone is no answer
                    else:
                        guard.good()
                    for chunk in chunks:
                        yield chunk
                    if decoder.ended:
                        return
                guard.check_end()
                raise self.stream_broken(prepared, f"the upstream stream ended before {decoder.end_marker}")
            except GatewayError:
                guard.check_end()  # nothing valid came: that is the failure to report
                if decoder.complete:
                    # The final chunk and the usage arrived; only the end marker did not. The
                    # answer is whole and accounted for, so it ends as a success.
                    return
                raise
            finally:
                await events.aclose()  # type: ignore[attr-defined]
        finally:
            # Closing before the body is read drops the connection, which is what
            # cancels the generation upstream when our caller goes away.
            await response.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    # -- helpers for the dialects

    def bad_response(self, prepared: Prepared, why: str) -> GatewayError:
        return GatewayError(
            502,
            "upstream_bad_response",
            f"the upstream answered with something unusable: {why}",
            failure=FailureClass.TRANSIENT,
            provider=self.name,
            model=prepared.target.model,
        )

    def translated(
        self, prepared: Prepared, expected: str, translate: Callable[[], pb.ChatCompletionResponse]
    ) -> pb.ChatCompletionResponse:
        """``translate()``'s answer, or 502 ``upstream_bad_response`` saying the upstream's JSON was
        not ``expected`` ("an Anthropic message") when a translator finds it malformed."""
        try:
            return translate()
        except (KeyError, TypeError, ValueError) as exc:
            raise self.bad_response(prepared, f"not {expected} ({type(exc).__name__}: {exc})") from None

    def stream_broken(self, prepared: Prepared, why: str) -> UpstreamError:
        err = UpstreamError(
            502,
            "upstream_stream_broken",
            why,
            failure=FailureClass.TRANSIENT,
            provider=self.name,
            model=prepared.target.model,
        )
        err.from_upstream = False
        return err

    # -- internals

    def _request(self, prepared: Prepared, key: KeyConfig, text: str) -> httpx.Request:
        url = self._urls.get(text)
        if url is None:
            if len(self._urls) >= 4096:
                self._urls.clear()
            url = self._urls[text] = httpx.URL(text)
        headers = self.headers(prepared, key)
        extra = upstream_headers.get()
        if extra:
            headers.update(extra)
        # setdefault: a dialect's own value stands (a request signature may cover it).
        headers.setdefault("content-type", "application/json")
        if prepared.stream and self.stream_accept:
            headers.setdefault("accept", self.stream_accept)
        limits = prepared.target.timeouts
        extensions = self._extensions
        if limits is not None:
            extensions = self._target_extensions.get(limits) or self._target_extensions.setdefault(
                limits, timeout_extensions(limits)
            )
        return httpx.Request("POST", url, content=prepared.body, headers=headers, extensions=extensions)

    def _error(
        self, status: int, content: bytes, headers: httpx.Headers, prepared: Prepared
    ) -> UpstreamError:
        try:
            payload: object = orjson.loads(content)
        except orjson.JSONDecodeError:
            payload = {"message": content[:500].decode("utf-8", "replace") or None}
        return self.error_from(status, payload, headers, prepared)


class PayloadGuard:
    """Tolerance for the odd malformed stream payload, the same for every dialect.

    Real upstreams (and the proxies in front of them) sometimes garble one event of a good
    stream. Dropping the whole answer for it is worse than skipping it: one bad payload is
    skipped, logged and counted (``ServiceStats.malformed_stream_chunks``); a run of them, or a
    stream with nothing valid in it, fails as ``502 upstream_bad_response``.
    """

    __slots__ = ("_bad_in_a_row", "_prepared", "_provider", "skipped", "valid")

    def __init__(self, provider: HttpProvider, prepared: Prepared) -> None:
        self._provider = provider
        self._prepared = prepared
        self.valid = 0
        self.skipped = 0
        self._bad_in_a_row = 0

    def good(self) -> None:
        self.valid += 1
        self._bad_in_a_row = 0

    def bad(self, why: str) -> None:
        """Note a malformed payload; raises once there have been too many in a row."""
        self.skipped += 1
        self._bad_in_a_row += 1
        self._provider._stats.malformed_stream_chunks += 1
        log.warning(
            "skipped a malformed stream payload from %s (%s) request_id=%s",
            self._prepared.target.label,
            why[:200],
            current_request_id.get(),
        )
        if self._bad_in_a_row >= MAX_BAD_IN_A_ROW:
            raise self._provider.bad_response(
                self._prepared, f"{self._bad_in_a_row} malformed stream payloads in a row"
            )

    def check_end(self) -> None:
        """At the end of a stream: nothing valid at all is a failure."""
        if not self.valid and self.skipped:
            raise self._provider.bad_response(
                self._prepared, f"the stream carried no valid payload ({self.skipped} malformed)"
            )
