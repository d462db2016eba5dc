"""The failure suite (issue 8, section 6): one fake-provider fault per scenario, through a real
``switchyard serve`` and the official ``openai`` SDK.

Each scenario's primary is an Azure deployment on the fake upstream that breaks on purpose; its
fallback is Claude on the fake Anthropic API, which continues an assistant prefill as the real
one does. Every healthy answer is the same fixed 60-word text, so a truncated or spliced answer
can never pass for the complete one. Each scenario asserts what the caller received, how many
attempts reached each upstream (and how far apart), and that the process is healthy afterwards,
and classifies the result as one of four outcomes:

- ``rescued``: the complete, correct answer;
- ``safe``: a bounded, clean error in the documented shape;
- ``wrong``: anything else that ended (a partial answer passed off as whole, a 500, a bad body);
- ``hung``: no end within the caller's patience (``PATIENCE_S``).

The long waits of the issue (a first token after 20 s, a 30 s stall, a 60 s outage) stay long
on the fake's side; the gateway's limits are short through config (``ttft_s``, ``stream_idle_s``
and the circuit's cool-down), never by special-casing. README's "Failure suite" table lists
the outcomes, and ``test_the_readme_table_matches_the_suite`` keeps the two in step.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import openai
import orjson
import pytest

from switchyard.v1 import chat_pb2, chat_pb2_grpc
from tests.fakes import anthropic as claude_fake
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.upstream import FakeUpstream, Reply
from tests.support import (
    CLAUDE,
    OPEN_MODE_ADMIN_TOKEN,
    REPO_ROOT,
    Stack,
    base_config,
    free_port,
    start_stack,
)

FIXED = (
    "Switchyard keeps the answer whole when a provider fails: it retries what is worth retrying, "
    "falls back when a target is down, continues a broken stream on a fallback from the exact "
    "word where it stopped, and tells the caller honestly which upstream served each part, what "
    "it cost, and why every attempt before it failed, so nothing is lost"
)
WORDS = [word if i == 0 else f" {word}" for i, word in enumerate(FIXED.split(" "))]
assert len(WORDS) == 60
LIMIT_S = 1.0  # ttft_s and stream_idle_s of every primary here
PATIENCE_S = 20.0  # the caller's: a scenario that takes longer is hung
COOLDOWN_S = 0.5
HEDGE_MS = 200
FALLBACK = f"anthropic/{CLAUDE}"


def _deployment(n: int, **more: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targets": [
            {
                "provider": "azure",
                "model": f"fs-{n}",
                "timeouts": {"ttft_s": LIMIT_S, "stream_idle_s": LIMIT_S},
            }
        ],
        "fallbacks": [FALLBACK],
    }
    spec.update(more)
    return spec


@pytest.fixture(scope="module")
def suite_stack(
    upstream_server: FakeUpstream, anthropic_server: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    config = base_config(upstream_server.url, free_port(), free_port(), anthropic_server.url)
    config["resilience"] = {
        "circuit": {
            "consecutive_failures": 3,
            "failure_rate": 0,
            "cooldown_s": COOLDOWN_S,
            "max_cooldown_s": 1,
        }
    }
    # An OpenAI-wire fallback that says it takes a prefill, then refuses it (scenario 14).
    config["providers"]["prefill-refuser"] = {
        "kind": "openai",
        "base_url": upstream_server.url + "/v1",
        "keys": [{"value": "${SY_TEST_OPENAI_KEY}"}],
        "assistant_prefill": True,
    }
    deployments = {f"fs-{n}": _deployment(n) for n in range(1, 17)}
    deployments["fs-12"] = _deployment(12, fallbacks=[], context_fallbacks=[FALLBACK])
    deployments["fs-14"] = _deployment(14, fallbacks=["prefill-refuser/fs-14-fallback"])
    deployments["claude-event"] = {
        "targets": [{"provider": "anthropic", "model": "claude-breaking"}],
        "fallbacks": [FALLBACK],
    }
    deployments["hedged"] = {
        "targets": [{"provider": "azure", "model": "hedge-primary"}],
        "fallbacks": [FALLBACK],
        "hedge": {"after_ms": HEDGE_MS},
    }
    config["deployments"].update(deployments)
    stack = start_stack("inprocess", config, Path(tmp_path_factory.mktemp("failure-suite")))
    yield stack
    stack.stop()


@pytest.fixture
def sdk(suite_stack: Stack) -> Iterator[openai.AzureOpenAI]:
    client = openai.AzureOpenAI(
        azure_endpoint=suite_stack.base_url,
        api_key="any",
        api_version="2024-10-21",
        max_retries=0,
        timeout=PATIENCE_S,
    )
    yield client
    client.close()


@dataclass
class Result:
    outcome: str
    text: str = ""
    status: int = 200
    error: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0


def ask(sdk: openai.AzureOpenAI, deployment: str, *, stream: bool) -> Result:
    """One call, classified."""
    messages = [{"role": "user", "content": f"scenario {deployment}"}]
    started = time.monotonic()
    text, extra, usage = "", {}, {}
    try:
        if stream:
            chunks = sdk.chat.completions.create(
                model=deployment, messages=messages, stream=True, stream_options={"include_usage": True}
            )
            for chunk in chunks:
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                dumped = chunk.model_dump()
                attempts_seen = (extra or {}).get("attempts")
                extra = dumped.get("extra_fields") or extra
                if attempts_seen and not extra.get("attempts"):
                    extra["attempts"] = attempts_seen  # told on the first chunk (and after a failover)
                usage = dumped.get("usage") or usage
        else:
            completion = sdk.chat.completions.create(model=deployment, messages=messages)
            text = completion.choices[0].message.content or ""
            dumped = completion.model_dump()
            extra, usage = dumped.get("extra_fields") or {}, dumped.get("usage") or {}
    except openai.APITimeoutError:
        return Result("hung", text, 0, elapsed_s=time.monotonic() - started)
    except openai.APIStatusError as err:
        body = err.body if isinstance(err.body, dict) else {}
        return Result(
            _error_outcome(err.status_code, body), text, err.status_code, body, elapsed_s=_since(started)
        )
    except openai.APIError as err:  # an error event mid-stream
        body = err.body if isinstance(err.body, dict) else {}
        status = int(body.get("status_code") or 0) if isinstance(body, dict) else 0
        return Result(_error_outcome(status or 502, body), text, status, body, elapsed_s=_since(started))
    outcome = "rescued" if text == FIXED else "wrong"
    return Result(outcome, text, 200, extra=extra, usage=usage, elapsed_s=_since(started))


def _since(started: float) -> float:
    return time.monotonic() - started


def _error_outcome(status: int, body: dict[str, Any]) -> str:
    """A clean error has a non-500 status and the contract's error body."""
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    clean = status != 500 and isinstance(error, dict) and bool(error.get("message"))
    return "safe" if clean else "wrong"


