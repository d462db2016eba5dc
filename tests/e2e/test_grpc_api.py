"""End to end over the network gRPC API, with the generated stub, against real Switchyard processes.

The gRPC port is open in both stack modes, so every test runs against ``inprocess`` and ``split``.
Each test uses its own deployment id so scripted upstream replies never leak between tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import grpc
import orjson
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from switchyard.v1 import chat_pb2, chat_pb2_grpc
from tests.e2e.rpc_errors import error_body, rich_status
from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import AZURE_KEY, ROTATE_KEYS, Stack

SERVICE = "switchyard.v1.ChatCompletions"


@pytest.fixture(scope="module")
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    """One channel per stack for the module (closing a channel costs ~0.2 s)."""
    with grpc.insecure_channel(stack.grpc_target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> chat_pb2_grpc.ChatCompletionsStub:
    return chat_pb2_grpc.ChatCompletionsStub(channel)


def request(deployment: str, text: str = "hi", **fields: object) -> chat_pb2.ChatCompletionRequest:
    return chat_pb2.ChatCompletionRequest(
        deployment_id=deployment,
        messages=[chat_pb2.ChatMessage(role="user", text=text)],
        **fields,  # type: ignore[arg-type]
    )


def expect_error(
    call: Callable[[], object], code: grpc.StatusCode
) -> tuple[dict[str, object], chat_pb2.ErrorBody]:
    """Run ``call``, which must fail with ``code``; -> (its details by type name, its ErrorBody)."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code  # type: ignore[attr-defined]
    _, details = rich_status(info.value)
    return details, error_body(details)


def collect_text(chunks: Iterable[chat_pb2.ChatCompletionChunk], into: list[str]) -> None:
    """Append each non-empty content delta to ``into`` as it arrives (so it survives an error)."""
    for chunk in chunks:
        into.extend(c.delta.text for c in chunk.choices if c.delta.text)


# --------------------------------------------------------------------------- unary


def test_create_unary(stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream) -> None:
    upstream.script(Reply.slow(0.05), match="grpc-unary-1")
    resp = stub.Create(request("grpc-unary-1", "hello grpc"), timeout=10)

    assert resp.object == "chat.completion"
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.WhichOneof("content") == "text"
    assert choice.message.text == "echo: hello grpc"
    assert choice.finish_reason == "stop"
    assert resp.HasField("usage")
    assert resp.usage.total_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    extra = resp.extra_fields
    assert extra.provider == "azure"
    assert extra.model_requested == "grpc-unary-1"
    assert extra.model_deployment == "grpc-unary-1"
    assert extra.request_type == "chat_completion"
    assert extra.latency >= 50  # the upstream took 50 ms
    assert not extra.HasField("chunk_index")
    assert list(extra.attempts) == []

    sent = upstream.requests[-1]
    assert sent.deployment == "grpc-unary-1"
    assert sent.api_version == "2024-10-21"
    assert sent.header("api-key") == AZURE_KEY


# --------------------------------------------------------------------------- streaming


def test_create_stream(stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream) -> None:
    chunks = list(stub.CreateStream(request("grpc-stream-1"), timeout=10))

    assert [c.extra_fields.chunk_index for c in chunks] == list(range(len(chunks)))
    assert all(c.HasField("extra_fields") and c.extra_fields.HasField("chunk_index") for c in chunks)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.extra_fields.request_type == "chat_completion_stream" for c in chunks)
    assert all(c.extra_fields.provider == "azure" for c in chunks)
    pieces = [c.choices[0].delta.text for c in chunks if c.choices and c.choices[0].delta.text]
    assert pieces == ["Hel", "lo", " world"]
    assert "".join(pieces) == "Hello world"
    assert chunks[-1].choices[0].finish_reason == "stop"
    # No usage chunk, though the gateway asked the upstream for one.
    assert all(c.choices for c in chunks)
    assert not any(c.HasField("usage") for c in chunks)
    assert upstream.requests[-1].body["stream_options"]["include_usage"] is True


def test_create_stream_with_usage(stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream) -> None:
    req = request("grpc-stream-2", stream_options=chat_pb2.StreamOptions(include_usage=True))
    chunks = list(stub.CreateStream(req, timeout=10))

    assert [c.extra_fields.chunk_index for c in chunks] == list(range(len(chunks)))
    last = chunks[-1]
    assert len(last.choices) == 0
    assert last.HasField("usage")
    assert last.usage.total_tokens > 0
    assert not any(c.HasField("usage") for c in chunks[:-1])
    text = "".join(c.choices[0].delta.text for c in chunks if c.choices)
    assert text == "Hello world"


