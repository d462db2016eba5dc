"""Fixtures for the console's browser tests: one governed ``switchyard serve`` (auth on, prices,
request content kept) over the fake upstream, and one headless Chromium for the whole session.

The browser is Debian's Chromium at ``/usr/bin/chromium`` (``scripts/test`` installs it):
Playwright cannot download its own here. Each test gets a fresh browser context (no shared
sessionStorage), and fails if the page logged an error or broke the Content-Security-Policy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.browser.console import ARTEFACTS_ENV, console_config, launch_args
from tests.e2e.governed import GOVERNED_ENV
from tests.fakes.upstream import FakeUpstream
from tests.support import Stack, start_stack

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def console_stack(upstream_server: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("console")
    running = start_stack("inprocess", console_config(upstream_server.url, workdir), workdir, GOVERNED_ENV)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}: scripts/test installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=launch_args())
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $SWITCHYARD_UI_ARTEFACTS, else a folder of the session's tmp dir."""
    chosen = os.environ.get(ARTEFACTS_ENV)
    path = Path(chosen) if chosen else tmp_path_factory.getbasetemp() / "ui-artefacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def context(browser: Browser, console_stack: Stack) -> Iterator[BrowserContext]:
    ctx = browser.new_context(
        base_url=console_stack.base_url,
        viewport={"width": 1280, "height": 900},
        permissions=["clipboard-read", "clipboard-write"],
    )
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page that records console errors and CSP violations; the test fails if there were any."""
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" and "status of 4" not in message.text
            else None
        ),
    )
    yield opened
    assert not problems, "\n".join(problems)
