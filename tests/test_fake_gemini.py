"""The fake Gemini / Vertex AI upstream speaks the real formats: the official ``google-genai`` SDK (and,
for Claude on Vertex, the ``anthropic`` SDK's Vertex client) parses what it says."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import pytest
from google import genai
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request
from google.genai import errors, types
from google.oauth2 import service_account

from tests.fakes import anthropic as ant
from tests.fakes.gemini import THOUGHT_SIGNATURE, FakeGemini, FunctionCall, Reply, Usage

KEY = "AIza-fake-gemini-key-0123456789"
PROJECT, LOCATION = "test-project", "us-central1"
MODEL = "gemini-2.5-flash"
WEATHER = types.Tool(
    function_declarations=[
        types.FunctionDeclaration(
            name="get_weather",
            parameters=types.Schema(type=types.Type.OBJECT, properties={"city": types.Schema(type="STRING")}),
        )
    ]
)


@pytest.fixture
def fake(gemini: FakeGemini) -> Iterator[FakeGemini]:
    """The session's fake (tests/conftest.py), cleared for this test."""
    yield gemini
    _clients.clear()


# Held for the test's length: a client that is garbage-collected closes its HTTP client.
_clients: list[genai.Client] = []


def studio(fake: FakeGemini, key: str = KEY) -> genai.Client:
    client = genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=fake.url, api_version="v1beta")
    )
    _clients.append(client)
    return client


def vertex(fake: FakeGemini) -> genai.Client:
    credentials = service_account.Credentials.from_service_account_info(
        fake.service_account(), scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    client = genai.Client(
        vertexai=True,
        project=PROJECT,
        location=LOCATION,
        credentials=credentials,
        http_options=types.HttpOptions(base_url=fake.url, api_version="v1"),
    )
    _clients.append(client)
    return client


def test_generate_content_echoes_and_records_the_request(fake: FakeGemini) -> None:
    response = studio(fake).models.generate_content(
        model=MODEL,
        contents="hello there",
        config=types.GenerateContentConfig(system_instruction="be brief", temperature=0.3, candidate_count=1),
    )
    assert response.text == "echo: hello there"
    (candidate,) = response.candidates or []
    assert candidate.finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert response.model_version == MODEL and response.response_id
    (rec,) = fake.requests
    assert rec.path == f"/v1beta/models/{MODEL}:generateContent"
    assert rec.header("x-goog-api-key") == KEY
    assert rec.body["systemInstruction"]["parts"] == [{"text": "be brief"}]
    assert rec.body["generationConfig"]["temperature"] == 0.3


def test_a_stream_builds_the_same_text_and_ends_with_usage(fake: FakeGemini) -> None:
    fake.script(Reply.ok("a longer answer, in pieces", usage=Usage(prompt=11, candidates=7)))
    chunks = list(studio(fake).models.generate_content_stream(model=MODEL, contents="hi"))
    assert len(chunks) > 2
    assert "".join(c.text or "" for c in chunks) == "a longer answer, in pieces"
    assert [
        c.candidates[0].finish_reason for c in chunks if c.candidates and c.candidates[0].finish_reason
    ] == [types.FinishReason.STOP]
    final = chunks[-1].usage_metadata
    assert final is not None and (final.prompt_token_count, final.candidates_token_count) == (11, 7)
    (rec,) = fake.requests
    assert rec.path.endswith(":streamGenerateContent") and rec.query == {"alt": "sse"}


@pytest.mark.parametrize("stream", [False, True])
def test_function_calls(fake: FakeGemini, stream: bool) -> None:
    call = FunctionCall("get_weather", {"city": "Paris", "days": [1, 2]}, thought_signature=THOUGHT_SIGNATURE)
    fake.script(Reply.ok(calls=[call]))
    config = types.GenerateContentConfig(
        tools=[WEATHER],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    models = studio(fake).models
    if stream:
        chunks = list(models.generate_content_stream(model=MODEL, contents="weather?", config=config))
        calls = [c for chunk in chunks for c in chunk.function_calls or []]
        parts = [p for chunk in chunks for p in chunk.candidates[0].content.parts or []]  # type: ignore[index, union-attr]
    else:
        response = models.generate_content(model=MODEL, contents="weather?", config=config)
        calls = response.function_calls or []
        parts = response.candidates[0].content.parts or []  # type: ignore[index, union-attr]
    (got,) = calls
    assert (got.name, got.args) == ("get_weather", {"city": "Paris", "days": [1, 2]})
    signed = [p.thought_signature for p in parts if p.function_call]
    assert signed and signed[0]  # the SDK decodes it as bytes
    body = fake.requests[0].body
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_a_function_response_turn_is_accepted(fake: FakeGemini) -> None:
    contents = [
        types.Content(role="user", parts=[types.Part(text="weather?")]),
        types.Content(
            role="model",
            parts=[types.Part(function_call=types.FunctionCall(name="get_weather", args={"city": "Paris"}))],
        ),
        types.Content(
            role="user",
            parts=[
                types.Part(function_response=types.FunctionResponse(name="get_weather", response={"t": 24}))
            ],
        ),
    ]
    fake.script(Reply.ok("It is 24 degrees."))
    response = studio(fake).models.generate_content(model=MODEL, contents=contents)
    assert response.text == "It is 24 degrees."
    assert fake.requests[0].body["contents"][2]["parts"][0]["functionResponse"]["response"] == {"t": 24}


def test_thoughts_and_their_usage(fake: FakeGemini) -> None:
    fake.script(Reply.ok("42", thought="six times seven", usage=Usage(10, 2, cached=4, thoughts=30)))
    response = studio(fake).models.generate_content(
        model=MODEL,
        contents="6*7?",
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True)
        ),
    )
    parts = response.candidates[0].content.parts  # type: ignore[index, union-attr]
    assert [(p.thought, p.text) for p in parts or []] == [(True, "six times seven"), (None, "42")]
    usage = response.usage_metadata
    assert usage is not None
    assert (usage.cached_content_token_count, usage.thoughts_token_count, usage.total_token_count) == (
        4,
        30,
        42,
    )
    # (The SDK writes this one object in snake_case, which the API takes too.)
    assert 1024 in fake.requests[0].body["generationConfig"]["thinkingConfig"].values()


