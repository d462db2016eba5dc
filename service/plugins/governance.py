"""Governance as a plugin: who may call, what they may reach and spend, and the request log.

The rules themselves live in ``service/governance.py`` (auth, keys, budgets, pricing); this
module only says *when* they apply in a call:

- ``on_request``: admission (credential -> virtual key -> rate limit); a refusal of a known
  key is remembered, so the request log files it under that key and team;
- ``on_plan``: the key's allowed models and providers (disallowed fallbacks are skipped);
- ``before_target`` / ``after_target``: the worst-case cost is reserved before a target is
  tried, released if it fails, kept if it answers;
- ``on_response`` / ``on_chunk``: usage is priced into ``usage.cost``;
- ``on_finish``: the reservation is settled at the real cost and the call is logged.

Embeddings calls go through the same hooks but the response ones: their engine prices the
usage itself (the cache's internal embedding calls skip this plugin, yet report their cost).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import orjson

from service.counters import Reservation
from service.governance import OPEN, Admission, Governance, Refused
from service.pipeline import CallContext, Plugin
from service.providers import Prepared
from service.records import LogEntry
from service.routing import RoutePlan, Target
from switchyard import codec
from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import embeddings_pb2 as epb

log = logging.getLogger("switchyard.service")


@dataclass(slots=True)
class _State:
    admission: Admission = OPEN
    pending: Reservation | None = None  # held for the target being tried
    reservation: Reservation | None = None  # held for the target that answered
    completion: list[str] | None = None  # content for the request log, when it keeps content


class GovernancePlugin(Plugin):
    name = "governance"
    embeddings = True

    def __init__(self, governance: Governance) -> None:
        self.governance = governance
        self._content = governance.include_content

    def _state(self, ctx: CallContext) -> _State:
        state: _State = ctx.slots[self.slot]
        return state

    async def on_request(self, ctx: CallContext) -> pb.ChatCompletionResponse | None:
        state = ctx.slots[self.slot] = _State(completion=[] if self._content else None)
        try:
            state.admission = admission = await self.governance.admit(ctx.metadata)
        except Refused as err:
            if err.admission is not None:  # the key was identified: log the refusal under it
                state.admission = admission = err.admission
                ctx.key_id, ctx.team_id = admission.key_id, admission.team_id
            raise
        ctx.key_id, ctx.team_id = admission.key_id, admission.team_id
        return None

    def on_plan(self, ctx: CallContext, plan: RoutePlan) -> RoutePlan:
        return self.governance.check_plan(self._state(ctx).admission, plan)

    async def before_target(self, ctx: CallContext, target: Target, prepared: Prepared) -> None:
        state = self._state(ctx)
        state.pending = await self.governance.reserve(
            state.admission, target, ctx.request, len(prepared.body)
        )

    async def after_target(self, ctx: CallContext, target: Target, error: BaseException | None) -> None:
        state = self._state(ctx)
        pending, state.pending = state.pending, None
        if error is None:
            state.reservation = pending
        elif pending is not None:  # nothing was spent on this target: release it
            try:
                await self.governance.settle(state.admission, pending, None, 0)
            except Exception:  # the target's own error is the one the caller must see
                log.exception("releasing a budget reservation failed request_id=%s", ctx.request_id)

    def on_response(self, ctx: CallContext, response: pb.ChatCompletionResponse) -> None:
        self._account(ctx, response)
        completion = self._state(ctx).completion
        if completion is not None:
            completion.extend(c.message.text for c in response.choices)

    def on_chunk(self, ctx: CallContext, chunk: pb.ChatCompletionChunk) -> None:
        self._account(ctx, chunk)
        completion = self._state(ctx).completion
        if completion is not None:
            completion.extend(c.delta.text for c in chunk.choices)

    def _account(self, ctx: CallContext, answer: pb.ChatCompletionResponse | pb.ChatCompletionChunk) -> None:
        """Price the usage an answer reports into its ``usage.cost`` (the caller sees it there)."""
        if answer.HasField("usage") and ctx.target is not None:
            ctx.cost = self.governance.price_usage(answer.usage, ctx.target, answer.model)

    async def on_finish(self, ctx: CallContext) -> None:
        """Settle the budget and write the request-log entry."""
        governance = self.governance
        state = self._state(ctx)
        usage = ctx.usage
        try:
            await governance.settle(
                state.admission, state.reservation, ctx.cost, usage.total_tokens if usage else 0
            )
        except Exception:
            log.exception("settling the budget of a request failed request_id=%s", ctx.request_id)
        if not governance.keeps_logs:
            return
        target = ctx.target
        cache = ctx.cache
        content = None
        if state.completion is not None:
            content = _content_json(ctx, state.completion)
        governance.record(
            LogEntry(
                id=uuid.uuid4().hex,
                ts=ctx.started_at,
                request_type=ctx.request_type,
                model_requested=ctx.model_requested,
                status=ctx.status,
                latency_ms=ctx.latency_ms(),
                key_id=state.admission.key_id,
                team_id=state.admission.team_id,
                # A cache hit has no target: the provider and model that made the cached answer.
                provider=target.provider if target else (cache.provider if cache else ""),
                model_served=target.model if target else (cache.model if cache else ""),
                error_type=ctx.error_type,
                attempts_json=_attempts_json(ctx.attempts),
                prompt_tokens=usage.prompt_tokens if usage else 0,
                completion_tokens=usage.completion_tokens if usage else 0,
                total_tokens=usage.total_tokens if usage else 0,
                cost=ctx.cost,
                content_json=content,
                request_id=ctx.request_id,
                cache_hit_type=cache.hit_type if cache else None,
                cache_id=cache.cache_id if cache else None,
            )
        )


def _content_json(ctx: CallContext, completion: list[str]) -> str:
    """The request log's content: a chat's messages and completion; an embedding's input (the
    vectors are not kept)."""
    request = ctx.request
    if isinstance(request, epb.EmbeddingsRequest):
        return orjson.dumps({"input": codec.embeddings_request_to_dict(request).get("input")}).decode()
    messages = codec.request_to_dict(request).get("messages", [])
    return orjson.dumps({"messages": messages, "completion": "".join(completion)}).decode()


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
