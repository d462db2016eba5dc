"""The REST surface through raw HTTP: routes, what reaches the upstream, validation, errors, SSE."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import AZURE_KEY, ENTRA_TOKEN, OPENAI_KEY, SECRETS, Stack

USER = [{"role": "user", "content": "hello"}]


def _post(client: httpx.Client, path: str, body: object, **kwargs: object) -> httpx.Response:
    return client.post(
        path, content=orjson.dumps(body), headers={"content-type": "application/json"}, **kwargs
    )


def _assert_error_shape(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status_code"] == status
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["is_bifrost_error"], bool)
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert set(body["extra_fields"]) >= {"provider", "model_requested", "request_type"}
    return body


# ---------------------------------------------------------------- routes and upstream wire


@pytest.mark.parametrize(
    "path",
    [
        "/openai/openai/deployments/route-a/chat/completions?api-version=2024-10-21",
        "/openai/deployments/route-a/chat/completions?api-version=2024-10-21",
    ],
)
def test_azure_routes_reach_the_azure_deployment(
    client: httpx.Client, upstream: FakeUpstream, path: str
) -> None:
    response = _post(client, path, {"messages": USER})
    assert response.status_code == 200, response.text
    (call,) = upstream.requests
    assert call.path == "/openai/deployments/route-a/chat/completions"
    assert call.api_version == "2024-10-21"
    assert call.header("api-key") == AZURE_KEY
    assert call.header("authorization") is None
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "echo: hello"
    assert body["extra_fields"]["provider"] == "azure"
    assert body["extra_fields"]["model_requested"] == "route-a"
    assert body["extra_fields"]["request_type"] == "chat_completion"
    assert isinstance(body["created"], int)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/openai/v1/chat/completions"])
def test_v1_routes_take_the_model_from_the_body(
    client: httpx.Client, upstream: FakeUpstream, path: str
) -> None:
    response = _post(client, path, {"model": "openai/gpt-v1", "messages": USER})
    assert response.status_code == 200, response.text
    (call,) = upstream.requests
    assert call.path == "/v1/chat/completions"
    assert call.model == "gpt-v1"
    assert call.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert response.json()["extra_fields"]["provider"] == "openai"


def test_provider_model_in_the_deployment_path(client: httpx.Client, upstream: FakeUpstream) -> None:
    response = _post(client, "/openai/deployments/openai/gpt-in-path/chat/completions", {"messages": USER})
    assert response.status_code == 200, response.text
    assert upstream.requests[0].model == "gpt-in-path"


def test_declared_deployment_maps_to_its_upstream_deployment(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    response = _post(client, "/v1/chat/completions", {"model": "chat", "messages": USER})
    assert response.status_code == 200
    assert upstream.requests[0].deployment == "chat-prod"
    # The caller's `model` is rewritten to the upstream deployment, not dropped or invented.
    assert upstream.requests[0].model == "chat-prod"
    assert response.json()["extra_fields"]["model_deployment"] == "chat-prod"


def test_weighted_targets_share_the_traffic(client: httpx.Client, upstream: FakeUpstream) -> None:
    for _ in range(40):
        assert (
            _post(client, "/v1/chat/completions", {"model": "weighted", "messages": USER}).status_code == 200
        )
    to_b = sum(1 for r in upstream.requests if r.model == "weighted-b")
    to_a = sum(1 for r in upstream.requests if r.deployment == "weighted-a")
    assert to_a + to_b == 40
    assert to_b > to_a > 0  # weights 3:1; P(to_b <= to_a) is about 0.0007


def test_config_api_version_wins_and_the_callers_is_used_otherwise(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    _post(client, "/openai/deployments/av-1/chat/completions?api-version=2099-01-01", {"messages": USER})
    _post(
        client,
        "/openai/deployments/rotating/chat/completions?api-version=2025-01-01-preview",
        {"messages": USER},
    )
    assert [r.api_version for r in upstream.requests] == ["2024-10-21", "2025-01-01-preview"]


def test_entra_bearer_auth_upstream(client: httpx.Client, upstream: FakeUpstream) -> None:
    response = _post(client, "/openai/deployments/entra/entra-dep/chat/completions", {"messages": USER})
    assert response.status_code == 200, response.text
    (call,) = upstream.requests
    assert call.header("authorization") == f"Bearer {ENTRA_TOKEN}"
    assert call.header("api-key") is None


def test_upstream_receives_only_what_the_caller_sent(client: httpx.Client, upstream: FakeUpstream) -> None:
    _post(client, "/openai/deployments/presence/chat/completions", {"messages": USER})
    assert upstream.requests[0].body == {"messages": USER}


def test_explicit_zeros_and_unknown_fields_pass_through(client: httpx.Client, upstream: FakeUpstream) -> None:
    schema = {
        "type": "object",
        "properties": {"z": {"type": "integer", "minimum": 1}, "a": {"type": "number"}},
    }
    body = {
        "messages": USER,
        "temperature": 0,
        "presence_penalty": 0,
        "seed": 0,
        "logprobs": False,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}],
        "brand_new_param": {"nested": [1, 2.5, "x"]},
    }
    assert _post(client, "/openai/deployments/passthrough/chat/completions", body).status_code == 200
    (call,) = upstream.requests
    sent = call.body
    assert sent["temperature"] == 0 and sent["presence_penalty"] == 0 and sent["seed"] == 0
    assert sent["logprobs"] is False
    assert sent["brand_new_param"] == {"nested": [1, 2.5, "x"]}
    assert orjson.dumps(schema) in call.raw  # byte-exact: key order and integers kept


def test_n_greater_than_one(client: httpx.Client, upstream: FakeUpstream) -> None:
    response = _post(client, "/openai/deployments/n-two/chat/completions", {"messages": USER, "n": 2})
    assert [c["index"] for c in response.json()["choices"]] == [0, 1]


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": USER, "temperature": "hot"}, "temperature"),
        ({"messages": USER, "temperature": 2.01}, "temperature"),
        ({"messages": USER, "temperature": -0.1}, "temperature"),
        ({"messages": USER, "top_p": 1.5}, "top_p"),
        ({"messages": USER, "frequency_penalty": -2.5}, "frequency_penalty"),
        ({"messages": USER, "presence_penalty": 2.5}, "presence_penalty"),
        ({"messages": USER, "n": 0}, "n"),
        ({"messages": USER, "top_logprobs": 21}, "top_logprobs"),
        ({"messages": USER, "top_logprobs": -1}, "top_logprobs"),
        ({"messages": USER, "reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"messages": USER, "max_tokens": 1.5}, "max_tokens"),
        ({"messages": USER, "stream": "yes"}, "stream"),
        ({"messages": USER, "stop": [1]}, "stop[0]"),
        ({"messages": USER, "tools": {"type": "function"}}, "tools"),
        ({"messages": USER, "fallbacks": "openai/x"}, "fallbacks"),
    ],
)
def test_invalid_requests_get_a_400_naming_the_field(
    client: httpx.Client, upstream: FakeUpstream, body: dict, param: str
) -> None:
    response = _post(client, "/openai/deployments/validation/chat/completions", body)
    error = _assert_error_shape(response, 400)
    assert error["error"]["param"] == param, error
    assert error["type"] == "invalid_request_error"
    assert upstream.requests == []


@pytest.mark.parametrize("effort", ["none", "minimal", "low", "medium", "high", "xhigh"])
def test_every_documented_reasoning_effort_is_accepted(
    client: httpx.Client, upstream: FakeUpstream, effort: str
) -> None:
    response = _post(
        client, "/openai/deployments/effort/chat/completions", {"messages": USER, "reasoning_effort": effort}
    )
    assert response.status_code == 200
    assert upstream.requests[0].body["reasoning_effort"] == effort


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"'])
def test_malformed_bodies_get_a_400(client: httpx.Client, upstream: FakeUpstream, raw: bytes) -> None:
    response = client.post("/openai/deployments/bad-json/chat/completions", content=raw)
    _assert_error_shape(response, 400)
    assert upstream.requests == []


def test_oversized_bodies_get_a_413(client: httpx.Client, upstream: FakeUpstream) -> None:
    big = {"messages": [{"role": "user", "content": "x" * 1_100_000}]}  # limit is 1 MB in the test config
    _assert_error_shape(_post(client, "/openai/deployments/big/chat/completions", big), 413)

    def chunks():  # no Content-Length: the limit must hold while reading too
        for _ in range(20):
            yield b" " * 100_000

    response = client.post("/openai/deployments/big/chat/completions", content=chunks())
    _assert_error_shape(response, 413)
    assert upstream.requests == []


# ---------------------------------------------------------------- upstream errors


@pytest.mark.parametrize(
    ("status", "retried"), [(400, False), (401, False), (403, False), (404, False), (500, True), (503, True)]
)
def test_provider_status_passes_through(
    client: httpx.Client, upstream: FakeUpstream, status: int, retried: bool
) -> None:
    upstream.script(*[Reply.status(status, message=f"upstream says {status}")] * 3, match=f"pass-{status}")
    response = _post(client, f"/openai/deployments/pass-{status}/chat/completions", {"messages": USER})
    body = _assert_error_shape(response, status)
    assert body["error"]["message"] == f"upstream says {status}"
    assert body["is_bifrost_error"] is False
    assert body["extra_fields"]["provider"] == "azure"
    assert len(upstream.requests) == (3 if retried else 1)


def test_upstream_error_that_is_not_json(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.status(400, body="<html>bad gateway thing</html>"), match="html-err")
    body = _assert_error_shape(
        _post(client, "/openai/deployments/html-err/chat/completions", {"messages": USER}), 400
    )
    assert "bad gateway thing" in body["error"]["message"]


def test_error_extra_fields_carry_the_request(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.status(404), match="ctx-404")
    response = _post(client, "/v1/chat/completions", {"model": "ctx-404", "messages": USER, "stream": True})
    body = _assert_error_shape(response, 404)
    assert body["extra_fields"]["model_requested"] == "ctx-404"
    assert body["extra_fields"]["request_type"] == "chat_completion_stream"


# ---------------------------------------------------------------- streaming


def _stream_events(client: httpx.Client, deployment: str, **extra: object) -> list[dict]:
    body = {"messages": USER, "stream": True, **extra}
    with client.stream("POST", f"/openai/deployments/{deployment}/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read()
    blocks = raw.split(b"\n\n")
    assert blocks[-1] == b"" and blocks[-2] == b"data: [DONE]", raw[-100:]
    return [orjson.loads(b.removeprefix(b"data: ")) for b in blocks[:-2]]


def test_stream_shape(client: httpx.Client, upstream: FakeUpstream) -> None:
    chunks = _stream_events(client, "sse-shape")
    assert [c["extra_fields"]["chunk_index"] for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert isinstance(chunk["created"], int)
        choice = chunk["choices"][0]
        assert choice["index"] == 0
        assert "finish_reason" in choice
    assert chunks[0]["choices"][0]["finish_reason"] is None
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello world"
    assert all("usage" not in c for c in chunks)
    # Usage was still asked of the upstream, for accounting.
    assert upstream.requests[0].body["stream_options"] == {"include_usage": True}


def test_stream_usage_chunk_when_asked(client: httpx.Client, upstream: FakeUpstream) -> None:
    chunks = _stream_events(client, "sse-usage", stream_options={"include_usage": True})
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0


def test_stream_with_n_two(client: httpx.Client, upstream: FakeUpstream) -> None:
    chunks = _stream_events(client, "sse-n2", n=2)
    assert {c["choices"][0]["index"] for c in chunks if c["choices"]} == {0, 1}


def test_stream_azure_filter_chunk_is_forwarded(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.stream(azure_filter_chunk=True), match="sse-filter")
    chunks = _stream_events(client, "sse-filter")
    assert chunks[0]["choices"] == []
    assert chunks[0]["prompt_filter_results"][0]["prompt_index"] == 0


# ---------------------------------------------------------------- secrets


def test_secrets_never_reach_the_caller_or_the_logs(
    client: httpx.Client, upstream: FakeUpstream, stack: Stack
) -> None:
    upstream.script(Reply.status(401, message="bad key"), match="secret-1")
    texts = [
        _post(client, "/openai/deployments/secret-1/chat/completions", {"messages": USER}).text,
        _post(client, "/openai/deployments/secret-2/chat/completions", {"messages": USER}).text,
        _post(client, "/openai/deployments/entra/entra-x/chat/completions", {"messages": USER}).text,
        _post(
            client, "/openai/deployments/rotating/chat/completions", {"messages": USER, "stream": True}
        ).text,
    ]
    raw_request = orjson.loads(texts[1])["extra_fields"]["raw_request"]
    assert raw_request == {"messages": USER}  # raw_request is on in the test config
    for secret in SECRETS:
        for text in (*texts, stack.logs()):
            assert secret not in text


def test_unknown_routes_and_methods_get_the_error_shape(client: httpx.Client) -> None:
    assert _assert_error_shape(client.post("/openai/nope", json={}), 404)["type"] == "not_found"
    wrong_method = client.get("/openai/deployments/x/chat/completions")
    assert _assert_error_shape(wrong_method, 405)["type"] == "method_not_allowed"


def test_an_unparseable_upstream_answer_is_retried_then_falls_back(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script(*[Reply.status(200, body="<html>proxy page</html>")] * 3, match="garbage-200")
    response = _post(
        client,
        "/openai/deployments/garbage-200/chat/completions",
        {"messages": USER, "fallbacks": ["openai/gb-ok"]},
    )
    assert response.status_code == 200, response.text
    attempts = response.json()["extra_fields"]["attempts"]
    assert [a["error_type"] for a in attempts] == ["upstream_bad_response"] * 3
    assert upstream.requests[-1].model == "gb-ok"
