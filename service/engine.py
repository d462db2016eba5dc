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
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from service.calls import (
    CallEdge,
    answered_within,
    budget_s,
    fill_extra,
    silent,
    try_target,
    unserialisable,
)
from service.errors import FailureClass, GatewayError, UpstreamError
from service.health import health_for
from service.midstream import (
    SeamError,
    Splice,
    add_usage,
    continuation_request,
    estimated_tokens,
    estimated_usage,
)
from service.pipeline import CallContext, ChatError, Metadata, Pipeline, Plugin
from service.providers import Prepared, Provider
from service.resilience import RetryPolicy, call_with_fallbacks
from service.routing import RoutePlan, Router, Target
from service.stats import ServiceStats
from service.validation import find_bad_json, validate_request
from switchyard.config import Config
from switchyard.open_streams import SHUTTING_DOWN_MESSAGE, SHUTTING_DOWN_TYPE, OpenStreams
from switchyard.request_id import current_request_id, request_id_from_metadata
from switchyard.v1 import chat_pb2 as pb

log = logging.getLogger("switchyard.service")
T = TypeVar("T")

__all__ = ["ChatEngine", "ChatError"]

# What an attempt yields for a stream: the chunks held before the first content chunk, the rest,
# the key it used and the size of the body it sent (for estimates, should it break).
_Opened = tuple[list[pb.ChatCompletionChunk], AsyncIterator[pb.ChatCompletionChunk], int, int]