def attempts(fake: FakeUpstream, model: str) -> list[float]:
    """When each request for ``model`` reached ``fake`` (monotonic seconds)."""
    return [r.received_at for r in fake.requests if model in (r.deployment or r.model or "")]


def assert_healthy(stack: Stack, sdk: openai.AzureOpenAI, upstream: FakeUpstream) -> None:
    assert all(proc.poll() is None for proc in stack.processes), stack.logs()[-2000:]
    assert httpx.get(f"{stack.base_url}/ready", timeout=5).status_code == 200
    upstream.script(Reply.ok(FIXED), match="fs-health")
    completion = sdk.chat.completions.create(
        model="azure/fs-health", messages=[{"role": "user", "content": "ok?"}]
    )
    assert completion.choices[0].message.content == FIXED


def stream_of(**kw: Any) -> Reply:
    return Reply.stream(WORDS, **kw)


# ------------------------------------------------------------------ the scenarios

Check = Callable[[Result, FakeUpstream, FakeAnthropic], None]


@dataclass(frozen=True)
class Scenario:
    number: int
    fault: str
    expected: str
    stream: bool
    primary: tuple[Reply, ...]
    check: Check
    fallback: tuple[claude_fake.Reply, ...] = ()


def _one_retry_after(result: Result, azure: FakeUpstream, claude: FakeAnthropic) -> None:
    first, second = attempts(azure, "fs-1")
    assert second - first >= 0.9  # Retry-After: 1 was honoured
    assert not claude.requests


