"""The chat engine: one request in, one answer (or a stream of chunks) out.

Unary and streaming calls take the same path (:meth:`ChatEngine._route`): the plugins' pre
hooks, validation, the route plan, then each target through retries and fallbacks
(``resilience``), each target's request prepared once by its provider. Only the attempt
differs: a unary call waits for the answer, a stream waits for its first content chunk
(until then a failure can still fall back; after it, the caller has seen output).

The engine knows no wire format: providers speak their upstream's dialect and hand back
canonical ``pb`` messages (``service/providers/``). It knows nothing about gRPC either:
``servicer.py`` adapts it, so the in-process gateway and network gRPC callers share it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TypeVar

from service.errors import FailureClass, GatewayError, UpstreamError, invalid_request
from service.health import Health
from service.pipeline import CallContext, ChatError, Metadata, Pipeline, Plugin
from service.providers import Prepared, Provider
from service.resilience import RetryPolicy, call_target, call_with_fallbacks
from service.routing import Router, Target
from service.stats import ServiceStats
from service.validation import find_bad_json, validate_request
from switchyard.config import Config
from switchyard.open_streams import SHUTTING_DOWN_MESSAGE, SHUTTING_DOWN_TYPE, OpenStreams
from switchyard.request_id import current_request_id, request_id_from_metadata
from switchyard.v1 import chat_pb2 as pb

log = logging.getLogger("switchyard.service")
T = TypeVar("T")

__all__ = ["ChatEngine", "ChatError"]

# What an attempt yields for a stream: the chunks held before the first content chunk, and the rest.
_Opened = tuple[list[pb.ChatCompletionChunk], AsyncIterator[pb.ChatCompletionChunk]]


class ChatEngine:
    def __init__(
        self,
        config: Config,
        providers: Mapping[str, Provider],
        plugins: Sequence[Plugin] = (),
        router: Router | None = None,
        stats: ServiceStats | None = None,
        streams: OpenStreams | None = None,
    ) -> None:
        self._config = config
        self._providers = providers
        self.pipeline = Pipeline(plugins)
        circuit = config.resilience.circuit
        self._router = router or Router(
            config, health=Health(circuit, config.providers) if circuit.enabled else None
        )
        # Circuit breakers (None when off): the Admin API and the metrics read them.
        self.health = self._router.health
        self._retry = RetryPolicy(config.retries)
        self.stats = stats or ServiceStats()
        # At the end of a shutdown grace, streams still open get a 503 rather than a cut.
        self.streams = streams if streams is not None else OpenStreams()

    # ---------------------------------------------------------------- unary

    async def create(
        self,
        request: pb.ChatCompletionRequest,
        timeout_s: float | None = None,
        metadata: Metadata = (),
        request_id: str | None = None,
    ) -> pb.ChatCompletionResponse:
        ctx = self._context(request, False, metadata, request_id)
        try:
            async with asyncio.timeout(self._budget(timeout_s)):
                response = await self._route(ctx, self._send)
            self._deliver(ctx, response)
            return response
        except GatewayError as err:
            raise ctx.fail(err) from None
        except TimeoutError:
            raise ctx.fail(_deadline_error()) from None
        except asyncio.CancelledError:
            ctx.status, ctx.error_type = 499, "cancelled"
            raise
        except Exception:
            ctx.status, ctx.error_type = 500, "internal_error"  # a bug: the caller gets a 500 too
            raise
        finally:
            await self.pipeline.on_finish(ctx)

    def _deliver(self, ctx: CallContext, response: pb.ChatCompletionResponse) -> None:
        if response.HasField("usage"):
            ctx.usage = response.usage
        self.pipeline.on_response(ctx, response)
        if ctx.target is not None:
            self._fill_extra(response.extra_fields, ctx, ctx.target)

    async def _send(
        self, provider: Provider, prepared: Prepared, key_index: int
    ) -> pb.ChatCompletionResponse:
        target = prepared.target
        ttft_s = (target.timeouts or provider.config.timeouts).ttft_s
        # Here rather than the socket's read timeout: it holds for every provider and transport
        # (a token fetch, a mock) and says which limit was hit.
        limit = asyncio.timeout(ttft_s)
        try:
            async with limit:
                return await provider.send(prepared, provider.config.keys[key_index])
        except TimeoutError:
            if limit.expired():  # not the call's own deadline, which is the caller's business
                raise _silent(target, ttft_s) from None
            raise

    # ---------------------------------------------------------------- streaming

    async def create_stream(
        self,
        request: pb.ChatCompletionRequest,
        timeout_s: float | None = None,
        metadata: Metadata = (),
        request_id: str | None = None,
    ) -> AsyncIterator[pb.ChatCompletionChunk]:
        """Chunks as they arrive. Fallback is possible until the first content chunk is yielded."""
        ctx = self._context(request, True, metadata, request_id)
        chunks = self._stream(ctx, timeout_s)
        streams = self.streams
        try:
            # The reading task can change, so it is noted again after every chunk.
            streams.track(ctx)
            async for chunk in chunks:
                yield chunk
                streams.track(ctx)
        except asyncio.CancelledError:
            if streams.ended_by_shutdown(ctx):
                self.stats.streams_ended_at_shutdown += 1
                raise ctx.fail(_shutdown_error()) from None
            ctx.status, ctx.error_type = 499, "cancelled"
            raise
        except GeneratorExit:
            # The consumer stopped reading: the client went away, or the shutdown's cancel
            # reached the consumer (the servicer writing a chunk) rather than this generator.
            if ctx.status == 200:
                if streams.was_ended(ctx):
                    self.stats.streams_ended_at_shutdown += 1
                    ctx.status, ctx.error_type = 503, SHUTTING_DOWN_TYPE
                else:
                    ctx.status, ctx.error_type = 499, "cancelled"
            raise
        except ChatError:
            raise
        except Exception:
            ctx.status, ctx.error_type = 500, "internal_error"  # a bug: the caller gets a 500 too
            raise
        finally:
            streams.untrack(ctx)
            await chunks.aclose()  # type: ignore[attr-defined]
            await self.pipeline.on_finish(ctx)

    async def _stream(
        self, ctx: CallContext, timeout_s: float | None
    ) -> AsyncIterator[pb.ChatCompletionChunk]:
        try:
            async with asyncio.timeout(self._budget(timeout_s)) as budget:
                answer = await self._route(ctx, self._open)
                # Committed: the total budget bounded the search for a working
                # upstream; from here on the read timeout governs stalls.
                budget.reschedule(None)
            ctx.first_chunk_at = time.perf_counter()
        except GatewayError as err:
            raise ctx.fail(err) from None
        except TimeoutError:
            raise ctx.fail(_deadline_error()) from None
        if isinstance(answer, pb.ChatCompletionResponse):  # a plugin answered: stream it
            held, rest = _as_chunks(answer, ctx.request), _empty()
        else:
            held, rest = answer
        request = ctx.request
        want_usage = request.stream_options.include_usage if request.HasField("stream_options") else False
        hooks = self.pipeline.chunk_hooks
        if ctx.entered < len(self.pipeline.plugins):
            hooks = tuple(p for p in hooks if p.slot < ctx.entered)
        target = ctx.target
        fill_extra = self._fill_extra
        index = 0
        if target is not None:
            idle_s = (target.timeouts or self._provider(target).config.timeouts).stream_idle_s
        else:
            idle_s = self._config.timeouts.stream_idle_s  # a plugin's answer: nothing to wait for
        next_chunk = rest.__anext__
        watch = _StallWatch(idle_s)

        def outgoing(chunk: pb.ChatCompletionChunk) -> bool:
            """Account for ``chunk`` and say whether the caller gets it (a plain call per chunk:
            cheaper than chaining the held chunks and the rest through one more generator)."""
            has_usage = chunk.HasField("usage")
            if has_usage:
                ctx.usage = chunk.usage
            for plugin in hooks:
                plugin.on_chunk(ctx, chunk)
            if has_usage and not want_usage and not chunk.choices:
                if not _carries_results(chunk):
                    return False  # asked of the upstream for accounting; the caller did not ask
                # Search results on the usage chunk (Perplexity) are still the caller's: only
                # the usage goes, and the accounting keeps its own copy.
                ctx.usage = pb.Usage()
                ctx.usage.CopyFrom(chunk.usage)
                chunk.ClearField("usage")
            if target is not None:
                extra = chunk.extra_fields
                fill_extra(extra, ctx, target, with_attempts=index == 0)
                extra.chunk_index = index
            return True

        try:
            for chunk in held:
                if outgoing(chunk):
                    index += 1
                    yield chunk
            while True:
                watch.begin()
                try:
                    chunk = await next_chunk()
                except StopAsyncIteration:
                    break
                except asyncio.CancelledError:
                    if watch.fired():
                        assert target is not None  # a plugin's answer never waits
                        raise _silent(target, idle_s, stalled=True) from None
                    raise
                finally:
                    watch.reading = False
                if outgoing(chunk):
                    index += 1
                    yield chunk
        except GatewayError as err:
            log.warning(
                "stream from %s failed after %d chunks: %s request_id=%s",
                target.label if target else "-",
                index,
                err.type,
                ctx.request_id,
            )
            raise ctx.fail(err) from None
        finally:
            watch.close()
            await rest.aclose()  # type: ignore[attr-defined]

    async def _open(self, provider: Provider, prepared: Prepared, key_index: int) -> _Opened:
        """Open a stream and read it up to its first content chunk."""
        target = prepared.target
        ttft_s = (target.timeouts or provider.config.timeouts).ttft_s
        chunks = provider.stream(prepared, provider.config.keys[key_index])
        # Chunks before the first content (Azure's filter results, the role chunk) are
        # held back, so a failure up to there can still fall back. A role chunk or a keep-alive
        # is no answer: ttft_s runs until the first content.
        held: list[pb.ChatCompletionChunk] = []
        limit = asyncio.timeout(ttft_s)
        try:
            async with limit:
                async for chunk in chunks:
                    held.append(chunk)
                    if _has_content(chunk):
                        return held, chunks
        except BaseException as exc:
            await chunks.aclose()  # type: ignore[attr-defined]
            if isinstance(exc, TimeoutError) and limit.expired():
                raise _silent(target, ttft_s) from None
            raise
        return held, _empty()

    # ---------------------------------------------------------------- the one path

    async def _route(
        self, ctx: CallContext, attempt: Callable[[Provider, Prepared, int], Awaitable[T]]
    ) -> T | pb.ChatCompletionResponse:
        """Pre hooks, validation and the route plan; then each target through ``attempt``."""
        pipeline = self.pipeline
        answer = await pipeline.on_request(ctx)
        if answer is not None:
            return answer
        request = ctx.request
        validate_request(request)
        plan = pipeline.on_plan(ctx, self._router.plan(ctx.model_requested, request.fallbacks))
        stream = ctx.stream

        async def try_target(target: Target, fallback_follows: bool) -> T:
            provider = self._provider(target)
            with _unserialisable(request):
                prepared = provider.prepare(request, target, stream=stream)
            await pipeline.before_target(ctx, target, prepared)
            watched = pipeline.watches_attempts

            async def attempt_with_key(key_index: int) -> T:
                if not watched:
                    return await attempt(provider, prepared, key_index)
                pipeline.start_attempt(ctx, target, key_index)
                started = time.perf_counter()
                try:
                    result = await attempt(provider, prepared, key_index)
                except GatewayError as err:
                    pipeline.on_attempt(ctx, target, key_index, err, time.perf_counter() - started)
                    raise
                pipeline.on_attempt(ctx, target, key_index, None, time.perf_counter() - started)
                return result

            try:
                result = await call_target(
                    target,
                    provider.config,
                    self._router,
                    self._retry,
                    attempt_with_key,
                    ctx.attempts,
                    fallback_follows=fallback_follows,
                )
            except BaseException as err:
                await pipeline.after_target(ctx, target, err)
                raise
            ctx.target = target
            await pipeline.after_target(ctx, target, None)
            return result

        return await call_with_fallbacks(plan, try_target, ctx.attempts, self._router.health)

    # ---------------------------------------------------------------- helpers

    def _context(
        self, request: pb.ChatCompletionRequest, stream: bool, metadata: Metadata, request_id: str | None
    ) -> CallContext:
        request_id = request_id or request_id_from_metadata(metadata)
        current_request_id.set(request_id)
        return CallContext(request, stream, request_id, metadata, self.pipeline.new_slots())

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
    def _fill_extra(
        extra: pb.ExtraFields, ctx: CallContext, target: Target, *, with_attempts: bool = True
    ) -> None:
        extra.request_type = ctx.request_type
        extra.provider = target.provider
        extra.model_requested = ctx.model_requested
        extra.model_deployment = target.model
        extra.latency = ctx.latency_ms()
        if with_attempts and ctx.attempts:
            extra.attempts.extend(ctx.attempts)


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


def _carries_results(chunk: pb.ChatCompletionChunk) -> bool:
    return bool(chunk.search_results or chunk.citations or chunk.videos)


def _as_chunks(
    response: pb.ChatCompletionResponse, request: pb.ChatCompletionRequest
) -> list[pb.ChatCompletionChunk]:
    """A whole answer (a plugin's short-circuit) as a stream: its content, then its usage.

    The answer's ``extra_fields`` (a cache hit fills them itself) go on every chunk with its
    ``chunk_index``; its ``cache_debug`` only on the last chunk the caller gets (the usage
    chunk when the caller asked for usage, else the content chunk, which carries the
    finish reason). Tool calls get the ``index`` stream deltas must carry."""
    head = pb.ChatCompletionChunk(
        id=response.id, created=response.created, model=response.model, object="chat.completion.chunk"
    )
    content = pb.ChatCompletionChunk()
    content.CopyFrom(head)
    for choice in response.choices:
        piece = content.choices.add(
            index=choice.index, delta=choice.message, finish_reason=choice.finish_reason
        )
        for position, call in enumerate(piece.delta.tool_calls):
            if not call.HasField("index"):
                call.index = position
    chunks = [content]
    if response.HasField("usage"):
        usage = pb.ChatCompletionChunk()
        usage.CopyFrom(head)
        usage.usage.CopyFrom(response.usage)
        chunks.append(usage)
    if response.HasField("extra_fields"):
        wants_usage = request.HasField("stream_options") and request.stream_options.include_usage
        last = len(chunks) - 1 if wants_usage else 0
        for index, chunk in enumerate(chunks):
            chunk.extra_fields.CopyFrom(response.extra_fields)
            chunk.extra_fields.chunk_index = index
            if index != last:
                chunk.extra_fields.ClearField("cache_debug")
    return chunks


async def _empty() -> AsyncIterator[pb.ChatCompletionChunk]:
    return
    yield  # pragma: no cover


def _shutdown_error() -> GatewayError:
    return GatewayError(503, SHUTTING_DOWN_TYPE, SHUTTING_DOWN_MESSAGE, failure=FailureClass.TRANSIENT)


class _StallWatch:
    """``stream_idle_s`` for one stream: the reading task is cancelled when a chunk read has
    waited longer than ``idle_s``.

    A timeout per chunk read (``asyncio.timeout``) arms and cancels a timer each time, about a
    fifth of a stream's CPU (bench.engine_cpu). This keeps one timer for the stream, re-armed
    only when it comes due (every ``idle_s`` at most), so a chunk costs a clock read. Time spent
    suspended at the ``yield`` (a slow client) is not the upstream's silence: each read starts
    its own wait, and the task is noted per read because the one reading a stream can change.
    """

    __slots__ = ("_cancelled", "_handle", "_idle_s", "_loop", "_started", "_task", "reading")

    def __init__(self, idle_s: float) -> None:
        self._idle_s = idle_s
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._started = 0.0
        self._cancelled = False
        self.reading = False

    def begin(self) -> None:
        """A chunk read starts (the caller sets ``reading`` False when it ends)."""
        self._task = asyncio.current_task()
        self._started = self._loop.time()
        self.reading = True
        if self._handle is None:
            self._handle = self._loop.call_at(self._started + self._idle_s, self._due)

    def _due(self) -> None:
        deadline = self._started + self._idle_s
        if not self.reading:
            deadline = self._loop.time() + self._idle_s  # between reads: nothing to measure yet
        elif self._loop.time() >= deadline and self._task is not None:
            # The task is suspended inside the read, so that is where the cancel lands.
            self._cancelled = True
            self._handle = None
            self._task.cancel()
            return
        self._handle = self._loop.call_at(deadline, self._due)

    def fired(self) -> bool:
        """Was this cancel ours (and only ours)? Then it is a stall, not the caller leaving."""
        if not self._cancelled:
            return False
        self._cancelled = False
        assert self._task is not None
        return self._task.uncancel() == 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _silent(target: Target, seconds: float, *, stalled: bool = False) -> GatewayError:
    """An upstream that said nothing for too long: a TIMEOUT, which falls back (before the first
    content) without a retry on the same target unless ``retries.retry_timeouts``."""
    if stalled:
        message = f"the upstream stream stalled: no chunk for {seconds:g} s (timeouts.stream_idle_s)"
    else:
        message = f"the upstream sent no answer within {seconds:g} s (timeouts.ttft_s)"
    err = UpstreamError(
        504, "timeout", message, failure=FailureClass.TIMEOUT, provider=target.provider, model=target.model
    )
    err.from_upstream = False  # as the transport's own timeouts: no upstream status to report
    return err


def _deadline_error() -> GatewayError:
    return GatewayError(
        504, "timeout", "the request did not finish within its deadline", failure=FailureClass.TIMEOUT
    )
