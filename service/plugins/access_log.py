"""One log line per finished request, on the ``switchyard.access`` logger at info level.

In JSON mode (``logging.format: json``) the fields are the object's keys; in text mode they
follow the message as ``name=value``. ``logging.access_log: false`` turns the line off.
Key and team ids only, never a credential; no prompt or completion text.
"""

from __future__ import annotations

import logging

from service.pipeline import CallContext, Plugin
from switchyard.logs import ACCESS_LOGGER, log_fields

log = logging.getLogger(ACCESS_LOGGER)


class AccessLogPlugin(Plugin):
    name = "access_log"
    embeddings = True  # the same line for embeddings calls (route "embedding")

    async def on_finish(self, ctx: CallContext) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        target = ctx.target
        usage = ctx.usage
        log_fields(
            log,
            logging.INFO,
            f"{ctx.request_type} {ctx.model_requested} -> {ctx.status}",
            {
                "route": ctx.request_type,
                "status": ctx.status,
                "latency_ms": ctx.latency_ms(),
                "model": ctx.model_requested,
                "provider": target.provider if target else None,
                "model_served": target.model if target else None,
                "error_type": ctx.error_type,
                "key_id": ctx.key_id,
                "team_id": ctx.team_id,
                "attempts": len(ctx.attempts) + (1 if target else 0),
                "prompt_tokens": usage.prompt_tokens if usage else None,
                "completion_tokens": usage.completion_tokens if usage else None,
                "cost_usd": ctx.cost,
            },
        )