def _retried_then_fell_back(model: str, tries: int) -> Check:
    def check(result: Result, azure: FakeUpstream, claude: FakeAnthropic) -> None:
        assert len(attempts(azure, model)) == tries
        assert len(claude.requests) == 1
        assert result.extra["provider"] == "anthropic"

    return check


def _retried_on_primary(model: str) -> Check:
    def check(result: Result, azure: FakeUpstream, claude: FakeAnthropic) -> None:
        assert len(attempts(azure, model)) == 2
        assert not claude.requests

    return check


def _fell_back_after_the_limit(model: str) -> Check:
    def check(result: Result, azure: FakeUpstream, claude: FakeAnthropic) -> None:
        assert len(attempts(azure, model)) == 1  # a silent upstream is not retried
        assert len(claude.requests) == 1
        assert LIMIT_S <= result.elapsed_s < LIMIT_S + 3

    return check


def _continued(model: str) -> Check:
    def check(result: Result, azure: FakeUpstream, claude: FakeAnthropic) -> None:
        assert len(attempts(azure, model)) == 1
        (continuation,) = claude.requests
        prefill = continuation.body["messages"][-1]
        assert prefill["role"] == "assistant"
        assert FIXED.startswith(claude_fake._text_of(prefill["content"]))
        assert claude_fake._text_of(prefill["content"]) != ""
        spent = [a for a in result.extra["attempts"] if a.get("usage")]
        assert spent and spent[0]["provider"] == "azure"  # the broken attempt is billed
        assert result.usage["completion_tokens"] > spent[0]["usage"]["completion_tokens"]

    return check


def _served_by_primary(model: str) -> Check:
    def check(result: Result, azure: FakeUpstream, claude: FakeAnthropic) -> None:
        assert len(attempts(azure, model)) == 1
        assert not claude.requests

    return check


def _context_fallback(result: Result, azure: FakeUpstream, claude: FakeAnthropic) -> None:
    assert len(attempts(azure, "fs-12")) == 1
    assert len(claude.requests) == 1
    assert result.extra["provider"] == "anthropic"


def _not_routed_around(result: Result, azure: FakeUpstream, claude: FakeAnthropic) -> None:
    assert result.status == 400
    assert result.error["code"] == "content_filter"  # the SDK hands over the inner error object
    assert len(attempts(azure, "fs-13")) == 1
    assert not claude.requests


def _original_error_kept(result: Result, azure: FakeUpstream, claude: FakeAnthropic) -> None:
    assert FIXED.startswith(result.text) and len(result.text.split()) == 40  # what was sent, then the error
    assert len(attempts(azure, "fs-14-fallback")) == 1  # the fallback was asked, and refused
    message = result.error.get("message") or result.error.get("error", {}).get("message", "")
    assert "prefill" not in message.lower()  # the original failure, not the fallback's refusal


def _fallback_reported_and_billed(result: Result, azure: FakeUpstream, claude: FakeAnthropic) -> None:
    assert len(attempts(azure, "fs-16")) == 3
    assert result.extra["provider"] == "anthropic"
    assert result.extra["model_deployment"] == CLAUDE
    assert len(claude.requests) == 1
    failed = result.extra["attempts"]
    assert [a["status_code"] for a in failed] == [503, 503, 503]
    assert all(not a.get("usage") for a in failed)  # failed attempts are not billed
    assert result.usage["completion_tokens"] == claude_fake._tokens(FIXED)
    assert result.usage["total_tokens"] == result.usage["prompt_tokens"] + result.usage["completion_tokens"]


CONTEXT_TOO_LONG = Reply.status(
    400, message="This model's maximum context length is 8192 tokens.", error_code="context_length_exceeded"
)

