"""Request ids, over-deep JSON and imperfect upstream streams, end to end in every mode.

Runs against the real processes (``stack``: inprocess, grpc-loopback, split), over raw HTTP,
the openai SDK and the generated gRPC stub.
"""

from __future__ import annotations

import grpc
import httpx
import openai
import orjson
import pytest

from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import chat_pb2_grpc
from tests.e2e.rpc_errors import error_body, rich_status
from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import OPEN_MODE_ADMIN_TOKEN, Stack

CHAT = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"


def _body(**fields: object) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": "hi"}], **fields}


def _sse_events(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n") if line.startswith("data: ")]


# ---------------------------------------------------------------- request ids


def test_the_callers_request_id_comes_back_on_success_error_and_stream(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    ok = client.post(CHAT.format("rid"), json=_body(), headers={"x-request-id": "rid-ok-1"})
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "rid-ok-1"
    upstream.script(Reply.status(400), match="rid-bad")
    bad = client.post(CHAT.format("rid-bad"), json=_body(), headers={"x-request-id": "rid-bad-1"})
    assert bad.status_code == 400 and bad.headers["x-request-id"] == "rid-bad-1"
    assert bad.json()["event_id"] == bad.json()["error"]["event_id"] == "rid-bad-1"
    # An error the gateway finds itself carries it too.
    broken = client.post(CHAT.format("rid"), content=b"{nope", headers={"x-request-id": "rid-json-1"})
    assert broken.status_code == 400 and broken.json()["event_id"] == "rid-json-1"
    assert broken.headers["x-request-id"] == "rid-json-1"
    stream = client.post(CHAT.format("rid"), json=_body(stream=True), headers={"x-request-id": "rid-s-1"})
    assert stream.headers["x-request-id"] == "rid-s-1" and _sse_events(stream.text)[-1] == "[DONE]"
    # Every response has one, health checks and unknown routes included.
    assert client.get("/health").headers["x-request-id"]
    assert client.get("/nowhere").headers["x-request-id"]


def test_a_request_id_is_made_when_none_or_a_bad_one_is_sent(client: httpx.Client) -> None:
    made = {client.post(CHAT.format("rid"), json=_body()).headers["x-request-id"] for _ in range(3)}
    assert len(made) == 3 and all(len(rid) == 32 for rid in made)
    replaced = client.post(CHAT.format("rid"), json=_body(), headers={"x-request-id": "x" * 300})
    assert len(replaced.headers["x-request-id"]) == 32


def test_the_openai_sdk_sees_the_request_id(stack: Stack) -> None:
    sdk = openai.AzureOpenAI(
        azure_endpoint=stack.base_url, api_key="any", api_version="2024-10-21", max_retries=0
    )
    raw = sdk.chat.completions.with_raw_response.create(
        model="rid", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-request-id": "sdk-1"}
    )
    assert raw.headers["x-request-id"] == "sdk-1"
    assert raw.parse().choices[0].message.content


def test_grpc_callers_get_the_request_id_as_initial_metadata(stack: Stack, upstream: FakeUpstream) -> None:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatCompletionsStub(channel)
        request = pb.ChatCompletionRequest(
            deployment_id="rid", messages=[pb.ChatMessage(role="user", text="hi")]
        )
        _, call = stub.Create.with_call(request, metadata=(("x-request-id", "grpc-rid-1"),), timeout=10)
        assert dict(call.initial_metadata())["x-request-id"] == "grpc-rid-1"
        _, call = stub.Create.with_call(request, timeout=10)
        assert len(dict(call.initial_metadata())["x-request-id"]) == 32
        stream = stub.CreateStream(request, metadata=(("x-request-id", "grpc-rid-2"),), timeout=10)
        assert dict(stream.initial_metadata())["x-request-id"] == "grpc-rid-2"
        assert list(stream)
        upstream.script(Reply.status(400), match="rid-grpc-bad")
        bad = pb.ChatCompletionRequest(
            deployment_id="rid-grpc-bad", messages=[pb.ChatMessage(role="user", text="hi")]
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.Create(bad, metadata=(("x-request-id", "grpc-rid-3"),), timeout=10)
        _, details = rich_status(caught.value)
        assert error_body(details).event_id == "grpc-rid-3"


# ---------------------------------------------------------------- deep JSON


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [65, 300, 1000])
def test_over_deep_json_is_a_400_naming_the_field(
    client: httpx.Client, upstream: FakeUpstream, depth: int
) -> None:
    raw = b'{"messages":[{"role":"user","content":"hi"}],"metadata":' + _deep(depth) + b"}"
    response = client.post(CHAT.format("deep"), content=raw)
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["type"], body["error"]["param"]) == ("invalid_request_error", "metadata")
    assert "64 levels" in body["error"]["message"]
    tools = {
        "type": "function",
        "function": {"name": "f", "parameters": orjson.loads(b'{"a":' + _deep(100) + b"}")},
    }
    response = client.post(CHAT.format("deep"), json=_body(tools=[tools]))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tools[0].function.parameters"
    assert upstream.request_count == 0
    # Nesting within the limit is fine.
    assert client.post(CHAT.format("deep"), content=raw.replace(_deep(depth), _deep(60))).status_code == 200


def test_over_deep_json_from_a_grpc_caller_is_invalid_argument(stack: Stack, upstream: FakeUpstream) -> None:
    with grpc.insecure_channel(stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatCompletionsStub(channel)
        for fields, param in (
            ({"extra_json": '{"metadata":' + _deep(300).decode() + "}"}, "body"),
            ({"tool_choice_json": _deep(70).decode()}, "tool_choice"),
        ):
            request = pb.ChatCompletionRequest(
                deployment_id="deep", messages=[pb.ChatMessage(role="user", text="hi")], **fields
            )
            with pytest.raises(grpc.RpcError) as caught:
                stub.Create(request, timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            _, details = rich_status(caught.value)
            assert error_body(details).error.param == param
    assert upstream.request_count == 0


# ---------------------------------------------------------------- imperfect streams


def test_a_stream_missing_only_its_done_marker_is_delivered_whole(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.stream(["Hel", "lo"], omit_done=True), match="no-done")
    response = client.post(
        CHAT.format("no-done"), json=_body(stream=True, stream_options={"include_usage": True})
    )
    events = _sse_events(response.text)
    assert events[-1] == "[DONE]", events
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert "error" not in chunks[-1]
    assert "".join(c["delta"].get("content") or "" for ch in chunks for c in ch["choices"]) == "Hello"
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_one_malformed_chunk_is_skipped_and_shown_in_the_stats(
    stack: Stack, client: httpx.Client, upstream: FakeUpstream
) -> None:
    admin = {"authorization": f"Bearer {OPEN_MODE_ADMIN_TOKEN}"}
    before = client.get("/api/stats", headers=admin).json().get("malformed_stream_chunks", 0)
    upstream.script(Reply.stream(["Hel", "lo", "!"], malformed_at=[1]), match="one-bad")
    events = _sse_events(client.post(CHAT.format("one-bad"), json=_body(stream=True)).text)
    assert events[-1] == "[DONE]"
    text = "".join(c["delta"].get("content") or "" for e in events[:-1] for c in orjson.loads(e)["choices"])
    assert text == "Hello!"
    assert client.get("/api/stats", headers=admin).json()["malformed_stream_chunks"] == before + 1
    # A run of them is a broken upstream: one error event, no [DONE].
    upstream.script(Reply.stream(["a", "b", "c", "d"], malformed_at=[1, 1, 1]), match="many-bad")
    events = _sse_events(client.post(CHAT.format("many-bad"), json=_body(stream=True)).text)
    assert events[-1] != "[DONE]"
    assert orjson.loads(events[-1])["type"] == "upstream_bad_response"
