"""Two replicas, one truth: two real ``switchyard service`` processes sharing one PostgreSQL
database (keys, teams, request log) and one Redis (rate limits, budgets).

Everything goes over the generated gRPC stubs, straight to each replica's gRPC port (no
gateway). The module makes a uniquely named database on the PostgreSQL server at
``SWITCHYARD_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432``) and drops it at the
end; Redis is ``SY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), where each test
uses its own virtual key ids so counters never collide. When either server cannot be
reached the module skips, saying which.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
import pytest
import redis
import yaml
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from switchyard.v1 import admin_pb2 as apb
from switchyard.v1 import admin_pb2_grpc, chat_pb2, chat_pb2_grpc
from tests.e2e.governed import ADMIN_TOKEN, GOVERNED_ENV, governed_config
from tests.e2e.rpc_errors import error_body, rich_status
from tests.fakes.upstream import FakeUpstream, Reply, Usage
from tests.support import free_port, secret_env

PG_SERVER = os.environ.get("SWITCHYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("SY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
KEY_CACHE_TTL_S = 0.5
T = TypeVar("T")


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make()`` returns on a private loop in another thread (pytest-asyncio's
    loop in this thread stays untouched)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, make()).result(timeout=60)


# ---------------------------------------------------------------- shared servers


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database for this module; dropped afterwards."""
    name = f"switchyard_replicas_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        run_async(lambda: admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_SERVER} (set SWITCHYARD_TEST_PG): {exc}")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        run_async(lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, decode_responses=True)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        client.close()
        pytest.skip(f"Redis is not reachable at {REDIS_URL} (set SY_TEST_REDIS_URL): {exc}")
    yield client
    client.close()


# ---------------------------------------------------------------- the replicas


@dataclass
class Replica:
    """One ``switchyard service`` process and stubs on a channel to it."""

    name: str
    target: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    channel: grpc.Channel
    admin: admin_pb2_grpc.AdminStub
    chat: chat_pb2_grpc.ChatCompletionsStub

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def _launch(name: str, config: dict[str, Any], workdir: Path) -> tuple[subprocess.Popen[bytes], Path, str]:
    config["server"]["grpc_port"] = free_port()
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "service", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**secret_env(), **GOVERNED_ENV},
        )
    return proc, log_path, f"127.0.0.1:{config['server']['grpc_port']}"


def _wait_serving(replica: Replica, deadline: float) -> None:
    health = health_pb2_grpc.HealthStub(replica.channel)
    while True:
        if replica.proc.poll() is not None:
            raise RuntimeError(f"replica {replica.name} exited early:\n{replica.logs()}")
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"replica {replica.name} did not become SERVING:\n{replica.logs()}")
        time.sleep(0.1)


def _stop(replica: Replica) -> None:
    replica.channel.close()
    if replica.proc.poll() is None:
        replica.proc.send_signal(signal.SIGTERM)
    try:
        replica.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        replica.proc.kill()
        replica.proc.wait()


@pytest.fixture(scope="module")
def replicas(
    pg_database: str,
    redis_client: redis.Redis,
    upstream_server: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Replica, Replica]]:
    """Replicas A and B, started together (they race on migrations and seeding, as in production)."""
    workdir = tmp_path_factory.mktemp("replicas")
    started: list[Replica] = []
    try:
        for name in ("A", "B"):
            config = governed_config(
                upstream_server.url,
                workdir,
                store={"url": pg_database, "redis_url": REDIS_URL},
                auth={"key_cache_ttl_s": KEY_CACHE_TTL_S},
            )
            proc, log_path, target = _launch(name, config, workdir)
            channel = grpc.insecure_channel(target)
            started.append(
                Replica(
                    name,
                    target,
                    proc,
                    log_path,
                    channel,
                    admin_pb2_grpc.AdminStub(channel),
                    chat_pb2_grpc.ChatCompletionsStub(channel),
                )
            )
        deadline = time.monotonic() + 30
        for replica in started:
            _wait_serving(replica, deadline)
        yield started[0], started[1]
    finally:
        for replica in started:
            _stop(replica)


@pytest.fixture
def key_ids(redis_client: redis.Redis) -> Iterator[list[str]]:
    """Key ids a test creates; their Redis counters are deleted afterwards."""
    made: list[str] = []
    yield made
    for key_id in made:
        stale = list(redis_client.scan_iter(match=f"{{sy:}}*:key:{key_id}", count=1000))
        if stale:
            redis_client.delete(*stale)


# ---------------------------------------------------------------- helpers


def create_key(replica: Replica, key_ids: list[str], **fields: Any) -> apb.VirtualKeyWithSecret:
    key_id = f"rep-{uuid.uuid4().hex[:12]}"
    key_ids.append(key_id)
    return replica.admin.CreateVirtualKey(
        apb.CreateVirtualKeyRequest(id=key_id, **fields), metadata=ADMIN, timeout=10
    )


def request(deployment: str, text: str = "hi", **fields: Any) -> chat_pb2.ChatCompletionRequest:
    return chat_pb2.ChatCompletionRequest(
        deployment_id=deployment, messages=[chat_pb2.ChatMessage(role="user", text=text)], **fields
    )


