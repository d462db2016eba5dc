"""The contract every provider keeps, whatever its wire format: the same scenarios against azure,
openai, anthropic and the OpenAI-compatible family (a config-only provider, and presets with
quirks: deepseek's renames and reasoning field, perplexity's usage without stream_options), each
talking to a real HTTP fake of its upstream.

A scenario says what the upstream does ("answers 'hello'", "rate-limits with Retry-After 7",
"breaks the stream after two events"); each provider's ``Wire`` says how its fake does that. The
assertions are on canonical messages and failure classes only, so they are the same for all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson
import pytest

from service.errors import FailureClass, GatewayError
from service.providers import Provider, ProviderContext, build_provider
from service.routing import Target
from switchyard.config import KeyConfig, ProviderConfig, Secret
from switchyard.v1 import chat_pb2 as pb
from tests.fakes import anthropic as ant
from tests.fakes import upstream as oai

KEY = KeyConfig(secret=Secret("contract-key-123"))


class Wire(Protocol):
    """How one provider's fake plays a scenario."""

    def text(self, text: str) -> None: ...

    def tool_call(self, name: str, arguments: dict[str, Any]) -> None: ...

    def error(self, kind: str) -> None:
        """``kind``: bad_request, auth, rate_limit (Retry-After 7 s), overloaded."""

    def broken_stream(self) -> None:
        """A stream that sends some content, then closes its connection."""


class OpenAIWire:
    STATUS = {"bad_request": 400, "auth": 401, "rate_limit": 429, "overloaded": 503}

    def __init__(self, fake: oai.FakeUpstream, quirks: Mapping[str, Any] | None = None) -> None:
        self.fake = fake
        self.quirks = dict(quirks or {})  # how this upstream differs (Reply fields)

    def text(self, text: str) -> None:
        self.fake.script(replace(oai.Reply.ok(text), **self.quirks))

    def tool_call(self, name: str, arguments: dict[str, Any]) -> None:
        self.fake.script(replace(oai.Reply.tool_call(name, arguments), **self.quirks))

    def error(self, kind: str) -> None:
        headers = {"retry-after": "7"} if kind == "rate_limit" else None
        self.fake.script(oai.Reply.status(self.STATUS[kind], headers=headers))

    def broken_stream(self) -> None:
        self.fake.script(replace(oai.Reply.stream(["one ", "two ", "three"], break_after=2), **self.quirks))


class AnthropicWire:
    TYPE = {
        "bad_request": "invalid_request_error",
        "auth": "authentication_error",
        "rate_limit": "rate_limit_error",
        "overloaded": "overloaded_error",
    }

    def __init__(self, fake: ant.FakeAnthropic) -> None:
        self.fake = fake

    def text(self, text: str) -> None:
        self.fake.script(ant.Reply.ok(text))

    def tool_call(self, name: str, arguments: dict[str, Any]) -> None:
        self.fake.script(ant.Reply.tool_use(name, arguments))

    def error(self, kind: str) -> None:
        self.fake.script(ant.Reply.error(self.TYPE[kind]))  # a rate limit says retry-after: 7

    def broken_stream(self) -> None:
        self.fake.script(ant.Reply.broken(3, ant.Reply.ok("one two three")))


@dataclass
class Case:
    provider: Provider
    wire: Wire
    model: str

    def prepared(self, *, stream: bool, **fields: Any) -> Any:
        request = pb.ChatCompletionRequest(
            deployment_id=self.model, messages=[pb.ChatMessage(role="user", text="hi")], **fields
        )
        return self.provider.prepare(request, Target(self.provider.name, self.model), stream=stream)

    async def send(self, **fields: Any) -> pb.ChatCompletionResponse:
        return await self.provider.send(self.prepared(stream=False, **fields), KEY)

    async def stream(self, **fields: Any) -> list[pb.ChatCompletionChunk]:
        return [c async for c in self.provider.stream(self.prepared(stream=True, **fields), KEY)]


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[oai.FakeUpstream]:
    with oai.FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[ant.FakeAnthropic]:
    with ant.FakeAnthropic() as fake:
        yield fake


# The OpenAI-compatible family: its options, and how its fake differs from OpenAI's.
COMPATIBLE: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "openai_compatible": ({"auth_header": "X-Api-Key", "auth_format": "{key}"}, {}),
    "deepseek": ({}, {"reasoning": "thinking first"}),  # answers carry reasoning_content
    "perplexity": ({}, {"usage_always": True}),  # sent no stream_options, reports usage anyway
}
KINDS = ["azure", "openai", "anthropic", *COMPATIBLE]


