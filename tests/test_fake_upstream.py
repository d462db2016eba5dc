"""Tests of the fake upstream itself, over real HTTP with httpx (no Switchyard code involved)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream, Recorded, Reply, ToolCall, Usage

AZURE_PATH = "/openai/deployments/dep-a/chat/completions"
OPENAI_PATH = "/v1/chat/completions"
API_VERSION = {"api-version": "2024-10-21"}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def chat(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


def sse(text: str) -> list[Any]:
    """The data of each SSE event; ``[DONE]`` stays a string."""
    events = [block.removeprefix("data: ") for block in text.split("\n\n") if block.startswith("data: ")]
    return [event if event == "[DONE]" else json.loads(event) for event in events]


def content_of(events: list[Any], index: int = 0) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if event != "[DONE]"
        for choice in event["choices"]
        if choice["index"] == index
    )


@pytest.fixture
def fake(upstream: FakeUpstream) -> FakeUpstream:
    """The session's fake upstream (tests/conftest.py), cleared for this test."""
    return upstream


@pytest.fixture
def client(fake: FakeUpstream) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=5) as client:
        yield client


# --------------------------------------------------------------------------- default replies


def test_openai_success_echoes_the_last_user_message(client: httpx.Client) -> None:
    response = client.post(OPENAI_PATH, json=chat("ping"))

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-4o"
    assert body["system_fingerprint"] == "fp_fake"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: ping"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert "prompt_filter_results" not in body