@dataclass
class Refusal:
    code: grpc.StatusCode
    body: chat_pb2.ErrorBody
    http_status: str


def call(replica: Replica, secret: str, req: chat_pb2.ChatCompletionRequest) -> Refusal | None:
    """One unary chat on ``replica``: None when it succeeded, else what the refusal said."""
    try:
        reply = replica.chat.Create(req, metadata=(("api-key", secret),), timeout=20)
    except grpc.RpcError as err:
        return refusal_of(err)
    assert reply.choices, reply
    return None


def refusal_of(err: grpc.RpcError) -> Refusal:
    """The gRPC code, the ``ErrorBody`` detail and ErrorInfo's ``http_status`` of a failed call."""
    _, details = rich_status(err)
    info = details.get("google.rpc.ErrorInfo")
    assert isinstance(info, error_details_pb2.ErrorInfo), err
    return Refusal(err.code(), error_body(details), info.metadata["http_status"])  # type: ignore[attr-defined]


def logs_of(replica: Replica, key_id: str) -> list[apb.LogEntry]:
    entries: list[apb.LogEntry] = []
    token = ""
    while True:
        page = replica.admin.QueryLogs(
            apb.QueryLogsRequest(key_id=key_id, page_size=1000, page_token=token), metadata=ADMIN, timeout=10
        )
        entries.extend(page.entries)
        token = page.next_page_token
        if not token:
            return entries


def wait_for_logs(replica: Replica, key_id: str, count: int, timeout: float = 10) -> list[apb.LogEntry]:
    deadline = time.monotonic() + timeout
    while len(entries := logs_of(replica, key_id)) < count:
        assert time.monotonic() < deadline, f"{len(entries)} of {count} log entries on {replica.name}"
        time.sleep(0.05)
    return entries


def upstream_calls(upstream: FakeUpstream, deployment: str) -> int:
    return sum(1 for r in upstream.requests if r.deployment == deployment)


# ---------------------------------------------------------------- keys


def test_a_key_made_on_one_replica_works_on_the_other_and_revocation_follows(
    replicas: tuple[Replica, Replica], upstream: FakeUpstream, key_ids: list[str]
) -> None:
    """A key created through A's Admin API is accepted by B on its very first call (B's cache misses
    and reads the shared store); revoked on A, it is refused on A at once and on B within the key
    cache TTL."""
    a, b = replicas
    made = create_key(a, key_ids, name="cross-replica")
    key_id, secret = made.key.id, made.secret
    assert b.admin.GetVirtualKey(apb.GetVirtualKeyRequest(id=key_id), metadata=ADMIN, timeout=10).active
    assert call(b, secret, request("rep-keys")) is None
    assert call(a, secret, request("rep-keys")) is None

    a.admin.RevokeVirtualKey(apb.RevokeVirtualKeyRequest(id=key_id), metadata=ADMIN, timeout=10)
    revoked_at = time.monotonic()
    refusal = call(a, secret, request("rep-keys"))
    assert refusal is not None and refusal.body.type == "virtual_key_inactive"  # A's own cache: at once
    while (refusal := call(b, secret, request("rep-keys"))) is None:
        assert time.monotonic() - revoked_at < KEY_CACHE_TTL_S + 2.0, "B still accepts the revoked key"
        time.sleep(0.02)
    took = time.monotonic() - revoked_at
    assert (refusal.code, refusal.body.type, refusal.http_status) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "virtual_key_inactive",
        "403",
    )
    assert took < KEY_CACHE_TTL_S + 2.0, took
    # It stays refused on both.
    for replica in (a, b, a, b):
        refusal = call(replica, secret, request("rep-keys"))
        assert refusal is not None and refusal.body.type == "virtual_key_inactive"


def test_an_unknown_key_is_refused_on_both_replicas(
    replicas: tuple[Replica, Replica], upstream: FakeUpstream
) -> None:
    """A well-formed secret no replica issued gets 401 invalid_credentials everywhere, no upstream call."""
    for replica in replicas:
        refusal = call(replica, "sk-bf-" + "R" * 43, request("rep-unknown"))
        assert refusal is not None
        assert (refusal.code, refusal.body.type) == (grpc.StatusCode.UNAUTHENTICATED, "invalid_credentials")
    assert upstream_calls(upstream, "rep-unknown") == 0


# ---------------------------------------------------------------- rate limit


def test_one_rate_limit_across_replicas(
    replicas: tuple[Replica, Replica], upstream: FakeUpstream, key_ids: list[str]
) -> None:
    """requests_per_minute = 6, ten calls alternating A and B: exactly six pass (the first six), four
    are RESOURCE_EXHAUSTED / rate_limit_exceeded, and only six reach the upstream."""
    a, b = replicas
    made = create_key(a, key_ids, rate_limit=apb.RateLimit(requests_per_minute=6))
    results = [call((a, b)[i % 2], made.secret, request("rep-rpm")) for i in range(10)]
    assert [r is None for r in results] == [True] * 6 + [False] * 4
    for refusal in results[6:]:
        assert refusal is not None
        assert (refusal.code, refusal.body.type, refusal.http_status) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "rate_limit_exceeded",
            "429",
        )
    # Refused on both replicas (calls 7-10 alternate): the count is shared, not per process.
    assert upstream_calls(upstream, "rep-rpm") == 6


