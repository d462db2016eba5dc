"""The engine's one request path, in-process: plugin hook order, short-circuits, stream commit,
retries and fallbacks. A fake provider on ``httpx.MockTransport`` and fake plugins; no sockets,
no store, milliseconds per test."""

from __future__ import annotations

import httpx
import orjson
import pytest

from service.engine import ChatError
from service.errors import GatewayError
from service.pipeline import CallContext, Pipeline, Plugin
from service.providers import Prepared
from service.routing import RoutePlan, Target
from switchyard.v1 import chat_pb2 as pb
from tests.inprocess import Upstream, delta, engine, ok, request, sse, status, usage


class Recorder(Plugin):
    """Records every hook it sees in a shared journal; ``refuse``/``answer`` make it stop the call."""

    def __init__(self, name: str, journal: list[str], *, refuse: bool = False, answer: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.refuse = refuse
        self.answer = answer

    async def on_request(self, ctx: CallContext) -> pb.ChatCompletionResponse | None:
        self.journal.append(f"{self.name}.request")
        ctx.slots[self.slot] = {"mine": self.name}
        if self.refuse:
            raise GatewayError(403, "refused_by_test", f"{self.name} says no")
        if self.answer:
            choice = pb.Choice(
                index=0, finish_reason="stop", message=pb.ChatMessage(role="assistant", text="cached")
            )
            return pb.ChatCompletionResponse(id="short", model="m", choices=[choice])
        return None

    def on_plan(self, ctx: CallContext, plan: RoutePlan) -> RoutePlan:
        self.journal.append(f"{self.name}.plan")
        return plan

    async def before_target(self, ctx: CallContext, target: Target, prepared: Prepared) -> None:
        self.journal.append(f"{self.name}.before:{target.provider}")

    def start_attempt(self, ctx: CallContext, target: Target, key_index: int) -> None:
        self.journal.append(f"{self.name}.start:{target.provider}:{key_index}")

    def on_attempt(
        self,
        ctx: CallContext,
        target: Target,
        key_index: int,
        error: GatewayError | None,
        elapsed_s: float,
    ) -> None:
        self.journal.append(f"{self.name}.attempt:{target.provider}:{error.status if error else 'ok'}")

    async def after_target(self, ctx: CallContext, target: Target, error: BaseException | None) -> None:
        self.journal.append(f"{self.name}.after:{target.provider}:{'error' if error else 'ok'}")

    def on_response(self, ctx: CallContext, response: pb.ChatCompletionResponse) -> None:
        self.journal.append(f"{self.name}.response")

    def on_chunk(self, ctx: CallContext, chunk: pb.ChatCompletionChunk) -> None:
        self.journal.append(f"{self.name}.chunk")

    async def on_finish(self, ctx: CallContext) -> None:
        assert ctx.slots[self.slot] == {"mine": self.name}  # each plugin's own slot
        self.journal.append(f"{self.name}.finish:{ctx.status}")


# ---------------------------------------------------------------- hook order


async def test_pre_hooks_run_in_order_and_post_hooks_in_reverse() -> None:
    journal: list[str] = []
    upstream = Upstream()
    upstream.replies["primary"] = [ok()]
    sy = engine(upstream, [Recorder("a", journal), Recorder("b", journal)])
    response = await sy.create(request())
    assert response.choices[0].message.text == "hello"
    assert journal == [
        "a.request",
        "b.request",
        "a.plan",
        "b.plan",
        "a.before:primary",
        "b.before:primary",
        "a.start:primary:0",
        "b.start:primary:0",
        "a.attempt:primary:ok",
        "b.attempt:primary:ok",
        "b.after:primary:ok",
        "a.after:primary:ok",
        "b.response",
        "a.response",
        "b.finish:200",
        "a.finish:200",
    ]


async def test_a_refusal_stops_the_chain_and_only_entered_plugins_finish() -> None:
    journal: list[str] = []
    upstream = Upstream()
    sy = engine(
        upstream, [Recorder("a", journal), Recorder("b", journal, refuse=True), Recorder("c", journal)]
    )
    with pytest.raises(ChatError) as caught:
        await sy.create(request())
    assert (caught.value.body.status_code, caught.value.body.type) == (403, "refused_by_test")
    assert journal == ["a.request", "b.request", "b.finish:403", "a.finish:403"]
    assert upstream.seen == []


async def test_a_short_circuit_answers_without_an_upstream_call() -> None:
    journal: list[str] = []
    upstream = Upstream()
    sy = engine(upstream, [Recorder("cache", journal, answer=True), Recorder("later", journal)])
    response = await sy.create(request())
    assert response.choices[0].message.text == "cached"
    assert journal == ["cache.request", "cache.response", "cache.finish:200"]
    assert upstream.seen == []


async def test_a_short_circuit_of_a_stream_is_streamed() -> None:
    journal: list[str] = []
    sy = engine(Upstream(), [Recorder("cache", journal, answer=True)])
    chunks = [c async for c in sy.create_stream(request())]
    assert [c.choices[0].delta.text for c in chunks if c.choices] == ["cached"]
    assert chunks[0].choices[0].finish_reason == "stop"
    assert journal == ["cache.request", "cache.chunk", "cache.finish:200"]


async def test_a_plugin_without_hooks_costs_no_call() -> None:
    class Quiet(Plugin):
        pass

    pipeline = Pipeline([Quiet(), Recorder("r", [])])
    assert len(pipeline.chunk_hooks) == 1 and pipeline.chunk_hooks[0].name == "r"
    assert [p.slot for p in pipeline.plugins] == [0, 1]


async def test_a_failing_finish_hook_does_not_change_the_answer() -> None:
    class Broken(Plugin):
        async def on_finish(self, ctx: CallContext) -> None:
            raise RuntimeError("boom")

    upstream = Upstream()
    upstream.replies["primary"] = [ok()]
    assert (await engine(upstream, [Broken()]).create(request())).choices[0].message.text == "hello"


# ---------------------------------------------------------------- retries and fallbacks


async def test_retries_then_falls_back_and_every_attempt_is_seen() -> None:
    journal: list[str] = []
    upstream = Upstream()
    upstream.replies["primary"] = [status(503)]
    upstream.replies["backup"] = [ok("from backup")]
    sy = engine(upstream, [Recorder("p", journal)])
    response = await sy.create(request(fallbacks=["backup/m"]))
    assert response.choices[0].message.text == "from backup"
    assert upstream.seen == ["primary", "primary", "backup"]
    assert [a.status_code for a in response.extra_fields.attempts] == [503, 503]
    assert [j for j in journal if ".attempt" in j or ".after" in j] == [
        "p.attempt:primary:503",
        "p.attempt:primary:503",
        "p.after:primary:error",
        "p.attempt:backup:ok",
        "p.after:backup:ok",
    ]
    assert response.extra_fields.provider == "backup"


async def test_a_caller_error_of_the_primary_does_not_fall_back() -> None:
    upstream = Upstream()
    upstream.replies["primary"] = [status(400)]
    upstream.replies["backup"] = [ok()]
    with pytest.raises(ChatError) as caught:
        await engine(upstream, []).create(request(fallbacks=["backup/m"]))
    assert caught.value.body.status_code == 400
    assert upstream.seen == ["primary"]


# ---------------------------------------------------------------- stream commit


async def test_a_stream_failing_before_its_first_content_falls_back_invisibly() -> None:
    upstream = Upstream()
    # The role chunk only, then the connection ends: nothing the caller must see yet.
    upstream.replies["primary"] = [
        lambda _r: httpx.Response(200, content=b"data: " + orjson.dumps(delta(role="assistant")) + b"\n\n")
    ]
    upstream.replies["backup"] = [sse(delta("Hi", role="assistant"), delta(finish="stop"), usage())]
    chunks = [
        c async for c in engine(upstream, [], max_retries=0).create_stream(request(fallbacks=["backup/m"]))
    ]
    assert [c.choices[0].delta.text for c in chunks if c.choices] == ["Hi", ""]
    assert chunks[0].extra_fields.provider == "backup"
    assert [a.error_type for a in chunks[0].extra_fields.attempts] == ["upstream_stream_broken"]


async def test_a_stream_failing_after_its_first_content_ends_with_an_error() -> None:
    upstream = Upstream()
    upstream.replies["primary"] = [
        lambda _r: httpx.Response(200, content=b"data: " + orjson.dumps(delta("Hel")) + b"\n\n")
    ]
    upstream.replies["backup"] = [sse(delta("never"), delta(finish="stop"), usage())]
    got: list[str] = []

    async def read() -> None:
        async for chunk in engine(upstream, [], max_retries=0).create_stream(request(fallbacks=["backup/m"])):
            got.append(chunk.choices[0].delta.text)

    with pytest.raises(ChatError) as caught:
        await read()
    assert got == ["Hel"]
    assert caught.value.body.type == "upstream_stream_broken"
    assert upstream.seen == ["primary"]


async def test_the_usage_chunk_reaches_only_callers_who_asked_but_is_always_accounted() -> None:
    journal: list[str] = []
    upstream = Upstream()
    upstream.replies["primary"] = [sse(delta("Hi"), delta(finish="stop"), usage())]
    sy = engine(upstream, [Recorder("r", journal)])
    plain = [c async for c in sy.create_stream(request())]
    assert all(not c.HasField("usage") for c in plain)
    assert journal.count("r.chunk") == 3  # the plugin saw the usage chunk all the same
    asked = [c async for c in sy.create_stream(request(stream_options=pb.StreamOptions(include_usage=True)))]
    assert asked[-1].usage.total_tokens == 3
    assert [c.extra_fields.chunk_index for c in asked] == [0, 1, 2]
