"""Context-window fallbacks: a prompt too long for the target's model moves to the deployment's
``context_fallbacks`` (bigger models), never to its ordinary fallbacks, whichever dialect said so."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.engine import ChatError
from service.errors import CONTEXT_LENGTH_EXCEEDED
from service.providers.anthropic.errors import anthropic_error
from service.providers.bedrock.errors import bedrock_error
from service.providers.google.errors import google_error
from switchyard.config import ConfigError, parse_config
from tests.inprocess import Handler, Upstream, engine, ok, request

DEPLOYMENTS = {
    "deployments": {
        "small": {
            "targets": [{"provider": "primary", "model": "small-model"}],
            "fallbacks": ["primary/ordinary-fallback"],
            "context_fallbacks": ["backup/big-model"],
        },
        "plain": {
            "targets": [{"provider": "primary", "model": "small-model"}],
            "fallbacks": ["backup/ordinary-fallback"],
        },
    }
}


def too_long() -> Handler:
    body = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    return lambda _r: httpx.Response(400, json=body)


def models_asked(upstream: Upstream, seen: list[str]) -> Handler:
    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(httpx.Response(200, content=req.content).json()["model"])
        return ok("from the big model")(req)

    return handler


async def test_a_prompt_too_long_moves_to_the_context_fallbacks_only() -> None:
    upstream = Upstream()
    seen: list[str] = []
    upstream.replies["primary"] = [too_long()]
    upstream.replies["backup"] = [models_asked(upstream, seen)]
    sy = engine(upstream, [], DEPLOYMENTS)
    response = await sy.create(request(model="small"))
    assert response.choices[0].message.text == "from the big model"
    assert seen == ["big-model"]  # not the ordinary fallback
    assert upstream.seen == ["primary", "backup"]  # a caller error: the primary is not retried
    (failed,) = response.extra_fields.attempts
    assert failed.status_code == 400 and failed.model == "small-model"
    assert (
        response.extra_fields.provider == "backup" and response.extra_fields.model_deployment == "big-model"
    )


async def test_without_context_fallbacks_it_stays_a_caller_error() -> None:
    upstream = Upstream()
    upstream.replies["primary"] = [too_long()]
    upstream.replies["backup"] = [ok()]
    sy = engine(upstream, [], DEPLOYMENTS)
    with pytest.raises(ChatError) as caught:
        await sy.create(request(model="plain"))
    assert caught.value.body.status_code == 400
    assert caught.value.body.error.code == CONTEXT_LENGTH_EXCEEDED
    assert upstream.seen == ["primary"]  # never routed around to the ordinary fallback


ANTHROPIC_TOO_LONG = "prompt is too long: 208000 tokens > 200000 maximum"
GEMINI_TOO_LONG = "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576)."
BEDROCK_TOO_LONG = "Input is too long for requested model."


def anthropic(message: str) -> Any:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return anthropic_error(400, body, {}, provider="a", model="m")


def gemini(message: str) -> Any:
    body = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
    return google_error(400, body, {}, provider="g", model="m")


def bedrock(status: int, error_type: str, message: str) -> Any:
    return bedrock_error(
        status, {"message": message}, {"x-amzn-errortype": error_type}, provider="b", model="m"
    )


def test_dialects_without_a_code_say_it_in_their_message() -> None:
    assert anthropic(ANTHROPIC_TOO_LONG).code == CONTEXT_LENGTH_EXCEEDED
    assert anthropic("max_tokens: must be positive").code is None
    assert gemini(GEMINI_TOO_LONG).code == CONTEXT_LENGTH_EXCEEDED
    assert gemini("Invalid value at 'contents'").code is None
    assert bedrock(400, "ValidationException", BEDROCK_TOO_LONG).code == CONTEXT_LENGTH_EXCEEDED
    # Only a 400 says the prompt is the problem.
    assert bedrock(503, "ServiceUnavailableException", BEDROCK_TOO_LONG).code is None


def test_context_fallbacks_are_checked_like_fallbacks() -> None:
    raw = {
        "providers": {"p": {"kind": "openai", "base_url": "https://p.example/v1"}},
        "routing": {"default_provider": "p"},
        "deployments": {"d": {"targets": [{"provider": "p", "model": "m"}], "context_fallbacks": ["nope/x"]}},
    }
    with pytest.raises(ConfigError, match=r"deployments\.d\.context_fallbacks\[0\]"):
        parse_config(raw, env={})