SCENARIOS = [
    Scenario(
        1,
        "429 with Retry-After once",
        "rescued",
        False,
        (Reply.status(429, headers={"retry-after": "1"}), Reply.ok(FIXED)),
        _one_retry_after,
    ),
    Scenario(
        2,
        "a persistent 429 without Retry-After",
        "rescued",
        False,
        (Reply.status(429),) * 3,
        _retried_then_fell_back("fs-2", 3),
    ),
    Scenario(
        3, "500 once", "rescued", False, (Reply.status(500), Reply.ok(FIXED)), _retried_on_primary("fs-3")
    ),
    Scenario(
        4, "a persistent 503", "rescued", False, (Reply.status(503),) * 3, _retried_then_fell_back("fs-4", 3)
    ),
    Scenario(
        5,
        "a TCP reset before the headers",
        "rescued",
        False,
        (Reply.drop(reset=True),) * 3,
        _retried_then_fell_back("fs-5", 3),
    ),
    Scenario(
        6, "no response at all", "rescued", False, (Reply.slow(30),), _fell_back_after_the_limit("fs-6")
    ),
    Scenario(
        7,
        "the first token after 20 s",
        "rescued",
        True,
        (Reply.slow(20, stream_of()),),
        _fell_back_after_the_limit("fs-7"),
    ),
    Scenario(8, "a stream cut at 2/3", "rescued", True, (stream_of(break_after=40),), _continued("fs-8")),
    Scenario(
        9,
        "a stream that stalls 30 s",
        "rescued",
        True,
        (stream_of(stall_after=40, stall_s=30),),
        _continued("fs-9"),
    ),
    Scenario(
        10,
        "a malformed chunk mid-stream",
        "rescued",
        True,
        (stream_of(malformed_at=(30,)),),
        _served_by_primary("fs-10"),
    ),
    Scenario(
        11,
        "a stream without [DONE]",
        "rescued",
        True,
        (stream_of(omit_done=True),),
        _served_by_primary("fs-11"),
    ),
    Scenario(12, "context_length_exceeded", "rescued", False, (CONTEXT_TOO_LONG,), _context_fallback),
    Scenario(
        13,
        "a content-filter 400 (it must not fall back)",
        "safe",
        False,
        (Reply.content_filter(),),
        _not_routed_around,
    ),
    Scenario(
        14,
        "a cut stream where the fallback rejects an assistant prefill",
        "safe",
        True,
        (stream_of(break_after=40),),
        _original_error_kept,
    ),
    Scenario(
        16,
        "a primary 503 where the fallback answers",
        "rescued",
        False,
        (Reply.status(503),) * 3,
        _fallback_reported_and_billed,
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: f"{s.number}-{s.expected}")
def test_each_fault_ends_as_expected(
    scenario: Scenario,
    suite_stack: Stack,
    sdk: openai.AzureOpenAI,
    upstream: FakeUpstream,
    anthropic: FakeAnthropic,
) -> None:
    upstream.script(*scenario.primary, match=f"fs-{scenario.number}")
    if scenario.number == 14:
        refusal = Reply.status(400, message="the final message must not be an assistant prefill")
        upstream.script(refusal, match="fs-14-fallback")
    anthropic.reset(default=claude_fake.Reply.ok(FIXED))
    result = ask(sdk, f"fs-{scenario.number}", stream=scenario.stream)
    assert result.outcome == scenario.expected, result
    scenario.check(result, upstream, anthropic)
    assert_healthy(suite_stack, sdk, upstream)


def test_15_a_primary_down_then_healthy_is_left_then_used_again(
    suite_stack: Stack, sdk: openai.AzureOpenAI, upstream: FakeUpstream, anthropic: FakeAnthropic
) -> None:
    """Twenty requests across an outage of the primary (2 s here, 60 s in the issue): every one
    gets the whole answer; the open circuit spares most of them the primary's retries; after the
    recovery a probe finds the primary healthy and the traffic goes back to it."""
    anthropic.reset(default=claude_fake.Reply.ok(FIXED))
    upstream.reset(default=Reply.ok(FIXED))
    upstream.script(*[Reply.status(503)] * 1000, match="fs-15")
    outage_ends, down = time.monotonic() + 2.0, True
    results: list[Result] = []
    for _ in range(20):
        if down and time.monotonic() >= outage_ends:
            upstream.reset(default=Reply.ok(FIXED))  # the primary is back
            down = False
        results.append(ask(sdk, "fs-15", stream=False))
        time.sleep(0.2)
    assert [r.outcome for r in results] == ["rescued"] * 20
    providers = [r.extra["provider"] for r in results]
    assert providers[0] == "anthropic" and providers[-1] == "azure"
    assert providers[-5:] == ["azure"] * 5  # back on the primary for good
    assert len(anthropic.requests) < 20
    # The outage cost far fewer than three attempts a request: the circuit skipped the primary.
    outage_calls = [r for r in results if r.extra["provider"] == "anthropic"]
    skipped = sum(
        1 for r in outage_calls for a in r.extra.get("attempts", []) if a["error_type"] == "circuit_open"
    )
    assert skipped >= len(outage_calls) // 2
    assert_healthy(suite_stack, sdk, upstream)


def test_the_readme_table_matches_the_suite() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### Failure suite", 1)[1].split("\n#", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| [^|]+\| (\w+) \|", section, re.M))
    expected = {str(s.number): s.expected for s in SCENARIOS} | {"15": "rescued"}
    assert rows == expected


# ------------------------------------------------------------------ the per-request switch


def _raw_stream(stack: Stack, deployment: str, headers: dict[str, str]) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.Client(base_url=stack.base_url, timeout=PATIENCE_S) as client:
        response = client.post(
            f"/openai/deployments/{deployment}/chat/completions?api-version=2024-10-21",
            json=body,
            headers=headers,
        )
        response.read()
        return response


def test_the_header_turns_mid_stream_failover_off_for_one_request(
    suite_stack: Stack, upstream: FakeUpstream, anthropic: FakeAnthropic
) -> None:
    upstream.script(stream_of(break_after=40), match="fs-8")
    anthropic.reset(default=claude_fake.Reply.ok(FIXED))
    response = _raw_stream(suite_stack, "fs-8", {"x-switchyard-midstream-failover": "false"})
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1] != "data: [DONE]"
    last = orjson.loads(events[-1].removeprefix("data: "))
    assert last["error"]["message"]  # the break itself, as an error event
    assert not anthropic.requests


