"""Dashboard benchmark (issue 20): time from navigation to the restaurant page with data, and the static assets.

    .venv/bin/python bench/dashboard.py                          # an API started here, 20 loads of each kind
    .venv/bin/python bench/dashboard.py --url http://127.0.0.1:8000 --tenant demo-rest-0001 --loads 20

Needs the stack (`make run`) and Debian's Chromium (/usr/bin/chromium, `make browser`); Playwright drives it.

**Server.** `--url own` (default) starts the metrics API as the stack starts it (uvicorn, `--workers 2`, the working
tree's code) on a free port; `--url auto` uses the stack's API on api_port when it serves this page's current
scripts, else starts one; or give a URL.

**A load** opens /app/restaurant for one restaurant (a tenant session cookie minted here, so no sign-in form) and
waits until every widget has read its data (`#restaurant[data-loaded=true]`: /v1/live with its seeds, the top
items, the 24 h series of orders and sales, the alert history). The figure is the page's own
`data-loaded-after-ms`: performance.now() when the last read was drawn, counted from navigation start (the
wall-clock time from `goto` to the selector is printed beside it). Two kinds, --loads of each:
- `cold`: a new browser context per load (no HTTP cache, no connection kept): a first visit;
- `warm`: one context, a new page per load: static files revalidated (ETag → 304), as a returning viewer.
Loads are --pause apart (1.2 s by default), longer than the API's answer cache (1 s), so every load reads the
engines. p50/p90 by nearest rank.

**Static assets**: every /static/ file the page fetched on a cold load, with its size as sent (the API does not
compress them) and gzip -9's size (what a compressing proxy would send).
"""

from __future__ import annotations

import argparse
import gzip
import math
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from bench.servers import api_server
from lakepulse.api.web.pages import STATIC_DIR, VENDOR_DIR
from lakepulse.api.web.session import SESSION_COOKIE
from lakepulse.auth.tokens import mint_token
from lakepulse.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TIMEZONE = "Europe/Berlin"
LOAD_TIMEOUT_MS = 60_000


@contextmanager
def own_api(workers: int) -> Iterator[str]:
    """The metrics API as the stack runs it (uvicorn --factory, `workers` processes) on a free port; its URL."""
    with api_server("dashboard-api", "lakepulse.api.app:create_app", workers, {}, Path(tempfile.gettempdir())) as url:
        yield url


def serves_this_page(url: str, token: str) -> bool:
    """Whether the API at `url` serves the page as this working tree has it (its template and scripts)."""
    try:
        page = httpx.get(f"{url}/app/restaurant", cookies={SESSION_COOKIE: token}, timeout=5)
        script = httpx.get(f"{url}/static/lib/live.js", timeout=5)
    except httpx.TransportError:
        return False
    return page.status_code == 200 and 'id="w-alerts"' in page.text and script.status_code == 200


@contextmanager
def api_url(choice: str, settings: Settings, token: str, workers: int) -> Iterator[str]:
    stack = f"http://{settings.bind_host}:{settings.api_port}"
    if choice == "auto" and serves_this_page(stack, token):
        yield stack
    elif choice in ("own", "auto"):
        with own_api(workers) as url:
            yield url
    else:
        if not serves_this_page(choice, token):
            raise SystemExit(f"{choice} does not serve this working tree's restaurant page")
        yield choice


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def new_context(browser: Browser, url: str, token: str) -> BrowserContext:
    context = browser.new_context(locale="en-US", timezone_id=TIMEZONE, viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": url, "httpOnly": True,
                          "sameSite": "Strict"}])
    return context


