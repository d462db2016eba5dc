"""The embeddings engine: one request in, its vectors out, on the same road as chat.

A call takes the chat engine's path piece by piece, not a copy of it: the plugins that
understand embeddings (``Pipeline(..., embeddings=True)``: governance's admission, allowed
targets, budget reservation and settlement, rate limits and request log; metrics, the
access log, tracing), ``Router.plan`` for the deployment or ``provider/model``, then
``resilience.call_with_fallbacks`` and ``call_target`` for retries, key rotation, fallbacks
and circuit breakers, with the chat engine's time limits (``ttft_s`` per attempt,
``total_s`` or the caller's deadline for the call).

Two things differ from chat:

- **Capability.** Only providers that serve embeddings (``service.providers.base.Embedder``)
  can be targets. The primary target's provider lacking it is a 400 naming the provider and
  model, before any upstream call; a fallback's is skipped and reported in
  ``extra_fields.attempts`` (``fallback_skipped``).
- **Pricing.** The engine prices the usage itself (``price``: ``Governance.price_usage`` in
  the server) rather than a response hook of the governance plugin, so a call made without
  plugins (below) still reports its cost.

**In-process API, for the response cache's semantic lookup**::

    embedded = await engine.embed_texts("text-embedding-3-small", ["the last user message"])
    embedded.vectors  # list[list[float]], in the order of the texts
    embedded.cost     # USD or None (model unpriced); embedded.usage is the upstream's usage

It routes, retries and falls back like any call. By default it runs *no plugins*: no
admission, budget or request-log entry of its own, because it is part of another call,
which accounts for it (the caller adds ``cost`` to its own). ``governed=True`` runs the
plugins with ``metadata`` as the credential, as if the caller had asked for it. It asks the
upstream for base64 vectors, the cheap form to move and to unpack. A failure raises
``ChatError`` (``.body`` is the contract's error body with ``request_type`` "embedding").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from service.calls import CallEdge, answered_within, budget_s, fill_extra, try_target, unserialisable
from service.embeddings.validation import validate_embeddings
from service.errors import FailureClass, GatewayError
from service.health import health_for
from service.pipeline import EmbeddingContext, Metadata, Pipeline, Plugin
from service.providers import Prepared, Provider
from service.providers.base import Embedder
from service.resilience import RetryPolicy, call_with_fallbacks
from service.routing import RoutePlan, Router, Target
from switchyard import codec
from switchyard.config import Config
from switchyard.request_id import current_request_id, new_request_id, request_id_from_metadata
from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import embeddings_pb2 as epb

__all__ = ["Embedded", "EmbeddingsEngine", "Pricer"]

# (usage, target, model that answered) -> USD, filling usage.cost; None when the model has no price.
Pricer = Callable[[pb.Usage, Target, str], float | None]


@dataclass(frozen=True, slots=True)
class Embedded:
    """What :meth:`EmbeddingsEngine.embed_texts` returns."""

    vectors: list[list[float]]  # one per text, in the texts' order
    usage: pb.Usage  # the upstream's token counts, with ``cost`` filled when the model is priced
    cost: float | None  # USD; None when the model has no price
    provider: str  # the provider that answered
    model: str  # the upstream model (or Azure deployment) that answered


class EmbeddingsEngine:
    def __init__(
        self,
        config: Config,
        providers: Mapping[str, Provider],
        plugins: Sequence[Plugin] = (),
        *,
        router: Router | None = None,
        price: Pricer | None = None,
    ) -> None:
        """``router``: share the chat engine's circuit breakers by passing a Router built on its
        ``Health``; ``price``: ``Governance.price_usage`` (None: costs are not computed)."""
        self._config = config
        self._providers = providers
        # Which providers serve embeddings is known at start; a call only looks it up.
        self._embedders: dict[str, Embedder] = {
            name: provider for name, provider in providers.items() if isinstance(provider, Embedder)
        }
        self._router = router or Router(config, health=health_for(config))
        self._retry = RetryPolicy(config.retries)
        self._price = price
        self.pipeline = Pipeline(plugins, embeddings=True)
        self._bare = Pipeline((), embeddings=True)  # embed_texts' default: no plugins

    # ---------------------------------------------------------------- the two entry points

    async def create(
        self,
        request: epb.EmbeddingsRequest,
        timeout_s: float | None = None,
        metadata: Metadata = (),
        request_id: str | None = None,
    ) -> epb.EmbeddingsResponse:
        """One embeddings call through the plugins; raises ChatError (the contract's error body)."""
        return await self._create(request, timeout_s, metadata, request_id, self.pipeline)

    async def embed_texts(
        self,
        model: str,
        texts: Sequence[str],
        *,
        dimensions: int | None = None,
        metadata: Metadata = (),
        request_id: str | None = None,
        governed: bool = False,
        timeout_s: float | None = None,
    ) -> Embedded:
        """``texts`` embedded by ``model`` (a deployment id or ``provider/model``): see the module
        docstring. ``request_id`` defaults to the id of the call the current task serves."""
        request = epb.EmbeddingsRequest(
            model=model, input_texts=pb.StringList(values=texts), encoding_format="base64"
        )
        if dimensions is not None:
            request.dimensions = dimensions
        if request_id is None:
            current = current_request_id.get()
            request_id = current if current != "-" else new_request_id()
        pipeline = self.pipeline if governed else self._bare
        response = await self._create(request, timeout_s, metadata, request_id, pipeline)
        items = sorted(response.data, key=lambda item: item.index)
        return Embedded(
            vectors=[codec.vector_floats(item) for item in items],
            usage=response.usage,
            cost=response.usage.cost.total_cost if response.usage.HasField("cost") else None,
            provider=response.extra_fields.provider,
            model=response.extra_fields.model_deployment,
        )

    # ---------------------------------------------------------------- the path

    async def _create(
        self,
        request: epb.EmbeddingsRequest,
        timeout_s: float | None,
        metadata: Metadata,
        request_id: str | None,
        pipeline: Pipeline,
    ) -> epb.EmbeddingsResponse:
        request_id = request_id or request_id_from_metadata(metadata)
        current_request_id.set(request_id)
        ctx = EmbeddingContext(request, False, request_id, metadata, pipeline.new_slots())
        try:
            with CallEdge(ctx):
                async with asyncio.timeout(budget_s(self._config, timeout_s)):
                    response = await self._route(ctx, pipeline)
                self._deliver(ctx, response)
                return response
        finally:
            await pipeline.on_finish(ctx)

    async def _route(self, ctx: EmbeddingContext, pipeline: Pipeline) -> epb.EmbeddingsResponse:
        """Pre hooks, validation and the plan; then each target through retries and fallbacks."""
        await pipeline.on_request(ctx)  # a refusal raises; no embeddings plugin answers by itself
        request = ctx.request
        validate_embeddings(request)
        plan = self._servable(self._router.plan(ctx.model_requested, request.fallbacks))
        plan = pipeline.on_plan(ctx, plan)

        async def try_one(target: Target, fallback_follows: bool) -> epb.EmbeddingsResponse:
            embedder = self._embedders[target.provider]  # _servable kept only these
            with unserialisable():
                prepared = embedder.prepare_embeddings(request, target)
            return await try_target(
                ctx,
                pipeline,
                self._router,
                self._retry,
                target,
                embedder.config,
                prepared,
                lambda key_index: self._send(embedder, prepared, key_index),
                fallback_follows=fallback_follows,
            )

        return await call_with_fallbacks(plan, try_one, ctx.attempts, self._router.health)

    async def _send(self, embedder: Embedder, prepared: Prepared, key_index: int) -> epb.EmbeddingsResponse:
        target = prepared.target
        config = embedder.config
        ttft_s = (target.timeouts or config.timeouts).ttft_s  # as chat's unary calls
        return await answered_within(target, ttft_s, embedder.embed(prepared, config.keys[key_index]))

    def _servable(self, plan: RoutePlan) -> RoutePlan:
        """The plan without the targets whose provider serves no embeddings: the primary's is a
        400 (the caller asked for something that cannot work), a fallback's is skipped."""
        embedders = self._embedders
        primary, *fallbacks = plan.targets
        if primary.provider not in embedders:
            raise self._unsupported(primary)
        if all(t.provider in embedders for t in fallbacks) and all(
            t.provider in embedders for t in plan.context_targets
        ):
            return plan
        kept = [primary]
        skipped = list(plan.skipped)
        for target in fallbacks:
            if target.provider in embedders:
                kept.append(target)
            else:
                skipped.append((target.ref or target.label, self._unsupported(target).message))
        context = tuple(t for t in plan.context_targets if t.provider in embedders)
        return RoutePlan(tuple(kept), tuple(skipped), context)

    def _unsupported(self, target: Target) -> GatewayError:
        provider = self._providers.get(target.provider)
        if provider is None:
            why = f"provider {target.provider!r} is not configured"
        else:
            why = f"provider {target.provider!r} (kind {provider.config.kind}) does not serve embeddings"
        return GatewayError(
            400,
            "invalid_request_error",
            f"{why}, so model {target.model!r} cannot be used for embeddings",
            param="model",
            failure=FailureClass.CALLER,
            provider=target.provider,
            model=target.model,
        )

    def _deliver(self, ctx: EmbeddingContext, response: epb.EmbeddingsResponse) -> None:
        """Usage, cost and extra_fields on the answer, before the plugins' on_finish sees them."""
        target = ctx.target
        assert target is not None  # set by the target that answered
        if response.HasField("usage"):
            usage = response.usage
            if not usage.total_tokens:
                usage.total_tokens = usage.prompt_tokens + usage.completion_tokens
            ctx.usage = usage
            if self._price is not None:
                ctx.cost = self._price(usage, target, response.model)
        fill_extra(response.extra_fields, ctx, target)
