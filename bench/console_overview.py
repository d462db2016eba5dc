"""How fast the console's overview is over a big request log (issue 12: 100,000 entries, < 1 s).

Seeds a store with ``--entries`` log entries spread over the last 30 days (a daily rhythm, a few
keys, teams and models, ~3 % errors), then measures, for each range (1 h, 24 h, 7 d, 30 d):

- ``store``: ``Store.usage_overview`` alone, in-process (SQLite, and PostgreSQL with ``--postgres``);
- ``api``: ``GET /api/usage/overview`` against a real ``switchyard serve`` on that store;
- ``browser``: the overview page in headless Chromium, from choosing the range to the charts drawn
  (the page's own ``data-render-ms``: the API call plus the DOM and charts), and a cold load of
  ``/ui/`` (sign-in done) to the overview drawn.

Not a test: it prints the figures (median of ``--runs``). ``--screenshots DIR`` also saves every
page drawn over the seeded store (what ``docs/screenshots`` holds).

    python -m bench.console_overview [--entries 100000] [--runs 5] [--postgres URL] [--screenshots DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from service.auth import hash_secret, key_prefix, new_virtual_key
from service.records import LogEntry, Team, VirtualKey
from service.store import Store, open_store
from switchyard.config import BudgetConfig, RateLimitConfig
from tests.browser.console import GO, console_config, launch_args
from tests.e2e.governed import ADMIN_TOKEN, GOVERNED_ENV, admin_headers
from tests.fakes.upstream import FakeUpstream
from tests.support import start_stack

RANGES = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
TEAMS = [("search", "Search", 400.0), ("support", "Support bots", 250.0), ("research", "Research", 900.0)]
KEYS = [
    ("search-indexer", "Search indexer", "search", 120.0),
    ("search-ranker", "Search ranker", "search", 80.0),
    ("support-bot", "Support bot", "support", 150.0),
    ("support-triage", "Ticket triage", "support", None),
    ("research-agent", "Research agent", "research", 600.0),
    ("batch-jobs", "Nightly batch", None, 200.0),
    ("docs-helper", "Docs helper", None, None),
]
# (deployment requested, provider, model served, USD per 1k tokens, weight)
MODELS = [
    ("gpt-4o", "azure", "gpt-4o-eastus", 0.006, 5),
    ("gpt-4o", "openai", "gpt-4o", 0.006, 1),
    ("gpt-4o-mini", "openai", "gpt-4o-mini", 0.0004, 6),
    ("claude", "anthropic", "claude-sonnet-4-5", 0.009, 3),
    ("embed-chat", "azure", "gpt-4.1-mini", 0.0008, 2),
]
ERRORS = [(429, "rate_limit_exceeded"), (502, "upstream_error"), (504, "timeout"), (402, "budget_exceeded")]


async def seed(store: Store, entries: int, now: float) -> None:
    rng = random.Random(12)
    await store.open()
    for team_id, name, budget in TEAMS:
        await store.upsert_team(Team(team_id, name, BudgetConfig(budget, "1mo"), now - 40 * 86400, now))
    for key_id, name, team, budget in KEYS:
        secret = new_virtual_key()
        await store.insert_key(
            VirtualKey(
                id=key_id,
                name=name,
                key_hash=hash_secret(secret),
                key_prefix=key_prefix(secret),
                team_id=team,
                budget=BudgetConfig(budget, "1mo") if budget else None,
                rate_limit=RateLimitConfig(requests_per_minute=600),
                created_at=now - 40 * 86400,
                updated_at=now,
            )
        )
    weights = [m[4] for m in MODELS]
    batch: list[LogEntry] = []
    for _ in range(entries):
        # Busier in working hours and lately: a curve worth looking at.
        age = rng.betavariate(1.1, 1.6) * 30 * 86400
        ts = now - age
        hour = time.gmtime(ts).tm_hour
        if 0 <= hour < 6 and rng.random() < 0.6:
            ts -= 8 * 3600
        key_id, _, team, _ = rng.choice(KEYS)
        deployment, provider, served, per_k, _ = rng.choices(MODELS, weights)[0]
        prompt, completion = rng.randint(50, 1500), rng.randint(10, 600)
        status, error = 200, None
        if rng.random() < 0.03 + (0.05 if provider == "anthropic" and age < 2 * 86400 else 0):
            status, error = rng.choice(ERRORS)
        ok = status < 400
        batch.append(
            LogEntry(
                id=uuid.uuid4().hex,
                ts=ts,
                request_type=rng.choice(["chat_completion", "chat_completion_stream"]),
                model_requested=deployment,
                status=status,
                latency_ms=rng.randint(200, 4000),
                key_id=key_id,
                team_id=team,
                provider=provider if status != 402 else "",
                model_served=served if ok else "",
                error_type=error,
                prompt_tokens=prompt if ok else 0,
                completion_tokens=completion if ok else 0,
                total_tokens=prompt + completion if ok else 0,
                cost=(prompt + completion) / 1000 * per_k if ok else None,
                request_id=uuid.uuid4().hex,
            )
        )
        if len(batch) == 2000:
            await store.insert_logs(batch)
            batch = []
    await store.insert_logs(batch)


async def time_store(store: Store, now: float, runs: int) -> dict[str, float]:
    figures = {}
    for name, span in RANGES.items():
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            await store.usage_overview(start=now - span, end=now, bucket_s=max(60, span // 60), top=8)
            samples.append((time.perf_counter() - started) * 1000)
        figures[name] = statistics.median(samples)
    return figures


def time_api(base_url: str, runs: int) -> dict[str, float]:
    figures = {}
    with httpx.Client(base_url=base_url, headers=admin_headers(), timeout=30) as http:
        for name, span in RANGES.items():
            samples = []
            for _ in range(runs):
                end = time.time()
                started = time.perf_counter()
                answer = http.get(
                    "/api/usage/overview", params={"start_time": end - span, "end_time": end, "top": 8}
                )
                answer.raise_for_status()
                samples.append((time.perf_counter() - started) * 1000)
            figures[name] = statistics.median(samples)
    return figures


def time_browser(base_url: str, runs: int, screenshots: Path | None) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, float] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=launch_args()
        )
        page = browser.new_page(base_url=base_url, viewport={"width": 1280, "height": 900})
        page.goto("/ui/")
        page.get_by_label("Admin token or admin JWT").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("main[data-ready='overview']")

        current = ["24h"]  # the page's default range

        def choose(range_name: str) -> float:
            current[0] = range_name
            page.evaluate("() => { delete document.querySelector('main').dataset.ready }")
            page.locator(f"label[for$='-{range_name}']").first.click()
            page.wait_for_selector("main[data-ready='overview']")
            return float(page.evaluate("() => document.querySelector('main').dataset.renderMs"))

        for name in RANGES:
            samples = []
            for _ in range(runs):
                if current[0] == name:  # choosing the range already shown changes nothing
                    choose(next(r for r in RANGES if r != name))
                samples.append(choose(name))
            figures[name] = statistics.median(samples)
        cold = []
        for _ in range(runs):
            started = time.perf_counter()
            page.goto("/ui/#/overview")
            page.reload()
            page.wait_for_selector("main[data-ready='overview']")
            cold.append((time.perf_counter() - started) * 1000)
        figures["cold load, 24h"] = statistics.median(cold)
        report("browser: range chosen -> charts drawn (data-render-ms)", figures)
        if screenshots is not None:
            shoot(page, screenshots)
        browser.close()
    return figures


def shoot(page: object, folder: Path) -> None:
    """Every page over the seeded store, at a laptop's width and the overview on a phone."""
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    folder.mkdir(parents=True, exist_ok=True)
    first = httpx.get(
        f"{page.url.split('/ui')[0]}/api/logs",
        params={"errors_only": "true", "page_size": 1},
        headers=admin_headers(),
    ).json()["entries"][0]["id"]
    shots = [
        ("overview", "overview?range=7d", "overview"),
        ("keys", "keys", None),
        ("key-detail", "keys/search-indexer", None),
        ("teams", "teams", None),
        ("logs", "logs", "logs"),
        ("log-detail", f"logs/{first}", "log-detail"),
        ("providers", "providers", "providers"),
    ]
    for name, route, ready in shots:
        page.evaluate(GO, f"#/{route}")
        page.wait_for_selector(f"main[data-ready='{ready}']" if ready else "main h1")
        page.wait_for_timeout(400)
        if name == "overview":
            page.locator("label[for$='-7d']").first.click()
            page.wait_for_timeout(600)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=name not in ("logs",))
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate(GO, "#/overview")
    page.wait_for_timeout(800)
    page.screenshot(path=str(folder / "overview-phone.png"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgres", default="", help="a postgresql:// URL of an empty database to time too")
    parser.add_argument("--screenshots", type=Path, default=None)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sy-console-bench-"))
    now = time.time()
    try:
        db = workdir / "switchyard.db"
        report(
            "store, SQLite", asyncio.run(_seeded_and_timed(f"sqlite:///{db}", args.entries, now, args.runs))
        )
        if args.postgres:
            report(
                "store, PostgreSQL",
                asyncio.run(_seeded_and_timed(args.postgres, args.entries, now, args.runs)),
            )
        with FakeUpstream() as upstream:
            config = console_config(upstream.url, workdir)
            config["store"] = {"url": f"sqlite:///{db}"}
            config["logging"] = {"level": "warning"}
            stack = start_stack("inprocess", config, workdir, GOVERNED_ENV)
            try:
                report("GET /api/usage/overview", time_api(stack.base_url, args.runs))
                time_browser(stack.base_url, args.runs, args.screenshots)  # reports its own figures
            finally:
                stack.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def _seeded_and_timed(url: str, entries: int, now: float, runs: int) -> dict[str, float]:
    store = open_store(url)
    started = time.perf_counter()
    await seed(store, entries, now)  # opens it
    print(f"seeded {entries:,} entries into {store!r} in {time.perf_counter() - started:.1f} s")
    try:
        return await time_store(store, now, runs)
    finally:
        await store.aclose()


def report(what: str, figures: dict[str, float]) -> None:
    print(f"{what}: " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in figures.items()))


if __name__ == "__main__":
    main()
