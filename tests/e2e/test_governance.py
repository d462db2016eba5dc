"""Governance end to end: credentials, refusals, JWT attacks, allowed models, budgets, cost, admin API.

Everything runs against real Switchyard processes with auth on (``tests/e2e/governed.py``), over
raw HTTP, the openai SDK and the generated gRPC stub, in one process (``inprocess``) and split.
Each test makes its own virtual key through the admin API, so tests do not share limits.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import openai
import orjson
import pytest
from google.rpc import error_details_pb2

from switchyard.v1 import chat_pb2, chat_pb2_grpc
from tests.e2e.governed import (
    ADMIN_TOKEN,
    GOVERNED_ENV,
    JWT_SECRET,
    PRICED_MODEL,
    RSA_PUBLIC_PEM,
    SEEDED_KEY,
    SEEDED_KEY_ID,
    admin_headers,
    chat_body,
    create_key,
    es_token,
    governed_config,
    hs_token,
    rs_token,
)
from tests.e2e.rpc_errors import error_body, rich_status
from tests.fakes.upstream import FakeUpstream, Reply, Usage
from tests.support import SECRETS, Stack, start_stack

CHAT = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"
MINTED: list[str] = []  # every credential the tests made, for the no-leak check


@pytest.fixture(scope="module", params=["inprocess", "split"])
def gov(
    request: pytest.FixtureRequest, upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"governed-{request.param}")
    running = start_stack(request.param, governed_config(upstream_server.url, workdir), workdir, GOVERNED_ENV)
    yield running
    running.stop()


@pytest.fixture
def http(gov: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gov.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def channel(gov: Stack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gov.grpc_target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


def new_key(gov: Stack, **fields: Any) -> tuple[str, dict[str, Any]]:
    fields.setdefault("id", f"k-{uuid.uuid4().hex[:12]}")
    secret, record = create_key(gov.base_url, **fields)
    MINTED.append(secret)
    return secret, record


def post(http: httpx.Client, deployment: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    return http.post(CHAT.format(deployment), json=chat_body(**body), headers=headers)


def refused(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status_code"] == status
    assert body["type"] == type_, body
    assert body["is_bifrost_error"] is True
    assert body["error"]["message"]
    return body


def grpc_refusal(call: Any) -> tuple[grpc.StatusCode, chat_pb2.ErrorBody, dict[str, str], float | None]:
    """(code, ErrorBody, ErrorInfo metadata, RetryInfo seconds) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    _, details = rich_status(info.value)
    error_info = details.get("google.rpc.ErrorInfo")
    retry_info = details.get("google.rpc.RetryInfo")
    assert isinstance(error_info, error_details_pb2.ErrorInfo)
    retry = None
    if isinstance(retry_info, error_details_pb2.RetryInfo):
        retry = retry_info.retry_delay.ToNanoseconds() / 1e9
    return info.value.code(), error_body(details), dict(error_info.metadata), retry  # type: ignore[attr-defined]


def grpc_request(deployment: str, text: str = "hi", **fields: Any) -> chat_pb2.ChatCompletionRequest:
    return chat_pb2.ChatCompletionRequest(
        deployment_id=deployment, messages=[chat_pb2.ChatMessage(role="user", text=text)], **fields
    )


# ---------------------------------------------------------------- credentials


def _credentials(gov: Stack) -> dict[str, str]:
    """One working credential of each kind."""
    secret, record = new_key(gov)
    vk_jwt = hs_token({"vk": record["id"]})
    MINTED.append(vk_jwt)
    return {
        "virtual key": secret,
        "virtual-key JWT (HS256)": vk_jwt,
        "admin JWT (RS256)": rs_token({"role": "admin"}),
        "admin JWT (ES256, JWKS)": es_token({"role": ["reader", "admin"]}),
        "admin token": ADMIN_TOKEN,
    }


HEADERS = {
    "authorization": lambda t: {"authorization": f"Bearer {t}"},
    "api-key": lambda t: {"api-key": t},
    "x-bf-vk": lambda t: {"x-bf-vk": t},
}