def test_azure_success_adds_content_filter_results(client: httpx.Client) -> None:
    payload = {"messages": [{"role": "user", "content": [{"type": "text", "text": "parts"}]}]}
    response = client.post(AZURE_PATH, params=API_VERSION, json=payload)

    body = response.json()
    assert body["model"] == "dep-a"  # no model in the body: the deployment
    assert body["choices"][0]["message"]["content"] == "echo: parts"
    assert body["choices"][0]["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}
    assert body["prompt_filter_results"][0]["prompt_index"] == 0


def test_n_returns_that_many_choices(client: httpx.Client) -> None:
    body = client.post(OPENAI_PATH, json=chat(n=2)).json()

    assert [choice["index"] for choice in body["choices"]] == [0, 1]


def test_scripted_content_usage_and_headers(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(
        Reply.ok("scripted", usage=Usage(10, 3, cached_tokens=4), headers={"x-ratelimit-remaining": "7"})
    )

    response = client.post(OPENAI_PATH, json=chat())

    assert response.headers["x-ratelimit-remaining"] == "7"
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "scripted"
    assert body["usage"]["total_tokens"] == 13
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 4}


# --------------------------------------------------------------------------- streaming


def test_stream_without_include_usage(client: httpx.Client) -> None:
    response = client.post(OPENAI_PATH, json=chat(stream=True))

    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [chunk["choices"][0]["delta"].get("content") for chunk in chunks[1:-1]] == ["Hel", "lo", " world"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in chunk for chunk in chunks)


def test_stream_with_include_usage_ends_with_a_usage_chunk(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.stream(["a", "b"]))
    payload = chat(stream=True, stream_options={"include_usage": True})

    events = sse(client.post(OPENAI_PATH, json=payload).text)

    assert content_of(events) == "ab"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["total_tokens"] > 0
    assert events[-3]["choices"][0]["finish_reason"] == "stop"


def test_stream_with_n_sends_every_choice(client: httpx.Client) -> None:
    events = sse(client.post(OPENAI_PATH, json=chat(stream=True, n=2)).text)

    for index in (0, 1):
        assert content_of(events, index) == "Hello world"
        finishes = [
            c for e in events[:-1] for c in e["choices"] if c["index"] == index and c["finish_reason"]
        ]
        assert len(finishes) == 1


def test_stream_pieces_come_from_scripted_content(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.ok("one two three"))

    events = sse(client.post(OPENAI_PATH, json=chat(stream=True)).text)

    assert content_of(events) == "one two three"
    assert len(events) == 1 + 3 + 1 + 1  # role, three words, finish, [DONE]


def test_azure_filter_chunk_leads_the_stream(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.stream(azure_filter_chunk=True))

    events = sse(client.post(AZURE_PATH, params=API_VERSION, json=chat(stream=True)).text)

    assert events[0]["choices"] == []
    assert events[0]["prompt_filter_results"][0]["prompt_index"] == 0
    assert events[1]["choices"][0]["delta"]["role"] == "assistant"


def test_stream_delay_between_pieces(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.stream(["a", "b", "c"], delay_between_s=0.1))
    started = time.monotonic()

    events = sse(client.post(OPENAI_PATH, json=chat(stream=True)).text)

    assert content_of(events) == "abc"
    assert time.monotonic() - started >= 0.2


# --------------------------------------------------------------------------- tool calls


def test_tool_call_reply_calls_the_requests_first_tool(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.default_reply = Reply.tool_call(arguments={"city": "Paris"})

    body = client.post(OPENAI_PATH, json=chat(tools=TOOLS)).json()

    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    # Without tools in the request the same default answers with text.
    assert client.post(OPENAI_PATH, json=chat("x")).json()["choices"][0]["message"]["content"] == "echo: x"


def test_streamed_tool_call_reassembles(fake: FakeUpstream, client: httpx.Client) -> None:
    arguments = '{"city": "Paris", "unit": "celsius"}'
    fake.script(Reply.ok(tool_calls=[ToolCall("lookup", arguments, id="call_1")]))

    events = sse(client.post(OPENAI_PATH, json=chat(stream=True)).text)

    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert deltas[0] == {"role": "assistant", "content": None}
    parts = [part for delta in deltas for part in delta.get("tool_calls", [])]
    assert parts[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }
    assert len(parts) > 2
    assert "".join(part["function"]["arguments"] for part in parts) == arguments
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


# --------------------------------------------------------------------------- errors and failures


@pytest.mark.parametrize(
    ("code", "headers", "error_code"),
    [
        (400, {}, None),
        (401, {}, "invalid_api_key"),
        (403, {}, "permission_denied"),
        (404, {}, "model_not_found"),
        (429, {"retry-after": "0"}, "rate_limit_exceeded"),
        (429, {"retry-after-ms": "10", "x-ms-retry-after-ms": "10"}, "rate_limit_exceeded"),
        (500, {}, None),
        (503, {"retry-after": "1"}, "service_unavailable"),
    ],
)
def test_scripted_status(
    fake: FakeUpstream, client: httpx.Client, code: int, headers: dict[str, str], error_code: str | None
) -> None:
    fake.script(Reply.status(code, headers=headers))

    response = client.post(AZURE_PATH, params=API_VERSION, json=chat())

    assert response.status_code == code
    for name, value in headers.items():
        assert response.headers[name] == value
    error = response.json()["error"]
    assert error["code"] == error_code
    assert error["message"]
    assert error["type"]
    # The script is used up: the next request succeeds.
    assert client.post(AZURE_PATH, params=API_VERSION, json=chat()).status_code == 200


def test_content_filter_error(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.content_filter())

    response = client.post(AZURE_PATH, params=API_VERSION, json=chat())

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_filter"


def test_status_with_raw_body(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.status(502, body="<html>bad gateway</html>", headers={"Content-Type": "text/html"}))

    response = client.post(OPENAI_PATH, json=chat())

    assert response.status_code == 502
    assert response.headers.get_list("content-type") == ["text/html"]
    assert response.text == "<html>bad gateway</html>"


def test_stream_break_after_truncates(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.stream(break_after=2))
    received: list[str] = []

    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", OPENAI_PATH, json=chat(stream=True)) as response,
    ):
        received.extend(line for line in response.iter_lines() if line)

    assert len(received) == 3  # the role chunk and two content chunks
    assert "[DONE]" not in "".join(received)


def test_break_after_on_a_non_streamed_request_truncates_the_body(
    fake: FakeUpstream, client: httpx.Client
) -> None:
    fake.script(Reply.stream(break_after=0))

    with pytest.raises(httpx.RemoteProtocolError):
        client.post(OPENAI_PATH, json=chat())


def test_drop_closes_without_a_response(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.drop(), Reply.drop(reset=True))

    with pytest.raises(httpx.RemoteProtocolError):
        client.post(OPENAI_PATH, json=chat())
    with pytest.raises(httpx.ReadError):
        client.post(OPENAI_PATH, json=chat())
    assert client.post(OPENAI_PATH, json=chat()).status_code == 200
    assert fake.disconnects == []  # the fake hung up, not the client


def test_slow_reply_times_the_client_out_and_counts_a_disconnect(fake: FakeUpstream) -> None:
    fake.script(Reply.slow(5))

    with httpx.Client(base_url=fake.url, timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
        client.post(OPENAI_PATH, json=chat())

    assert fake.wait_for_disconnect(5)


def test_slow_reply_arrives_after_the_delay(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.slow(0.3, Reply.status(500)))
    started = time.monotonic()

    response = client.post(OPENAI_PATH, json=chat())

    assert response.status_code == 500
    assert time.monotonic() - started >= 0.3


def test_hang_stream_notices_the_client_leaving(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.hang_stream())

    with client.stream("POST", OPENAI_PATH, json=chat(stream=True)) as response:
        first = next(line for line in response.iter_lines() if line)
    client.close()

    assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["role"] == "assistant"
    assert fake.wait_for_disconnect(5)
    (gone,) = fake.disconnects
    assert gone.disconnected
    assert gone.path == OPENAI_PATH
    assert gone.finished_at is not None


# --------------------------------------------------------------------------- scripting and recording


def test_scripts_are_fifo_then_default(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.status(500), Reply.ok("second"))
    assert fake.pending() == 2

    statuses = [client.post(OPENAI_PATH, json=chat()) for _ in range(3)]

    assert [r.status_code for r in statuses] == [500, 200, 200]
    assert statuses[1].json()["choices"][0]["message"]["content"] == "second"
    assert statuses[2].json()["choices"][0]["message"]["content"] == "echo: hi"
    assert fake.pending() == 0


def test_scoped_scripts_match_path_or_model(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.status(429, headers={"retry-after": "0"}), Reply.ok("a"), match="dep-a")
    fake.script(Reply.status(503), match="gpt-4o-mini")

    other_deployment = "/openai/deployments/dep-b/chat/completions"
    assert client.post(other_deployment, params=API_VERSION, json=chat()).status_code == 200
    assert client.post(AZURE_PATH, params=API_VERSION, json=chat()).status_code == 429
    assert client.post(OPENAI_PATH, json={**chat(), "model": "gpt-4o-mini"}).status_code == 503
    assert client.post(OPENAI_PATH, json={**chat(), "model": "gpt-4o-mini"}).status_code == 200
    second = client.post(AZURE_PATH, params=API_VERSION, json=chat())
    assert second.json()["choices"][0]["message"]["content"] == "a"
    assert fake.pending("dep-a") == 0


def test_requests_are_recorded(fake: FakeUpstream, client: httpx.Client) -> None:
    headers = {"api-key": "secret", "X-Custom": "yes"}
    client.post(AZURE_PATH, params=API_VERSION, json=chat("hello"), headers=headers)
    client.post(OPENAI_PATH, json=chat(), headers={"Authorization": "Bearer sk-1"})

    assert fake.wait_for_requests(2, timeout=1)
    azure, openai = fake.requests
    assert isinstance(azure, Recorded)
    assert azure.method == "POST"
    assert azure.path == AZURE_PATH
    assert azure.query == API_VERSION
    assert azure.api_version == "2024-10-21"
    assert azure.is_azure
    assert azure.deployment == "dep-a"
    assert azure.headers["api-key"] == "secret"
    assert azure.header("x-custom") == azure.header("X-Custom") == "yes"
    assert azure.body == chat("hello")
    assert json.loads(azure.raw) == azure.body
    assert azure.reply == Reply.ok()
    assert azure.finished_at is not None
    assert azure.finished_at >= azure.received_at
    assert not openai.is_azure
    assert openai.model == "gpt-4o"
    assert openai.headers["authorization"] == "Bearer sk-1"
    assert openai.api_version is None


def test_unknown_path_is_404_and_recorded(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.status(500))

    response = client.get("/v1/models")

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "No route for GET /v1/models"
    assert fake.requests[0].path == "/v1/models"
    assert fake.pending() == 1  # scripts are only used by chat completions


def test_reset_forgets_everything(fake: FakeUpstream, client: httpx.Client) -> None:
    fake.script(Reply.status(500))
    fake.script(Reply.status(500), match="x")
    fake.default_reply = Reply.status(418)
    client.get("/nowhere")

    fake.reset()

    assert fake.requests == []
    assert fake.request_count == 0
    assert fake.pending() == fake.pending("x") == 0
    assert client.post(OPENAI_PATH, json=chat()).status_code == 200


def test_concurrent_requests(fake: FakeUpstream) -> None:
    def one(i: int) -> str:
        response = client.post(OPENAI_PATH, json=chat(f"n{i}"))
        return response.json()["choices"][0]["message"]["content"]

    limits = httpx.Limits(max_connections=20)
    with httpx.Client(base_url=fake.url, timeout=5, limits=limits) as client, ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(200)))

    assert answers == [f"echo: n{i}" for i in range(200)]
    assert fake.wait_for_requests(200, timeout=1)
    assert len({r.seq for r in fake.requests}) == 200


