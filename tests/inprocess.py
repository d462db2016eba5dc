"""An engine in this process, for the fast suites: a fake upstream on ``httpx.MockTransport``
(each provider ``name`` answers at ``https://{name}.example``), two providers, fast retries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson

from service.engine import ChatEngine
from service.pipeline import Plugin
from service.providers import ProviderContext, build_provider
from switchyard.config import Config, parse_config
from switchyard.v1 import chat_pb2 as pb

Handler = Callable[[httpx.Request], httpx.Response]


class Upstream:
    def __init__(self) -> None:
        self.replies: dict[str, list[Handler]] = {}
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host.split(".")[0]
        self.seen.append(host)
        handlers = self.replies[host]
        return (handlers.pop(0) if len(handlers) > 1 else handlers[0])(request)


def ok(text: str = "hello") -> Handler:
    body = {
        "id": "r",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }
    return lambda _r: httpx.Response(200, json=body)


def status(code: int) -> Handler:
    return lambda _r: httpx.Response(code, json={"error": {"message": f"status {code}"}})


def sse(*payloads: dict[str, Any]) -> Handler:
    raw = b"".join(b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads) + b"data: [DONE]\n\n"
    return lambda _r: httpx.Response(200, content=raw)


def delta(text: str | None = None, finish: str | None = None, role: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if role:
        d["role"] = role
    if text is not None:
        d["content"] = text
    return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


def usage() -> dict[str, Any]:
    return {
        "id": "c",
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
    }


def engine(
    upstream: Upstream, plugins: list[Plugin], extra: dict[str, Any] | None = None, **retries: Any
) -> ChatEngine:
    """``extra``: more config sections (``deployments``…)."""
    config = engine_config(extra, **retries)
    context = ProviderContext(transport=httpx.MockTransport(upstream))
    providers = {name: build_provider(p, context) for name, p in config.providers.items()}
    return ChatEngine(config, providers, plugins)


def engine_config(extra: dict[str, Any] | None = None, **retries: Any) -> Config:
    """Providers ``primary`` and ``backup`` (kind openai, one key each), fast retries."""
    return parse_config(
        {
            "routing": {"default_provider": "primary"},
            "retries": {"max_retries": 1, "backoff_initial_ms": 1, "backoff_max_ms": 1, **retries},
            "providers": {
                name: {"kind": "openai", "base_url": f"https://{name}.example/v1", "keys": [{"value": "k"}]}
                for name in ("primary", "backup")
            },
            **(extra or {}),
        },
        env={},
    )


def request(**fields: Any) -> pb.ChatCompletionRequest:
    fields.setdefault("model", "m")
    return pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", text="hi")], **fields)
