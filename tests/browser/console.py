"""What the browser tests share: the console's config, Chromium's flags, sign-in and page helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.governed import ADMIN_TOKEN, governed_config
from tests.support import REPO_ROOT

ARTEFACTS_ENV = "SWITCHYARD_UI_ARTEFACTS"
# SWITCHYARD_UPDATE_SCREENSHOTS=1: also copy the screenshots to docs/screenshots (for the README).
UPDATE_ENV = "SWITCHYARD_UPDATE_SCREENSHOTS"
DOCS_SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
# USD per million tokens: chat-prod is cheap, `priced` (priced-model) costs ~0.02 USD a call.
CHAT_PRICE = {"input": 2.5, "output": 10.0}


def launch_args() -> list[str]:
    """Chromium's flags for a machine without a network, a display or a GPU (and maybe as root)."""
    args = [
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--metrics-recording-only",
        "--mute-audio",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
    return args


def console_config(upstream_url: str, workdir: Path) -> dict[str, Any]:
    """The governed test config with request content kept (the XSS test reads it back)."""
    config = governed_config(upstream_url, workdir)
    config["request_logs"] = {"flush_interval_s": 0.05, "include_content": True}
    config["pricing"]["models"]["chat-prod"] = CHAT_PRICE
    # The response cache, for `cache-demo` only: the other deployments' calls must reach the
    # upstream (the operator's day spends a budget down).
    config["cache"] = {"enabled": True, "store": "memory", "deployments": ["cache-demo"]}
    config["deployments"]["cache-demo"] = {"targets": [{"provider": "azure", "model": "chat-prod"}]}
    return config


def sign_in(page: Page, credential: str = ADMIN_TOKEN) -> None:
    page.goto("/ui/")
    page.get_by_label("Admin token or admin JWT").fill(credential)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Console sections")).to_be_visible()


def go(page: Page, route: str, ready: str | None = None) -> None:
    """Open ``#/route`` and wait for the page to finish loading (``main[data-ready]`` or no spinner)."""
    page.evaluate(GO, f"#/{route}")
    if ready:
        page.wait_for_selector(f"main[data-ready='{ready}']")
    expect(page.locator("main .loading")).to_have_count(0)


# Forget the last page's "ready" mark, then route (re-render when the hash is already there).
GO = """hash => {
  const main = document.querySelector('main');
  if (main) delete main.dataset.ready;
  if (window.location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else window.location.hash = hash;
}"""


def screenshot(page: Page, artefacts: Path, name: str) -> Path:
    path = artefacts / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get(UPDATE_ENV) == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)
    return path


UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML.slice(0, 120))"""