def test_a_bad_header_value_is_a_400(suite_stack: Stack, upstream: FakeUpstream) -> None:
    response = _raw_stream(suite_stack, "fs-8", {"x-switchyard-midstream-failover": "maybe"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-switchyard-midstream-failover"
    assert not upstream.requests


@pytest.mark.parametrize("failover", [True, False])
def test_grpc_callers_choose_with_the_request_field(
    failover: bool, suite_stack: Stack, upstream: FakeUpstream, anthropic: FakeAnthropic
) -> None:
    upstream.script(stream_of(break_after=40), match="fs-8")
    anthropic.reset(default=claude_fake.Reply.ok(FIXED))
    request = chat_pb2.ChatCompletionRequest(
        deployment_id="fs-8",
        messages=[chat_pb2.ChatMessage(role="user", text="x")],
        stream=True,
        midstream_failover=failover,
    )
    text: list[str] = []
    with grpc.insecure_channel(suite_stack.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatCompletionsStub(channel)
        try:
            for chunk in stub.CreateStream(request, timeout=PATIENCE_S):
                text += [choice.delta.text for choice in chunk.choices]
            status = grpc.StatusCode.OK
        except grpc.RpcError as err:
            status = err.code()
    if failover:
        assert (status, "".join(text)) == (grpc.StatusCode.OK, FIXED)
        assert len(anthropic.requests) == 1
    else:
        assert status is grpc.StatusCode.UNAVAILABLE
        assert FIXED.startswith("".join(text)) and "".join(text)
        assert not anthropic.requests


# ------------------------------------------------------------------ hedging, and the request log


def _logged_attempts(stack: Stack, request_id: str) -> list[dict[str, Any]]:
    headers = {"authorization": f"Bearer {OPEN_MODE_ADMIN_TOKEN}"}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the request log is written in batches
        page = httpx.get(f"{stack.base_url}/api/logs", params={"request_id": request_id}, headers=headers)
        assert page.status_code == 200, page.text
        entries = page.json()["entries"]
        if entries:
            return list(orjson.loads(entries[0]["attempts_json"]))
        time.sleep(0.1)
    raise AssertionError(f"no request-log entry for {request_id}")


@pytest.mark.parametrize("stream", [False, True])
def test_a_slow_primary_is_hedged_and_its_connection_closed(
    stream: bool,
    suite_stack: Stack,
    sdk: openai.AzureOpenAI,
    upstream: FakeUpstream,
    anthropic: FakeAnthropic,
) -> None:
    upstream.script(Reply.slow(10, stream_of() if stream else Reply.ok(FIXED)), match="hedge-primary")
    anthropic.reset(default=claude_fake.Reply.ok(FIXED))
    result = ask(sdk, "hedged", stream=stream)
    assert result.outcome == "rescued", result
    assert HEDGE_MS / 1000 <= result.elapsed_s < 3
    assert result.extra["provider"] == "anthropic"
    assert upstream.wait_for_disconnect(5), "the losing attempt was left running upstream"
    outcomes = {(a["provider"], a["error_type"]) for a in result.extra["attempts"]}
    assert outcomes == {("azure", "hedge_lost"), ("anthropic", "hedge_won")}
    assert_healthy(suite_stack, sdk, upstream)


def test_the_request_log_keeps_the_hedge_and_the_billed_broken_attempt(
    suite_stack: Stack, upstream: FakeUpstream, anthropic: FakeAnthropic
) -> None:
    anthropic.reset(default=claude_fake.Reply.ok(FIXED))
    upstream.script(Reply.slow(10), match="hedge-primary")
    with httpx.Client(base_url=suite_stack.base_url, timeout=PATIENCE_S) as client:
        hedged = client.post(
            "/openai/deployments/hedged/chat/completions?api-version=2024-10-21",
            json={"messages": [{"role": "user", "content": "x"}]},
            headers={"x-request-id": "fs-log-hedge"},
        )
    assert hedged.status_code == 200
    logged = {(a["provider"], a["error_type"]) for a in _logged_attempts(suite_stack, "fs-log-hedge")}
    assert logged == {("azure", "hedge_lost"), ("anthropic", "hedge_won")}

    upstream.script(stream_of(break_after=40), match="fs-8")
    response = _raw_stream(suite_stack, "fs-8", {"x-request-id": "fs-log-cut"})
    assert response.text.rstrip().endswith("data: [DONE]")
    (broken,) = [a for a in _logged_attempts(suite_stack, "fs-log-cut") if "total_tokens" in a]
    assert broken["provider"] == "azure" and broken["usage_estimated"] is True
    assert broken["total_tokens"] > 0


def test_an_upstream_error_event_mid_stream_is_continued_too(
    suite_stack: Stack, sdk: openai.AzureOpenAI, anthropic: FakeAnthropic
) -> None:
    """Anthropic's own `error` event (overloaded) after part of the answer: continued on the
    fallback, which here is another Claude model on the same API."""
    anthropic.reset(default=claude_fake.Reply.ok(FIXED))
    breaking = replace(
        claude_fake.Reply.ok(FIXED), error_event_after=12, error_type="overloaded_error", message="Overloaded"
    )
    anthropic.script(breaking, match="claude-breaking")
    result = ask(sdk, "claude-event", stream=True)
    assert result.outcome == "rescued", result
    first, continuation = anthropic.requests
    assert first.body["model"] == "claude-breaking"
    assert continuation.body["messages"][-1]["role"] == "assistant"
    assert [a["model"] for a in result.extra["attempts"] if a.get("usage")] == ["claude-breaking"]