def test_a_blocked_prompt_has_feedback_and_no_candidates(fake: FakeGemini) -> None:
    fake.script(Reply.blocked("PROHIBITED_CONTENT"))
    response = studio(fake).models.generate_content(model=MODEL, contents="something bad")
    assert not response.candidates
    assert response.prompt_feedback is not None
    assert response.prompt_feedback.block_reason == types.BlockedReason.PROHIBITED_CONTENT


@pytest.mark.parametrize(
    ("status", "exception", "code"),
    [
        ("INVALID_ARGUMENT", errors.ClientError, 400),
        ("PERMISSION_DENIED", errors.ClientError, 403),
        ("NOT_FOUND", errors.ClientError, 404),
        ("RESOURCE_EXHAUSTED", errors.ClientError, 429),
        ("INTERNAL", errors.ServerError, 500),
        ("UNAVAILABLE", errors.ServerError, 503),
    ],
)
def test_errors_raise_the_sdks_classes(
    fake: FakeGemini, status: str, exception: type[errors.APIError], code: int
) -> None:
    fake.script(Reply.error(status, "it went wrong", retry_delay="7s" if code == 429 else None))
    with pytest.raises(exception) as caught:
        studio(fake).models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status, caught.value.message) == (code, status, "it went wrong")
    if code == 429:
        assert caught.value.details["error"]["details"][0]["retryDelay"] == "7s"