# --------------------------------------------------------------------------- errors


def test_rate_limit_rich_status(stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream) -> None:
    upstream.script(*[Reply.status(429, headers={"retry-after-ms": "10"})] * 3, match="grpc-err-429")
    with pytest.raises(grpc.RpcError) as info:
        stub.Create(request("grpc-err-429"), timeout=10)
    err = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]

    status, details = rich_status(err)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "429" in status.message

    error_info = details.get("google.rpc.ErrorInfo")
    assert isinstance(error_info, error_details_pb2.ErrorInfo)
    assert error_info.domain == "switchyard"
    assert error_info.reason == "rate_limit_error"
    assert error_info.metadata["http_status"] == "429"

    retry_info = details.get("google.rpc.RetryInfo")
    assert isinstance(retry_info, error_details_pb2.RetryInfo)
    assert retry_info.retry_delay.ToMilliseconds() == pytest.approx(10, abs=1)

    body = error_body(details)
    assert body.status_code == 429
    assert body.type == "rate_limit_error"
    assert not body.is_bifrost_error  # the upstream's own error
    assert body.error.code == "rate_limit_exceeded"
    assert body.extra_fields.provider == "azure"
    assert body.extra_fields.model_requested == "grpc-err-429"
    assert body.extra_fields.request_type == "chat_completion"
    assert [(a.provider, a.model, a.status_code) for a in body.extra_fields.attempts] == [
        ("azure", "grpc-err-429", 429)
    ] * 3
    assert len(upstream.requests) == 3


def test_range_violation_invalid_argument(
    stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream
) -> None:
    details, body = expect_error(
        lambda: stub.Create(request("grpc-err-400", temperature=5), timeout=10),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert body.status_code == 400
    assert body.error.param == "temperature"
    assert body.is_bifrost_error
    error_info = details.get("google.rpc.ErrorInfo")
    assert isinstance(error_info, error_details_pb2.ErrorInfo)
    assert error_info.metadata["http_status"] == "400"
    assert "google.rpc.RetryInfo" not in details
    assert upstream.requests == []


def test_upstream_404_not_found(stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream) -> None:
    upstream.script(Reply.status(404), match="grpc-err-404")
    _, body = expect_error(
        lambda: stub.Create(request("grpc-err-404"), timeout=10), grpc.StatusCode.NOT_FOUND
    )
    assert body.status_code == 404
    assert body.error.code == "model_not_found"
    assert len(upstream.requests) == 1


def test_stream_error_before_output(stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream) -> None:
    upstream.script(Reply.status(404), match="grpc-err-s404")
    _, body = expect_error(
        lambda: list(stub.CreateStream(request("grpc-err-s404"), timeout=10)), grpc.StatusCode.NOT_FOUND
    )
    assert body.status_code == 404
    assert body.extra_fields.request_type == "chat_completion_stream"


def test_stream_broken_mid_way(stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream) -> None:
    upstream.script(Reply.stream(["a", "b", "c"], break_after=2), match="grpc-err-mid")
    call = stub.CreateStream(request("grpc-err-mid"), timeout=10)
    received: list[str] = []
    with pytest.raises(grpc.RpcError) as info:
        collect_text(call, received)
    # The first content reached the client before the error. "b" usually does too, but not always:
    # aiohttp's StreamReader.readany raises a stored connection error before handing out bytes
    # already buffered, so what the upstream sent just before the break can be lost.
    assert received in (["a"], ["a", "b"])
    err = info.value
    assert err.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    body = error_body(rich_status(err)[1])
    assert body.status_code == 502
    assert body.extra_fields.request_type == "chat_completion_stream"
    assert len(upstream.requests) == 1  # committed after the first content: no retry


# --------------------------------------------------------------------------- presence and passthrough


def test_caller_api_version_used_without_configured_one(
    stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream
) -> None:
    """Provider ``azure-rotating`` has no api_version: the caller's goes upstream."""
    stub.Create(request("rotating", api_version="2025-01-01-preview"), timeout=10)
    sent = upstream.requests[-1]
    assert sent.deployment == "rotating-dep"
    assert sent.api_version == "2025-01-01-preview"
    assert sent.header("api-key") in ROTATE_KEYS


def test_only_messages_reaches_upstream_as_only_messages(
    stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream
) -> None:
    stub.Create(request("grpc-presence-1", "bare"), timeout=10)
    assert upstream.requests[-1].body == {"messages": [{"role": "user", "content": "bare"}]}


def test_explicit_zero_temperature_is_sent(
    stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream
) -> None:
    req = request("grpc-presence-2", "zero")
    req.temperature = 0
    assert req.HasField("temperature")
    stub.Create(req, timeout=10)
    body = upstream.requests[-1].body
    assert "temperature" in body
    assert body["temperature"] == 0
    assert body == {"messages": [{"role": "user", "content": "zero"}], "temperature": 0}


def test_extra_json_passthrough(stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream) -> None:
    stub.Create(request("grpc-extra-1", extra_json='{"my_new_param": {"a": 1}}'), timeout=10)
    sent = upstream.requests[-1]
    assert sent.body["my_new_param"] == {"a": 1}
    assert b'"my_new_param":{"a":1}' in sent.raw
    assert sent.body["messages"] == [{"role": "user", "content": "hi"}]


def test_tool_parameters_json_byte_exact(
    stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream
) -> None:
    # Keys out of sorted order and an integer beyond int64/double precision: both must survive.
    schema = (
        b'{"type":"object","required":["city"],"properties":{"city":{"type":"string"}},'
        b'"x-big":123456789012345678901234567890}'
    )
    upstream.script(Reply.tool_call("get_weather", {"city": "Paris"}), match="grpc-tools-1")
    req = request(
        "grpc-tools-1",
        tools=[
            chat_pb2.Tool(
                type="function",
                function=chat_pb2.FunctionDefinition(name="get_weather", parameters_json=schema.decode()),
            )
        ],
        tool_choice_mode="auto",
    )
    resp = stub.Create(req, timeout=10)

    assert schema in upstream.requests[-1].raw
    assert upstream.requests[-1].body["tool_choice"] == "auto"
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.WhichOneof("content") == "null_content"
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert orjson.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}


