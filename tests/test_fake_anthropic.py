"""The fake Anthropic upstream speaks the real format: the official ``anthropic`` SDK parses it."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from tests.fakes.anthropic import SIGNATURE, FakeAnthropic, Reply, Usage

KEY = "sk-ant-fake-0123456789"
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def fake(anthropic_server: FakeAnthropic) -> FakeAnthropic:
    """The session's fake Anthropic (tests/conftest.py), cleared for this test."""
    anthropic_server.reset()
    return anthropic_server


def client(fake: FakeAnthropic) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.url, api_key=KEY, max_retries=0)


async def test_unary_echoes_and_records_the_request(fake: FakeAnthropic) -> None:
    message = await client(fake).messages.create(model="claude-x", max_tokens=50, messages=HELLO)
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello there"
    assert message.stop_reason == "end_turn"
    assert message.model == "claude-x"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    (rec,) = fake.requests
    assert rec.path == "/v1/messages"
    assert rec.header("x-api-key") == KEY or rec.header("authorization") == f"Bearer {KEY}"
    assert rec.header("anthropic-version")
    assert rec.body["max_tokens"] == 50


async def test_stream_events_build_the_same_message(fake: FakeAnthropic) -> None:
    async with client(fake).messages.stream(model="claude-x", max_tokens=50, messages=HELLO) as stream:
        pieces = [text async for text in stream.text_stream]
        message = await stream.get_final_message()
    assert len(pieces) > 1
    assert "".join(pieces) == "echo: hello there"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 1  # message_delta's total, not message_start's 1
    assert fake.requests[0].stream


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_use(fake: FakeAnthropic, stream: bool) -> None:
    fake.script(Reply.tool_use("get_weather", {"city": "Paris", "units": ["c", "f"]}))
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    api = client(fake).messages
    if stream:
        async with api.stream(model="m", max_tokens=50, messages=HELLO, tools=tools) as events:  # type: ignore[arg-type]
            message = await events.get_final_message()
    else:
        message = await api.create(model="m", max_tokens=50, messages=HELLO, tools=tools)  # type: ignore[arg-type]
    (block,) = message.content
    assert block.type == "tool_use"
    assert block.name == "get_weather"
    assert block.input == {"city": "Paris", "units": ["c", "f"]}
    assert block.id.startswith("toolu_")
    assert message.stop_reason == "tool_use"


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_with_signature_and_redacted(fake: FakeAnthropic, stream: bool) -> None:
    fake.script(Reply.ok("42", thinking="let me think about it", redacted_thinking="opaque=="))
    api = client(fake).messages
    thinking = {"type": "enabled", "budget_tokens": 1024}
    if stream:
        async with api.stream(model="m", max_tokens=2048, messages=HELLO, thinking=thinking) as events:  # type: ignore[arg-type]
            message = await events.get_final_message()
    else:
        message = await api.create(model="m", max_tokens=2048, messages=HELLO, thinking=thinking)  # type: ignore[arg-type]
    first, second, third = message.content
    assert first.type == "thinking"
    assert first.thinking == "let me think about it"
    assert first.signature == SIGNATURE
    assert second.type == "redacted_thinking"
    assert second.data == "opaque=="
    assert third.type == "text"
    assert third.text == "42"


async def test_cache_usage_fields(fake: FakeAnthropic) -> None:
    usage = Usage(
        input_tokens=10, output_tokens=5, cache_creation_input_tokens=200, cache_read_input_tokens=300
    )
    fake.script(Reply.ok("x", usage=usage))
    message = await client(fake).messages.create(model="m", max_tokens=50, messages=HELLO)
    assert message.usage.cache_creation_input_tokens == 200
    assert message.usage.cache_read_input_tokens == 300
    assert message.usage.input_tokens == 10


@pytest.mark.parametrize(
    ("error_type", "exception"),
    [
        ("invalid_request_error", anthropic.BadRequestError),
        ("authentication_error", anthropic.AuthenticationError),
        ("permission_error", anthropic.PermissionDeniedError),
        ("not_found_error", anthropic.NotFoundError),
        ("request_too_large", anthropic.RequestTooLargeError),
        ("rate_limit_error", anthropic.RateLimitError),
        ("api_error", anthropic.InternalServerError),
        ("overloaded_error", anthropic.OverloadedError),
    ],
)
async def test_errors_raise_the_sdks_classes(
    fake: FakeAnthropic, error_type: str, exception: type[anthropic.APIStatusError]
) -> None:
    fake.script(Reply.error(error_type, "it went wrong"))
    with pytest.raises(exception) as caught:
        await client(fake).messages.create(model="m", max_tokens=50, messages=HELLO)
    assert caught.value.body == {
        "type": "error",
        "error": {"type": error_type, "message": "it went wrong"},
        "request_id": caught.value.request_id,
    }
    if error_type == "rate_limit_error":
        assert caught.value.response.headers["retry-after"] == "7"


async def _texts(fake: FakeAnthropic, pieces: list[str]) -> None:
    """Stream the default request's text into ``pieces``, then read the final message."""
    async with client(fake).messages.stream(model="m", max_tokens=50, messages=HELLO) as stream:
        async for text in stream.text_stream:
            pieces.append(text)
        await stream.get_final_message()


async def test_error_event_mid_stream(fake: FakeAnthropic) -> None:
    fake.script(Reply.error_event("overloaded_error", after=2))
    pieces: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        await _texts(fake, pieces)
    assert pieces  # the error came after some content
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"


async def test_broken_stream_closes_the_connection(fake: FakeAnthropic) -> None:
    fake.script(Reply.broken(after=2))
    pieces: list[str] = []
    # The SDK's own HTTP stack reports it (whichever httpx it bundles).
    with pytest.raises(Exception, match="peer closed connection"):
        await _texts(fake, pieces)
    assert pieces
    assert "".join(pieces) != "echo: hello there"


@pytest.mark.parametrize(
    ("headers", "body", "status", "error_type"),
    [
        (
            {"anthropic-version": "2023-06-01"},
            {"model": "m", "max_tokens": 1, "messages": []},
            401,
            "authentication_error",
        ),
        ({"x-api-key": KEY}, {"model": "m", "max_tokens": 1, "messages": []}, 400, "invalid_request_error"),
        (
            {"x-api-key": KEY, "anthropic-version": "2023-06-01"},
            {"model": "m", "messages": []},
            400,
            "invalid_request_error",
        ),
    ],
)
async def test_refuses_what_the_real_api_refuses(
    fake: FakeAnthropic, headers: dict[str, str], body: dict[str, object], status: int, error_type: str
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{fake.url}/v1/messages", json=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type
