"""Retries, key rotation, fallbacks and cancellation, end to end through real processes."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import ROTATE_KEYS


def _chat(client: httpx.Client, deployment: str, **body: object) -> httpx.Response:
    payload = {"messages": [{"role": "user", "content": f"hi {deployment}"}], **body}
    return client.post(
        f"/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21", json=payload
    )


def _sse_events(response: httpx.Response) -> list[bytes]:
    """The `data:` payloads of a finished SSE response, checking the framing as it goes."""
    raw = response.read()
    assert raw.endswith(b"\n\n"), raw[-80:]
    events = []
    for block in raw.split(b"\n\n")[:-1]:
        assert block.startswith(b"data: "), block
        events.append(block[len(b"data: ") :])
    return events


def _stream_events(client: httpx.Client, deployment: str, **body: object) -> list[bytes]:
    """POST a streaming request; it must start as a 200 SSE stream. -> its `data:` payloads."""
    payload = {"messages": [{"role": "user", "content": "x"}], "stream": True, **body}
    with client.stream(
        "POST", f"/openai/deployments/{deployment}/chat/completions", json=payload
    ) as response:
        assert response.status_code == 200
        return _sse_events(response)


def _assert_cut_when_client_leaves(
    stack_url: str, upstream: FakeUpstream, deployment: str, **body: object
) -> None:
    """A client giving up after 0.5 s must end the upstream call then, not at the 2 s read timeout."""
    upstream.script(Reply.slow(10), match=deployment)
    with httpx.Client(base_url=stack_url, timeout=0.5) as short, pytest.raises(httpx.ReadTimeout):
        _chat(short, deployment, **body)
    assert upstream.wait_for_disconnect(5), "the upstream call was left running"
    (call,) = upstream.requests
    assert call.finished_at is not None
    assert call.finished_at - call.received_at < 1.5


def _served_by(upstream: FakeUpstream) -> list[str]:
    return [r.deployment or r.model or "" for r in upstream.requests]


def test_retries_transient_errors_then_succeeds(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.status(500), Reply.status(503), match="retry-ok")
    response = _chat(client, "retry-ok")
    assert response.status_code == 200, response.text
    assert _served_by(upstream) == ["retry-ok"] * 3
    attempts = response.json()["extra_fields"]["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 503]


def test_retry_after_is_honoured(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.status(429, headers={"retry-after-ms": "400"}), match="retry-after")
    response = _chat(client, "retry-after")
    assert response.status_code == 200, response.text
    first, second = upstream.requests
    assert second.received_at - first.received_at >= 0.35


def test_exhausted_retries_pass_the_status_and_retry_after_through(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script(*[Reply.status(429, headers={"retry-after": "0"})] * 3, match="always-429")
    response = _chat(client, "always-429")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "0"
    assert response.json()["type"] == "rate_limit_error"
    assert len(upstream.requests) == 3  # one try and max_retries=2


def test_rate_limit_moves_to_another_key_at_once(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.status(429, headers={"retry-after": "4"}), match="rotating-dep")
    response = _chat(client, "rotating")
    assert response.status_code == 200, response.text
    first, second = upstream.requests
    assert {first.header("api-key"), second.header("api-key")} == set(ROTATE_KEYS)
    assert second.received_at - first.received_at < 2  # did not sit out the Retry-After


def test_credential_failure_moves_to_another_key(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.status(401), match="rotating-dep")
    response = _chat(client, "rotating")
    assert response.status_code == 200, response.text
    assert {r.header("api-key") for r in upstream.requests} == set(ROTATE_KEYS)


def test_credential_failure_with_every_key_passes_401_through(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.status(401), Reply.status(401), match="rotating-dep")
    response = _chat(client, "rotating")
    assert response.status_code == 401
    assert len(upstream.requests) == 2


def test_fallbacks_are_tried_in_order_after_retries(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(*[Reply.status(500)] * 3, match="fo-primary")
    upstream.script(*[Reply.status(503)] * 3, match="fo-second")
    response = _chat(client, "fo-primary", fallbacks=["openai/fo-second", "azure/fo-third"])
    assert response.status_code == 200, response.text
    assert _served_by(upstream) == ["fo-primary"] * 3 + ["fo-second"] * 3 + ["fo-third"]
    extra = response.json()["extra_fields"]
    assert (extra["provider"], extra["model_deployment"], extra["model_requested"]) == (
        "azure",
        "fo-third",
        "fo-primary",
    )
    assert len(extra["attempts"]) == 6
    # The openai-kind fallback got the OpenAI wire format: model in the body, no deployment path.
    openai_call = upstream.requests[3]
    assert openai_call.path == "/v1/chat/completions"
    assert openai_call.model == "fo-second"


def test_config_fallbacks_follow_request_fallbacks(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(*[Reply.status(502)] * 3, match="chat-prod")
    upstream.script(*[Reply.status(502)] * 3, match="req-fb")
    response = _chat(client, "chat", fallbacks=["openai/req-fb"])
    assert response.status_code == 200, response.text
    assert _served_by(upstream) == ["chat-prod"] * 3 + ["req-fb"] * 3 + ["gpt-fb-config"]


def test_no_fallback_on_a_caller_error(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.status(400, message="bad parameter"), match="fb-400")
    response = _chat(client, "fb-400", fallbacks=["openai/never-called"])
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "bad parameter"
    assert _served_by(upstream) == ["fb-400"]


def test_no_fallback_on_a_content_filter(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.content_filter(), match="fb-filter")
    response = _chat(client, "fb-filter", fallbacks=["openai/never-called"])
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "content_filter"
    assert body["type"] == "content_filter"
    assert body["is_bifrost_error"] is False
    assert _served_by(upstream) == ["fb-filter"]


def test_when_everything_fails_the_primary_error_comes_back(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script(*[Reply.status(503, message="primary down")] * 3, match="all-fail-1")
    upstream.script(Reply.status(400, message="fallback rejects"), match="all-fail-2")
    response = _chat(client, "all-fail-1", fallbacks=["openai/all-fail-2"])
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["message"] == "primary down"
    attempts = body["extra_fields"]["attempts"]
    assert [(a["model"], a["status_code"]) for a in attempts] == [("all-fail-1", 503)] * 3 + [
        ("all-fail-2", 400)
    ]


def test_network_errors_fall_back(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(*[Reply.drop()] * 3, match="net-drop")
    response = _chat(client, "net-drop", fallbacks=["openai/net-ok"])
    assert response.status_code == 200, response.text
    assert response.json()["extra_fields"]["attempts"][0]["error_type"] == "upstream_unreachable"


def test_timeouts_end_in_504(client: httpx.Client, upstream: FakeUpstream) -> None:
    # read_s is 2 in the test config.
    upstream.script(*[Reply.slow(2.5)] * 3, match="slow-504")
    response = _chat(client, "slow-504")
    assert response.status_code == 504
    assert response.json()["type"] == "timeout"


def test_no_usable_key_is_a_502_without_upstream_call(client: httpx.Client, upstream: FakeUpstream) -> None:
    # The entra provider's only key is limited to models entra-*.
    response = _chat(client, "entra/other-model")
    assert response.status_code == 502
    assert response.json()["type"] == "no_keys_available"
    assert upstream.requests == []


def test_stream_falls_back_before_the_first_content_chunk(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script(*[Reply.stream(break_after=0)] * 3, match="sfb-primary")
    events = _stream_events(client, "sfb-primary", fallbacks=["openai/sfb-second"])
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello world"
    assert {c["extra_fields"]["provider"] for c in chunks} == {"openai"}
    # Only one role chunk reached the client: the broken primary's was never sent.
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("role")) == 1
    assert _served_by(upstream) == ["sfb-primary"] * 3 + ["sfb-second"]


def test_stream_error_before_any_output_gets_its_http_status(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.status(404), match="stream-404")
    with client.stream(
        "POST",
        "/openai/deployments/stream-404/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}], "stream": True},
    ) as response:
        assert response.status_code == 404
        assert orjson.loads(response.read())["status_code"] == 404


def test_stream_that_breaks_after_content_ends_with_an_error_event(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.stream(["a", "b", "c"], break_after=2), match="sbreak")
    events = _stream_events(client, "sbreak", fallbacks=["openai/never"])
    assert b"[DONE]" not in events
    *chunks, last = (orjson.loads(e) for e in events)
    # "b" may be lost: aiohttp raises a broken connection before handing out bytes it
    # had already buffered. "a" committed the stream, so it always arrives.
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) in ("a", "ab")
    assert last["error"]["message"]
    assert last["status_code"] == 502
    assert last["type"] == "upstream_stream_broken"
    assert _served_by(upstream) == ["sbreak"]  # never falls back once output was sent


def test_client_disconnect_cancels_the_upstream_stream(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.script(Reply.hang_stream(), match="hang-rest")
    with client.stream(
        "POST",
        "/openai/deployments/hang-rest/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}], "stream": True},
    ) as response:
        for line in response.iter_lines():
            if '"Hel"' in line:
                break
    assert upstream.wait_for_disconnect(5), "the upstream stream was left running"


def test_client_disconnect_cancels_a_unary_upstream_call(stack_url: str, upstream: FakeUpstream) -> None:
    _assert_cut_when_client_leaves(stack_url, upstream, "hang-unary")


def test_stream_whose_first_event_is_garbage_falls_back(client: httpx.Client, upstream: FakeUpstream) -> None:
    garbage = Reply.status(200, body="data: {not json\n\n", headers={"content-type": "text/event-stream"})
    upstream.script(*[garbage] * 3, match="sgarbage")
    events = _stream_events(client, "sgarbage", fallbacks=["openai/sg-ok"])
    assert events[-1] == b"[DONE]"
    first = orjson.loads(events[0])
    assert first["extra_fields"]["provider"] == "openai"
    assert [a["error_type"] for a in first["extra_fields"]["attempts"]] == ["upstream_bad_response"] * 3


def test_client_leaving_before_the_first_chunk_cancels_the_upstream(
    stack_url: str, upstream: FakeUpstream
) -> None:
    _assert_cut_when_client_leaves(stack_url, upstream, "slow-first-chunk", stream=True)