# Failures that say the provider broke the stream (not the caller's request): those continue.
_PROVIDER_FAILURES = frozenset({FailureClass.TRANSIENT, FailureClass.TIMEOUT, FailureClass.RATE_LIMIT})


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
        self._router = router or Router(config, health=health_for(config))
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
            with CallEdge(ctx):
                async with asyncio.timeout(budget_s(self._config, timeout_s)):
                    response = await self._route(ctx, self._send)
                self._deliver(ctx, response)
                return response
        finally:
            await self.pipeline.on_finish(ctx)

    def _deliver(self, ctx: CallContext, response: pb.ChatCompletionResponse) -> None:
        if response.HasField("usage"):
            ctx.usage = response.usage
        self.pipeline.on_response(ctx, response)
        if ctx.target is not None:
            fill_extra(response.extra_fields, ctx, ctx.target)

    async def _send(
        self, provider: Provider, prepared: Prepared, key_index: int
    ) -> pb.ChatCompletionResponse:
        target = prepared.target
        ttft_s = (target.timeouts or provider.config.timeouts).ttft_s
        return await answered_within(target, ttft_s, provider.send(prepared, provider.config.keys[key_index]))

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
        budget = budget_s(self._config, timeout_s)
        with CallEdge(ctx):
            async with asyncio.timeout(budget) as limit:
                answer = await self._route(ctx, self._open)
                # Committed: the total budget bounded the search for a working
                # upstream; from here on the read timeout governs stalls.
                limit.reschedule(None)
            ctx.first_chunk_at = time.perf_counter()
        if isinstance(answer, pb.ChatCompletionResponse):  # a plugin answered: stream it
            held, rest, key_index, body_bytes = _as_chunks(answer, ctx.request), _empty(), -1, 0
        else:
            held, rest, key_index, body_bytes = answer
        request = ctx.request
        want_usage = request.stream_options.include_usage if request.HasField("stream_options") else False
        hooks = self.pipeline.chunk_hooks
        if ctx.entered < len(self.pipeline.plugins):
            hooks = tuple(p for p in hooks if p.slot < ctx.entered)
        target = ctx.target
        index = 0
        next_chunk = rest.__anext__
        watch = self._stall_watch(target)
        # Mid-stream failover (service/midstream.py): None when this stream cannot have one.
        splice = Splice() if self._may_continue(ctx) else None
        spent = ctx.spent
        segment_started = time.perf_counter()
        first_failure: GatewayError | None = None  # what the caller gets if no fallback can continue

        def outgoing(chunk: pb.ChatCompletionChunk) -> bool:
            """Account for ``chunk`` and say whether the caller gets it (a plain call per chunk:
            cheaper than chaining the held chunks and the rest through one more generator)."""
            has_usage = chunk.HasField("usage")
            if has_usage:
                ctx.usage = chunk.usage
            for plugin in hooks:
                plugin.on_chunk(ctx, chunk)
            if has_usage and spent:
                for _, usage in spent:  # priced by now: the governance plugin's hook ran
                    add_usage(chunk.usage, usage)
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
                # After a failover the attempts are told again at the end, with what they spent.
                with_attempts = index == 0 or (bool(spent) and (has_usage or _finishes(chunk)))
                fill_extra(extra, ctx, target, with_attempts=with_attempts)
                extra.chunk_index = index
            return True

        last: pb.ChatCompletionChunk | None = None
        try:
            while True:  # one pass per upstream: more than one only after a mid-stream failover
                try:
                    held.reverse()  # taken from the end: the chunks read before the first content
                    while True:
                        if held:
                            chunk = held.pop()
                        else:
                            watch.begin()
                            try:
                                chunk = await next_chunk()
                            except StopAsyncIteration:
                                break
                            except asyncio.CancelledError:
                                if watch.fired():
                                    assert target is not None  # a plugin's answer never waits
                                    raise silent(target, watch.idle_s, stalled=True) from None
                                raise
                            finally:
                                watch.reading = False
                        if splice is None:
                            if outgoing(chunk):
                                index += 1
                                yield chunk
                            continue
                        last = chunk
                        for piece in splice.shape(chunk):
                            if outgoing(piece):
                                index += 1
                                yield piece
                    if splice is not None:
                        for piece in splice.end(last):
                            if outgoing(piece):
                                index += 1
                                yield piece
                    return
                except (GatewayError, SeamError) as failure:
                    if isinstance(failure, SeamError):
                        failure = _unjoinable(target, failure)
                    assert target is not None
                    log.warning(
                        "stream from %s failed after %d chunks: %s request_id=%s",
                        target.label,
                        index,
                        failure.type,
                        ctx.request_id,
                    )
                    if splice is None:
                        raise ctx.fail(failure) from None
                    first_failure = first_failure or failure
                    watch.close()
                    await rest.aclose()  # type: ignore[attr-defined]
                    self._broken(ctx, target, key_index, body_bytes, splice, failure, segment_started)
                    held, rest, key_index, body_bytes = await self._continue(
                        ctx, failure, first_failure, splice, ctx.started + budget
                    )
                    segment_started = time.perf_counter()
                    target = ctx.target
                    next_chunk = rest.__anext__
                    watch = self._stall_watch(target)
        finally:
            watch.close()
            await rest.aclose()  # type: ignore[attr-defined]

    def _stall_watch(self, target: Target | None) -> _StallWatch:
        if target is not None:
            idle_s = (target.timeouts or self._provider(target).config.timeouts).stream_idle_s
        else:
            idle_s = self._config.timeouts.stream_idle_s  # a plugin's answer: nothing to wait for
        return _StallWatch(idle_s)

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
                        return held, chunks, key_index, len(prepared.body)
        except BaseException as exc:
            await chunks.aclose()  # type: ignore[attr-defined]
            if isinstance(exc, TimeoutError) and limit.expired():
                raise silent(target, ttft_s) from None
            raise
        return held, _empty(), key_index, len(prepared.body)

    # ---------------------------------------------------------------- mid-stream failover

    def _may_continue(self, ctx: CallContext) -> bool:
        """Could this stream continue on a fallback if it broke? (Else it costs nothing extra.)"""
        request = ctx.request
        if request.HasField("midstream_failover"):
            if not request.midstream_failover:
                return False
        elif not self._config.resilience.midstream.enabled:
            return False
        plan, target = ctx.plan, ctx.target
        if plan is None or target is None or request.n > 1:
            return False
        return bool(_later(plan, target))

    def _broken(
        self,
        ctx: CallContext,
        target: Target,
        key_index: int,
        body_bytes: int,
        splice: Splice,
        err: GatewayError,
        started: float,
    ) -> None:
        """A stream broke mid-answer: its attempt is recorded, counted against its circuit, and
        billed (what the upstream reported, or an estimate)."""
        attempt = err.to_attempt()
        if ctx.usage is not None:
            attempt.usage.CopyFrom(ctx.usage)
        else:
            attempt.usage.CopyFrom(estimated_usage(body_bytes, splice.segment_text()))
            attempt.usage_estimated = True
        ctx.usage = None  # the next upstream reports its own
        ctx.attempts.append(attempt)
        ctx.spent.append((target, attempt.usage))
        health = self._router.health
        if health is not None:
            health.record(target.provider, target.model, key_index, err.failure)
        if self.pipeline.watches_attempts:
            self.pipeline.on_attempt(ctx, target, key_index, err, time.perf_counter() - started)

    async def _continue(
        self,
        ctx: CallContext,
        err: GatewayError,
        original: GatewayError,
        splice: Splice,
        deadline: float,
    ) -> _Opened:
        """Continue a broken answer on the plan's later targets, or raise ``original`` (the
        first failure of the stream: a fallback's own failure must not mask it)."""
        plan, served = ctx.plan, ctx.target
        assert plan is not None and served is not None
        blocked = splice.failed()
        later = _later(plan, served)
        if blocked is not None or err.failure not in _PROVIDER_FAILURES or not later:
            raise ctx.fail(original) from None
        text = splice.continue_from()
        prefill = text.rstrip()
        candidates = later
        if prefill:  # a restart (no text yet) can go anywhere; a continuation needs a prefill
            candidates = tuple(t for t in later if self._provider(t).accepts_prefill(t))
            for skipped in later:
                if skipped not in candidates:
                    ctx.attempts.append(_prefill_unsupported(skipped))
        if not candidates:
            raise ctx.fail(original) from None
        follow_up = continuation_request(ctx.request, prefill, estimated_tokens(text))
        log.info(
            "continuing a broken stream on a fallback (%d characters sent) request_id=%s",
            len(text),
            ctx.request_id,
        )
        ctx.target = None
        try:
            async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
                return await self._try_plan(ctx, RoutePlan(candidates), follow_up, self._open)
        except (GatewayError, TimeoutError):
            # The fallback failed too, or refused the prefill: the caller gets what broke first.
            ctx.target = served
            raise ctx.fail(original) from None

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
        ctx.plan = plan
        return await self._try_plan(ctx, plan, request, attempt)

    async def _try_plan(
        self,
        ctx: CallContext,
        plan: RoutePlan,
        request: pb.ChatCompletionRequest,
        attempt: Callable[[Provider, Prepared, int], Awaitable[T]],
    ) -> T:
        """Each target of ``plan`` in turn, through ``attempt``, with retries and fallbacks."""
        pipeline = self.pipeline
        stream = ctx.stream

        async def try_one(target: Target, fallback_follows: bool) -> T:
            provider = self._provider(target)
            with unserialisable(lambda: find_bad_json(request)):
                prepared = provider.prepare(request, target, stream=stream)
            return await try_target(
                ctx,
                pipeline,
                self._router,
                self._retry,
                target,
                provider.config,
                prepared,
                lambda key_index: attempt(provider, prepared, key_index),
                fallback_follows=fallback_follows,
            )

        if plan.hedge is None or plan.hedge_config is None:
            return await call_with_fallbacks(plan, try_one, ctx.attempts, self._router.health)
        primary = plan.targets[0]
        delay_s = self._router.hedge_times.delay_s(primary.provider, primary.model, plan.hedge_config)

        async def hedge_lost(loser: Target, winner: Target, result: T | None) -> None:
            ctx.attempts.append(_hedge_attempt(loser, won=False))
            ctx.attempts.append(_hedge_attempt(winner, won=True))
            if result is not None:  # both answered at once: the loser's answer is dropped
                ctx.target = winner
                if isinstance(result, tuple):
                    await result[1].aclose()

        return await call_with_fallbacks(
            plan, try_one, ctx.attempts, self._router.health, hedge_delay_s=delay_s, hedge_lost=hedge_lost
        )

    # ---------------------------------------------------------------- helpers

    def _context(
        self, request: pb.ChatCompletionRequest, stream: bool, metadata: Metadata, request_id: str | None
    ) -> CallContext:
        request_id = request_id or request_id_from_metadata(metadata)
        current_request_id.set(request_id)
        return CallContext(request, stream, request_id, metadata, self.pipeline.new_slots())

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


