"""The chat engine: one request in, one answer (or a stream of chunks) out.

It validates, plans the route, and runs each target through retries and
fallbacks (``resilience``), calling providers through their narrow adapter. It
knows nothing about gRPC: ``servicer.py`` adapts it, so the in-process gateway
and network gRPC callers share every line of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from service.counters import Reservation
from service.errors import FailureClass, GatewayError, invalid_request
from service.governance import OPEN, Admission, Governance, Refused
from service.providers import Provider, UpstreamRequest
from service.records import LogEntry
from service.resilience import RetryPolicy, call_target, call_with_fallbacks
from service.routing import Router, Target
from service.stats import ServiceStats
from service.stream_parser import StreamParser
from service.validation import find_bad_json, validate_request
from switchyard import codec
from switchyard.config import Config
from switchyard.request_id import current_request_id, request_id_from_metadata
from switchyard.v1 import chat_pb2 as pb

log = logging.getLogger("switchyard.service")
T = TypeVar("T")

REQUEST_TYPE = "chat_completion"
STREAM_REQUEST_TYPE = "chat_completion_stream"


class ChatError(Exception):
    """A request failed: ``body`` is the contract's error body, ready to send."""

    def __init__(self, body: pb.ErrorBody, retry_after_s: float | None = None) -> None:
        super().__init__(body.error.message)
        self.body = body
        self.retry_after_s = retry_after_s


Metadata = Iterable[tuple[str, str | bytes]]


@dataclass(slots=True, eq=False)  # compared and hashed by identity
class _Call:
    """Per-request state."""

    request: pb.ChatCompletionRequest
    request_type: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)
    attempts: list[pb.Attempt] = field(default_factory=list)
    admission: Admission = OPEN
    reservation: Reservation | None = None
    target: Target | None = None  # the target that answered
    usage: pb.Usage | None = None
    cost: float | None = None
    status: int = 200
    error_type: str | None = None
    completion: list[str] | None = None  # content for the request log, when it keeps content
    # Set when the server ends this stream because its shutdown grace ran out.
    shutting_down: bool = False

    @property
    def model_requested(self) -> str:
        return self.request.deployment_id or self.request.model

    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def fail(self, err: GatewayError) -> ChatError:
        self.status, self.error_type = err.status, err.type
        body = err.to_body(
            model_requested=self.model_requested,
            request_type=self.request_type,
            attempts=self.attempts,
            event_id=self.request_id,
        )
        return ChatError(body, err.retry_after_s)