# ---------------------------------------------------------------- budget


def test_one_budget_across_replicas_under_concurrency(
    replicas: tuple[Replica, Replica], upstream: FakeUpstream, key_ids: list[str]
) -> None:
    """40 concurrent calls split over A and B against one 1 USD budget (each call costs 0.11 USD):
    the shared spend (GetVirtualKey on either replica, and the sum of the logged costs, read on
    both) stays within the limit plus one call; the rest are refused budget_exceeded
    (FAILED_PRECONDITION, ErrorInfo http_status 402). Sequential calls after the burst then use up
    the rest of the one budget and stop at it."""
    a, b = replicas
    limit, each = 1.0, 10 * 0.001 + 50 * 0.002  # priced-model: 0.001 in, 0.002 out per token
    made = create_key(a, key_ids, budget=apb.Budget(max_usd=limit, reset="1d", calendar_aligned=True))
    key_id, secret = made.key.id, made.secret
    upstream.script(*[Reply.slow(0.2, Reply.ok(usage=Usage(10, 50)))] * 40, match="priced-dep")
    start = threading.Event()

    def one(i: int) -> Refusal | None:
        assert start.wait(timeout=10)  # release all 40 together
        return call((a, b)[i % 2], secret, request("priced", max_tokens=50))

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        futures = [pool.submit(one, i) for i in range(40)]
        start.set()
        results = [f.result(timeout=60) for f in futures]

    served = sum(r is None for r in results)
    refusals = [r for r in results if r is not None]
    assert 0 < served < 40, results
    for refusal in refusals:
        assert (refusal.code, refusal.body.type, refusal.http_status) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "budget_exceeded",
            "402",
        ), refusal
    # Each replica got 20 calls and refused some: one budget, not two of 1 USD each.
    by_replica = Counter((i % 2, r is None) for i, r in enumerate(results))
    assert by_replica[(0, False)] > 0 and by_replica[(1, False)] > 0, by_replica
    assert upstream_calls(upstream, "priced-dep") == served

    for replica in (a, b):
        usage = replica.admin.GetVirtualKey(
            apb.GetVirtualKeyRequest(id=key_id), metadata=ADMIN, timeout=10
        ).budget_usage
        assert usage.spent_usd == pytest.approx(served * each), replica.name
        assert usage.spent_usd <= limit + each
        assert usage.reserved_usd == pytest.approx(0, abs=1e-9)
    # Then one call at a time, still alternating: the replicas together spend up to the limit and
    # no further (each alone would have allowed 1 USD more).
    calls = 40
    while (refusal := call((a, b)[calls % 2], secret, request("priced", max_tokens=50))) is None:
        served, calls = served + 1, calls + 1
        assert served * each <= limit + each, "spent past the limit"
    calls += 1
    assert refusal.body.type == "budget_exceeded" and refusal.body.error.code == "key_budget_exceeded"
    for replica in (a, b):
        usage = replica.admin.GetVirtualKey(
            apb.GetVirtualKeyRequest(id=key_id), metadata=ADMIN, timeout=10
        ).budget_usage
        assert usage.spent_usd == pytest.approx(served * each)
        assert limit <= usage.spent_usd <= limit + each, usage  # admitted while spent < limit
    for replica in (a, b):
        entries = wait_for_logs(replica, key_id, calls)
        assert len(entries) == calls
        assert Counter(e.status for e in entries) == Counter({200: served, 402: calls - served})
        logged = sum(e.cost for e in entries if e.HasField("cost"))
        assert logged == pytest.approx(served * each)
        assert logged <= limit + each


# ---------------------------------------------------------------- request log


def test_request_logs_of_both_replicas_land_in_one_database(
    replicas: tuple[Replica, Replica], upstream: FakeUpstream, key_ids: list[str]
) -> None:
    """Calls served by B are visible through A's QueryLogs (and the other way round) once flushed:
    one shared request log."""
    a, b = replicas
    made = create_key(a, key_ids)
    for replica, deployment in ((a, "rep-log-a"), (b, "rep-log-b")):
        for i in range(3):
            assert call(replica, made.secret, request(deployment, f"{deployment}-{i}")) is None
    upstream.script(Reply.status(400), match="rep-log-bad")
    refusal = call(b, made.secret, request("rep-log-bad"))
    assert refusal is not None and refusal.body.status_code == 400
    for replica in (a, b):
        entries = wait_for_logs(replica, made.key.id, 7)
        assert Counter((e.model_requested, e.status) for e in entries) == {
            ("rep-log-a", 200): 3,
            ("rep-log-b", 200): 3,
            ("rep-log-bad", 400): 1,
        }, replica.name
        assert all(e.key_id == made.key.id for e in entries)
        assert {e.provider for e in entries if e.status == 200} == {"azure"}
        assert len({e.id for e in entries}) == 7