def test_every_credential_kind_through_every_header_on_rest(
    gov: Stack, http: httpx.Client, upstream: FakeUpstream
) -> None:
    for kind, token in _credentials(gov).items():
        for header, make in HEADERS.items():
            response = post(http, "cred-rest", make(token))
            assert response.status_code == 200, (kind, header, response.text)
    assert upstream.request_count == 5 * 3
    # The caller's credential is never what goes upstream: the provider key is.
    assert {r.header("api-key") for r in upstream.requests} == {SECRETS[0]}


def test_every_credential_kind_through_every_metadata_key_on_grpc(
    gov: Stack, channel: grpc.Channel, upstream: FakeUpstream
) -> None:
    stub = chat_pb2_grpc.ChatCompletionsStub(channel)
    for kind, token in _credentials(gov).items():
        for header, make in HEADERS.items():
            metadata = tuple(make(token).items())
            reply = stub.Create(grpc_request("cred-grpc"), metadata=metadata, timeout=10)
            assert reply.choices[0].message.text == "echo: hi", (kind, header)
    assert upstream.request_count == 15


def test_openai_sdk_with_a_virtual_key_and_with_a_jwt(gov: Stack, upstream: FakeUpstream) -> None:
    secret, record = new_key(gov)
    client = openai.AzureOpenAI(
        azure_endpoint=f"{gov.base_url}/openai", api_key=secret, api_version="2024-10-21", max_retries=0
    )
    reply = client.chat.completions.create(model="sdk-dep", messages=[{"role": "user", "content": "hey"}])
    assert reply.choices[0].message.content == "echo: hey"
    token = hs_token({"vk": record["id"]})
    MINTED.append(token)
    ad_client = openai.AzureOpenAI(
        azure_endpoint=gov.base_url, azure_ad_token=token, api_version="2024-10-21", max_retries=0
    )
    chunks = list(
        ad_client.chat.completions.create(
            model="sdk-dep", messages=[{"role": "user", "content": "hey"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello world"
    bad = openai.AzureOpenAI(
        azure_endpoint=gov.base_url, api_key="sk-bf-" + "x" * 43, api_version="2024-10-21", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="sdk-dep", messages=[{"role": "user", "content": "hey"}])
    assert info.value.status_code == 401
    assert upstream.request_count == 2


def test_seeded_config_key_works_and_belongs_to_its_team(gov: Stack, http: httpx.Client) -> None:
    assert post(http, "seeded", {"api-key": SEEDED_KEY}).status_code == 200
    record = http.get(f"/api/keys/{SEEDED_KEY_ID}", headers=admin_headers()).json()
    assert record["team_id"] == "seed-team"
    assert record["key_prefix"] == SEEDED_KEY[:10]
    assert "secret" not in record and "key_hash" not in record


# ---------------------------------------------------------------- refusals


def test_refusals_on_rest_each_with_its_status_and_type(
    gov: Stack, http: httpx.Client, upstream: FakeUpstream
) -> None:
    refused(post(http, "r", {}), 401, "missing_credentials")
    refused(post(http, "r", {"api-key": "not-a-key"}), 401, "invalid_credentials")
    refused(post(http, "r", {"api-key": "sk-bf-" + "Q" * 43}), 401, "invalid_credentials")
    refused(post(http, "r", {"authorization": "Basic abc"}), 401, "missing_credentials")
    inactive, record = new_key(gov)
    http.patch(f"/api/keys/{record['id']}", json={"active": False}, headers=admin_headers())
    refused(post(http, "r", {"api-key": inactive}), 403, "virtual_key_inactive")
    expired, _ = new_key(gov, expires_at=time.time() - 5)
    refused(post(http, "r", {"api-key": expired}), 403, "virtual_key_expired")
    limited, _ = new_key(gov, allowed_models=["priced", "openai/gpt-ok*"])
    refused(post(http, "other-dep", {"api-key": limited}), 403, "model_not_allowed")
    only_openai, _ = new_key(gov, allowed_providers=["openai"])
    refused(post(http, "priced", {"api-key": only_openai}), 403, "provider_not_allowed")
    assert upstream.request_count == 0
    # The allowed ones do go through.
    assert post(http, "priced", {"api-key": limited}).status_code == 200
    assert post(http, "openai/gpt-ok-1", {"api-key": limited}).status_code == 200


def test_refusals_on_grpc_carry_the_matching_code_and_http_status(gov: Stack, channel: grpc.Channel) -> None:
    stub = chat_pb2_grpc.ChatCompletionsStub(channel)
    inactive, record = new_key(gov)
    httpx.post(f"{gov.base_url}/api/keys/{record['id']}/revoke", headers=admin_headers(), timeout=10)
    rpm, _ = new_key(gov, rate_limit={"requests_per_minute": 1})
    broke, _ = new_key(gov, budget={"max_usd": 0, "reset": "1d"})
    limited, _ = new_key(gov, allowed_models=["nothing-*"])
    cases = [
        ((), grpc.StatusCode.UNAUTHENTICATED, 401, "missing_credentials"),
        ((("x-bf-vk", "garbage"),), grpc.StatusCode.UNAUTHENTICATED, 401, "invalid_credentials"),
        ((("api-key", inactive),), grpc.StatusCode.PERMISSION_DENIED, 403, "virtual_key_inactive"),
        ((("api-key", limited),), grpc.StatusCode.PERMISSION_DENIED, 403, "model_not_allowed"),
        ((("api-key", broke),), grpc.StatusCode.FAILED_PRECONDITION, 402, "budget_exceeded"),
    ]
    for metadata, code, http_status, type_ in cases:
        got, body, meta, _ = grpc_refusal(
            lambda m=metadata: stub.Create(grpc_request("g"), metadata=m, timeout=10)
        )
        assert (got, body.status_code, body.type, meta["http_status"]) == (
            code,
            http_status,
            type_,
            str(http_status),
        )
    assert stub.Create(grpc_request("g"), metadata=(("api-key", rpm),), timeout=10).choices
    got, body, meta, retry = grpc_refusal(
        lambda: stub.Create(grpc_request("g"), metadata=(("api-key", rpm),), timeout=10)
    )
    assert (got, body.type, meta["http_status"]) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "rate_limit_exceeded",
        "429",
    )
    assert retry is not None and 0 < retry <= 120  # a sliding minute: up to two buckets
    # Streams are refused the same way, before any chunk.
    got, body, _, _ = grpc_refusal(lambda: list(stub.CreateStream(grpc_request("g"), timeout=10)))
    assert (got, body.type) == (grpc.StatusCode.UNAUTHENTICATED, "missing_credentials")


def test_rate_limit_answers_429_with_retry_after(gov: Stack, http: httpx.Client) -> None:
    secret, _ = new_key(gov, rate_limit={"requests_per_minute": 3})
    statuses = [post(http, "rl", {"api-key": secret}).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    response = post(http, "rl", {"api-key": secret})
    refused(response, 429, "rate_limit_exceeded")
    assert 1 <= int(response.headers["retry-after"]) <= 120
    # Streams count against the same limit.
    stream = http.post(CHAT.format("rl"), json=chat_body(stream=True), headers={"api-key": secret})
    assert stream.status_code == 429


def test_tokens_per_minute_limit(gov: Stack, http: httpx.Client, upstream: FakeUpstream) -> None:
    secret, _ = new_key(gov, rate_limit={"tokens_per_minute": 250})
    upstream.script(*[Reply.ok(usage=Usage(100, 50))] * 3, match="tpm-dep")
    assert post(http, "tpm-dep", {"api-key": secret}).status_code == 200  # 150 tokens
    assert post(http, "tpm-dep", {"api-key": secret}).status_code == 200  # 300: over from now on
    refused(post(http, "tpm-dep", {"api-key": secret}), 429, "rate_limit_exceeded")


def test_disallowed_fallbacks_are_skipped_and_reported(
    gov: Stack, http: httpx.Client, upstream: FakeUpstream
) -> None:
    secret, _ = new_key(gov, allowed_models=["fb-primary", "openai/gpt-ok*"])
    upstream.script(Reply.status(503), Reply.status(503), Reply.status(503), match="fb-primary")
    response = post(
        http, "fb-primary", {"api-key": secret}, fallbacks=["openai/gpt-forbidden", "openai/gpt-ok-fb"]
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["extra_fields"]["model_deployment"] == "gpt-ok-fb"
    skipped = [a for a in body["extra_fields"]["attempts"] if a["error_type"] == "fallback_skipped"]
    assert [a["model"] for a in skipped] == ["openai/gpt-forbidden"]
    assert "not allowed" in skipped[0]["message"]
    assert "gpt-forbidden" not in {r.model for r in upstream.requests}


def test_admin_jwt_may_call_any_model_and_virtual_keys_get_403_on_the_admin_api(
    gov: Stack, http: httpx.Client
) -> None:
    secret, _ = new_key(gov, allowed_models=["only-this"])
    refused(http.get("/api/keys", headers={"api-key": secret}), 403, "admin_required")
    refused(http.get("/api/keys"), 401, "missing_credentials")
    token = hs_token({"role": "admin"})
    assert http.get("/api/keys", headers={"authorization": f"Bearer {token}"}).status_code == 200
    assert post(http, "anything-at-all", {"authorization": f"Bearer {token}"}).status_code == 200


# ---------------------------------------------------------------- JWT attacks


def _forge_alg_none(claims: dict[str, Any]) -> str:
    def b64(data: bytes) -> str:
        import base64

        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    header = b64(orjson.dumps({"alg": "none", "typ": "JWT"}))
    now = int(time.time())
    payload = b64(
        orjson.dumps(
            {"iss": "https://idp.example.test", "aud": "switchyard-tests", "exp": now + 300, **claims}
        )
    )
    return f"{header}.{payload}."


def _hs_with_public_key_as_secret(claims: dict[str, Any]) -> str:
    """The HS/RS confusion attack: sign HS256 with the server's RSA public key as the HMAC secret."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    now = int(time.time())
    body = {"iss": "https://idp.example.test", "aud": "switchyard-tests", "exp": now + 300, **claims}
    signing_input = f"{b64(orjson.dumps({'alg': 'HS256', 'typ': 'JWT'}))}.{b64(orjson.dumps(body))}"
    signature = hmac.new(RSA_PUBLIC_PEM, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda: _forge_alg_none({"role": "admin"}), id="alg-none"),
        pytest.param(
            lambda: hs_token({"role": "admin"}, secret="not-the-secret-0123456789abcdef"), id="wrong-key"
        ),
        pytest.param(lambda: hs_token({"role": "admin"}, ttl_s=-60), id="expired"),
        pytest.param(lambda: hs_token({"role": "admin", "aud": "someone-else"}), id="wrong-audience"),
        pytest.param(lambda: hs_token({"role": "admin", "iss": "https://evil.example"}), id="wrong-issuer"),
        pytest.param(lambda: _hs_with_public_key_as_secret({"role": "admin"}), id="hs-rs-confusion"),
        pytest.param(
            lambda: jwt.encode(
                {"role": "admin", "aud": "switchyard-tests", "iss": "https://idp.example.test"},
                JWT_SECRET,
                algorithm="HS256",
            ),
            id="no-exp",
        ),
        pytest.param(lambda: hs_token({"vk": "no-such-key"}), id="unknown-virtual-key"),
        pytest.param(lambda: hs_token({"sub": "nobody"}), id="neither-admin-nor-key"),
        pytest.param(
            lambda: jwt.encode(
                {
                    "role": "admin",
                    "exp": int(time.time()) + 60,
                    "aud": "switchyard-tests",
                    "iss": "https://idp.example.test",
                },
                JWT_SECRET,
                algorithm="HS384",
            ),
            id="algorithm-not-enabled",
        ),
    ],
)
def test_jwt_attacks_are_refused_with_401(
    gov: Stack, http: httpx.Client, upstream: FakeUpstream, forge: Any
) -> None:
    token = forge()
    MINTED.append(token)
    for path in (CHAT.format("jwt-attack"), "/api/keys"):
        method = http.post if "chat" in path else http.get
        kwargs: dict[str, Any] = {"json": chat_body()} if "chat" in path else {}
        response = method(path, headers={"authorization": f"Bearer {token}"}, **kwargs)
        body = refused(response, 401, "invalid_credentials")
        assert token not in response.text
        assert body["error"]["message"]
    assert upstream.request_count == 0


# ---------------------------------------------------------------- cost


def test_unary_cost_follows_the_price_table(gov: Stack, http: httpx.Client, upstream: FakeUpstream) -> None:
    secret, _ = new_key(gov)
    upstream.script(
        Reply.ok(usage=Usage(1000, 200, cached_tokens=400, reasoning_tokens=50)), match="priced-dep"
    )
    response = post(http, "priced", {"api-key": secret})
    assert response.status_code == 200, response.text
    cost = response.json()["usage"]["cost"]
    per = {k: v / 1e6 for k, v in PRICED_MODEL.items()}
    expected_input = 600 * per["input"] + 400 * per["cached_input"]
    assert cost["input_tokens_cost"] == pytest.approx(expected_input)
    assert cost["output_tokens_cost"] == pytest.approx(150 * per["output"])
    assert cost["reasoning_tokens_cost"] == pytest.approx(50 * per["reasoning"])
    assert cost["request_cost"] == 0
    assert cost["total_cost"] == pytest.approx(expected_input + 150 * per["output"] + 50 * per["reasoning"])


def test_streamed_cost_is_in_the_final_usage_chunk(
    gov: Stack, http: httpx.Client, upstream: FakeUpstream
) -> None:
    secret, _ = new_key(gov)
    upstream.script(Reply.stream(["a", "b"], usage=Usage(300, 20)), match="priced-dep")
    with http.stream(
        "POST",
        CHAT.format("priced"),
        json=chat_body(stream=True, stream_options={"include_usage": True}),
        headers={"api-key": secret},
    ) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage_chunk = orjson.loads(events[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["cost"]["total_cost"] == pytest.approx(300 * 0.001 + 20 * 0.002)


def test_unknown_model_has_null_cost_and_is_counted(gov: Stack, http: httpx.Client) -> None:
    before = http.get("/api/stats", headers=admin_headers()).json()
    secret, _ = new_key(gov)
    response = post(http, "no-price-anywhere", {"api-key": secret})
    assert response.status_code == 200
    assert "cost" not in response.json()["usage"]
    after = http.get("/api/stats", headers=admin_headers()).json()
    assert after["unpriced_requests"] == before["unpriced_requests"] + 1
    assert "azure/no-price-anywhere" in after["unpriced_models"]


# ---------------------------------------------------------------- budgets


def test_budget_holds_under_50_concurrent_requests(gov: Stack, upstream: FakeUpstream) -> None:
    # Each call really costs 10 * 0.001 + 50 * 0.002 = 0.11 USD; its worst case (max_tokens 50,
    # prompt estimated from the body) is reserved first, so at most one request overshoots.
    actual = 0.11
    limit = 1.0
    secret, record = new_key(gov, budget={"max_usd": limit, "reset": "1d"})
    upstream.script(*[Reply.slow(0.2, Reply.ok(usage=Usage(10, 50)))] * 50, match="priced-dep")

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=gov.base_url, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        CHAT.format("priced"), json=chat_body(max_tokens=50), headers={"api-key": secret}
                    )
                    for _ in range(50)
                )
            )
        return [r.status_code for r in responses]

    statuses = asyncio.run(burst())
    served = statuses.count(200)
    assert set(statuses) <= {200, 402}, statuses
    assert 0 < served < 50
    usage = httpx.get(f"{gov.base_url}/api/keys/{record['id']}", headers=admin_headers()).json()[
        "budget_usage"
    ]
    assert usage["reserved_usd"] == pytest.approx(0)
    assert usage["spent_usd"] == pytest.approx(served * actual)
    assert usage["spent_usd"] <= limit + actual
    # Sequential calls spend the rest; once the budget is exhausted it stays closed.
    for _ in range(20):
        upstream.script(Reply.ok(usage=Usage(10, 50)), match="priced-dep")
        response = httpx.post(
            f"{gov.base_url}{CHAT.format('priced')}",
            json=chat_body(max_tokens=50),
            headers={"api-key": secret},
        )
        if response.status_code != 200:
            break
        served += 1
    body = refused(response, 402, "budget_exceeded")
    assert body["error"]["code"] == "key_budget_exceeded"
    assert int(response.headers["retry-after"]) > 0  # until the window resets
    usage = httpx.get(f"{gov.base_url}/api/keys/{record['id']}", headers=admin_headers()).json()[
        "budget_usage"
    ]
    assert usage["spent_usd"] == pytest.approx(served * actual)
    assert limit <= usage["spent_usd"] <= limit + actual


def test_team_budget_must_also_pass(gov: Stack, http: httpx.Client, upstream: FakeUpstream) -> None:
    team = f"team-{uuid.uuid4().hex[:8]}"
    put = http.put(
        f"/api/teams/{team}",
        json={"name": "t", "budget": {"max_usd": 0.1, "reset": "1w"}},
        headers=admin_headers(),
    )
    assert put.status_code == 200, put.text
    secret, _ = new_key(gov, team_id=team, budget={"max_usd": 100, "reset": "1mo"})
    upstream.script(Reply.ok(usage=Usage(10, 100)), match="priced-dep")  # 0.21 USD: spends the team's 0.1
    assert post(http, "priced", {"api-key": secret}, max_tokens=100).status_code == 200
    body = refused(post(http, "priced", {"api-key": secret}, max_tokens=100), 402, "budget_exceeded")
    assert body["error"]["code"] == "team_budget_exceeded"
    teams = {t["id"]: t for t in http.get("/api/teams", headers=admin_headers()).json()["teams"]}
    assert teams[team]["budget_usage"]["spent_usd"] == pytest.approx(0.21)


# ---------------------------------------------------------------- admin API and request logs


def test_key_lifecycle_through_the_admin_api(gov: Stack, http: httpx.Client) -> None:
    secret, record = new_key(gov, name="lifecycle", description="d", allowed_models=["a*"])
    assert secret.startswith("sk-bf-") and len(secret) >= 6 + 43
    key_id = record["id"]
    assert record["active"] is True and record["allowed_models"] == ["a*"]
    updated = http.patch(
        f"/api/keys/{key_id}",
        json={"name": "renamed", "allowed_models": {"values": []}, "rate_limit": {"requests_per_minute": 9}},
        headers=admin_headers(),
    ).json()
    assert updated["name"] == "renamed" and updated["allowed_models"] == []
    assert updated["rate_limit"] == {"requests_per_minute": 9}
    plain_list = http.patch(
        f"/api/keys/{key_id}", json={"allowed_providers": ["azure"]}, headers=admin_headers()
    )
    assert plain_list.json()["allowed_providers"] == ["azure"]
    assert plain_list.json()["allowed_models"] == []  # not named: unchanged
    assert post(http, "any", {"api-key": secret}).status_code == 200
    rotated = http.post(f"/api/keys/{key_id}/rotate", headers=admin_headers()).json()
    new_secret = rotated["secret"]
    MINTED.append(new_secret)
    assert new_secret != secret
    refused(post(http, "any", {"api-key": secret}), 401, "invalid_credentials")
    assert post(http, "any", {"api-key": new_secret}).status_code == 200
    revoked = http.delete(f"/api/keys/{key_id}", headers=admin_headers()).json()
    assert revoked["active"] is False and revoked["revoked_at"] > 0
    refused(post(http, "any", {"api-key": new_secret}), 403, "virtual_key_inactive")
    refused(http.get("/api/keys/does-not-exist", headers=admin_headers()), 404, "not_found")
    dup = http.post("/api/keys", json={"id": key_id}, headers=admin_headers())
    refused(dup, 409, "already_exists")
    bad = http.post("/api/keys", json={"budget": {"max_usd": 1, "reset": "2d"}}, headers=admin_headers())
    assert refused(bad, 400, "invalid_request_error")["error"]["param"] == "budget.reset"
    refused(http.post("/api/keys", content=b"{nope", headers=admin_headers()), 400, "invalid_request_error")


def test_key_listing_pages_through_every_key(gov: Stack, http: httpx.Client) -> None:
    made = {new_key(gov)[1]["id"] for _ in range(5)}
    seen: list[str] = []
    token = ""
    while True:
        page = http.get(
            "/api/keys", params={"page_size": 2, "page_token": token}, headers=admin_headers()
        ).json()
        assert len(page["keys"]) <= 2
        seen.extend(k["id"] for k in page["keys"])
        token = page["next_page_token"]
        if not token:
            break
    assert made <= set(seen)
    assert len(seen) == len(set(seen))


def test_request_log_records_every_call_and_filters(
    gov: Stack, http: httpx.Client, upstream: FakeUpstream
) -> None:
    secret, record = new_key(gov)
    key_id = record["id"]
    started = time.time()
    upstream.script(Reply.ok(usage=Usage(7, 3)), match="priced-dep")
    assert post(http, "priced", {"api-key": secret}).status_code == 200
    upstream.script(Reply.status(400), match="log-bad")
    assert post(http, "log-bad", {"api-key": secret}).status_code == 400
    assert post(http, "log-other", {"api-key": secret}).status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        page = http.get("/api/logs", params={"key_id": key_id}, headers=admin_headers()).json()
        if len(page["entries"]) == 3:
            break
        time.sleep(0.05)
    entries = page["entries"]
    assert [e["model_requested"] for e in entries] == ["log-other", "log-bad", "priced"]  # newest first
    priced = entries[2]
    assert priced["provider"] == "azure" and priced["model_served"] == "priced-dep"
    assert (priced["prompt_tokens"], priced["completion_tokens"], priced["total_tokens"]) == (7, 3, 10)
    assert priced["cost"] == pytest.approx(7 * 0.001 + 3 * 0.002)
    assert priced["status"] == 200 and priced["latency_ms"] >= 0 and priced["ts"] >= started - 1
    assert "content_json" not in priced  # content is off by default
    bad = entries[1]
    assert bad["status"] == 400 and bad["error_type"] == "invalid_request_error"
    only_400 = http.get("/api/logs", params={"key_id": key_id, "status": 400}, headers=admin_headers()).json()
    assert [e["model_requested"] for e in only_400["entries"]] == ["log-bad"]
    by_model = http.get(
        "/api/logs", params={"key_id": key_id, "model": "priced-dep"}, headers=admin_headers()
    )
    assert len(by_model.json()["entries"]) == 1
    first_page = http.get(
        "/api/logs", params={"key_id": key_id, "page_size": 2}, headers=admin_headers()
    ).json()
    second = http.get(
        "/api/logs",
        params={"key_id": key_id, "page_size": 2, "page_token": first_page["next_page_token"]},
        headers=admin_headers(),
    ).json()
    assert [e["id"] for e in first_page["entries"] + second["entries"]] == [e["id"] for e in entries]
    assert second["next_page_token"] == ""
    future = http.get(
        "/api/logs", params={"key_id": key_id, "start_time": time.time() + 60}, headers=admin_headers()
    )
    assert future.json()["entries"] == []
    usage = http.get("/api/usage", params={"key_id": key_id}, headers=admin_headers()).json()["rows"]
    by_model_rows = {row["model"]: row for row in usage}
    assert by_model_rows["priced-dep"]["requests"] == 1
    assert by_model_rows["priced-dep"]["cost"] == pytest.approx(0.013)
    assert by_model_rows["priced-dep"]["total_tokens"] == 10
    assert by_model_rows["priced-dep"]["day"] == time.strftime("%Y-%m-%d", time.gmtime(started))


# ---------------------------------------------------------------- secrets


def test_no_secret_appears_in_logs_errors_or_raw_request(
    gov: Stack, http: httpx.Client, upstream: FakeUpstream
) -> None:
    secret, _ = new_key(gov)
    response = post(http, "leak-check", {"api-key": secret})
    raw = response.json()["extra_fields"]["raw_request"]
    upstream.script(Reply.status(401), match="leak-401")
    error = post(http, "leak-401", {"api-key": secret})
    for bad in (
        {"api-key": secret + "x"},
        {"authorization": f"Bearer {hs_token({'role': 'admin'}, secret='x' * 32)}"},
    ):
        refused(post(http, "leak", bad), 401, "invalid_credentials")
    time.sleep(0.2)
    secrets_used = [*SECRETS, ADMIN_TOKEN, JWT_SECRET, SEEDED_KEY, secret, *MINTED]
    logs = gov.logs()
    for value in secrets_used:
        assert value not in logs
        assert value not in error.text
        assert value not in orjson.dumps(raw).decode()
    stored = http.get("/api/logs", params={"page_size": 1000}, headers=admin_headers()).text
    for value in secrets_used:
        assert value not in stored
    db = Path(str(gov.config_path).replace("config.yaml", "switchyard.db")).read_bytes()
    for value in secrets_used:
        assert value.encode() not in db


# ---------------------------------------------------------------- hardening: logs and defaults


def _logs(http: httpx.Client, count: int, **params: Any) -> list[dict[str, Any]]:
    """The request-log entries matching ``params``, once ``count`` of them are written."""
    deadline = time.monotonic() + 5
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        entries = http.get("/api/logs", params=params, headers=admin_headers()).json()["entries"]
        if len(entries) >= count:
            break
        time.sleep(0.05)
    return entries


def test_refusals_of_a_known_key_are_logged_under_that_key_and_team(gov: Stack, http: httpx.Client) -> None:
    http.put("/api/teams/log-team", json={"name": "log team"}, headers=admin_headers())
    limited, limited_record = new_key(gov, team_id="log-team", rate_limit={"requests_per_minute": 1})
    assert post(http, "r", {"api-key": limited}).status_code == 200
    refused(post(http, "r", {"api-key": limited}), 429, "rate_limit_exceeded")
    inactive, inactive_record = new_key(gov, team_id="log-team")
    http.patch(f"/api/keys/{inactive_record['id']}", json={"active": False}, headers=admin_headers())
    refused(post(http, "r", {"api-key": inactive}), 403, "virtual_key_inactive")
    expired, expired_record = new_key(gov, team_id="log-team", expires_at=time.time() - 5)
    refused(post(http, "r", {"api-key": expired}), 403, "virtual_key_expired")
    for record, status, type_ in (
        (limited_record, 429, "rate_limit_exceeded"),
        (inactive_record, 403, "virtual_key_inactive"),
        (expired_record, 403, "virtual_key_expired"),
    ):
        entries = _logs(http, 1, key_id=record["id"], status=status)
        assert [(e["status"], e["error_type"], e["team_id"]) for e in entries] == [
            (status, type_, "log-team")
        ]


def test_budgets_are_calendar_aligned_by_default_on_every_surface(
    gov: Stack, http: httpx.Client, channel: grpc.Channel
) -> None:
    from switchyard.v1 import admin_pb2, admin_pb2_grpc

    _, rest_key = new_key(gov, budget={"max_usd": 5, "reset": "1d"})
    assert rest_key["budget"]["calendar_aligned"] is True
    team = http.put(
        "/api/teams/aligned-team", json={"budget": {"max_usd": 5, "reset": "1w"}}, headers=admin_headers()
    ).json()
    assert team["budget"]["calendar_aligned"] is True
    _, explicit = new_key(gov, budget={"max_usd": 5, "reset": "1d", "calendar_aligned": False})
    assert explicit["budget"]["calendar_aligned"] is False
    admin = admin_pb2_grpc.AdminStub(channel)
    created = admin.CreateVirtualKey(
        admin_pb2.CreateVirtualKeyRequest(budget=admin_pb2.Budget(max_usd=5, reset="1mo")),
        metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),),
        timeout=10,
    )
    MINTED.append(created.secret)
    assert created.key.budget.calendar_aligned is True
    not_aligned = admin.CreateVirtualKey(
        admin_pb2.CreateVirtualKeyRequest(
            budget=admin_pb2.Budget(max_usd=5, reset="1mo", calendar_aligned=False)
        ),
        metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),),
        timeout=10,
    )
    MINTED.append(not_aligned.secret)
    assert not_aligned.key.budget.calendar_aligned is False


def test_the_request_log_keeps_the_request_id_and_filters_by_it(gov: Stack, http: httpx.Client) -> None:
    secret, record = new_key(gov)
    response = post(http, "rid-log", {"api-key": secret, "x-request-id": "log-rid-7"})
    assert response.headers["x-request-id"] == "log-rid-7"
    made = post(http, "rid-log", {"api-key": secret}).headers["x-request-id"]
    refused(
        post(http, "rid-log", {"api-key": "not-a-key", "x-request-id": "log-rid-8"}),
        401,
        "invalid_credentials",
    )
    (entry,) = _logs(http, 1, request_id="log-rid-7")
    assert (entry["key_id"], entry["status"]) == (record["id"], 200)
    assert _logs(http, 1, request_id=made)[0]["request_id"] == made
    assert _logs(http, 1, request_id="log-rid-8")[0]["status"] == 401
    assert {e["request_id"] for e in _logs(http, 2, key_id=record["id"])} == {"log-rid-7", made}
