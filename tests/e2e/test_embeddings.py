"""Embeddings end to end, through real Switchyard processes and the fake upstream's hashed
bag-of-words vectors: the ``openai`` SDK (``AzureOpenAI().embeddings.create``), raw HTTP on
the four paths, the generated gRPC stub, fallbacks, bad input, and governance (auth on: 401,
402, the request log, cost) with no secret in logs or errors.

The open-mode tests run on the session's ``stack`` (inprocess, grpc-loopback, split); the
governed ones on a stack of their own (inprocess, split). Each test uses its own deployment
ids, so scripted upstream replies never leak between tests.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import openai
import pytest
from openai import AzureOpenAI

from switchyard.v1 import chat_pb2, embeddings_pb2, embeddings_pb2_grpc
from tests.e2e.governed import GOVERNED_ENV, admin_headers, create_key, governed_config
from tests.e2e.rpc_errors import error_body, rich_status
from tests.fakes.embeddings import embed
from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import AZURE_KEY, OPENAI_KEY, SECRETS, Stack, start_stack

API_VERSION = "2024-10-21"
CALLER_KEY = "caller-key-must-not-reach-upstream"
PATHS = {
    "azure-with-openai": "/openai/openai/deployments/{}/embeddings?api-version=" + API_VERSION,
    "azure-bare": "/openai/deployments/{}/embeddings?api-version=" + API_VERSION,
    "v1": "/v1/embeddings",
    "openai-v1": "/openai/v1/embeddings",
}


def sdk(stack: Stack, api_key: str = CALLER_KEY) -> AzureOpenAI:
    return AzureOpenAI(
        azure_endpoint=stack.base_url + "/openai", api_key=api_key, api_version=API_VERSION, max_retries=0
    )


def unpack(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


# ---------------------------------------------------------------- the openai SDK


def test_sdk_string_input_float(stack: Stack, upstream: FakeUpstream) -> None:
    with sdk(stack) as client:
        raw = client.embeddings.with_raw_response.create(
            model="emb-sdk-str", input="How do I reset my password?", encoding_format="float"
        )
        result = raw.parse()

    assert raw.http_request.url.path == "/openai/openai/deployments/emb-sdk-str/embeddings"
    assert raw.headers["x-request-id"]
    assert [d.embedding for d in result.data] == [embed("How do I reset my password?")]
    assert result.model == "emb-sdk-str"
    assert result.usage.prompt_tokens == result.usage.total_tokens == 6  # the fake counts words
    extra = result.model_extra["extra_fields"] if result.model_extra else {}
    assert (extra["request_type"], extra["provider"], extra["model_requested"]) == (
        "embedding",
        "azure",
        "emb-sdk-str",
    )
    sent = upstream.requests[-1]
    assert sent.path == "/openai/deployments/emb-sdk-str/embeddings"
    assert sent.api_version == API_VERSION
    assert sent.header("api-key") == AZURE_KEY  # the gateway's key, never the caller's
    assert CALLER_KEY not in repr(sent.headers)
    # The SDK's body as it came (its `model` is the deployment's name, as Azure expects).
    assert sent.body == {
        "model": "emb-sdk-str",
        "input": "How do I reset my password?",
        "encoding_format": "float",
    }


def test_sdk_list_input_default_encoding_is_base64_decoded_by_the_sdk(
    stack: Stack, upstream: FakeUpstream
) -> None:
    texts = ["the cat sat on the mat", "quantum entanglement", "the cats sat on mats"]
    with sdk(stack) as client:
        result = client.embeddings.create(model="emb-sdk-list", input=texts)

    # Without encoding_format the SDK asks for base64 and decodes the float32s itself.
    assert upstream.requests[-1].body["encoding_format"] == "base64"
    assert [d.index for d in result.data] == [0, 1, 2]
    assert [d.embedding for d in result.data] == [embed(t) for t in texts]


def test_sdk_explicit_base64_is_passed_through_and_dimensions_reach_the_upstream(
    stack: Stack, upstream: FakeUpstream
) -> None:
    with sdk(stack) as client:
        result = client.embeddings.create(
            model="emb-sdk-b64", input=["alpha beta", "gamma"], encoding_format="base64", dimensions=48
        )
    assert upstream.requests[-1].body["dimensions"] == 48
    vectors = [unpack(d.embedding) for d in result.data]  # type: ignore[arg-type]
    assert vectors == [embed("alpha beta", 48), embed("gamma", 48)]


# ---------------------------------------------------------------- raw HTTP, the four paths


@pytest.mark.parametrize("route", PATHS)
def test_raw_http_on_every_path(
    stack: Stack, client: httpx.Client, upstream: FakeUpstream, route: str
) -> None:
    deployment = f"emb-path-{route}"
    body: dict[str, Any] = {"input": ["one fish", "two fish"]}
    if route in ("v1", "openai-v1"):
        body["model"] = deployment  # no deployment in the path: the body's model routes
    response = client.post(
        PATHS[route].format(deployment),
        json=body,
        headers={"api-key": CALLER_KEY, "x-request-id": f"rid-{route}"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == f"rid-{route}"
    answer = response.json()
    assert answer["object"] == "list"
    assert [d["embedding"] for d in answer["data"]] == [embed("one fish"), embed("two fish")]
    assert answer["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert answer["extra_fields"]["request_type"] == "embedding"
    assert answer["extra_fields"]["model_deployment"] == deployment
    assert upstream.requests[-1].deployment == deployment


BAD_BODIES = {
    "missing input": ({}, "input"),
    "empty list": ({"input": []}, "input"),
    "empty string": ({"input": ""}, "input"),
    "empty item": ({"input": ["a", ""]}, "input[1]"),
    "number": ({"input": 5}, "input"),
    "mixed list": ({"input": ["a", 1]}, "input[1]"),
    "object items": ({"input": [{"text": "a"}]}, "input[0]"),
    "too many": ({"input": ["x"] * 2049}, "input"),
    "encoding": ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    "encoding type": ({"input": "x", "encoding_format": 1}, "encoding_format"),
    "dimensions": ({"input": "x", "dimensions": 0}, "dimensions"),
    "dimensions type": ({"input": "x", "dimensions": "8"}, "dimensions"),
    "fallbacks type": ({"input": "x", "fallbacks": "openai/x"}, "fallbacks"),
    "body not an object": ([1, 2], "body"),
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_bad_input_is_a_400_in_the_contracts_shape(
    stack: Stack, client: httpx.Client, upstream: FakeUpstream, case: str
) -> None:
    body, param = BAD_BODIES[case]
    response = client.post(PATHS["azure-bare"].format("emb-bad"), json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["status_code"] == 400
    assert error["type"] == "invalid_request_error"
    assert error["is_bifrost_error"] is True
    assert error["error"]["param"] == param, error
    assert upstream.requests == []


def test_bad_json_and_huge_bodies(stack: Stack, client: httpx.Client, upstream: FakeUpstream) -> None:
    path = PATHS["v1"]
    not_json = client.post(path, content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["type"] == "invalid_request_error"
    huge = client.post(path, json={"model": "emb-huge", "input": ["x" * 1000] * 1100})  # > max_body_bytes
    assert huge.status_code == 413
    assert huge.json()["type"] == "request_too_large"
    assert upstream.requests == []


# ---------------------------------------------------------------- fallbacks


def test_fallback_after_5xx_skipping_a_provider_without_embeddings(
    stack: Stack, client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.status(500), Reply.status(500), Reply.status(500), match="emb-fb-primary")
    response = client.post(
        PATHS["azure-bare"].format("emb-fb-primary"),
        json={"input": "fall back", "fallbacks": ["anthropic/claude-x", "openai/text-embedding-3-small"]},
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    extra = answer["extra_fields"]
    assert extra["provider"] == "openai"
    assert extra["model_deployment"] == "text-embedding-3-small"
    kinds = [(a["provider"], a["error_type"]) for a in extra["attempts"]]
    assert kinds[0] == ("", "fallback_skipped")
    assert "does not serve embeddings" in extra["attempts"][0]["message"]
    assert kinds[1:] == [("azure", "upstream_error")] * 3
    sent = upstream.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.header("authorization") == f"Bearer {OPENAI_KEY}"
    assert answer["data"][0]["embedding"] == embed("fall back")


def test_no_fallback_on_a_400_and_a_provider_without_embeddings_is_a_400(
    stack: Stack, client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.script(Reply.status(400, message="bad input upstream"), match="emb-400")
    refused = client.post(
        PATHS["azure-bare"].format("emb-400"),
        json={"input": "x", "fallbacks": ["openai/text-embedding-3-small"]},
    )
    assert refused.status_code == 400
    assert refused.json()["is_bifrost_error"] is False  # the upstream's own error
    assert len(upstream.requests) == 1

    unsupported = client.post(PATHS["v1"], json={"model": "anthropic/claude-x", "input": "x"})
    assert unsupported.status_code == 400
    message = unsupported.json()["error"]["message"]
    assert "'anthropic'" in message and "'claude-x'" in message
    assert len(upstream.requests) == 1


# ---------------------------------------------------------------- gRPC


@pytest.fixture(scope="module")
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(stack.grpc_target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


def test_grpc_create_and_its_errors(channel: grpc.Channel, upstream: FakeUpstream) -> None:
    stub = embeddings_pb2_grpc.EmbeddingsStub(channel)
    request = embeddings_pb2.EmbeddingsRequest(
        deployment_id="emb-grpc",
        input_texts=chat_pb2.StringList(values=["hello grpc", "good bye"]),
        encoding_format="base64",
    )
    response, call = stub.Create.with_call(request, timeout=10)
    assert dict(call.initial_metadata())["x-request-id"]
    assert [item.float32_le for item in response.data] == [
        struct.pack("<256f", *embed("hello grpc")),
        struct.pack("<256f", *embed("good bye")),
    ]
    assert response.extra_fields.request_type == "embedding"
    assert response.usage.total_tokens == 4
    assert upstream.requests[-1].deployment == "emb-grpc"

    with pytest.raises(grpc.RpcError) as info:
        stub.Create(embeddings_pb2.EmbeddingsRequest(deployment_id="emb-grpc"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    body = error_body(rich_status(info.value)[1])
    assert (body.status_code, body.error.param, body.extra_fields.request_type) == (400, "input", "embedding")


# ---------------------------------------------------------------- governance


@pytest.fixture(scope="module", params=["inprocess", "split"])
def gov(
    request: pytest.FixtureRequest, upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"embeddings-governed-{request.param}")
    running = start_stack(request.param, governed_config(upstream_server.url, workdir), workdir, GOVERNED_ENV)
    yield running
    running.stop()


def test_governed_embeddings_cost_log_401_and_402(gov: Stack, upstream: FakeUpstream) -> None:
    secret, key = create_key(
        gov.base_url, id=f"k-{uuid.uuid4().hex[:12]}", budget={"max_usd": 1e-9, "reset": "1d"}
    )
    model = "openai/text-embedding-3-small"  # $0.02 per million input tokens (the shipped table)
    with httpx.Client(base_url=gov.base_url, timeout=30) as http:
        first = http.post(
            PATHS["v1"],
            json={"model": model, "input": "a b c d"},
            headers={"authorization": f"Bearer {secret}", "x-request-id": f"emb-gov-{key['id']}"},
        )
        assert first.status_code == 200, first.text
        assert first.json()["usage"]["cost"]["total_cost"] == pytest.approx(4 * 0.02 / 1e6)

        # The key's budget (1e-9 USD) is spent: refused, with no upstream call.
        calls = upstream.request_count
        spent = http.post(PATHS["v1"], json={"model": model, "input": "x"}, headers={"api-key": secret})
        assert spent.status_code == 402, spent.text
        assert spent.json()["type"] == "budget_exceeded"
        assert spent.json()["extra_fields"]["request_type"] == "embedding"
        assert upstream.request_count == calls

        bad_key = secret[:-4] + "AAAA"
        with sdk(gov, api_key=bad_key) as client, pytest.raises(openai.AuthenticationError) as info:
            client.embeddings.create(model="emb-gov-401", input="x")
        assert info.value.status_code == 401
        assert bad_key not in info.value.response.text
        assert upstream.request_count == calls

        entries: list[dict[str, Any]] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(entries) < 2:
            page = http.get("/api/logs", params={"key_id": key["id"]}, headers=admin_headers()).json()
            entries = page["entries"]
            time.sleep(0.05)
    assert [(e["request_type"], e["status"]) for e in entries] == [("embedding", 402), ("embedding", 200)]
    ok = entries[1]
    assert ok["request_id"] == f"emb-gov-{key['id']}"
    assert (ok["provider"], ok["model_served"], ok["prompt_tokens"]) == (
        "openai",
        "text-embedding-3-small",
        4,
    )
    assert ok["cost"] == pytest.approx(4 * 0.02 / 1e6)

    logs = gov.logs()
    for value in (secret, bad_key, *SECRETS):
        assert value not in logs
        assert value not in first.text and value not in spent.text
