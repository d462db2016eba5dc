"""The contract every provider keeps, whatever its wire format: the same scenarios against azure,
openai, anthropic, gemini, vertex, bedrock and the OpenAI-compatible family (a config-only
provider, and presets with quirks: deepseek's renames and reasoning field, perplexity's usage
without stream_options), each talking to a real HTTP fake of its upstream.

A scenario says what the upstream does ("answers 'hello'", "rate-limits with Retry-After 7",
"breaks the stream after two events"); each provider's ``Wire`` says how its fake does that. The
assertions are on canonical messages and failure classes only, so they are the same for all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
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
from tests.fakes import bedrock as aws
from tests.fakes import gemini as gem
from tests.fakes import upstream as oai

KEY = KeyConfig(secret=Secret("contract-key-123"))
# An AWS access key: its id is the key's value, its secret rides with it.
AWS_KEY = KeyConfig(
    secret=Secret(aws.ACCESS_KEY_ID),
    secrets={"secret_access_key": Secret(aws.SECRET_ACCESS_KEY), "region": Secret("us-east-1")},
)


class Wire(Protocol):
    """How one provider's fake plays a scenario."""

    def text(self, text: str) -> None: ...

    def tool_call(self, name: str, arguments: dict[str, Any]) -> None: ...

    def error(self, kind: str) -> None:
        """``kind``: bad_request, auth, rate_limit (Retry-After 7 s), overloaded."""

    def broken_stream(self) -> None:
        """A stream that sends some content, then closes its connection."""

    # The upstream's own status for a scenario where it is not the usual one (read with getattr:
    # most wires have none).
    status_differs: dict[str, int]


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


class BedrockWire:
    TYPE = {
        "bad_request": "ValidationException",
        # What AWS answers a key it does not know; it has no 401.
        "auth": "UnrecognizedClientException",
        "rate_limit": "ThrottlingException",
        "overloaded": "ServiceUnavailableException",
    }
    status_differs = {"auth": 403}

    def __init__(self, fake: aws.FakeBedrock) -> None:
        self.fake = fake

    def text(self, text: str) -> None:
        self.fake.script(aws.Reply.ok(text))

    def tool_call(self, name: str, arguments: dict[str, Any]) -> None:
        self.fake.script(aws.Reply.tool_use(name, arguments))

    def error(self, kind: str) -> None:
        # AWS sends no Retry-After; the scenario's 7 s is checked where an upstream sends one.
        self.fake.script(aws.Reply.error(self.TYPE[kind]))

    def broken_stream(self) -> None:
        self.fake.script(aws.Reply.broken(3, aws.Reply.ok("one two three")))


class GeminiWire:
    """Gemini's fake, for AI Studio and Vertex AI alike (they answer the same)."""

    STATUS = {
        "bad_request": "INVALID_ARGUMENT",
        "auth": "UNAUTHENTICATED",
        "rate_limit": "RESOURCE_EXHAUSTED",
        "overloaded": "UNAVAILABLE",
    }

    def __init__(self, fake: gem.FakeGemini) -> None:
        self.fake = fake

    def text(self, text: str) -> None:
        self.fake.script(gem.Reply.ok(text))

    def tool_call(self, name: str, arguments: dict[str, Any]) -> None:
        self.fake.script(gem.Reply.function_call(name, arguments))

    def error(self, kind: str) -> None:
        # Gemini says when to come back in a RetryInfo detail, not a Retry-After header.
        delay = "7s" if kind == "rate_limit" else None
        self.fake.script(gem.Reply.error(self.STATUS[kind], retry_delay=delay))

    def broken_stream(self) -> None:
        self.fake.script(gem.Reply.broken(2, gem.Reply.ok("one two three four")))


@dataclass
class Case:
    provider: Provider
    wire: Wire
    model: str
    key: KeyConfig = KEY
    # The credentials this case's provider holds or obtains (none may show in bodies or errors).
    secrets: Callable[[], list[str]] = lambda: [KEY.secret.value]

    def prepared(self, *, stream: bool, **fields: Any) -> Any:
        fields.setdefault("messages", [pb.ChatMessage(role="user", text="hi")])
        request = pb.ChatCompletionRequest(deployment_id=self.model, **fields)
        return self.provider.prepare(request, Target(self.provider.name, self.model), stream=stream)

    async def send(self, **fields: Any) -> pb.ChatCompletionResponse:
        return await self.provider.send(self.prepared(stream=False, **fields), self.key)

    async def stream(self, **fields: Any) -> list[pb.ChatCompletionChunk]:
        return [c async for c in self.provider.stream(self.prepared(stream=True, **fields), self.key)]


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
KINDS = ["azure", "openai", "anthropic", "gemini", "vertex", "bedrock", *COMPATIBLE]


@pytest.fixture(scope="module")
def bedrock_fake() -> Iterator[aws.FakeBedrock]:
    with aws.FakeBedrock() as fake:
        yield fake


