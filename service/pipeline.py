"""One request path for unary and streaming calls, and the plugins that hook into it.

In the spirit of Bifrost's Pre/Post hooks and Starlette's middleware stack: a plugin
overrides only the hooks it needs, and the pipeline builds each hook's list once, at
start, so a plugin without (say) a chunk hook costs nothing per chunk.

    on_request     before routing; may refuse (raise GatewayError) or short-circuit with a
                   response (a cache hit)                                      in order
    on_plan        the route plan: which targets may be tried                  in order
    before_target  a target is about to be tried (a budget reservation)       in order
    start_attempt  an upstream attempt (one key) is about to start             in order
    on_attempt     that attempt ended, with its outcome                        in order
    after_target   that target succeeded or failed (release or keep)          reverse
    on_response    the unary answer, before it is returned                     reverse
    on_chunk       each stream chunk, before it is sent                        reverse
    on_finish      the call is over, whatever happened; never raises          reverse

Post hooks (the reverse ones) run only for plugins whose ``on_request`` ran: a plugin that
refused or short-circuited still sees its own ``on_finish``, the ones after it see nothing.
Per-request state lives in :class:`CallContext`; each plugin has a slot in ``ctx.slots``.

**Embeddings calls** (``service/embeddings/``) take the same pipeline, but only through the
plugins that say they understand them (``Plugin.embeddings = True``), so a chat-only plugin (a
response cache) never meets one. Such a call's context is an :class:`EmbeddingContext`:
``request_type`` is ``"embedding"`` and ``request`` an ``EmbeddingsRequest``; its hooks are
``on_request``, ``on_plan``, ``before_target``, the attempt hooks, ``after_target`` and
``on_finish`` (no response or chunk hooks: the engine sets ``ctx.usage`` and prices
``ctx.cost`` itself, and vectors are nobody's business).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from service.errors import GatewayError
from service.providers import Prepared
from service.routing import RoutePlan, Target
from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import embeddings_pb2 as epb

log = logging.getLogger("switchyard.service")

REQUEST_TYPE = "chat_completion"
STREAM_REQUEST_TYPE = "chat_completion_stream"
EMBEDDING_REQUEST_TYPE = "embedding"

Metadata = Iterable[tuple[str, str | bytes]]
# The request a context carries: a chat completion's, or (EmbeddingContext) an embeddings one.
RequestT = TypeVar("RequestT", pb.ChatCompletionRequest, epb.EmbeddingsRequest)


class ChatError(Exception):
    """A request failed: ``body`` is the contract's error body, ready to send."""

    def __init__(self, body: pb.ErrorBody, retry_after_s: float | None = None) -> None:
        super().__init__(body.error.message)
        self.body = body
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class CacheNote:
    """What the response cache did with a call; the request log and the metrics read it."""

    hit_type: str  # "exact" | "semantic" (a hit) | "miss"
    cache_id: str  # the entry that answered, or the one a miss is stored under
    provider: str = ""  # a hit: the provider and model that made the cached answer
    model: str = ""


@dataclass(slots=True, eq=False)  # compared and hashed by identity
class CallContext(Generic[RequestT]):
    """Everything about one call that the engine and the plugins share."""

    request: RequestT
    stream: bool
    request_id: str
    metadata: Metadata
    slots: list[Any]
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)
    attempts: list[pb.Attempt] = field(default_factory=list)
    target: Target | None = None  # the target that answered
    usage: pb.Usage | None = None  # the last usage the upstream reported
    cost: float | None = None  # USD, when a plugin priced the usage
    status: int = 200  # the HTTP status the caller gets
    error_type: str | None = None
    refused: bool = False  # a governance refusal (401/402/403/429) ended the call
    # Who is calling, once governance has admitted the caller (its virtual key, its team).
    key_id: str | None = None
    team_id: str | None = None
    # perf_counter when a stream's first content was ready to send (time to first token).
    first_chunk_at: float | None = None
    # Plugins (by index) whose on_request phase was reached: only they get post hooks.
    entered: int = 0
    # Set by the response cache when it saw the call (None: off, bypassed, or refused before it).
    cache: CacheNote | None = None

    @property
    def request_type(self) -> str:
        return STREAM_REQUEST_TYPE if self.stream else REQUEST_TYPE

    @property
    def model_requested(self) -> str:
        return self.request.deployment_id or self.request.model

    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def fail(self, err: GatewayError) -> ChatError:
        self.status, self.error_type = err.status, err.type
        self.refused = err.refusal
        body = err.to_body(
            model_requested=self.model_requested,
            request_type=self.request_type,
            attempts=self.attempts,
            event_id=self.request_id,
        )
        return ChatError(body, err.retry_after_s)


@dataclass(slots=True, eq=False)
class EmbeddingContext(CallContext[epb.EmbeddingsRequest]):
    """An embeddings call's context: the same state, its own ``request_type``."""

    @property
    def request_type(self) -> str:
        return EMBEDDING_REQUEST_TYPE


