"""The Admin RPCs the web console uses (GetConfigView, ListModels, UsageOverview, GetLogEntry and the
new QueryLogs filters), in-process: through a real grpc.aio server and the generated stub, and
through the gateway's ``/api/`` routes (generated from admin.proto) over the in-process backend.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from gateway.app import create_app
from gateway.backend import InProcessBackend
from service.admin import AdminServicer
from service.admin_views import bucket_seconds, safe_url
from service.server import start_governance
from service.servicer import ChatCompletionsServicer
from switchyard.config import Config, parse_config
from switchyard.v1 import admin_pb2 as apb
from switchyard.v1 import admin_pb2_grpc

ADMIN = "console-admin-token-0f9e8d7c6b5a"
PROVIDER_KEY = "provider-key-value-must-never-show-3c2b1a"
NOW = time.time()


@dataclass
class Console:
    config: Config
    admin: AdminServicer
    stub: admin_pb2_grpc.AdminStub
    http: httpx.AsyncClient


def config(tmp_path: Path) -> Config:
    raw: dict[str, Any] = {
        "auth": {"required": False, "admin_token": "${ADMIN}"},
        "request_logs": {"include_content": True},
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
        "providers": {
            "azure": {
                "kind": "azure",
                "base_url": "https://user:pw@example.openai.azure.com/?sig=secret-sig#frag",
                "keys": [{"value": "${KEY}", "name": "primary", "weight": 3, "models": ["gpt-4o*"]}],
                "base_models": {"legacy": "gpt-4o"},
            },
            "openai": {"kind": "openai", "keys": ["${KEY}"]},
        },
        "deployments": {
            "chat": {
                "targets": [{"provider": "azure", "model": "chat-prod", "base_model": "gpt-4o", "weight": 2}],
                "fallbacks": ["openai/gpt-4o-mini"],
                "context_fallbacks": ["openai/gpt-4.1"],
                "routing": "latency",
            }
        },
        "pricing": {"models": {"azure/gpt-4o": {"input": 2.75, "output": 11}}},
        "teams": {"t1": {"name": "Team one", "budget": {"max_usd": 10, "reset": "1d"}}},
    }
    return parse_config(raw, env={"ADMIN": ADMIN, "KEY": PROVIDER_KEY})


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    cfg = config(tmp_path)
    governance = await start_governance(cfg)
    admin = AdminServicer(governance, config=cfg)
    server = grpc.aio.server()
    admin_pb2_grpc.add_AdminServicer_to_server(admin, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    servicer = ChatCompletionsServicer.__new__(ChatCompletionsServicer)  # chat is not called here
    app = create_app(cfg, lambda: InProcessBackend(servicer, admin, lambda: True))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://console") as http,
    ):
        http.headers["authorization"] = f"Bearer {ADMIN}"
        yield Console(cfg, admin, admin_pb2_grpc.AdminStub(channel), http)
    await channel.close()
    await server.stop(None)
    await governance.aclose()


def meta() -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {ADMIN}")]


async def test_config_view_is_redacted_and_complete(console: Console) -> None:
    view = await console.stub.GetConfigView(apb.GetConfigViewRequest(), metadata=meta())
    assert view.auth_required is False and view.request_logs_include_content is True
    assert view.store == "sqlite" and not view.shared_counters
    azure = next(p for p in view.providers if p.name == "azure")
    assert azure.base_url == "https://example.openai.azure.com/"  # no user info, query or fragment
    assert [(k.name, k.weight, list(k.models)) for k in azure.keys] == [("primary", 3.0, ["gpt-4o*"])]
    assert dict(azure.base_models) == {"legacy": "gpt-4o"}
    (chat,) = view.deployments
    assert (chat.routing, list(chat.fallbacks), list(chat.context_fallbacks)) == (
        "latency",
        ["openai/gpt-4o-mini"],
        ["openai/gpt-4.1"],
    )
    target = chat.targets[0]
    assert (target.base_model, target.weight, target.price.model, target.price.input) == (
        "gpt-4o",
        2.0,
        "azure/gpt-4o",  # the provider-qualified price applies
        2.75,
    )
    assert {p.model for p in view.prices} >= {"azure/gpt-4o", "gpt-4o-mini", "gpt-4.1"}
    rest = await console.http.get("/api/config")
    assert rest.status_code == 200 and rest.headers["cache-control"] == "no-store"
    for text in (rest.text, str(view)):
        for secret in (PROVIDER_KEY, ADMIN, "secret-sig", "pw@"):
            assert secret not in text


async def test_models_lists_the_price_table(console: Console) -> None:
    models = await console.stub.ListModels(apb.ListModelsRequest(), metadata=meta())
    names = [p.model for p in models.prices]
    assert names == sorted(names) and "azure/gpt-4o" in names and len(names) > 50
    assert (await console.http.get("/api/models")).json()["prices"][0]["model"] == names[0]


async def test_usage_overview_over_grpc_and_rest(console: Console) -> None:
    from service.records import LogEntry

    store = console.admin._store
    await store.insert_logs(
        [
            LogEntry(
                id=f"e{i}",
                ts=NOW - 600 + i,
                request_type="chat_completion",
                model_requested="chat",
                status=502 if i == 0 else 200,
                latency_ms=5,
                key_id="k1" if i % 2 else None,
                team_id="t1" if i % 2 else None,
                provider="azure",
                model_served="chat-prod",
                error_type="upstream_error" if i == 0 else None,
                total_tokens=10,
                cost=0.5,
                content_json='{"messages": [{"role": "user", "content": "<b>x</b>"}], "completion": "y"}',
                request_id=f"r{i}",
            )
            for i in range(4)
        ]
    )
    overview = await console.stub.UsageOverview(
        apb.UsageOverviewRequest(start_time=NOW - 3600, end_time=NOW), metadata=meta()
    )
    assert overview.bucket_s == 60 and overview.totals.requests == 4 and overview.totals.errors == 1
    assert [r.name for r in overview.by_key] == ["", "k1"]
    assert [(r.name, r.errors) for r in overview.top_error_models] == [("chat-prod", 1)]
    assert [(b.kind, b.id, b.budget.max_usd) for b in overview.budgets] == [("team", "t1", 10.0)]
    assert overview.budgets[0].HasField("usage")
    keyed = (await console.http.get("/api/usage/overview", params={"key_id": "k1"})).json()
    assert keyed["totals"]["requests"] == 2 and keyed["budgets"] == []
    bad = await console.http.get("/api/usage/overview", params={"start_time": NOW, "end_time": NOW - 1})
    assert bad.status_code == 400

    errors = (await console.http.get("/api/logs", params={"errors_only": "true"})).json()["entries"]
    assert [e["id"] for e in errors] == ["e0"]
    teamed = (await console.http.get("/api/logs", params={"team_id": "t1", "provider": "azure"})).json()
    assert [e["id"] for e in teamed["entries"]] == ["e3", "e1"]
    one = await console.stub.GetLogEntry(apb.GetLogEntryRequest(id="e1"), metadata=meta())
    assert one.request_id == "r1" and "<b>x</b>" in one.content_json
    missing = await console.http.get("/api/logs/nope")
    assert missing.status_code == 404


async def test_the_new_calls_need_an_admin(console: Console) -> None:
    for path in ("config", "models", "usage/overview", "logs/e1"):
        assert (await console.http.get(f"/api/{path}", headers={"authorization": ""})).status_code == 401
    bad = [("authorization", "Bearer no")]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await console.stub.GetConfigView(apb.GetConfigViewRequest(), metadata=bad)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bucket_widths_and_safe_urls() -> None:
    assert bucket_seconds(0, 3600, 0) == 60
    assert bucket_seconds(0, 86400, 0) == 1800
    assert bucket_seconds(0, 7 * 86400, 0) == 3 * 3600
    assert bucket_seconds(0, 30 * 86400, 0) == 12 * 3600
    assert bucket_seconds(0, 30 * 86400, 1) == 2592  # at most 1,000 buckets
    assert bucket_seconds(0, 600, 5) == 60  # at least a minute
    assert safe_url("http://[::1]:8080/v1?key=x") == "http://[::1]:8080/v1"
    assert safe_url("") == ""