def load(context: BrowserContext, url: str, assets: dict[str, int] | None = None) -> dict[str, Any]:
    """Open the restaurant page once; navigation → data (the page's figure and the wall clock), and what it showed."""
    page: Page = context.new_page()
    if assets is not None:
        def on_response(response: Any) -> None:
            path = httpx.URL(response.url).path
            if path.startswith("/static/") and response.status == 200:
                assets[path] = len(response.body())
        page.on("response", on_response)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    started = time.perf_counter()
    page.goto(f"{url}/app/restaurant?tz={TIMEZONE}&currency=EUR", wait_until="commit")
    page.wait_for_selector("#restaurant[data-loaded='true']", timeout=LOAD_TIMEOUT_MS)
    wall_ms = (time.perf_counter() - started) * 1000
    root = page.locator("#restaurant")
    result = {
        "page_ms": float(root.get_attribute("data-loaded-after-ms") or "nan"),
        "wall_ms": wall_ms,
        "sales": page.locator("#w-sales [data-field=value]").inner_text(),
        "status": page.locator("#status").inner_text(),
        "errors": errors,
    }
    page.close()
    return result


def summarise(kind: str, results: list[dict[str, Any]]) -> None:
    page = [r["page_ms"] for r in results]
    wall = [r["wall_ms"] for r in results]
    print(f"{kind:5} n={len(results):2}  navigation → data: p50 {nearest_rank(page, 0.5):6.0f} ms  "
          f"p90 {nearest_rank(page, 0.9):6.0f} ms  min {min(page):5.0f}  max {max(page):5.0f}  "
          f"mean {statistics.fmean(page):5.0f}   (wall clock goto → data: p50 {nearest_rank(wall, 0.5):.0f} ms, "
          f"p90 {nearest_rank(wall, 0.9):.0f} ms)")


def print_assets(assets: dict[str, int]) -> None:
    total = total_gz = 0
    print("\nstatic assets of one cold load (as sent; gzip -9 for reference):")
    for path in sorted(assets):
        relative = path.removeprefix("/static/")
        vendor = relative.startswith("vendor/")
        file = VENDOR_DIR / relative.removeprefix("vendor/") if vendor else STATIC_DIR / relative
        packed = len(gzip.compress(file.read_bytes(), 9)) if file.is_file() else 0
        total += assets[path]
        total_gz += packed
        print(f"  {path:42} {assets[path]:8,d} B  {packed:7,d} B gz")
    print(f"  {'total: ' + str(len(assets)) + ' files':42} {total:8,d} B  {total_gz:7,d} B gz")
    ours = [p for p in assets if not p.startswith("/static/vendor/")]
    print(f"  of which ours (ES modules, CSS; no build step): {sum(assets[p] for p in ours):,d} B in {len(ours)} "
          f"files; uPlot: {sum(assets[p] for p in assets if p not in ours):,d} B")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="own", help="own | auto | an API base URL")
    parser.add_argument("--tenant", default="demo-rest-0001", help="the restaurant whose page is opened")
    parser.add_argument("--loads", type=int, default=20, help="loads of each kind (cold, warm)")
    parser.add_argument("--pause", type=float, default=1.2, help="seconds between loads (> the answer cache's 1 s)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of an API started here")
    args = parser.parse_args()

    settings = get_settings()
    token = mint_token(settings, tenant=args.tenant, ttl=timedelta(hours=1), subject="bench-dashboard")
    with api_url(args.url, settings, token, args.workers) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        print(f"restaurant page of {args.tenant} at {url} ({args.loads} loads of each kind, {args.pause} s apart)")
        assets: dict[str, int] = {}
        # One load first (not counted): the API's engine connections and caches of final totals warm up.
        with_context = new_context(browser, url, token)
        first = load(with_context, url, assets)
        with_context.close()
        print(f"first load (not counted): {first['page_ms']:.0f} ms; sales today shown: {first['sales']}; "
              f"{first['status']}")
        cold: list[dict[str, Any]] = []
        for _ in range(args.loads):
            time.sleep(args.pause)
            context = new_context(browser, url, token)
            cold.append(load(context, url))
            context.close()
        warm: list[dict[str, Any]] = []
        context = new_context(browser, url, token)
        for _ in range(args.loads):
            time.sleep(args.pause)
            warm.append(load(context, url))
        context.close()
        browser.close()
    failures = [r for r in [first, *cold, *warm] if r["errors"] or "failed" in r["status"]]
    summarise("cold", cold)
    summarise("warm", warm)
    if failures:
        print(f"{len(failures)} loads had errors: {failures[0]['errors'] or failures[0]['status']}")
    print_assets(assets)


if __name__ == "__main__":
    main()
