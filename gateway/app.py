"""The REST transcoder: Azure/OpenAI chat-completions and embeddings JSON and SSE <-> the gRPC service.

It holds no business logic: it parses and type-checks JSON (``switchyard.codec``),
forwards auth headers as call metadata, and renders answers, errors and SSE.
Everything else (validation of values, routing, retries, fallbacks) happens in
the service, so REST and gRPC callers get the same behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.admin import admin_routes
from gateway.backend import BackendError, ChatBackend, Metadata
from gateway.console import console_routes
from gateway.errors import error_response, gateway_error, sse_error_event
from gateway.request_ids import RequestIdMiddleware, request_id_of
from switchyard import codec
from switchyard.config import Config
from switchyard.errors import DecodedError, error_body
from switchyard.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from switchyard.metrics import ProcessMetrics
from switchyard.open_streams import SHUTTING_DOWN_MESSAGE, SHUTTING_DOWN_TYPE, OpenStreams
from switchyard.request_id import HEADER as REQUEST_ID_HEADER
from switchyard.v1 import chat_pb2 as pb

# Request headers passed on to the service as gRPC call metadata (auth is enforced there).
# The request id goes too, but as RequestIdMiddleware checked (or made) it.
# W3C trace context goes too, so the service's spans join the caller's trace.
# The response cache's per-request controls go too; the service reads (and checks) them
# (service/plugins/cache/controls.py), so REST and gRPC callers get the same behaviour.
CACHE_HEADERS = (
    "x-bf-cache-key",
    "x-bf-cache-ttl",
    "x-bf-cache-threshold",
    "x-bf-cache-type",
    "x-bf-cache-no-store",
    "x-bf-cache-bypass",
    "cache-control",
)
FORWARDED_HEADERS = ("authorization", "api-key", "x-bf-vk", "traceparent", "tracestate", *CACHE_HEADERS)
_FORWARDED = frozenset(name.encode() for name in FORWARDED_HEADERS)
# Turns mid-stream failover on or off for one request (resilience.midstream is the default).
MIDSTREAM_HEADER = "x-switchyard-midstream-failover"
_MIDSTREAM = MIDSTREAM_HEADER.encode()
T = TypeVar("T")
log = logging.getLogger("switchyard.gateway")
_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class _TooLarge(Exception):
    pass


class _ClientLeft(Exception):
    pass


class _Answered(Exception):
    """The request is answered before it reaches the service (a bad or oversized body)."""

    def __init__(self, response: Response) -> None:
        self.response = response


class _AsgiEndpoint:
    """Makes Starlette treat a plain ``(scope, receive, send)`` coroutine as an ASGI endpoint."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def create_app(
    config: Config, backend_factory: Callable[[], ChatBackend], metrics: ProcessMetrics | None = None
) -> Starlette:
    """``backend_factory`` runs inside the app's lifespan, so a gRPC channel is made in the running loop.

    ``metrics``: the process's registry, served at ``GET /metrics`` (None: no such route)."""
    limit = config.server.max_body_bytes
    timeout_s = config.timeouts.total_s
    state: dict[str, ChatBackend] = {}
    streams = OpenStreams()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["backend"] = backend_factory()
        try:
            yield
        finally:
            await state["backend"].aclose()

    async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
        # A bare ASGI endpoint: Starlette still routes to it, but the hot path skips
        # building Request/Response objects and parsing every header.
        response = await _chat(scope, receive)
        await response(scope, receive, send)

    async def _json_body(scope: Scope, receive: Receive) -> Any:
        """The request body, parsed; raises _Answered with the 413/400/499 to send instead."""
        try:
            raw = await _read_body(scope, receive, limit)
        except _TooLarge:
            raise _Answered(
                gateway_error(
                    413,
                    "request_too_large",
                    f"request body exceeds {limit} bytes",
                    event_id=request_id_of(scope),
                )
            ) from None
        except _ClientLeft:
            raise _Answered(Response(status_code=499)) from None
        try:
            return codec.loads(raw)
        except ValueError as exc:
            raise _Answered(
                gateway_error(
                    400,
                    "invalid_request_error",
                    f"request body is not valid JSON: {exc}",
                    event_id=request_id_of(scope),
                )
            ) from None

    async def _chat(scope: Scope, receive: Receive) -> Response:
        request_id = request_id_of(scope)
        try:
            data = await _json_body(scope, receive)
        except _Answered as early:
            return early.response
        headers, api_version, failover = _request_meta(scope)
        try:
            chat_request = codec.request_from_dict(
                data, deployment_id=scope["path_params"].get("deployment_id", ""), api_version=api_version
            )
            if failover is not None:
                chat_request.midstream_failover = _switch(failover, MIDSTREAM_HEADER)
        except codec.CodecError as exc:
            return gateway_error(
                400, "invalid_request_error", exc.message, param=exc.param, event_id=request_id
            )

        backend = state["backend"]
        if chat_request.stream:
            return await _stream(backend, chat_request, headers, receive, streams)
        return await _unary(receive, backend.create(chat_request, headers, timeout_s), codec.response_to_dict)

    async def embeddings_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        response = await _embeddings(scope, receive)
        await response(scope, receive, send)

    async def _embeddings(scope: Scope, receive: Receive) -> Response:
        try:
            data = await _json_body(scope, receive)
        except _Answered as early:
            return early.response
        headers, api_version, _ = _request_meta(scope)
        try:
            request = codec.embeddings_request_from_dict(
                data, deployment_id=scope["path_params"].get("deployment_id", ""), api_version=api_version
            )
        except codec.CodecError as exc:
            return gateway_error(
                400, "invalid_request_error", exc.message, param=exc.param, event_id=request_id_of(scope)
            )
        answer = state["backend"].embed(request, headers, timeout_s)
        return await _unary(receive, answer, codec.embeddings_response_to_dict)

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(_request: Request) -> Response:
        if await state["backend"].ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "service unavailable"}, status_code=503)

    async def metrics_text(_request: Request) -> Response:
        assert metrics is not None
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    chat = _AsgiEndpoint(chat_completions)
    embed = _AsgiEndpoint(embeddings_endpoint)
    routes = [
        Route(
            "/openai/openai/deployments/{deployment_id:path}/chat/completions",
            chat,
            methods=["POST"],
        ),
        Route("/openai/deployments/{deployment_id:path}/chat/completions", chat, methods=["POST"]),
        Route("/openai/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/openai/openai/deployments/{deployment_id:path}/embeddings", embed, methods=["POST"]),
        Route("/openai/deployments/{deployment_id:path}/embeddings", embed, methods=["POST"]),
        Route("/openai/v1/embeddings", embed, methods=["POST"]),
        Route("/v1/embeddings", embed, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        *([Route("/metrics", metrics_text, methods=["GET"])] if metrics is not None else []),
        *admin_routes(lambda: state["backend"], lambda request: _request_meta(request.scope)[0]),
        *console_routes(),  # the web console: static files, a client of /api/ like the CLI
    ]

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request_error")
        return gateway_error(exc.status_code, kind, str(exc.detail))

    async def server_error(_request: Request, exc: Exception) -> Response:
        # Reached only through a bug: still answer in the contract's shape, and keep the trace in the log.
        log.error("unhandled error in the gateway", exc_info=exc)
        return gateway_error(500, "internal_error", "internal error in the gateway")

    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware)],
        lifespan=lifespan,
        exception_handlers={404: http_error, 405: http_error, Exception: server_error},
    )
    app.state.open_streams = streams  # the runner ends them when a shutdown's grace is over
    return app


