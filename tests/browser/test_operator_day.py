"""The operator's day in a real browser (issue 12): sign in; create a key and copy its secret;
call the gateway with it through the openai SDK; see the calls in the logs and in spend; open one
request; set a budget and see the 402 once it runs out; rotate (the old secret gets 401) and revoke
(the next call is refused).

A revoked key's calls get 403 ``virtual_key_inactive``, as the README's refusal table and
``tests/e2e/test_cli_admin.py`` fix it; a secret that no longer exists (rotated away) gets 401.
"""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Page, expect

from tests.browser.console import go, screenshot, sign_in
from tests.support import Stack

pytestmark = pytest.mark.timeout(180)


def client(stack: Stack, secret: str) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        azure_endpoint=stack.base_url, api_key=secret, api_version="2024-10-21", max_retries=0, timeout=20
    )


def ask(stack: Stack, secret: str, model: str = "chat") -> str:
    reply = client(stack, secret).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is on the menu?"}], max_tokens=16
    )
    return reply.choices[0].message.content or ""


def status_of(stack: Stack, secret: str, model: str = "chat") -> int:
    try:
        ask(stack, secret, model)
    except openai.APIStatusError as err:
        return err.status_code
    return 200


def rows_until(page: Page, route: str, count: int) -> None:
    """Reopen ``route`` until its table has ``count`` rows: the request log is written in batches."""
    deadline = time.monotonic() + 10
    while True:
        go(page, route, "logs")
        found = page.locator("main tbody tr").count()
        if found >= count or time.monotonic() > deadline:
            assert found == count, f"{found} rows at {route}"
            return
        page.wait_for_timeout(200)


def read_new_secret(page: Page) -> str:
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.get_by_role("status")).to_contain_text("Copied")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied == dialog.get_by_label("Secret of", exact=False).input_value()
    assert copied.startswith("sk-bf-")
    dialog.get_by_role("button", name="I have saved it").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert copied not in page.content()  # shown once: nothing of it stays in the page
    return copied


def test_operator_day(page: Page, console_stack: Stack, artefacts: Path) -> None:
    # 1. sign in
    sign_in(page)
    assert "credential" not in page.url and "token" not in page.url

    # 2. create a key and copy its secret
    go(page, "keys")
    page.get_by_role("button", name="Create key").click()
    form = page.get_by_role("dialog")
    form.get_by_label("Id (optional)").fill("day-app")
    form.get_by_label("Name", exact=True).fill("Day app")
    form.get_by_label("Requests per minute").fill("600")
    screenshot(page, artefacts, "key-create")
    form.get_by_role("button", name="Create key").click()
    expect(page.get_by_role("dialog")).to_contain_text("only time the secret is shown")
    screenshot(page, artefacts, "key-secret")
    secret = read_new_secret(page)
    expect(page.locator("h1")).to_have_text("Day app")

    # 3. requests through the gateway with it, over the openai SDK
    for _ in range(3):
        assert ask(console_stack, secret)

    # 4. in the logs and in spend
    rows_until(page, "logs?key_id=day-app", 3)
    expect(page.locator("main tbody")).to_contain_text("chat-prod")
    go(page, "overview", "overview")
    expect(page.get_by_role("region", name="Spend by key")).to_contain_text("day-app")

    # 5. one request's detail
    go(page, "logs?key_id=day-app", "logs")
    page.locator("main tbody tr").first.focus()
    page.keyboard.press("Enter")  # rows open from the keyboard too
    page.wait_for_selector("main[data-ready='log-detail']")
    outcome = page.get_by_role("region", name="Outcome")
    expect(outcome).to_contain_text("azure/chat-prod")
    expect(page.get_by_role("region", name="Cost and time")).to_contain_text("Total tokens")
    expect(page.get_by_role("region", name="Prompt and completion")).to_contain_text("What is on the menu?")

    # 6. a budget, then the 402 once it runs out (`priced` costs ~0.02 USD a call)
    go(page, "keys/day-app")
    page.get_by_role("button", name="Edit").click()
    page.get_by_role("dialog").get_by_label("Budget (USD)").fill("0.03")
    page.get_by_role("dialog").get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("region", name="Settings")).to_contain_text("/ $0.03")
    statuses = [status_of(console_stack, secret, "priced") for _ in range(6)]
    assert statuses[0] == 200 and 402 in statuses, statuses
    rows_until(page, "logs?key_id=day-app&status=402", statuses.count(402))
    expect(page.locator("main tbody")).to_contain_text("budget_exceeded")

    # 7. rotate: the old secret gets 401; revoke: the key's next call is refused
    go(page, "keys/day-app")
    page.get_by_role("button", name="Rotate secret").click()
    page.get_by_role("dialog").get_by_role("button", name="Rotate").click()
    rotated = read_new_secret(page)
    assert status_of(console_stack, secret) == 401
    assert status_of(console_stack, rotated) == 402  # the same key: its budget is still spent
    page.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("region", name="Settings")).to_contain_text("revoked")
    assert status_of(console_stack, rotated) == 403
    screenshot(page, artefacts, "key-detail")
