"""Shared fixtures: the fake upstream, and real Switchyard processes pointed at it.

``stack`` is parametrised over the ways Switchyard runs, so every end-to-end
test runs against each:

- ``inprocess``: ``switchyard serve`` (one process; the gateway calls the service in-process);
- ``grpc-loopback``: ``switchyard serve --backend grpc`` (one process, a gRPC hop over loopback);
- ``split``: ``switchyard service`` + ``switchyard gateway`` (two processes, gRPC between them).

The helpers behind them (``start_stack``, ``base_config``…) are in ``tests/support.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gemini import FakeGemini
from tests.fakes.upstream import FakeUpstream
from tests.support import Stack, base_config, free_port, start_stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast in-process suites first, the end-to-end ones (tests/e2e) after, the console's
    browser tests (tests/browser) last: a broken engine fails in seconds, not after minutes of
    process start-ups. The sort is stable, so each module's tests stay together and in order."""
    items.sort(key=lambda item: 2 if "browser" in item.path.parts else int("e2e" in item.path.parts))


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def upstream(upstream_server: FakeUpstream) -> FakeUpstream:
    """The session's fake upstream, with scripts and recordings cleared for this test."""
    upstream_server.reset()
    return upstream_server


@pytest.fixture(scope="session")
def anthropic_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def anthropic(anthropic_server: FakeAnthropic) -> FakeAnthropic:
    """The session's fake Anthropic, cleared for this test."""
    anthropic_server.reset()
    return anthropic_server


@pytest.fixture(scope="session")
def gemini_server() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def gemini(gemini_server: FakeGemini) -> FakeGemini:
    """The session's fake Gemini / Vertex AI (and its token endpoint), cleared for this test."""
    gemini_server.reset()
    return gemini_server


@pytest.fixture(scope="session", params=["inprocess", "grpc-loopback", "split"])
def stack(
    request: pytest.FixtureRequest,
    upstream_server: FakeUpstream,
    anthropic_server: FakeAnthropic,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    config = base_config(upstream_server.url, free_port(), free_port(), anthropic_server.url)
    running = start_stack(request.param, config, tmp_path_factory.mktemp(f"stack-{request.param}"))
    yield running
    running.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        yield http


@pytest.fixture
def stack_url(stack: Stack) -> str:
    return stack.base_url
