"""The console's aggregations in SQL: the usage overview, the log's new filters and one entry by id,
on SQLite and PostgreSQL (the fixtures of ``tests/test_store.py``)."""

from __future__ import annotations

import pytest

from service.records import LogEntry, LogQuery
from service.store import Store
from tests.test_store import fresh_pg_url, pg_server, pg_url, store, store_url  # noqa: F401 (fixtures)

T0 = 1_800_000_000.0  # a bucket boundary for 60 s buckets counted from T0


def entry(n: int, ts: float, **fields: object) -> LogEntry:
    values: dict[str, object] = {
        "id": f"e{n:05d}",
        "ts": ts,
        "request_type": "chat_completion",
        "model_requested": "chat",
        "status": 200,
        "latency_ms": 10,
        "provider": "azure",
        "model_served": "chat-prod",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cost": 0.01,
        "request_id": f"r{n}",
    }
    values.update(fields)
    return LogEntry(**values)  # type: ignore[arg-type]


def sample() -> list[LogEntry]:
    return [
        entry(1, T0 + 1, key_id="k-a", team_id="t-1"),
        entry(2, T0 + 59.9, key_id="k-a", team_id="t-1", cost=0.02),
        entry(3, T0 + 60, key_id="k-b", status=502, error_type="upstream_error", cost=None, total_tokens=0),
        entry(4, T0 + 130, key_id="k-b", provider="openai", model_served="gpt-4o-mini", cost=0.5),
        entry(5, T0 + 131, status=402, error_type="budget_exceeded", provider="", model_served="", cost=None),
        entry(6, T0 - 1, key_id="k-a"),  # before the range
        entry(7, T0 + 180, key_id="k-a"),  # at the end: outside [start, end)
    ]


async def test_overview_buckets_and_breakdowns(store: Store) -> None:  # noqa: F811
    await store.insert_logs(sample())
    ov = await store.usage_overview(start=T0, end=T0 + 180, bucket_s=60, top=10)

    assert [(b.start, b.requests, b.errors) for b in ov.buckets] == [
        (T0, 2, 0),
        (T0 + 60, 1, 1),
        (T0 + 120, 2, 1),
    ]
    assert ov.buckets[0].cost == pytest.approx(0.03)
    assert ov.buckets[0].prompt_tokens == 20 and ov.buckets[0].completion_tokens == 10
    assert (ov.totals.requests, ov.totals.errors) == (5, 2)
    assert ov.totals.cost == pytest.approx(0.53)

    assert [(r.name, r.requests) for r in ov.by_model] == [("gpt-4o-mini", 1), ("chat-prod", 3), ("chat", 1)]
    assert [(r.name, round(r.cost, 2)) for r in ov.by_key] == [("k-b", 0.5), ("k-a", 0.03), ("", 0.0)]
    assert [r.name for r in ov.by_team] == ["", "t-1"]  # k-b (no team) spent 0.5
    assert [(r.name, r.requests) for r in ov.by_provider] == [("azure", 3), ("", 1), ("openai", 1)]
    assert [(r.name, r.errors) for r in ov.top_error_keys] == [("k-b", 1), ("", 1)]  # ties: more requests
    assert {(r.name, r.errors) for r in ov.top_error_models} == {("chat-prod", 1), ("chat", 1)}


async def test_overview_filters_and_top(store: Store) -> None:  # noqa: F811
    await store.insert_logs(sample())
    by_key = await store.usage_overview(start=T0, end=T0 + 180, bucket_s=60, key_id="k-a")
    assert by_key.totals.requests == 2 and [r.name for r in by_key.by_key] == ["k-a"]
    by_team = await store.usage_overview(start=T0, end=T0 + 180, bucket_s=3600, team_id="t-1")
    assert [(b.start, b.requests) for b in by_team.buckets] == [(T0, 2)]
    top1 = await store.usage_overview(start=T0, end=T0 + 180, bucket_s=60, top=1)
    assert [r.name for r in top1.by_model] == ["gpt-4o-mini"]
    empty = await store.usage_overview(start=T0 + 1000, end=T0 + 2000, bucket_s=60)
    assert empty.buckets == () and empty.totals.requests == 0 and empty.by_model == ()


async def test_log_filters_and_one_entry(store: Store) -> None:  # noqa: F811
    await store.insert_logs(sample())

    async def ids(**fields: object) -> list[str]:
        page = await store.query_logs(LogQuery(**fields))  # type: ignore[arg-type]
        return [e.id for e in page.entries]

    assert await ids(provider="openai") == ["e00004"]
    assert await ids(error_type="budget_exceeded") == ["e00005"]
    assert await ids(team_id="t-1") == ["e00002", "e00001"]
    assert await ids(errors_only=True) == ["e00005", "e00003"]
    assert await ids(errors_only=True, key_id="k-b") == ["e00003"]
    got = await store.get_log("e00003")
    assert got is not None and got.status == 502 and got.cost is None
    assert await store.get_log("missing") is None