async def _stream(
    backend: ChatBackend,
    request: pb.ChatCompletionRequest,
    metadata: Metadata,
    receive: Receive,
    streams: OpenStreams,
) -> Response:
    chunks = backend.create_stream(request, metadata, None)
    # Wait for the first chunk before answering, so an error that happens before
    # any output still gets its real HTTP status instead of a 200 stream. The wait
    # can be long (reasoning models), so a client leaving meanwhile cancels it.
    streams.track(chunks)
    try:
        first = await _unless_client_leaves(receive, anext(chunks))
    except StopAsyncIteration:
        first = None
    except BackendError as err:
        return error_response(err.error)
    except _ClientLeft:
        await chunks.aclose()  # type: ignore[attr-defined]
        return Response(status_code=499)
    except asyncio.CancelledError:
        if not streams.ended_by_shutdown(chunks):
            raise
        await chunks.aclose()  # type: ignore[attr-defined]
        return error_response(_shutting_down())
    finally:
        streams.untrack(chunks)

    async def events() -> AsyncIterator[bytes]:
        streams.track(chunks)
        try:
            if first is not None:
                yield _sse(first)
                async for chunk in chunks:
                    yield _sse(chunk)
            yield _DONE
        except BackendError as err:
            yield sse_error_event(err.error)
        except asyncio.CancelledError:
            if not streams.ended_by_shutdown(chunks):
                raise
            yield sse_error_event(_shutting_down())
        finally:
            streams.untrack(chunks)
            await chunks.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)