class ChatEngine:
    def __init__(
        self,
        config: Config,
        providers: Mapping[str, Provider],
        governance: Governance,
        router: Router | None = None,
        stats: ServiceStats | None = None,
    ) -> None:
        self._config = config
        self._providers = providers
        self._governance = governance
        self._router = router or Router(config)
        self._retry = RetryPolicy(config.retries)
        self._raw = config.logging.raw_request
        self.stats = stats or ServiceStats()
        # Streams being served, with the task that reads each: at the end of a shutdown
        # grace they are ended with a 503 error rather than cut mid-body.
        self._open_streams: dict[_Call, asyncio.Task[Any] | None] = {}
        self._no_open_streams = asyncio.Event()
        self._no_open_streams.set()

    def end_open_streams(self) -> int:
        """End every stream still open with a 503 ``server_shutting_down`` error; return how many."""
        for call, task in list(self._open_streams.items()):
            if task is not None and not call.shutting_down:
                call.shutting_down = True
                task.cancel()
        return len(self._open_streams)

    @property
    def open_streams(self) -> int:
        return len(self._open_streams)

    async def streams_closed(self) -> None:
        """Return once no stream is open."""
        await self._no_open_streams.wait()

    # ---------------------------------------------------------------- unary

    async def create(
        self,
        request: pb.ChatCompletionRequest,
        timeout_s: float | None = None,
        metadata: Metadata = (),
        request_id: str | None = None,
    ) -> pb.ChatCompletionResponse:
        call = _Call(request, REQUEST_TYPE, request_id or request_id_from_metadata(metadata))
        current_request_id.set(call.request_id)
        try:
            async with asyncio.timeout(self._budget(timeout_s)):
                return await self._create(call, metadata)
        except GatewayError as err:
            raise call.fail(err) from None
        except TimeoutError:
            raise call.fail(_deadline_error()) from None
        except asyncio.CancelledError:
            call.status, call.error_type = 499, "cancelled"
            raise
        except Exception:
            call.status, call.error_type = 500, "internal_error"  # a bug: the caller gets a 500 too
            raise
        finally:
            await self._finish(call)

    async def _create(self, call: _Call, metadata: Metadata) -> pb.ChatCompletionResponse:
        async def send(
            provider: Provider, upstream: UpstreamRequest, target: Target
        ) -> pb.ChatCompletionResponse:
            raw = await provider.chat(upstream)
            response = _from_upstream(_parse(raw, target), pb.ChatCompletionResponse, target)
            if response.HasField("usage"):
                self._account(call, response.usage, target, response.model)
            extra = response.extra_fields
            self._fill_extra(extra, call, target)
            if self._raw:
                extra.raw_request_json = upstream.body.decode()
                extra.raw_response_json = raw.decode()
            if call.completion is not None:
                call.completion.extend(c.message.text for c in response.choices)
            return response

        return await self._serve(call, metadata, send)

    async def _serve(
        self,
        call: _Call,
        metadata: Metadata,
        send: Callable[[Provider, UpstreamRequest, Target], Awaitable[T]],
    ) -> T:
        """Admit, validate and route ``call``, then ``send`` it through retries and fallbacks."""
        governance = self._governance
        try:
            call.admission = await governance.admit(metadata)
        except Refused as err:
            if err.admission is not None:  # the key was identified: log the refusal under it
                call.admission = err.admission
            raise
        request = call.request
        validate_request(request)
        if governance.include_content:
            call.completion = []
        stream = call.request_type == STREAM_REQUEST_TYPE
        with _unserialisable(request):
            body = self._base_body(request, stream=stream)
        plan = governance.check_plan(
            call.admission, self._router.plan(call.model_requested, request.fallbacks)
        )
        api_version = request.api_version or None

        async def try_target(target: Target) -> T:
            provider = self._provider(target)
            with _unserialisable(request):
                payload = self._payload(provider, body, target)
            reservation = await governance.reserve(call.admission, target, request, len(payload))

            async def attempt(key_index: int) -> T:
                key = provider.config.keys[key_index]
                upstream = UpstreamRequest(target.model, payload, key, api_version, stream=stream)
                return await send(provider, upstream, target)

            try:
                result = await call_target(
                    target, provider.config, self._router, self._retry, attempt, call.attempts
                )
            except BaseException:
                if reservation is not None:  # nothing was spent on this target: release it
                    try:
                        await governance.settle(call.admission, reservation, None, 0)
                    except Exception:  # the target's own error is the one the caller must see
                        log.exception("releasing a budget reservation failed")
                raise
            call.reservation = reservation
            call.target = target
            return result

        return await call_with_fallbacks(plan, try_target, call.attempts)

    def _account(self, call: _Call, usage: pb.Usage, target: Target, served_model: str) -> None:
        call.usage = usage
        call.cost = self._governance.price_usage(usage, target, served_model)

    async def _finish(self, call: _Call) -> None:
        """Settle the budget and write the request-log entry. Never raises: the answer is already made."""
        governance = self._governance
        usage = call.usage
        try:
            await governance.settle(
                call.admission, call.reservation, call.cost, usage.total_tokens if usage else 0
            )
        except Exception:
            log.exception("settling the budget of a request failed")
        if not governance.keeps_logs:
            return
        target = call.target
        content = None
        if call.completion is not None:
            messages = codec.request_to_dict(call.request).get("messages", [])
            content = orjson.dumps({"messages": messages, "completion": "".join(call.completion)}).decode()
        governance.record(
            LogEntry(
                id=uuid.uuid4().hex,
                ts=call.started_at,
                request_type=call.request_type,
                model_requested=call.model_requested,
                status=call.status,
                latency_ms=call.latency_ms(),
                key_id=call.admission.key_id,
                team_id=call.admission.team_id,
                provider=target.provider if target else "",
                model_served=target.model if target else "",
                error_type=call.error_type,
                attempts_json=_attempts_json(call.attempts),
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                total_tokens=usage.total_tokens if usage else 0,
                cost=call.cost,
                content_json=content,
                request_id=call.request_id,
            )
        )

    # ---------------------------------------------------------------- streaming

    async def create_stream(
        self,
        request: pb.ChatCompletionRequest,
        timeout_s: float | None = None,
        metadata: Metadata = (),
        request_id: str | None = None,
    ) -> AsyncIterator[pb.ChatCompletionChunk]:
        """Chunks as they arrive. Fallback is possible until the first content chunk is yielded."""
        call = _Call(request, STREAM_REQUEST_TYPE, request_id or request_id_from_metadata(metadata))
        current_request_id.set(call.request_id)
        chunks = self._stream(call, timeout_s, metadata)
        open_streams = self._open_streams
        try:
            # The reading task can change (the gateway reads the first chunk in the request's
            # task, the rest in the response's), so it is noted again after every chunk.
            open_streams[call] = asyncio.current_task()
            self._no_open_streams.clear()
            async for chunk in chunks:
                yield chunk
                open_streams[call] = asyncio.current_task()
        except asyncio.CancelledError:
            if call.shutting_down:
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # our own cancel, turned into an answer: not a cancellation
                self.stats.streams_ended_at_shutdown += 1
                raise call.fail(_shutdown_error()) from None
            call.status, call.error_type = 499, "cancelled"
            raise
        except GeneratorExit:
            # The consumer stopped reading (the client went away): note it, then close as asked.
            if call.status == 200:
                call.status, call.error_type = 499, "cancelled"
            raise
        except ChatError:
            raise
        except Exception:
            call.status, call.error_type = 500, "internal_error"  # a bug: the caller gets a 500 too
            raise
        finally:
            open_streams.pop(call, None)
            if not open_streams:
                self._no_open_streams.set()
            await chunks.aclose()  # type: ignore[attr-defined]
            await self._finish(call)

    async def _stream(
        self, call: _Call, timeout_s: float | None, metadata: Metadata
    ) -> AsyncIterator[pb.ChatCompletionChunk]:
        request = call.request
        try:
            async with asyncio.timeout(self._budget(timeout_s)) as budget:
                target, held, rest = await self._open_stream(call, metadata)
                # Committed: the total budget bounded the search for a working
                # upstream; from here on the read timeout governs stalls.
                budget.reschedule(None)
        except GatewayError as err:
            raise call.fail(err) from None
        except TimeoutError:
            raise call.fail(_deadline_error()) from None

        want_usage = request.stream_options.include_usage if request.HasField("stream_options") else False
        index = 0
        finished = False  # a choice has sent its finish_reason
        chunks = _chunks(held, rest)
        try:
            async for chunk in chunks:
                if not finished:
                    finished = any(choice.finish_reason for choice in chunk.choices)
                out = self._chunk(chunk, call, target, want_usage, index)
                if out is not None:
                    index += 1
                    yield out
        except GatewayError as err:
            if finished and call.usage is not None:
                # The final chunk and the usage arrived; only the end marker ([DONE]) did not.
                # The answer is whole and accounted for, so the caller gets it as a success.
                log.info(
                    "stream from %s ended without its end marker after the final chunk (%s); "
                    "treated as complete request_id=%s",
                    target.label,
                    err.type,
                    call.request_id,
                )
                return
            log.warning(
                "stream from %s failed after %d chunks: %s request_id=%s",
                target.label,
                index,
                err.type,
                call.request_id,
            )
            raise call.fail(err) from None
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            await rest.aclose()  # type: ignore[attr-defined]

    def _chunk(
        self, chunk: pb.ChatCompletionChunk, call: _Call, target: Target, want_usage: bool, index: int
    ) -> pb.ChatCompletionChunk | None:
        if chunk.HasField("usage"):
            self._account(call, chunk.usage, target, chunk.model)
            if not want_usage and not chunk.choices:
                return None
        if call.completion is not None:
            call.completion.extend(c.delta.text for c in chunk.choices)
        extra = chunk.extra_fields
        self._fill_extra(extra, call, target, with_attempts=index == 0)
        extra.chunk_index = index
        return chunk

    async def _open_stream(
        self, call: _Call, metadata: Metadata
    ) -> tuple[Target, list[pb.ChatCompletionChunk], AsyncIterator[pb.ChatCompletionChunk]]:
        """Find an upstream whose stream gets as far as its first content chunk."""

        async def send(
            provider: Provider, upstream: UpstreamRequest, target: Target
        ) -> tuple[Target, list[pb.ChatCompletionChunk], AsyncIterator[pb.ChatCompletionChunk]]:
            chunks = StreamParser(target, self.stats).chunks(provider.stream_chat(upstream))
            # Chunks before the first content (Azure's filter results, the role
            # chunk) are held back, so a failure up to there can still fall back.
            held: list[pb.ChatCompletionChunk] = []
            try:
                async for chunk in chunks:
                    held.append(chunk)
                    if _has_content(chunk):
                        return target, held, chunks
            except BaseException:
                await chunks.aclose()  # type: ignore[attr-defined]
                raise
            return target, held, _empty()

        return await self._serve(call, metadata, send)

    # ---------------------------------------------------------------- helpers

    def _budget(self, timeout_s: float | None) -> float:
        total = self._config.timeouts.total_s
        return total if timeout_s is None else min(total, timeout_s)

    def _provider(self, target: Target) -> Provider:
        provider = self._providers.get(target.provider)
        if provider is None:
            raise GatewayError(
                400,
                "invalid_request_error",
                f"unknown provider {target.provider!r}",
                failure=FailureClass.CONFIG,
            )
        return provider

    @staticmethod
    def _base_body(request: pb.ChatCompletionRequest, *, stream: bool) -> dict[str, Any]:
        body = codec.request_to_dict(request)
        body.pop("fallbacks", None)
        if not stream:
            # A unary call gets a unary answer, whatever the request's `stream` says.
            body.pop("stream", None)
            body.pop("stream_options", None)
        else:
            body["stream"] = True
            # Always ask for usage so accounting works; the usage chunk reaches the
            # client only if it asked for it.
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            body["stream_options"] = options
        return body

    @staticmethod
    def _payload(provider: Provider, body: dict[str, Any], target: Target) -> bytes:
        body = dict(body)
        provider.prepare_body(body, target.model)
        return orjson.dumps(body)

    def _fill_extra(
        self, extra: pb.ExtraFields, call: _Call, target: Target, *, with_attempts: bool = True
    ) -> None:
        extra.request_type = call.request_type
        extra.provider = target.provider
        extra.model_requested = call.model_requested
        extra.model_deployment = target.model
        extra.latency = call.latency_ms()
        if with_attempts and call.attempts:
            extra.attempts.extend(call.attempts)


