"""SIGTERM while streams run past the shutdown grace: each stream ends with an answer, not a cut.

Twenty streams of about 6 s are open when the process gets SIGTERM with
``shutdown_grace_s: 2``. When the grace is over, every one must end with one SSE error event
(``503 server_shutting_down``) and no ``[DONE]``; a gRPC stream ends with UNAVAILABLE; the
request log says 503 for each; the process exits 0 without a traceback.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest

from switchyard.v1 import chat_pb2 as pb
from switchyard.v1 import chat_pb2_grpc
from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import Stack, base_config, free_port, start_stack

CHAT = "/openai/deployments/long-stream/chat/completions?api-version=2024-10-21"
STREAMS = 20
GRACE_S = 2


def _stack(mode: str, upstream: FakeUpstream, workdir: Path) -> Stack:
    config = base_config(upstream.url, free_port(), free_port())
    config["server"]["shutdown_grace_s"] = GRACE_S
    config["request_logs"] = {"flush_interval_s": 0.1}
    return start_stack(mode, config, workdir)


async def _read_stream(client: httpx.AsyncClient, started: asyncio.Event, counter: list[int]) -> list[bytes]:
    body = {"messages": [{"role": "user", "content": "go"}], "stream": True}
    events: list[bytes] = []
    async with client.stream("POST", CHAT, json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(line[6:].encode())
                if len(events) == 1:
                    counter[0] += 1
                    if counter[0] == STREAMS:
                        started.set()
    return events


def _grpc_stream(target: str, outcome: dict[str, Any], started: threading.Event) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatCompletionsStub(channel)
        request = pb.ChatCompletionRequest(
            deployment_id="long-stream", messages=[pb.ChatMessage(role="user", text="go")]
        )
        try:
            for _chunk in stub.CreateStream(request, timeout=30):
                started.set()
        except grpc.RpcError as err:
            outcome["code"] = err.code()  # type: ignore[attr-defined]
        else:
            outcome["code"] = grpc.StatusCode.OK


def _log_statuses(stack: Stack) -> list[int]:
    db = stack.config_path.with_name("switchyard.db")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT status FROM request_logs WHERE model_requested = ?", ("long-stream",)
            )
        ]


@pytest.mark.parametrize("mode", ["inprocess", "grpc-loopback", "split"])
def test_streams_past_the_grace_end_with_an_error_event(
    mode: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.default_reply = Reply.hang_stream("Hel", duration_s=6, interval_s=0.2, tick=".")
    stack = _stack(mode, upstream, tmp_path)
    grpc_outcome: dict[str, Any] = {}
    grpc_started = threading.Event()
    try:
        grpc_thread = threading.Thread(
            target=_grpc_stream, args=(stack.grpc_target, grpc_outcome, grpc_started)
        )
        grpc_thread.start()

        async def run() -> list[list[bytes]]:
            started = asyncio.Event()
            counter = [0]
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
                readers = [
                    asyncio.create_task(_read_stream(client, started, counter)) for _ in range(STREAMS)
                ]
                await asyncio.wait_for(started.wait(), 10)
                assert grpc_started.wait(10)
                for proc in stack.processes:
                    proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*readers)

        begun = time.monotonic()
        results = asyncio.run(run())
        ended_after = time.monotonic() - begun
        grpc_thread.join(15)
        codes = [proc.wait(timeout=15) for proc in stack.processes]
    finally:
        stack.stop()
    for events in results:
        assert events[-1] != b"[DONE]", events[-3:]
        last = orjson.loads(events[-1])
        assert (last["status_code"], last["type"]) == (503, "server_shutting_down"), last
        assert sum(1 for e in events if b'"status_code"' in e) == 1  # exactly one error event
    assert ended_after < 6  # the streams did not run their course: the grace ended them
    assert grpc_outcome["code"] == grpc.StatusCode.UNAVAILABLE
    assert codes == [0] * len(codes)
    logs = stack.logs()
    assert "Traceback" not in logs, logs[-3000:]
    assert sorted(_log_statuses(stack)) == [503] * (STREAMS + 1)


def test_a_gateway_stopped_alone_ends_its_streams_itself(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.default_reply = Reply.hang_stream("Hel", duration_s=6, interval_s=0.2, tick=".")
    stack = _stack("split", upstream, tmp_path)
    service, gateway = stack.processes
    try:

        async def run() -> list[bytes]:
            started = asyncio.Event()
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
                reader = asyncio.create_task(_read_stream(client, started, [STREAMS - 1]))
                await asyncio.wait_for(started.wait(), 10)
                gateway.send_signal(signal.SIGTERM)
                return await reader

        events = asyncio.run(run())
        assert gateway.wait(timeout=15) == 0
        assert service.poll() is None  # the service runs on
    finally:
        stack.stop()
    assert orjson.loads(events[-1])["type"] == "server_shutting_down"
    assert "Traceback" not in stack.logs()