@pytest.fixture(params=KINDS)
async def case(
    request: pytest.FixtureRequest,
    openai_fake: oai.FakeUpstream,
    anthropic_fake: ant.FakeAnthropic,
    bedrock_fake: aws.FakeBedrock,
    gemini_server: gem.FakeGemini,
) -> Any:
    kind = request.param
    openai_fake.reset()
    anthropic_fake.reset()
    bedrock_fake.reset()
    gemini_server.reset()
    base_url = {
        "azure": openai_fake.url,
        "anthropic": anthropic_fake.url,
        "gemini": gemini_server.url,
        "vertex": gemini_server.url,
        "bedrock": bedrock_fake.url,
    }.get(kind, openai_fake.url + "/v1")
    options, quirks = COMPATIBLE.get(kind, ({}, {}))
    key = AWS_KEY if kind == "bedrock" else KEY

    def secrets() -> list[str]:
        return [key.secret.value, *(s.value for name, s in key.secrets.items() if name != "region")]

    if kind == "vertex":
        # A service account whose token comes from the fake's token endpoint.
        account = gemini_server.service_account()
        key = KeyConfig(secret=Secret(json.dumps(account)))
        options = {"project": "contract-project", "location": "us-central1"}

        def secrets() -> list[str]:
            return [account["private_key"][40:100], *gemini_server.issued_tokens]

    config = ProviderConfig(name=kind, kind=kind, base_url=base_url, keys=(key,), options=options)
    provider = build_provider(config, ProviderContext(keep_raw=True))
    wires: dict[str, Wire] = {
        "anthropic": AnthropicWire(anthropic_fake),
        "gemini": GeminiWire(gemini_server),
        "vertex": GeminiWire(gemini_server),
        "bedrock": BedrockWire(bedrock_fake),
    }
    model = "gemini-2.5-flash" if kind in ("gemini", "vertex") else "model-x"
    yield Case(provider, wires.get(kind) or OpenAIWire(openai_fake, quirks), model, key, secrets)
    await provider.aclose()


PIXEL = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
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
            assert err.status == getattr(case.wire, "status_differs", {}).get(kind, status)
        else:
            assert err.status >= 500
        if kind == "rate_limit" and not isinstance(case.wire, BedrockWire):  # AWS sends no Retry-After
            assert err.retry_after_s == 7


async def test_a_multi_turn_tool_conversation(case: Case) -> None:
    case.wire.tool_call("lookup", {"q": "weather"})
    first = await case.send(tools=[TOOL])
    (call,) = first.choices[0].message.tool_calls
    case.wire.text("It is sunny.")
    messages = [
        pb.ChatMessage(role="user", text="weather?"),
        first.choices[0].message,
        pb.ChatMessage(role="tool", tool_call_id=call.id, text='{"sky": "clear"}'),
        pb.ChatMessage(role="user", text="and so?"),
    ]
    second = await case.send(tools=[TOOL], messages=messages)
    assert second.choices[0].message.text == "It is sunny."
    assert second.choices[0].finish_reason == "stop"


async def test_an_image_by_data_url(case: Case) -> None:
    image = pb.ContentPart(type="image_url", image_url=pb.ImageUrl(url=f"data:image/png;base64,{PIXEL}"))
    parts = pb.ContentParts(parts=[pb.ContentPart(type="text", text="What is this?"), image])
    case.wire.text("A pixel.")
    response = await case.send(messages=[pb.ChatMessage(role="user", parts=parts)])
    assert response.choices[0].message.text == "A pixel."


async def test_no_credential_reaches_bodies_or_errors(case: Case) -> None:
    case.wire.text("hello")
    answer = await case.send()
    shown = [answer.extra_fields.raw_request_json, answer.extra_fields.raw_response_json]
    assert all(shown)
    for call in (case.send, case.stream):
        case.wire.error("auth")
        with pytest.raises(GatewayError) as caught:
            await call()
        shown += [caught.value.message, str(caught.value.to_attempt())]
    text = "\n".join(shown)
    for secret in case.secrets():
        assert secret not in text


async def test_a_stream_broken_midway_is_a_transient_failure(case: Case) -> None:
    case.wire.broken_stream()
    got: list[pb.ChatCompletionChunk] = []

    async def read() -> None:
        async for chunk in case.provider.stream(case.prepared(stream=True), case.key):
            got.append(chunk)

    with pytest.raises(GatewayError) as caught:
        await read()
    assert caught.value.failure is FailureClass.TRANSIENT
    assert caught.value.type == "upstream_stream_broken"
    assert got  # some content came first


async def test_an_unreachable_upstream_is_transient() -> None:
    for kind in ("azure", "openai", "anthropic", "gemini", "bedrock", *COMPATIBLE):
        key = AWS_KEY if kind == "bedrock" else KEY
        config = ProviderConfig(name=kind, kind=kind, base_url="http://127.0.0.1:9", keys=(key,))
        provider = build_provider(config, ProviderContext())
        prepared = provider.prepare(
            pb.ChatCompletionRequest(messages=[pb.ChatMessage(role="user", text="hi")]),
            Target(kind, "m"),
            stream=False,
        )
        with pytest.raises(GatewayError) as caught:
            await provider.send(prepared, key)
        assert (caught.value.type, caught.value.failure) == ("upstream_unreachable", FailureClass.TRANSIENT)
        await provider.aclose()