def test_a_wrong_key_is_refused_like_the_real_api(fake: FakeGemini) -> None:
    fake.api_keys = {KEY}
    with pytest.raises(errors.ClientError) as caught:
        studio(fake, key="AIza-wrong").models.generate_content(model=MODEL, contents="hi")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]},
        {"contents": [{"role": "user", "parts": []}]},
        {"contents": [{"role": "user", "parts": [{"functionResponse": {"response": {}}}]}]},
    ],
)
def test_refuses_what_the_real_api_refuses(fake: FakeGemini, body: dict[str, object]) -> None:
    response = httpx.post(
        f"{fake.url}/v1beta/models/{MODEL}:generateContent", json=body, headers={"x-goog-api-key": KEY}
    )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_a_stream_without_alt_sse_is_a_json_array(fake: FakeGemini) -> None:
    response = httpx.post(
        f"{fake.url}/v1beta/models/{MODEL}:streamGenerateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        headers={"x-goog-api-key": KEY},
    )
    events = response.json()
    assert isinstance(events, list) and events[-1]["candidates"][0]["finishReason"] == "STOP"


def test_a_broken_stream_closes_the_connection(fake: FakeGemini) -> None:
    fake.script(Reply.broken(2, Reply.ok("a long answer that will not finish")))
    got: list[str] = []

    def read() -> None:
        for chunk in studio(fake).models.generate_content_stream(model=MODEL, contents="hi"):
            got.append(chunk.text or "")

    # The SDK's own HTTP stack reports it (whichever httpx it bundles).
    with pytest.raises(Exception, match=r"(?i)peer closed|incomplete|remote"):
        read()
    assert got and "".join(got) != "a long answer that will not finish"


# ------------------------------------------------------------------ Vertex AI


def test_vertex_with_a_service_account_goes_through_the_token_endpoint(fake: FakeGemini) -> None:
    client = vertex(fake)
    response = client.models.generate_content(model="gemini-2.5-pro", contents="hello vertex")
    assert response.text == "echo: hello vertex"
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-pro", contents="again"))
    assert "".join(c.text or "" for c in chunks) == "echo: again"
    (grant,) = fake.token_requests  # google-auth reused its token for the second call
    assert "grant_type=urn" in grant.raw.decode()
    first, second = fake.requests
    path = f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/gemini-2.5-pro"
    assert (first.path, second.path) == (f"{path}:generateContent", f"{path}:streamGenerateContent")
    assert first.header("authorization") == second.header("authorization")
    assert first.header("authorization").removeprefix("Bearer ") in fake.issued_tokens  # type: ignore[union-attr]


def test_vertex_refuses_a_token_it_did_not_issue(fake: FakeGemini) -> None:
    response = httpx.post(
        f"{fake.url}/v1/projects/p/locations/l/publishers/google/models/m:generateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        headers={"authorization": "Bearer ya29.made-up"},
    )
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_the_token_endpoint_refuses_a_grant_signed_with_another_key(fake: FakeGemini) -> None:
    info = fake.service_account()
    info["client_email"] = "stranger@elsewhere.iam.gserviceaccount.com"  # an account it does not know
    credentials = service_account.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    with pytest.raises(RefreshError, match="invalid_grant"):
        credentials.refresh(Request())


def test_claude_on_vertex_speaks_anthropics_format(fake: FakeGemini) -> None:
    client = vertex(fake)  # for its token
    client.models.generate_content(model="gemini-2.5-pro", contents="warm up")
    token = fake.requests[0].header("authorization").removeprefix("Bearer ")  # type: ignore[union-attr]
    claude = anthropic.AnthropicVertex(
        region=LOCATION, project_id=PROJECT, access_token=token, base_url=f"{fake.url}/v1", max_retries=0
    )
    fake.script(ant.Reply.ok("Bonjour"))
    message = claude.messages.create(
        model="claude-sonnet-4-5@20250929", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content[0].text == "Bonjour"  # type: ignore[union-attr]
    assert message.model == "claude-sonnet-4-5@20250929"
    with claude.messages.stream(
        model="claude-sonnet-4-5@20250929", max_tokens=64, messages=[{"role": "user", "content": "count"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == "echo: count"
    unary, streamed = fake.requests[1:]
    base = (
        f"/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/claude-sonnet-4-5@20250929"
    )
    assert (unary.path, streamed.path) == (f"{base}:rawPredict", f"{base}:streamRawPredict")
    assert unary.body["anthropic_version"] and "model" not in unary.body  # the model is in the URL