class Plugin:
    """Override the hooks you need; the defaults do nothing (and are never called)."""

    name = "plugin"
    slot = -1  # this plugin's index in ``CallContext.slots``, set by the Pipeline
    # True: this plugin also sees embeddings calls (an EmbeddingContext; see the module docstring).
    embeddings = False

    async def on_request(self, ctx: CallContext) -> pb.ChatCompletionResponse | None:
        return None

    def on_plan(self, ctx: CallContext, plan: RoutePlan) -> RoutePlan:
        return plan

    async def before_target(self, ctx: CallContext, target: Target, prepared: Prepared) -> None:
        return None

    def start_attempt(self, ctx: CallContext, target: Target, key_index: int) -> None:
        return None

    def on_attempt(
        self,
        ctx: CallContext,
        target: Target,
        key_index: int,
        error: GatewayError | None,
        elapsed_s: float,
    ) -> None:
        return None

    async def after_target(self, ctx: CallContext, target: Target, error: BaseException | None) -> None:
        return None

    def on_response(self, ctx: CallContext, response: pb.ChatCompletionResponse) -> None:
        return None

    def on_chunk(self, ctx: CallContext, chunk: pb.ChatCompletionChunk) -> None:
        return None

    async def on_finish(self, ctx: CallContext) -> None:
        return None


def _overriding(plugins: Sequence[Plugin], hook: str, embeddings: bool) -> tuple[Plugin, ...]:
    default = getattr(Plugin, hook)
    return tuple(
        p for p in plugins if getattr(type(p), hook) is not default and (p.embeddings or not embeddings)
    )


class Pipeline:
    """The plugins, in order, with each hook's list built once.

    ``embeddings``: the pipeline of embeddings calls, whose hook lists hold only the plugins
    with ``embeddings = True``. It is built from the same plugin list as the chat pipeline, so
    every plugin keeps its slot."""

    def __init__(self, plugins: Sequence[Plugin], *, embeddings: bool = False) -> None:
        self.plugins = tuple(plugins)
        for index, plugin in enumerate(self.plugins):
            if plugin.slot not in (-1, index):
                raise ValueError(f"plugin {plugin.name!r} is at index {plugin.slot} of another pipeline")
            plugin.slot = index

        def hooks(name: str) -> tuple[Plugin, ...]:
            return _overriding(self.plugins, name, embeddings)

        self._request = hooks("on_request")
        self._plan = hooks("on_plan")
        self._before = hooks("before_target")
        self._start_attempt = hooks("start_attempt")
        self._attempt = hooks("on_attempt")
        # The engine times attempts only when some plugin wants to hear about them.
        self.watches_attempts = bool(self._start_attempt or self._attempt)
        # Post hooks: reversed here, once.
        self._after = hooks("after_target")[::-1]
        self._response = hooks("on_response")[::-1]
        self.chunk_hooks = hooks("on_chunk")[::-1]
        self._finish = hooks("on_finish")[::-1]

    def new_slots(self) -> list[Any]:
        return [None] * len(self.plugins)

    async def on_request(self, ctx: CallContext) -> pb.ChatCompletionResponse | None:
        """Run the pre hooks in order; the first answer (or refusal) stops the rest."""
        for plugin in self._request:
            ctx.entered = plugin.slot + 1
            answer = await plugin.on_request(ctx)
            if answer is not None:
                return answer
        ctx.entered = len(self.plugins)
        return None

    def on_plan(self, ctx: CallContext, plan: RoutePlan) -> RoutePlan:
        for plugin in self._plan:
            plan = plugin.on_plan(ctx, plan)
        return plan

    async def before_target(self, ctx: CallContext, target: Target, prepared: Prepared) -> None:
        for plugin in self._before:
            await plugin.before_target(ctx, target, prepared)

    def start_attempt(self, ctx: CallContext, target: Target, key_index: int) -> None:
        for plugin in self._start_attempt:
            plugin.start_attempt(ctx, target, key_index)

    def on_attempt(
        self,
        ctx: CallContext,
        target: Target,
        key_index: int,
        error: GatewayError | None,
        elapsed_s: float,
    ) -> None:
        for plugin in self._attempt:
            plugin.on_attempt(ctx, target, key_index, error, elapsed_s)

    async def after_target(self, ctx: CallContext, target: Target, error: BaseException | None) -> None:
        """Every plugin's hook runs even if one raises; the first error is re-raised after."""
        failure: Exception | None = None
        for plugin in self._after:
            try:
                await plugin.after_target(ctx, target, error)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    def on_response(self, ctx: CallContext, response: pb.ChatCompletionResponse) -> None:
        for plugin in self._response:
            if plugin.slot < ctx.entered:
                plugin.on_response(ctx, response)

    async def on_finish(self, ctx: CallContext) -> None:
        for plugin in self._finish:
            if plugin.slot >= ctx.entered:
                continue
            try:
                await plugin.on_finish(ctx)
            except Exception:  # the answer is already made; a plugin's failure must not change it
                log.exception("plugin %s failed at the end of request %s", plugin.name, ctx.request_id)
