"""Mid-stream failover (service/midstream.py): the seam, the tool-call hold, and the engine
continuing a broken stream on a fallback, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest

from service.engine import ChatEngine
from service.midstream import MIN_OVERLAP, Seam, SeamError, ToolCallHold, add_usage, continuation_request
from service.pipeline import ChatError
from switchyard.v1 import chat_pb2 as pb
from tests.inprocess import Upstream, delta, engine, request, usage

# ------------------------------------------------------------------ the seam


def splice(sent: str, *pieces: str) -> str:
    seam = Seam(sent)
    out = "".join(seam.feed(p) for p in pieces) + seam.flush()
    return sent + out


@pytest.mark.parametrize(
    ("sent", "pieces", "whole"),
    [
        # A plain continuation, mid-word and after a word.
        ("The quick brown fo", ("x jumps", " over"), "The quick brown fox jumps over"),
        ("The quick brown fox", (" jumps", " over"), "The quick brown fox jumps over"),
        # The caller's text ended in a space: the continuation's own leading space is dropped.
        ("The quick brown fox ", (" jumps over",), "The quick brown fox jumps over"),
        ("The quick brown fox ", ("jumps over",), "The quick brown fox jumps over"),
        # A restart: what the caller has is not sent twice.
        ("The quick brown fox", ("The quick ", "brown fox jumps", " over"), "The quick brown fox jumps over"),
        ("The quick brown fox ", ("The quick brown fox jumps",), "The quick brown fox jumps"),
        # A restart that ended before it got past the caller's text adds nothing.
        ("The quick brown fox", ("The quick",), "The quick brown fox"),
        # A repeated tail of the prefill is dropped...
        (
            "The quick brown fox",
            (" brown fox jumps over the lazy dog",),
            "The quick brown fox jumps over the lazy dog",
        ),
        # ...but a short overlap is the text's own and stays.
        ("I think that", (" that is fine",), "I think that that is fine"),
        # Nothing sent yet: everything passes.
        ("", ("Hello",), "Hello"),
    ],
)
def test_the_seam_neither_duplicates_nor_drops_text(sent: str, pieces: tuple[str, ...], whole: str) -> None:
    assert splice(sent, *pieces) == whole


def test_a_restart_that_drifts_from_the_sent_text_cannot_be_joined() -> None:
    seam = Seam("The quick brown fox jumps")
    with pytest.raises(SeamError):
        seam.feed("The quick brown cat")


def test_the_seam_holds_text_only_until_it_can_decide() -> None:
    seam = Seam("The quick brown fox")
    assert seam.feed(" brown") == ""  # could be the start of a repeated tail
    assert seam.feed(" fox jumps") == " jumps"  # it was: the repeat goes, the rest is sent
    assert seam.decided
    assert seam.feed(" over") == " over"  # decided: nothing is held any more
    fresh = Seam("The quick brown fox")
    assert fresh.feed(" jumps") == " jumps"  # occurs nowhere in the sent text: sent at once
    assert MIN_OVERLAP > 1


# ------------------------------------------------------------------ tool calls


def tool_chunk(index: int, *, call_id: str = "", name: str = "", args: str = "") -> pb.ChatCompletionChunk:
    call = pb.ToolCall(index=index)
    if call_id:
        call.id, call.type = call_id, "function"
    if name:
        call.function.name = name
    if args:
        call.function.arguments = args
    chunk = pb.ChatCompletionChunk(id="c", model="m", object="chat.completion.chunk")
    chunk.choices.add(index=0).delta.tool_calls.append(call)
    return chunk


def test_tool_calls_are_held_until_complete_and_sent_whole() -> None:
    hold = ToolCallHold()
    assert hold.take(tool_chunk(0, call_id="a", name="get", args='{"ci')) == []
    assert hold.take(tool_chunk(0, args='ty": "Paris"}')) == []
    released = hold.take(tool_chunk(1, call_id="b", name="put", args="{}"))  # call 0 is complete
    assert len(released) == 1
    call = released[0].choices[0].delta.tool_calls[0]
    assert (call.index, call.id, call.function.name) == (0, "a", "get")
    assert orjson.loads(call.function.arguments) == {"city": "Paris"}
    finish = pb.ChatCompletionChunk(id="c", model="m")
    finish.choices.add(index=0, finish_reason="tool_calls")
    out = hold.take(finish)
    assert [c.choices[0].delta.tool_calls[0].id for c in out[:-1]] == ["b"]
    assert out[-1].choices[0].finish_reason == "tool_calls"


def test_usage_adds_tokens_and_prices_only_when_both_parts_have_one() -> None:
    total = pb.Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
    total.cost.total_cost = 0.5
    part = pb.Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
    part.cost.total_cost = 0.25
    part.prompt_tokens_details.cached_tokens = 1
    add_usage(total, part)
    assert (total.prompt_tokens, total.completion_tokens, total.total_tokens) == (13, 7, 20)
    assert total.cost.total_cost == pytest.approx(0.75)
    assert total.prompt_tokens_details.cached_tokens == 1
    add_usage(total, pb.Usage(prompt_tokens=1, total_tokens=1))  # unpriced
    assert not total.HasField("cost")


def test_the_continuation_request_ends_with_the_prefill_and_a_smaller_max_tokens() -> None:
    original = request(max_tokens=100)
    follow_up = continuation_request(original, "Once upon a time", 4)
    assert follow_up.messages[-1].role == "assistant"
    assert follow_up.messages[-1].text == "Once upon a time"
    assert follow_up.max_tokens == 96
    assert len(original.messages) == 1  # the caller's request is untouched
    assert continuation_request(original, "", 0).messages == original.messages  # a restart


# ------------------------------------------------------------------ the engine

WORDS = [f"w{i}" for i in range(60)]
ANSWER = " ".join(WORDS)


def cut_stream(pieces: list[str]) -> Callable[[httpx.Request], httpx.Response]:
    """A stream that sends ``pieces`` and then ends without a finish or [DONE] (a cut)."""
    events = [delta(role="assistant", text="")] + [delta(p) for p in pieces]
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    return lambda _r: httpx.Response(200, content=raw)


def continuing(seen: list[dict[str, Any]]) -> Callable[[httpx.Request], httpx.Response]:
    """An upstream that continues the answer from its prefill (or answers it whole)."""

    def handle(req: httpx.Request) -> httpx.Response:
        body = orjson.loads(req.content)
        seen.append(body)
        last = body["messages"][-1]
        prefix = last["content"] if last["role"] == "assistant" else ""
        assert ANSWER.startswith(prefix)
        rest = ANSWER[len(prefix) :]
        events = [delta(role="assistant", text=""), *(delta(p) for p in _words(rest)), delta(finish="stop")]
        events.append(usage())
        raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        return httpx.Response(200, content=raw)

    return handle


def _words(text: str) -> list[str]:
    out, word = [], ""
    for ch in text:
        if ch == " " and word.strip():
            out.append(word)
            word = ""
        word += ch
    return [*out, word] if word else out


def two_providers(upstream: Upstream, *, prefill: bool = True, **extra: Any) -> ChatEngine:
    return engine(
        upstream,
        [],
        {
            "providers": {
                "primary": {
                    "kind": "openai",
                    "base_url": "https://primary.example/v1",
                    "keys": [{"value": "k"}],
                },
                "backup": {
                    "kind": "openai",
                    "base_url": "https://backup.example/v1",
                    "keys": [{"value": "k"}],
                    "assistant_prefill": prefill,
                },
            },
            **extra,
        },
        max_retries=0,
    )


async def collect(sy: ChatEngine, req: pb.ChatCompletionRequest) -> list[pb.ChatCompletionChunk]:
    return [chunk async for chunk in sy.create_stream(req)]


async def drain(chunks: AsyncIterator[pb.ChatCompletionChunk], into: list[pb.ChatCompletionChunk]) -> None:
    async for chunk in chunks:
        into.append(chunk)


def text_of(chunks: list[pb.ChatCompletionChunk]) -> str:
    return "".join(c.delta.text for chunk in chunks for c in chunk.choices)


def streaming(**fields: Any) -> pb.ChatCompletionRequest:
    return request(
        stream=True,
        fallbacks=["backup/m"],
        stream_options=pb.StreamOptions(include_usage=True),
        **fields,
    )


async def test_a_stream_cut_mid_answer_is_continued_on_the_fallback() -> None:
    upstream, seen = Upstream(), []
    upstream.replies = {"primary": [cut_stream(_words(ANSWER)[:40])], "backup": [continuing(seen)]}
    chunks = await collect(two_providers(upstream), streaming())
    assert text_of(chunks) == ANSWER
    prefill = seen[0]["messages"][-1]
    assert prefill["role"] == "assistant"
    assert prefill["content"] == " ".join(WORDS[:40])  # what the caller had, without trailing space
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert len({c.id for c in chunks}) == 1  # one stream to the caller
    assert sum(1 for c in chunks for ch in c.choices if ch.delta.role) == 1
    last = chunks[-1]
    # The broken attempt is reported with its (estimated) usage, and counted in the total.
    broken = [a for a in last.extra_fields.attempts if a.HasField("usage")]
    assert len(broken) == 1 and broken[0].usage_estimated and broken[0].provider == "primary"
    assert last.usage.completion_tokens == 1 + broken[0].usage.completion_tokens
    assert last.extra_fields.provider == "backup"


async def test_a_fallback_that_cannot_continue_leaves_the_original_error() -> None:
    upstream, seen = Upstream(), []
    upstream.replies = {"primary": [cut_stream(_words(ANSWER)[:40])], "backup": [continuing(seen)]}
    with pytest.raises(ChatError) as caught:
        await collect(two_providers(upstream, prefill=False), streaming())
    body = caught.value.body
    assert body.error.type != "prefill_unsupported"
    assert "prefill_unsupported" in [a.error_type for a in body.extra_fields.attempts]
    assert seen == []  # never asked


async def test_a_fallback_that_rejects_the_prefill_does_not_mask_the_original_error() -> None:
    upstream = Upstream()
    upstream.replies = {
        "primary": [cut_stream(_words(ANSWER)[:40])],
        "backup": [lambda _r: httpx.Response(400, json={"error": {"message": "prefill not allowed"}})],
    }
    with pytest.raises(ChatError) as caught:
        await collect(two_providers(upstream), streaming())
    body = caught.value.body
    assert "prefill" not in body.error.message
    assert body.status_code == 502


@pytest.mark.parametrize("field", [False, None])
async def test_failover_can_be_turned_off_per_request_and_in_the_config(field: bool | None) -> None:
    upstream, seen = Upstream(), []
    upstream.replies = {"primary": [cut_stream(_words(ANSWER)[:40])], "backup": [continuing(seen)]}
    extra: dict[str, Any] = {}
    req = streaming()
    if field is None:
        extra["resilience"] = {"midstream": {"enabled": False}}
    else:
        req.midstream_failover = field
    with pytest.raises(ChatError):
        await collect(two_providers(upstream, **extra), req)
    assert seen == []


async def test_the_request_field_overrides_a_config_that_turned_it_off() -> None:
    upstream, seen = Upstream(), []
    upstream.replies = {"primary": [cut_stream(_words(ANSWER)[:40])], "backup": [continuing(seen)]}
    sy = two_providers(upstream, resilience={"midstream": {"enabled": False}})
    assert text_of(await collect(sy, streaming(midstream_failover=True))) == ANSWER


async def test_a_cut_inside_a_tool_call_restarts_cleanly_on_any_fallback() -> None:
    start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": ""}}
    events = [
        delta(role="assistant"),
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [start]}}]},
        {
            "id": "c",
            "model": "m",
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}}
            ],
        },
    ]
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    whole = {
        "index": 0,
        "id": "call_2",
        "type": "function",
        "function": {"name": "get", "arguments": '{"city": "Paris"}'},
    }
    good = [
        delta(role="assistant"),
        {"id": "d", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [whole]}}]},
        delta(finish="tool_calls"),
    ]
    good_raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in good) + b"data: [DONE]\n\n"
    bodies: list[dict[str, Any]] = []

    def backup(req: httpx.Request) -> httpx.Response:
        bodies.append(orjson.loads(req.content))
        return httpx.Response(200, content=good_raw)

    upstream = Upstream()
    upstream.replies = {"primary": [lambda _r: httpx.Response(200, content=raw)], "backup": [backup]}
    # The backup cannot continue a prefill, but nothing was sent: a restart needs none.
    chunks = await collect(two_providers(upstream, prefill=False), streaming())
    calls = [t for c in chunks for ch in c.choices for t in ch.delta.tool_calls]
    assert [(t.id, t.function.arguments) for t in calls] == [("call_2", '{"city": "Paris"}')]
    assert bodies[0]["messages"][-1]["role"] == "user"  # the original request


async def test_a_complete_tool_call_already_sent_cannot_be_continued() -> None:
    whole = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{}"}}
    events = [
        delta(role="assistant"),
        {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [whole]}}]},
        {
            "id": "c",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 1,
                                "id": "call_b",
                                "type": "function",
                                "function": {"name": "get", "arguments": "{"},
                            }
                        ]
                    },
                }
            ],
        },
    ]
    raw = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    upstream, seen = Upstream(), []
    upstream.replies = {
        "primary": [lambda _r: httpx.Response(200, content=raw)],
        "backup": [continuing(seen)],
    }
    sy = two_providers(upstream)
    got: list[pb.ChatCompletionChunk] = []
    with pytest.raises(ChatError):
        await drain(sy.create_stream(streaming()), got)
    calls = [t.id for c in got for ch in c.choices for t in ch.delta.tool_calls]
    assert calls == ["call_1"]  # the complete call went out; the half one never did
    assert seen == []


async def test_a_stream_without_a_fallback_is_untouched() -> None:
    upstream = Upstream()
    upstream.replies = {"primary": [cut_stream(["a", "b"])]}
    sy = two_providers(upstream)
    got: list[pb.ChatCompletionChunk] = []
    with pytest.raises(ChatError):
        await drain(sy.create_stream(request(stream=True)), got)
    assert text_of(got) == "ab"
