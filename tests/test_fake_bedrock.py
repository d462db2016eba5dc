"""The fake Bedrock speaks the real format: the official ``boto3`` client signs requests it
accepts, and parses its Converse answers, its event-stream frames and its errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from tests.fakes.bedrock import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    SESSION_TOKEN,
    SIGNATURE,
    FakeBedrock,
    Reply,
    Usage,
)

REGION = "eu-west-3"
MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
HELLO = [{"role": "user", "content": [{"text": "hello there"}]}]


@pytest.fixture(scope="module")
def bedrock_server() -> Iterator[FakeBedrock]:
    with FakeBedrock() as fake:
        yield fake


@pytest.fixture
def fake(bedrock_server: FakeBedrock) -> FakeBedrock:
    bedrock_server.reset()
    return bedrock_server


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def client(fake: FakeBedrock, *, secret: str = SECRET_ACCESS_KEY, token: str | None = None) -> Any:
    """A boto3 Bedrock Runtime client for the fake (closed after the test)."""
    sdk = boto3.client(
        "bedrock-runtime",
        endpoint_url=fake.url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    _OPEN.append(sdk)
    return sdk


def test_converse_echoes_and_the_signature_verifies(fake: FakeBedrock) -> None:
    answer = client(fake).converse(modelId=MODEL, messages=HELLO, inferenceConfig={"maxTokens": 50})
    assert answer["output"]["message"] == {"role": "assistant", "content": [{"text": "echo: hello there"}]}
    assert answer["stopReason"] == "end_turn"
    usage = answer["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    (rec,) = fake.requests
    assert FakeBedrock.model_id(rec) == MODEL
    assert rec.body["inferenceConfig"] == {"maxTokens": 50}
    (signed,) = fake.signatures
    assert (signed.access_key_id, signed.region, signed.service) == (ACCESS_KEY_ID, REGION, "bedrock")
    assert "%3A" in signed.raw_path  # boto3 escapes the model id's ':'


def test_converse_stream_frames_build_the_same_message(fake: FakeBedrock) -> None:
    response = client(fake).converse_stream(modelId=MODEL, messages=HELLO)
    events = list(response["stream"])
    kinds = [next(iter(event)) for event in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"]
    pieces = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
    assert len(pieces) > 1
    assert "".join(pieces) == "echo: hello there"
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"]["outputTokens"] > 0
    assert fake.requests[0].path.endswith("/converse-stream")


@pytest.mark.parametrize("stream", [False, True])
def test_tool_use(fake: FakeBedrock, stream: bool) -> None:
    fake.script(Reply.tool_use("get_weather", {"city": "Paris", "units": ["c", "f"]}))
    tools = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]}
    api = client(fake)
    if stream:
        events = list(api.converse_stream(modelId=MODEL, messages=HELLO, toolConfig=tools)["stream"])
        (start,) = [e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e]
        arguments = "".join(
            e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events if "contentBlockDelta" in e
        )
        use = {**start, "input": json.loads(arguments)}
        stop = events[-2]["messageStop"]["stopReason"]
    else:
        answer = api.converse(modelId=MODEL, messages=HELLO, toolConfig=tools)
        (block,) = answer["output"]["message"]["content"]
        use, stop = block["toolUse"], answer["stopReason"]
    assert use["name"] == "get_weather"
    assert use["input"] == {"city": "Paris", "units": ["c", "f"]}
    assert use["toolUseId"].startswith("tooluse_")
    assert stop == "tool_use"


@pytest.mark.parametrize("stream", [False, True])
def test_usage_with_cache_reads_and_writes(fake: FakeBedrock, stream: bool) -> None:
    fake.script(Reply.ok("x", usage=Usage(10, 5, cache_read_input_tokens=300, cache_write_input_tokens=200)))
    api = client(fake)
    if stream:
        usage = list(api.converse_stream(modelId=MODEL, messages=HELLO)["stream"])[-1]["metadata"]["usage"]
    else:
        usage = api.converse(modelId=MODEL, messages=HELLO)["usage"]
    assert (usage["inputTokens"], usage["outputTokens"]) == (10, 5)
    assert (usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"]) == (300, 200)
    assert usage["totalTokens"] == 515


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_with_its_signature(fake: FakeBedrock, stream: bool) -> None:
    fake.script(Reply.ok("42", reasoning="six times seven"))
    api = client(fake)
    if stream:
        deltas = [
            e["contentBlockDelta"]["delta"]
            for e in api.converse_stream(modelId=MODEL, messages=HELLO)["stream"]
            if "contentBlockDelta" in e
        ]
        text = "".join(d["reasoningContent"].get("text", "") for d in deltas if "reasoningContent" in d)
        signature = "".join(
            d["reasoningContent"].get("signature", "") for d in deltas if "reasoningContent" in d
        )
    else:
        first = api.converse(modelId=MODEL, messages=HELLO)["output"]["message"]["content"][0]
        text, signature = (
            first["reasoningContent"]["reasoningText"]["text"],
            first["reasoningContent"]["reasoningText"]["signature"],
        )
    assert (text, signature) == ("six times seven", SIGNATURE)


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        ("ThrottlingException", 429),
        ("ValidationException", 400),
        ("AccessDeniedException", 403),
        ("ServiceUnavailableException", 503),
    ],
)
def test_errors_raise_the_sdks_client_error(fake: FakeBedrock, error_type: str, status: int) -> None:
    fake.script(Reply.error(error_type, "it went wrong"))
    with pytest.raises(ClientError) as caught:
        client(fake).converse(modelId=MODEL, messages=HELLO)
    error = caught.value.response
    assert error["Error"] == {"Code": error_type, "Message": "it went wrong"}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status


def test_an_exception_frame_mid_stream_is_the_sdks_event_stream_error(fake: FakeBedrock) -> None:
    fake.script(Reply.exception("ThrottlingException", after=2))
    pieces: list[str] = []
    with pytest.raises(EventStreamError) as caught:
        _texts(client(fake).converse_stream(modelId=MODEL, messages=HELLO)["stream"], pieces)
    assert pieces  # the exception came after some content
    assert caught.value.response["Error"]["Code"] == "throttlingException"
    assert caught.value.response["Error"]["Message"] == "fake ThrottlingException"


def _texts(events: Any, into: list[str]) -> None:
    for event in events:
        if "contentBlockDelta" in event:
            into.append(event["contentBlockDelta"]["delta"]["text"])


def test_a_corrupt_frame_fails_botocores_checksum(fake: FakeBedrock) -> None:
    from botocore.eventstream import ChecksumMismatch

    fake.script(Reply.corrupt(after=1))
    with pytest.raises(ChecksumMismatch):
        list(client(fake).converse_stream(modelId=MODEL, messages=HELLO)["stream"])


def test_a_session_token_is_checked_too(fake: FakeBedrock) -> None:
    fake.allow(ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
    client(fake, token=SESSION_TOKEN).converse(modelId=MODEL, messages=HELLO)
    assert fake.signatures[0].session_token == SESSION_TOKEN
    assert "x-amz-security-token" in fake.signatures[0].signed_headers
    with pytest.raises(ClientError) as caught:
        client(fake, token="another-token").converse(modelId=MODEL, messages=HELLO)
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_a_wrong_secret_fails_the_signature(fake: FakeBedrock) -> None:
    with pytest.raises(ClientError) as caught:
        client(fake, secret="not-the-secret").converse(modelId=MODEL, messages=HELLO)
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert fake.signatures == [] and fake.requests  # seen, refused, never answered


def test_an_unsigned_request_is_refused(fake: FakeBedrock) -> None:
    response = httpx.post(f"{fake.url}/model/m/converse", json={"messages": HELLO})
    assert response.status_code == 403
    assert response.headers["x-amzn-errortype"].startswith("MissingAuthenticationTokenException:")


@pytest.mark.parametrize(
    ("messages", "extra", "problem"),
    [
        ([{"role": "assistant", "content": [{"text": "hi"}]}], {}, "start with a user"),
        ([{"role": "user", "content": [{"text": "  "}]}], {}, "is blank"),
        (
            [
                {"role": "user", "content": [{"text": "hi"}]},
                {
                    "role": "assistant",
                    "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}],
                },
            ],
            {},
            "toolConfig field must be defined",
        ),
    ],
)
def test_refuses_what_converse_refuses(
    fake: FakeBedrock, messages: list[dict[str, Any]], extra: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ClientError) as caught:
        client(fake).converse(modelId=MODEL, messages=messages, **extra)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert problem in caught.value.response["Error"]["Message"]


def test_an_inference_profile_arn_routes_and_verifies(fake: FakeBedrock) -> None:
    arn = (
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
        "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
    )
    client(fake).converse(modelId=arn, messages=HELLO)
    assert FakeBedrock.model_id(fake.requests[0]) == arn
    assert "%2F" in fake.signatures[0].raw_path