def _finishes(chunk: pb.ChatCompletionChunk) -> bool:
    return any(choice.finish_reason for choice in chunk.choices)


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

    __slots__ = ("_cancelled", "_handle", "_loop", "_started", "_task", "idle_s", "reading")

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
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
            self._handle = self._loop.call_at(self._started + self.idle_s, self._due)

    def _due(self) -> None:
        deadline = self._started + self.idle_s
        if not self.reading:
            deadline = self._loop.time() + self.idle_s  # between reads: nothing to measure yet
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


def _later(plan: RoutePlan, served: Target) -> tuple[Target, ...]:
    """The plan's targets a broken stream from ``served`` may continue on."""
    targets = plan.targets
    if targets[-1] is served:
        return ()
    if served in targets:
        return targets[targets.index(served) + 1 :]
    return tuple(t for t in targets[1:] if t != served)  # a hedge won: the fallbacks


def _hedge_attempt(target: Target, *, won: bool) -> pb.Attempt:
    if won:
        return pb.Attempt(
            provider=target.provider,
            model=target.model,
            status_code=200,
            error_type="hedge_won",
            message="a hedged attempt: it produced content first",
        )
    return pb.Attempt(
        provider=target.provider,
        model=target.model,
        error_type="hedge_lost",
        message="a hedged attempt: cancelled, the other produced content first",
    )


def _prefill_unsupported(target: Target) -> pb.Attempt:
    return pb.Attempt(
        provider=target.provider,
        model=target.model,
        error_type="prefill_unsupported",
        message="skipped: it cannot continue an answer from an assistant prefill (assistant_prefill)",
    )


def _unjoinable(target: Target | None, err: SeamError) -> GatewayError:
    return UpstreamError(
        502,
        "continuation_mismatch",
        str(err),
        failure=FailureClass.CALLER,  # no further continuation: it would not join either
        provider=target.provider if target else "",
        model=target.model if target else "",
    )