# --------------------------------------------------------------------------- health and reflection


@pytest.mark.parametrize("service", ["", SERVICE])
def test_health_serving(channel: grpc.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_health_unknown_service_not_found(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_reflection_lists_services(channel: grpc.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = list(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )
    assert len(responses) == 1
    names = {s.name for s in responses[0].list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names


def test_reflection_describes_chat_service(channel: grpc.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    req = reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)
    (resp,) = reflection.ServerReflectionInfo(iter([req]), timeout=5)
    assert resp.WhichOneof("message_response") == "file_descriptor_response"
    assert resp.file_descriptor_response.file_descriptor_proto


# --------------------------------------------------------------------------- cancellation and deadlines


def test_stream_cancel_reaches_upstream(
    stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.hang_stream(), match="grpc-cancel-1")
    call = stub.CreateStream(request("grpc-cancel-1"), timeout=30)
    first_content = None
    for chunk in call:
        if chunk.choices and chunk.choices[0].delta.text:
            first_content = chunk.choices[0].delta.text
            break
    assert first_content == "Hel"
    assert upstream.disconnects == []
    call.cancel()
    assert upstream.wait_for_disconnect(5), "the upstream request was not cancelled"
    assert upstream.disconnects[0].deployment == "grpc-cancel-1"
    assert call.code() == grpc.StatusCode.CANCELLED


def test_stream_deadline_reaches_upstream(
    stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.hang_stream(), match="grpc-deadline-2")
    call = stub.CreateStream(request("grpc-deadline-2"), timeout=0.5)
    received: list[str] = []
    with pytest.raises(grpc.RpcError) as info:
        collect_text(call, received)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert received[:1] == ["Hel"]
    assert upstream.wait_for_disconnect(5), "the upstream stream was not cancelled after the deadline"
    assert upstream.disconnects[0].deployment == "grpc-deadline-2"


def test_deadline_exceeded_reaches_upstream(
    stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.slow(3), match="grpc-deadline-1")
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.Create(request("grpc-deadline-1"), timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert time.monotonic() - started < 2
    assert upstream.wait_for_disconnect(5), "the upstream request was not cancelled after the deadline"
    assert upstream.disconnects[0].deployment == "grpc-deadline-1"
    # It was cut well before the upstream's 3 s answer.
    assert upstream.disconnects[0].finished_at is not None
    assert upstream.disconnects[0].finished_at - upstream.disconnects[0].received_at < 2.5


def test_create_with_stream_true_still_answers_unary(
    stub: chat_pb2_grpc.ChatCompletionsStub, upstream: FakeUpstream
) -> None:
    options = chat_pb2.StreamOptions(include_usage=True)
    resp = stub.Create(request("grpc-unary-streamflag", stream=True, stream_options=options), timeout=10)
    assert resp.choices[0].message.text
    sent = upstream.requests[-1].body
    assert "stream" not in sent
    assert "stream_options" not in sent
