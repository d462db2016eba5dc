"""The console's sign-in, security and layout, in a real browser against a real ``switchyard serve``.

- sign-in: a wrong token, a virtual key and an expired JWT are turned away with a clear message;
  an admin JWT works; the credential lives in sessionStorage only and sign-out clears it;
- log content is untrusted: a prompt carrying script and markup renders as inert text;
- every /ui answer carries the security headers; no page, asset or admin answer the console
  uses holds a secret (provider keys, the admin token, the JWT secret, virtual-key secrets);
- every page: no unlabelled control, keyboard navigation, readable at 390 px; a screenshot each.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from gateway.console import load_assets
from tests.browser.console import UNLABELLED_CONTROLS, go, screenshot, sign_in
from tests.e2e.governed import ADMIN_TOKEN, JWT_SECRET, SEEDED_KEY, admin_headers, create_key, hs_token
from tests.support import SECRETS, Stack

pytestmark = pytest.mark.timeout(120)
CHAT = "/openai/deployments/{}/chat/completions?api-version=2024-10-21"
PAYLOAD = (
    '<script>window.__xss = "script"</script>'
    "<img src=x onerror=\"window.__xss = 'img'\">"
    '<a href="javascript:window.__xss=1">click</a>'
)
MINTED: list[str] = []

PAGES = [
    ("overview", "overview"),
    ("keys", None),
    ("keys/vk-seeded", None),
    ("teams", None),
    ("teams/seed-team", None),
    ("logs", "logs"),
    ("providers", "providers"),
    ("cache", "cache"),
]


def chat(stack: Stack, secret: str, text: str, deployment: str = "chat") -> httpx.Response:
    return httpx.post(
        stack.base_url + CHAT.format(deployment),
        json={"messages": [{"role": "user", "content": text}]},
        headers={"api-key": secret},
        timeout=20,
    )


def sign_in_fails(page: Page, credential: str, message: str) -> None:
    page.goto("/ui/")
    page.get_by_label("Admin token or admin JWT").fill(credential)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-status")).to_contain_text(message)
    expect(page.get_by_role("navigation", name="Console sections")).to_have_count(0)
    assert page.evaluate("() => sessionStorage.length") == 0


# ---------------------------------------------------------------- sign-in


def test_bad_sign_ins_are_turned_away(page: Page, console_stack: Stack) -> None:
    sign_in_fails(page, "not-the-admin-token", "not accepted")
    sign_in_fails(page, SEEDED_KEY, "That is a virtual key")
    secret, record = create_key(console_stack.base_url, name="would-be-admin")
    MINTED.append(secret)
    sign_in_fails(page, secret, "That is a virtual key")
    sign_in_fails(page, hs_token({"vk": record["id"]}), "That is a virtual key")
    sign_in_fails(page, hs_token({"role": "admin"}, ttl_s=-60), "not accepted")  # expired
    sign_in_fails(page, hs_token({"role": "admin"}, secret="forged-" + JWT_SECRET), "not accepted")


def test_admin_jwt_signs_in_and_sign_out_forgets_it(page: Page) -> None:
    token = hs_token({"role": "admin"})
    sign_in(page, token)
    assert page.evaluate("() => sessionStorage.getItem('switchyard.console.credential')") == token
    assert page.evaluate("() => localStorage.length") == 0
    assert token not in page.url and page.evaluate("() => document.cookie") == ""
    page.reload()  # the session survives a reload of the tab...
    expect(page.get_by_role("navigation", name="Console sections")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Admin token or admin JWT")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0  # ...and sign-out ends it


def test_keyboard_only_sign_in_and_navigation(page: Page) -> None:
    page.goto("/ui/")
    expect(page.get_by_label("Admin token or admin JWT")).to_be_focused()
    page.keyboard.type(ADMIN_TOKEN)
    page.keyboard.press("Enter")
    nav = page.get_by_role("navigation", name="Console sections")
    expect(nav).to_be_visible()
    nav.get_by_role("link", name="Teams").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#/teams$"))
    expect(nav.get_by_role("link", name="Teams")).to_have_attribute("aria-current", "page")
    # Focus is visible: the focused element has an outline.
    nav.get_by_role("link", name="Providers").focus()
    assert page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle") != "none"


# ---------------------------------------------------------------- untrusted content


def test_a_logged_script_payload_renders_inert(page: Page, console_stack: Stack) -> None:
    secret, _ = create_key(console_stack.base_url, name=PAYLOAD[:60])  # markup in a key's name too
    MINTED.append(secret)
    response = chat(console_stack, secret, PAYLOAD)
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    sign_in(page)
    go(page, f"logs?request_id={request_id}", "logs")
    expect(page.locator("main tbody tr")).to_have_count(1, timeout=10_000)
    page.locator("main tbody tr").first.click()
    page.wait_for_selector("main[data-ready='log-detail']")
    transcript = page.get_by_role("region", name="Prompt and completion")
    expect(transcript).to_contain_text(PAYLOAD)  # shown, as text
    assert transcript.locator("script, img, a").count() == 0
    go(page, "keys")
    expect(page.locator("main")).to_contain_text("<script>")
    assert page.locator("main script, main img").count() == 0
    assert page.evaluate("() => window.__xss") is None


# ---------------------------------------------------------------- cache


def test_cache_hits_show_and_clear(page: Page, console_stack: Stack) -> None:
    text = f"cache me {time.time()}"
    first, second = (chat(console_stack, ADMIN_TOKEN, text, "cache-demo") for _ in range(2))
    assert first.status_code == second.status_code == 200
    sign_in(page)
    go(page, f"logs?request_id={second.headers['x-request-id']}", "logs")
    expect(page.locator("main tbody tr")).to_have_count(1, timeout=10_000)
    page.locator("main tbody tr").first.click()
    page.wait_for_selector("main[data-ready='log-detail']")
    expect(page.get_by_role("region", name="Outcome")).to_contain_text("exact hit")
    go(page, "cache", "cache")
    expect(page.locator("main .stats")).to_contain_text("Hit rate")
    page.get_by_role("button", name="Clear partition").click()
    page.get_by_role("dialog").get_by_role("button", name="Clear").click()
    expect(page.locator("main [role=status]").last).to_contain_text("entries removed")
    assert chat(console_stack, ADMIN_TOKEN, text, "cache-demo").status_code == 200  # a miss again


# ---------------------------------------------------------------- headers and secrets


def test_every_ui_answer_carries_the_security_headers(console_stack: Stack) -> None:
    paths = ["/ui/", "/ui", *(f"/ui/{name}" for name in load_assets()), "/ui/no-such-file.js"]
    with httpx.Client(base_url=console_stack.base_url, timeout=10) as http:
        for path in paths:
            response = http.get(path, follow_redirects=False)
            assert response.status_code in (200, 308, 404), path
            headers = response.headers
            csp = headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["referrer-policy"] == "no-referrer", path
            assert headers["x-frame-options"] == "DENY", path
        assert http.get("/ui/../pyproject.toml").status_code == 404
        index = http.get("/ui/")
        assert http.get("/ui/", headers={"if-none-match": index.headers["etag"]}).status_code == 304
        assert http.get("/api/config", headers=admin_headers()).headers["cache-control"] == "no-store"


def test_no_secret_in_any_page_asset_or_admin_answer(page: Page, console_stack: Stack) -> None:
    secrets = [*SECRETS, ADMIN_TOKEN, JWT_SECRET, SEEDED_KEY, *MINTED]
    secret, _ = create_key(console_stack.base_url, id="scanned", name="scanned")
    secrets.append(secret)
    assert chat(console_stack, secret, "hello").status_code == 200
    seen: list[str] = []
    with httpx.Client(base_url=console_stack.base_url, headers=admin_headers(), timeout=10) as http:
        for name in load_assets():
            seen.append(http.get(f"/ui/{name}").text)
        for path in ("config", "models", "keys", "teams", "logs", "usage/overview", "stats", "usage"):
            answer = http.get(f"/api/{path}")
            assert answer.status_code == 200, (path, answer.text)
            seen.append(answer.text)
    sign_in(page)
    for route, _ready in [*PAGES, ("keys/scanned", None)]:
        go(page, route)
        page.wait_for_timeout(300)
        seen.append(page.content())
    for text in seen:
        for value in secrets:
            assert value not in text


# ---------------------------------------------------------------- every page: labels, phone, screenshots


def test_every_page_labelled_readable_on_a_phone_and_screenshotted(
    browser: Browser, console_stack: Stack, artefacts: Path
) -> None:
    for secret_ in [create_key(console_stack.base_url, name="screenshots", team_id="seed-team")[0]]:
        MINTED.append(secret_)
        for deployment in ("chat", "chat", "priced", "weighted"):
            chat(console_stack, secret_, "Summarise the release notes", deployment)
    first_log = httpx.get(
        f"{console_stack.base_url}/api/logs", params={"page_size": 1}, headers=admin_headers()
    ).json()["entries"][0]["id"]
    for width in (1280, 390):
        viewport = {"width": width, "height": 900}
        context = browser.new_context(base_url=console_stack.base_url, viewport=viewport)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        sign_in(page)
        for route, ready in [*PAGES, (f"logs/{first_log}", "log-detail")]:
            go(page, route, ready)
            page.wait_for_timeout(250)  # charts draw after the data arrives
            assert page.evaluate(UNLABELLED_CONTROLS) == [], route
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{route} is {overflow}px wider than a {width}px screen"
            name = route.split("/")[0] + ("-detail" if "/" in route else "")
            screenshot(page, artefacts, name if width == 1280 else f"{name}-phone")
        page.goto("/ui/")
        context.close()
        assert not errors, errors
    signin = browser.new_page(base_url=console_stack.base_url, viewport={"width": 1280, "height": 800})
    signin.goto("/ui/")
    screenshot(signin, artefacts, "sign-in")
    signin.close()