def _shutting_down() -> DecodedError:
    body = error_body(503, SHUTTING_DOWN_TYPE, SHUTTING_DOWN_MESSAGE)
    return DecodedError(http_status=503, body=body, retry_after_s=None)


async def _unary(receive: Receive, call: Awaitable[T], to_dict: Callable[[T], Any]) -> Response:
    """A unary answer as JSON; the backend's error in the contract's shape; 499 if the client left."""
    try:
        answer = await _unless_client_leaves(receive, call)
    except BackendError as err:
        return error_response(err.error)
    except _ClientLeft:
        return Response(status_code=499)
    return Response(orjson.dumps(to_dict(answer)), media_type="application/json")


async def _unless_client_leaves(receive: Receive, call: Awaitable[T]) -> T:
    """Await ``call``, cancelling it (and so the upstream request) if the client disconnects.

    Starlette only notices a disconnect while streaming; a long unary generation
    would otherwise run on, and be paid for, after its caller has gone. One watcher
    task per request, which cancels this one, is the cheapest way to notice.
    """
    current = asyncio.current_task()
    assert current is not None
    state = {"finished": False, "left": False}

    def on_disconnect(watcher: asyncio.Future[None]) -> None:
        if not state["finished"] and not watcher.cancelled():
            state["left"] = True
            current.cancel()

    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    watcher.add_done_callback(on_disconnect)
    try:
        return await call
    except asyncio.CancelledError:
        if state["left"] and current.uncancel() == 0:
            raise _ClientLeft from None
        raise
    finally:
        state["finished"] = True
        watcher.cancel()


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _sse(chunk: pb.ChatCompletionChunk) -> bytes:
    return b"data: " + orjson.dumps(codec.response_to_dict(chunk)) + b"\n\n"


def _request_meta(scope: Scope) -> tuple[Metadata, str | None, bytes | None]:
    """The headers forwarded as call metadata, the ``api-version`` query parameter, and the
    mid-stream failover header (the request's ``midstream_failover`` field)."""
    metadata = []
    failover = None
    for name, value in scope["headers"]:
        if name in _FORWARDED:
            metadata.append((name.decode("latin-1"), value.decode("latin-1")))
        elif name == _MIDSTREAM:
            failover = value
    request_id = request_id_of(scope)
    if request_id is not None:
        metadata.append((REQUEST_ID_HEADER, request_id))
    api_version = None
    query: bytes = scope.get("query_string", b"")
    if query:
        api_version = parse_qs(query.decode("latin-1")).get("api-version", [None])[0]
    return metadata, api_version, failover


def _switch(value: bytes, header: str) -> bool:
    text = value.decode("latin-1").strip().lower()
    if text in ("true", "1", "on", "yes"):
        return True
    if text in ("false", "0", "off", "no"):
        return False
    raise codec.CodecError(header, f"header {header} must be true or false, not {text[:40]!r}")


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise _TooLarge
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientLeft
        piece = message.get("body", b"")
        size += len(piece)
        if size > limit:
            raise _TooLarge
        parts.append(piece)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)
