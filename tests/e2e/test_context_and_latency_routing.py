"""Routing that learns, end to end: the `openai` SDK calls a real `switchyard serve`.

- A prompt too long for the primary's model (the fake answers context_length_exceeded) is served
  by the deployment's context fallback, never by its ordinary fallback.
- A latency-routed deployment sends most calls to its faster target."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import Stack, base_config, free_port, start_stack

TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


@pytest.fixture(scope="module")
def context_stack(upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = base_config(upstream_server.url, free_port(), free_port())
    config["deployments"]["small"] = {
        "targets": [{"provider": "azure", "model": "small-8k"}],
        "fallbacks": ["openai/ordinary-fallback"],
        "context_fallbacks": ["openai/big-128k"],
    }
    stack = start_stack("inprocess", config, tmp_path_factory.mktemp("context"))
    yield stack
    stack.stop()


def test_a_prompt_too_long_is_served_by_the_bigger_model(
    context_stack: Stack, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.status(400, body=TOO_LONG), Reply.ok("the big model read it all"))
    client = openai.AzureOpenAI(
        azure_endpoint=context_stack.base_url, api_key="any", api_version="2024-10-21", max_retries=0
    )
    completion = client.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "a very long prompt"}]
    )
    assert completion.choices[0].message.content == "the big model read it all"
    first, second = upstream.requests
    assert first.deployment == "small-8k"
    assert second.model == "big-128k"  # the context fallback, not openai/ordinary-fallback
    extra = completion.model_extra["extra_fields"]
    assert extra["model_deployment"] == "big-128k"
    assert [a["status_code"] for a in extra["attempts"]] == [400]


@pytest.fixture(scope="module")
def latency_stack(upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = base_config(upstream_server.url, free_port(), free_port())
    config["deployments"]["lat"] = {
        "routing": "latency",
        "targets": [{"provider": "azure", "model": "slow-dep"}, {"provider": "azure", "model": "fast-dep"}],
    }
    stack = start_stack("inprocess", config, tmp_path_factory.mktemp("latency"))
    yield stack
    stack.stop()


def test_latency_routing_sends_most_calls_to_the_faster_target(
    latency_stack: Stack, upstream: FakeUpstream
) -> None:
    upstream.script(*(Reply.slow(0.05) for _ in range(100)), match="slow-dep")
    client = openai.AzureOpenAI(
        azure_endpoint=latency_stack.base_url, api_key="any", api_version="2024-10-21", max_retries=0
    )
    for _ in range(40):
        client.chat.completions.create(model="lat", messages=[{"role": "user", "content": "hi"}])
    served = [r.deployment for r in upstream.requests]
    assert served.count("fast-dep") > 30, served
    assert served.count("slow-dep") >= 1  # measured at least once