def _parse(raw: bytes, target: Target) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise TypeError("not an object")
        return data
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise GatewayError(
            502,
            "upstream_bad_response",
            f"the upstream answered with something that is not a JSON object ({exc})",
            failure=FailureClass.TRANSIENT,
            provider=target.provider,
            model=target.model,
        ) from None


M = TypeVar("M", pb.ChatCompletionResponse, pb.ChatCompletionChunk)


def _from_upstream(data: dict[str, Any], cls: type[M], target: Target) -> M:
    try:
        return codec.response_from_dict(data, cls)
    except codec.CodecError as exc:
        raise GatewayError(
            502,
            "upstream_bad_response",
            f"the upstream answered with a malformed {cls.DESCRIPTOR.name}: {exc.message}",
            failure=FailureClass.TRANSIENT,
            provider=target.provider,
            model=target.model,
        ) from None


@contextlib.contextmanager
def _unserialisable(request: pb.ChatCompletionRequest) -> Iterator[None]:
    """A request whose upstream body cannot be built is the caller's fault: a 400, never a 500.

    Free-form JSON is checked on the way in (``validate_request``, the codec), so this is
    the backstop for what those checks do not foresee."""
    try:
        yield
    except (ValueError, TypeError, RecursionError) as exc:
        param = find_bad_json(request) or "body"
        raise invalid_request(
            f"the request cannot be sent upstream: `{param}` cannot be serialised as JSON ({exc})",
            param,
        ) from None


