"""What every engine (chat, embeddings) does the same way around one call and one target.

- :class:`CallEdge`: the edge of a call, where a ``GatewayError`` becomes the caller's
  ``ChatError`` and the call's status is settled for the plugins' ``on_finish``;
- :func:`try_target`: one target of a route plan through the pipeline: its reservation hooks
  around it, retries and key rotation inside (``resilience.call_target``), each attempt timed
  for the plugins that watch attempts;
- :func:`answered_within`: an upstream answer bounded by ``ttft_s``;
- :func:`unserialisable`: a request whose upstream body cannot be built is a 400;
- :func:`fill_extra`: the answer's ``extra_fields``;
- the two timeouts' errors, and the call's total budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from service.errors import FailureClass, GatewayError, UpstreamError, invalid_request
from service.pipeline import CallContext, Pipeline
from service.providers import Prepared
from service.resilience import RetryPolicy, call_target
from service.routing import Router, Target
from switchyard.config import Config, ProviderConfig
from switchyard.v1 import chat_pb2 as pb

T = TypeVar("T")

__all__ = [
    "CallEdge",
    "answered_within",
    "budget_s",
    "deadline_error",
    "fill_extra",
    "silent",
    "try_target",
    "unserialisable",
]


class CallEdge:
    """``with CallEdge(ctx):`` around a call. A ``GatewayError`` leaves as ``ctx.fail(err)``
    (a ``ChatError``), the deadline as a 504, a cancel is noted as 499, anything else (a bug)
    as 500. A class rather than a generator-based context manager: it is on every call."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: CallContext[Any]) -> None:
        self._ctx = ctx

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            return
        ctx = self._ctx
        if isinstance(exc, GatewayError):
            raise ctx.fail(exc) from None
        if isinstance(exc, TimeoutError):
            raise ctx.fail(deadline_error()) from None
        if isinstance(exc, asyncio.CancelledError):
            ctx.status, ctx.error_type = 499, "cancelled"
        elif isinstance(exc, Exception):
            ctx.status, ctx.error_type = 500, "internal_error"  # a bug: the caller gets a 500 too


async def try_target(
    ctx: CallContext[Any],
    pipeline: Pipeline,
    router: Router,
    retry: RetryPolicy,
    target: Target,
    provider: ProviderConfig,
    prepared: Prepared,
    attempt: Callable[[int], Awaitable[T]],
    *,
    fallback_follows: bool,
) -> T:
    """``attempt(key_index)`` against ``target`` until it answers or its retries run out."""
    await pipeline.before_target(ctx, target, prepared)
    watched = pipeline.watches_attempts

    async def attempt_with_key(key_index: int) -> T:
        if not watched:
            return await attempt(key_index)
        pipeline.start_attempt(ctx, target, key_index)
        started = time.perf_counter()
        try:
            result = await attempt(key_index)
        except GatewayError as err:
            pipeline.on_attempt(ctx, target, key_index, err, time.perf_counter() - started)
            raise
        pipeline.on_attempt(ctx, target, key_index, None, time.perf_counter() - started)
        return result

    try:
        result = await call_target(
            target, provider, router, retry, attempt_with_key, ctx.attempts, fallback_follows=fallback_follows
        )
    except BaseException as err:
        await pipeline.after_target(ctx, target, err)
        raise
    ctx.target = target
    await pipeline.after_target(ctx, target, None)
    return result


async def answered_within(target: Target, ttft_s: float, answer: Awaitable[T]) -> T:
    """``answer``, unless the upstream says nothing for ``ttft_s``. Here rather than the
    socket's read timeout: it holds for every provider and transport (a token fetch, a mock)
    and says which limit was hit."""
    limit = asyncio.timeout(ttft_s)
    try:
        async with limit:
            return await answer
    except TimeoutError:
        if limit.expired():  # not the call's own deadline, which is the caller's business
            raise silent(target, ttft_s) from None
        raise


@contextlib.contextmanager
def unserialisable(find_param: Callable[[], str | None] | None = None) -> Iterator[None]:
    """A request whose upstream body cannot be built is the caller's fault: a 400, never a 500.

    Free-form JSON is checked on the way in (validation, the codec), so this is the backstop
    for what those checks do not foresee. ``find_param``: which field is at fault, if known."""
    try:
        yield
    except (ValueError, TypeError, RecursionError) as exc:
        param = (find_param() if find_param is not None else None) or "body"
        raise invalid_request(
            f"the request cannot be sent upstream: `{param}` cannot be serialised as JSON ({exc})",
            param,
        ) from None


def fill_extra(
    extra: pb.ExtraFields, ctx: CallContext[Any], target: Target, *, with_attempts: bool = True
) -> None:
    """The contract's ``extra_fields`` of an answer (or chunk) that ``target`` served."""
    extra.request_type = ctx.request_type
    extra.provider = target.provider
    extra.model_requested = ctx.model_requested
    extra.model_deployment = target.model
    extra.latency = ctx.latency_ms()
    if with_attempts and ctx.attempts:
        extra.attempts.extend(ctx.attempts)


def silent(target: Target, seconds: float, *, stalled: bool = False) -> GatewayError:
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


def deadline_error() -> GatewayError:
    return GatewayError(
        504, "timeout", "the request did not finish within its deadline", failure=FailureClass.TIMEOUT
    )


def budget_s(config: Config, timeout_s: float | None) -> float:
    """The call's whole budget: ``timeouts.total_s``, or the caller's deadline if sooner."""
    total = config.timeouts.total_s
    return total if timeout_s is None else min(total, timeout_s)