@pytest.fixture(params=KINDS)
async def case(
    request: pytest.FixtureRequest, openai_fake: oai.FakeUpstream, anthropic_fake: ant.FakeAnthropic
) -> Any:
    kind = request.param
    openai_fake.reset()
    anthropic_fake.reset()
    base_url = {"azure": openai_fake.url, "anthropic": anthropic_fake.url}.get(kind, openai_fake.url + "/v1")
    options, quirks = COMPATIBLE.get(kind, ({}, {}))
    config = ProviderConfig(name=kind, kind=kind, base_url=base_url, keys=(KEY,), options=options)
    provider = build_provider(config, ProviderContext())
    wire: Wire = AnthropicWire(anthropic_fake) if kind == "anthropic" else OpenAIWire(openai_fake, quirks)
    yield Case(provider, wire, "model-x")
    await provider.aclose()


TOOL = pb.Tool(
    type="function",
    function=pb.FunctionDefinition(
        name="lookup", parameters_json='{"type":"object","properties":{"q":{"type":"string"}}}'
    ),
)


async def test_a_text_answer(case: Case) -> None:
    case.wire.text("hello there")
    response = await case.send()
    (choice,) = response.choices
    assert (choice.message.role, choice.message.text, choice.finish_reason) == (
        "assistant",
        "hello there",
        "stop",
    )
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens > 0
    assert response.id and response.model


async def test_a_streamed_text_answer_ends_with_its_finish_and_usage(case: Case) -> None:
    case.wire.text("one two three")
    chunks = await case.stream()
    text = "".join(c.delta.text for chunk in chunks for c in chunk.choices)
    assert text == "one two three"
    finishes = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage.total_tokens > 0 and not chunks[-1].choices


async def test_a_tool_call(case: Case) -> None:
    case.wire.tool_call("lookup", {"q": "weather"})
    response = await case.send(tools=[TOOL])
    (choice,) = response.choices
    (call,) = choice.message.tool_calls
    assert choice.finish_reason == "tool_calls"
    assert (call.type, call.function.name) == ("function", "lookup")
    assert orjson.loads(call.function.arguments) == {"q": "weather"}
    assert call.id


async def test_a_streamed_tool_call_arrives_as_indexed_deltas(case: Case) -> None:
    case.wire.tool_call("lookup", {"q": "a somewhat longer query"})
    chunks = await case.stream(tools=[TOOL])
    deltas = [t for chunk in chunks for c in chunk.choices for t in c.delta.tool_calls]
    assert {d.index for d in deltas} == {0}
    assert [d.function.name for d in deltas if d.function.name] == ["lookup"]
    assert orjson.loads("".join(d.function.arguments for d in deltas)) == {"q": "a somewhat longer query"}
    assert [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason] == ["tool_calls"]


@pytest.mark.parametrize(
    ("kind", "failure", "status"),
    [
        ("bad_request", FailureClass.CALLER, 400),
        ("auth", FailureClass.CREDENTIAL, 401),
        ("rate_limit", FailureClass.RATE_LIMIT, 429),
        ("overloaded", FailureClass.TRANSIENT, None),
    ],
)
async def test_errors_are_classed_the_same_way(
    case: Case, kind: str, failure: FailureClass, status: int | None
) -> None:
    for call in (case.send, case.stream):
        case.wire.error(kind)
        with pytest.raises(GatewayError) as caught:
            await call()
        err = caught.value
        assert err.failure is failure
        assert err.from_upstream and err.message
        if status is not None:
            assert err.status == status
        else:
            assert err.status >= 500
        if kind == "rate_limit":
            assert err.retry_after_s == 7


async def test_a_stream_broken_midway_is_a_transient_failure(case: Case) -> None:
    case.wire.broken_stream()
    got: list[pb.ChatCompletionChunk] = []

    async def read() -> None:
        async for chunk in case.provider.stream(case.prepared(stream=True), KEY):
            got.append(chunk)

    with pytest.raises(GatewayError) as caught:
        await read()
    assert caught.value.failure is FailureClass.TRANSIENT
    assert caught.value.type == "upstream_stream_broken"
    assert got  # some content came first


async def test_an_unreachable_upstream_is_transient() -> None:
    for kind in KINDS:
        config = ProviderConfig(name=kind, kind=kind, base_url="http://127.0.0.1:9", keys=(KEY,))
        provider = build_provider(config, ProviderContext())
        prepared = provider.prepare(
            pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", text="hi")]),
            Target(kind, "m"),
            stream=False,
        )
        with pytest.raises(GatewayError) as caught:
            await provider.send(prepared, KEY)
        assert (caught.value.type, caught.value.failure) == ("upstream_unreachable", FailureClass.TRANSIENT)
        await provider.aclose()