def _has_content(chunk: pb.ChatCompletionChunk) -> bool:
    """Does this chunk carry something the client must see (so no fallback after it)?"""
    for choice in chunk.choices:
        if choice.finish_reason:
            return True
        delta = choice.delta
        if delta.text or delta.tool_calls or delta.refusal or delta.reasoning or delta.reasoning_details:
            return True
        if delta.HasField("parts") or delta.HasField("audio") or "function_call" in delta.extra_json:
            return True
    return chunk.HasField("usage") and not chunk.choices


async def _chunks(
    held: list[pb.ChatCompletionChunk], rest: AsyncIterator[pb.ChatCompletionChunk]
) -> AsyncIterator[pb.ChatCompletionChunk]:
    """The held chunks, then the rest of the upstream stream."""
    for chunk in held:
        yield chunk
    async for chunk in rest:
        yield chunk


async def _empty() -> AsyncIterator[pb.ChatCompletionChunk]:
    return
    yield  # pragma: no cover


def _attempts_json(attempts: list[pb.Attempt]) -> str:
    if not attempts:
        return "[]"
    return orjson.dumps(
        [
            {
                "provider": a.provider,
                "model": a.model,
                "status_code": a.status_code,
                "error_type": a.error_type,
            }
            for a in attempts
        ]
    ).decode()


def _shutdown_error() -> GatewayError:
    return GatewayError(
        503,
        "server_shutting_down",
        "the server is shutting down and its grace period for open streams has ended; retry",
        failure=FailureClass.TRANSIENT,
    )


def _deadline_error() -> GatewayError:
    return GatewayError(
        504, "timeout", "the request did not finish within its deadline", failure=FailureClass.TIMEOUT
    )