async def test_async_waits_do_not_block_the_loop(fake: FakeUpstream) -> None:
    async with httpx.AsyncClient(base_url=fake.url, timeout=5) as client:
        response = await client.post(OPENAI_PATH, json=chat())

    assert response.status_code == 200
    assert await fake.wait_for_requests_async(1, timeout=1)
    assert not await fake.wait_for_disconnect_async(timeout=0.05)


def test_stop_and_restart() -> None:
    fake = FakeUpstream()
    with fake:
        first_url = fake.url
        assert httpx.post(first_url + OPENAI_PATH, json=chat()).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.post(first_url + OPENAI_PATH, json=chat())
    with fake:
        assert httpx.post(fake.url + OPENAI_PATH, json=chat()).status_code == 200


def test_stop_cuts_a_hanging_stream_quickly() -> None:
    fake = FakeUpstream().start()
    fake.script(Reply.hang_stream())
    with httpx.Client(base_url=fake.url, timeout=5) as client:
        with client.stream("POST", OPENAI_PATH, json=chat(stream=True)) as response:
            lines = response.iter_lines()  # kept: a collected iterator makes httpx close the connection
            next(lines)
            started = time.monotonic()
            fake.stop()
        assert time.monotonic() - started < 2
    assert fake.disconnects == []


def test_cli_serves_default_replies() -> None:
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "tests.fakes.upstream", "--port", "0"]
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
            assert url.startswith("http://127.0.0.1:")
            response = httpx.post(url + OPENAI_PATH, json=chat("cli"), timeout=5)
            assert response.json()["choices"][0]["message"]["content"] == "echo: cli"
        finally:
            process.terminate()
            assert process.wait(timeout=10) == 0
