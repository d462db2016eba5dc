"""Metrics, traces and logs, end to end: real Switchyard processes (one ``serve``, and a split
``service`` + ``gateway``), a fake upstream, and a real OTLP receiver in this process.

Counts are checked as differences between two scrapes, so the tests do not depend on order.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import chat_pb2_grpc
from tests.e2e.governed import (
    ADMIN_TOKEN,
    GOVERNED_ENV,
    SEEDED_KEY,
    SEEDED_KEY_ID,
    admin_headers,
    chat_body,
    create_key,
    governed_config,
)
from tests.fakes.otlp import FakeOtlpReceiver, Span
from tests.fakes.upstream import FakeUpstream, Reply, Usage
from tests.support import SECRETS, Stack, free_port, start_stack

STATIC = {"environment": "test-env", "region": "eu-test"}
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SERVER, CLIENT = 2, 3  # OTLP span kinds


@pytest.fixture(scope="module")
def otlp() -> Iterator[FakeOtlpReceiver]:
    with FakeOtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module", params=["inprocess", "split"])
def telemetry_stack(
    request: pytest.FixtureRequest,
    upstream_server: FakeUpstream,
    otlp: FakeOtlpReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, str]]:
    workdir = tmp_path_factory.mktemp(f"telemetry-{request.param}")
    metrics_port = free_port()
    config = governed_config(
        upstream_server.url,
        workdir,
        logging={"format": "json", "access_log": True},
        telemetry={
            "metrics": {"labels": STATIC, "key_labels": True, "max_keys": 3},
            "metrics_port": metrics_port,
            "tracing": {"otlp_endpoint": otlp.url, "service_name": "switchyard-e2e"},
        },
    )
    # Export each batch within 100 ms, not the SDK's default 5 s.
    env = {**GOVERNED_ENV, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    stack = start_stack(request.param, config, workdir, env)
    # A service alone serves its own /metrics; one `serve` process has one registry, on the REST port.
    service_metrics = (
        f"http://127.0.0.1:{metrics_port}/metrics"
        if request.param == "split"
        else f"{stack.base_url}/metrics"
    )
    yield stack, service_metrics
    stack.stop()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return round(total(after, name, **labels) - total(before, name, **labels), 9)


def vk(secret: str = SEEDED_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def test_a_call_is_counted_by_route_provider_model_status_key_and_team(
    telemetry_stack: tuple[Stack, str], upstream: FakeUpstream
) -> None:
    stack, metrics_url = telemetry_stack
    upstream.script(
        Reply.ok("fine", usage=Usage(10, 4, cached_tokens=6, reasoning_tokens=2)),
        Reply.stream(["a", "b", "c"], usage=Usage(7, 3)),
    )
    before = scrape(metrics_url)
    unary = httpx.post(
        f"{stack.base_url}/openai/deployments/priced/chat/completions?api-version=2024-10-21",
        json=chat_body(),
        headers=vk(),
        timeout=10,
    )
    assert unary.status_code == 200, unary.text
    with httpx.stream(
        "POST",
        f"{stack.base_url}/openai/deployments/priced/chat/completions?api-version=2024-10-21",
        json=chat_body(stream=True),
        headers=vk(),
        timeout=10,
    ) as streamed:
        assert streamed.status_code == 200
        assert b"[DONE]" in streamed.read()
    after = scrape(metrics_url)

    who = {"key": SEEDED_KEY_ID, "team": "seed-team", **STATIC}
    model = {"provider": "azure", "model": "priced-dep"}
    ok = {**model, "status_class": "2xx", "error_type": "", **who}
    assert delta(before, after, "switchyard_requests_total", route="chat_completion", **ok) == 1
    assert delta(before, after, "switchyard_requests_total", route="chat_completion_stream", **ok) == 1
    for route in ("chat_completion", "chat_completion_stream"):
        count = "gen_ai_server_request_duration_seconds_count"
        assert delta(before, after, count, route=route, status_class="2xx", **model, **STATIC) == 1
        assert delta(before, after, "switchyard_added_latency_seconds_count", route=route, **STATIC) == 1
    assert delta(before, after, "gen_ai_server_time_to_first_token_seconds_count", **model, **STATIC) == 1
    tokens = "gen_ai_client_token_usage_sum"
    assert delta(before, after, tokens, token_type="input", **model, **who) == 17
    assert delta(before, after, tokens, token_type="output", **model, **who) == 7
    assert delta(before, after, tokens, token_type="cached_input", **model, **who) == 6
    assert delta(before, after, tokens, token_type="reasoning", **model, **who) == 2
    # priced-model: 0.001 USD per input token, 0.002 per output, 0.0005 per cached, 0.003 reasoning.
    cost = delta(before, after, "switchyard_cost_usd_total", **model, **who)
    assert cost == pytest.approx(4 * 0.001 + 6 * 0.0005 + 4 * 0.002 + 7 * 0.001 + 3 * 0.002, rel=0.2)
    assert cost > 0
    assert delta(before, after, "switchyard_upstream_attempts_total", outcome="success", **model) == 2
    assert (
        delta(before, after, "gen_ai_client_operation_duration_seconds_count", outcome="success", **model)
        == 2
    )
    assert delta(before, after, "switchyard_request_log_writes_total", **STATIC) >= 0
    assert total(after, "switchyard_in_flight_requests", route="chat_completion", **STATIC) == 0
    assert total(after, "switchyard_open_streams", **STATIC) == 0


def test_retries_fallbacks_and_refusals_are_counted_by_reason(
    telemetry_stack: tuple[Stack, str], upstream: FakeUpstream
) -> None:
    stack, metrics_url = telemetry_stack
    # `chat`: azure/chat-prod (3 attempts: max_retries 2), then openai/gpt-fb-config.
    upstream.script(Reply.status(503), Reply.status(503), Reply.status(503), Reply.ok("rescued"))
    before = scrape(metrics_url)
    rescued = httpx.post(
        f"{stack.base_url}/openai/deployments/chat/chat/completions?api-version=2024-10-21",
        json=chat_body(),
        headers=vk(),
        timeout=10,
    )
    assert rescued.status_code == 200, rescued.text
    refused = httpx.post(
        f"{stack.base_url}/openai/deployments/chat/chat/completions?api-version=2024-10-21",
        json=chat_body(),
        headers=vk("sk-bf-not-a-real-key"),
        timeout=10,
    )
    assert refused.status_code == 401
    after = scrape(metrics_url)

    azure = {"provider": "azure", "model": "chat-prod"}
    assert delta(before, after, "switchyard_upstream_attempts_total", outcome="transient", **azure) == 3
    assert delta(before, after, "switchyard_retries_total", provider="azure", reason="transient") == 2
    assert delta(before, after, "switchyard_fallbacks_total", provider="azure", reason="transient") == 1
    served = {"provider": "openai", "model": "gpt-fb-config", "status_class": "2xx"}
    assert delta(before, after, "switchyard_requests_total", **served, **STATIC) == 1
    # Added latency is measured on calls their first attempt answered: not this one.
    assert delta(before, after, "switchyard_added_latency_seconds_count", route="chat_completion") == 0
    refusal_type = refused.json()["type"]
    assert delta(before, after, "switchyard_refusals_total", status="401", type=refusal_type, **STATIC) == 1
    assert (
        delta(
            before,
            after,
            "switchyard_requests_total",
            status_class="4xx",
            provider="",
            error_type=refusal_type,
        )
        == 1
    )


def test_key_labels_are_capped_and_static_labels_are_on_every_series(
    telemetry_stack: tuple[Stack, str], upstream: FakeUpstream
) -> None:
    stack, metrics_url = telemetry_stack
    for i in range(4):
        secret, _ = create_key(stack.base_url, name=f"cap-{i}")
        answer = httpx.post(
            f"{stack.base_url}/openai/deployments/chat/chat/completions?api-version=2024-10-21",
            json=chat_body(),
            headers=vk(secret),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
    samples = scrape(metrics_url)
    keys = {dict(labels)["key"] for name, labels in samples if name == "switchyard_requests_total"}
    assert "other" in keys
    assert len(keys - {"other"}) <= 3  # max_keys
    urls = {metrics_url, f"{stack.base_url}/metrics"}  # split: the gateway's own registry too
    for url in urls:
        scraped = scrape(url)
        assert total(scraped, "process_resident_memory_bytes", **STATIC) > 0
        unlabelled = [name for name, labels in scraped if not set(STATIC.items()) <= labels]
        assert unlabelled == []


def _spans_of(otlp: FakeOtlpReceiver, trace_id: str, count: int) -> list[Span]:
    spans = otlp.trace(trace_id, count)
    assert len(spans) >= count, [s.name for s in spans]
    return spans


def test_a_traced_call_joins_the_callers_trace_and_reaches_the_upstream(
    telemetry_stack: tuple[Stack, str], upstream: FakeUpstream, otlp: FakeOtlpReceiver
) -> None:
    stack, _ = telemetry_stack
    trace_id = CALLER_TRACE[:-4] + stack.mode[:4].encode().hex()[:4]
    upstream.script(Reply.status(503), Reply.ok("traced", usage=Usage(11, 5)))
    answer = httpx.post(
        f"{stack.base_url}/openai/deployments/priced/chat/completions?api-version=2024-10-21",
        json=chat_body(temperature=0.25, max_tokens=64, seed=7, stop=["END"]),
        headers={**vk(), "traceparent": f"00-{trace_id}-{CALLER_SPAN}-01", "tracestate": "vendor=1"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    spans = _spans_of(otlp, trace_id, 3)
    (chat,) = [s for s in spans if s.kind == SERVER]
    attempts = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.attributes["switchyard.retry"])
    assert chat.name == "chat priced" and chat.parent_span_id == CALLER_SPAN
    assert chat.resource["service.name"] == "switchyard-e2e"
    attributes = chat.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert attributes["gen_ai.request.model"] == "priced"
    assert attributes["gen_ai.response.model"]
    assert attributes["gen_ai.request.temperature"] == 0.25
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gen_ai.request.seed"] == 7
    assert attributes["gen_ai.request.stop_sequences"] == ["END"]
    assert attributes["gen_ai.usage.input_tokens"] == 11
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["switchyard.key_id"] == SEEDED_KEY_ID
    assert attributes["switchyard.team_id"] == "seed-team"
    assert "gen_ai.input.messages" not in attributes  # include_content is off
    assert chat.events == []  # governance admitted: attributes, no refusal event

    assert [a.attributes["switchyard.retry"] for a in attempts] == [0, 1]
    for attempt in attempts:
        assert attempt.parent_span_id == chat.span_id
        assert attempt.name == "chat priced-dep"
        assert attempt.attributes["gen_ai.provider.name"] == "azure.ai.openai"
        assert attempt.attributes["switchyard.key.name"] == "key0"  # its name, never its value
    assert attempts[0].attributes["http.response.status_code"] == 503
    assert attempts[0].attributes["error.type"] and attempts[0].status_code == 2  # ERROR
    assert attempts[1].attributes["http.response.status_code"] == 200

    # Each upstream request carried its own attempt's context.
    sent = [r.header("traceparent") for r in upstream.requests]
    assert sent == [f"00-{trace_id}-{a.span_id}-01" for a in attempts]


def test_a_refused_call_is_traced_with_the_refusal(
    telemetry_stack: tuple[Stack, str], upstream: FakeUpstream, otlp: FakeOtlpReceiver
) -> None:
    stack, _ = telemetry_stack
    trace_id = "5" * 28 + stack.mode[:4].encode().hex()[:4]
    refused = httpx.post(
        f"{stack.base_url}/openai/deployments/chat/chat/completions?api-version=2024-10-21",
        json=chat_body(),
        headers={**vk("sk-bf-wrong"), "traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"},
        timeout=10,
    )
    assert refused.status_code == 401
    (chat,) = _spans_of(otlp, trace_id, 1)
    assert chat.attributes["error.type"] == refused.json()["type"]
    assert chat.status_code == 2
    (event,) = chat.events
    assert event == (
        "switchyard.governance.refused",
        {"http.response.status_code": 401, "error.type": refused.json()["type"]},
    )
    assert upstream.requests == []


def test_grpc_callers_trace_context_is_taken_from_metadata(
    telemetry_stack: tuple[Stack, str], upstream: FakeUpstream, otlp: FakeOtlpReceiver
) -> None:
    stack, _ = telemetry_stack
    trace_id = "6" * 28 + stack.mode[:4].encode().hex()[:4]
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatCompletionsStub(channel)
        answer = stub.Create(
            pb.ChatCompletionRequest(
                deployment_id="priced", messages=[pb.ChatMessage(role="user", text="hi")]
            ),
            metadata=[
                ("authorization", f"Bearer {SEEDED_KEY}"),
                ("traceparent", f"00-{trace_id}-{CALLER_SPAN}-01"),
            ],
            timeout=10,
        )
    assert answer.choices[0].message.text
    spans = _spans_of(otlp, trace_id, 2)
    (chat,) = [s for s in spans if s.kind == SERVER]
    assert chat.parent_span_id == CALLER_SPAN
    (sent,) = upstream.requests
    assert (sent.header("traceparent") or "").startswith(f"00-{trace_id}-")


def test_json_logs_carry_one_access_line_per_request_and_no_secret(
    telemetry_stack: tuple[Stack, str], upstream: FakeUpstream, otlp: FakeOtlpReceiver
) -> None:
    stack, _ = telemetry_stack
    request_id = f"access-line-{stack.mode}"
    trace_id = "7" * 28 + stack.mode[:4].encode().hex()[:4]
    upstream.script(Reply.ok("logged", usage=Usage(9, 2)))
    answer = httpx.post(
        f"{stack.base_url}/openai/deployments/priced/chat/completions?api-version=2024-10-21",
        json=chat_body(),
        headers={**vk(), "x-request-id": request_id, "traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"},
        timeout=10,
    )
    assert answer.status_code == 200
    _spans_of(otlp, trace_id, 2)  # by now the service has logged the line too
    service_log = Path(stack.log_paths[0]).read_text()
    lines = [orjson.loads(line) for line in service_log.splitlines() if line.startswith("{")]
    assert lines and len(lines) == len([line for line in service_log.splitlines() if line.strip()])
    (access,) = [e for e in lines if e["logger"] == "switchyard.access" and e.get("request_id") == request_id]
    assert access["level"] == "info" and access["time"].endswith("Z")
    assert access["trace_id"] == trace_id
    assert access["status"] == 200 and access["latency_ms"] >= 0
    assert access["model"] == "priced" and access["provider"] == "azure"
    assert access["key_id"] == SEEDED_KEY_ID and access["team_id"] == "seed-team"
    assert access["prompt_tokens"] == 9 and access["completion_tokens"] == 2
    for secret in (*SECRETS, SEEDED_KEY, ADMIN_TOKEN):
        assert secret not in stack.logs()
        for body in otlp.raw:
            assert secret.encode() not in body
            assert base64.b64encode(secret.encode()) not in body


def test_metrics_need_no_credentials_and_reveal_none(telemetry_stack: tuple[Stack, str]) -> None:
    stack, metrics_url = telemetry_stack
    text = httpx.get(metrics_url, timeout=10).text + httpx.get(f"{stack.base_url}/metrics", timeout=10).text
    for secret in (*SECRETS, SEEDED_KEY, ADMIN_TOKEN):
        assert secret not in text
    # The admin API still needs its token: /metrics is the only open operations route.
    assert httpx.get(f"{stack.base_url}/api/stats", timeout=10).status_code == 401
    assert httpx.get(f"{stack.base_url}/api/stats", headers=admin_headers(), timeout=10).status_code == 200
