"""The dashboard in a real browser: Debian's Chromium (/usr/bin/chromium), driven by Playwright, against the
module's real server (`api` of tests/web/conftest.py).

Fixtures: `browser` (one headless Chromium per test session, a fresh --user-data-dir), `sign_in(secret) -> Page` (a
new browser context signed in with that token, on the overview), and `shot(page, name)` (a screenshot into
$CLAWNSOLE_SCREENSHOTS, default build/screenshots; `make screenshots` writes docs/screenshots).
Without Chromium the tests are skipped, except under CI, where .ci/run installs it and its absence fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.web.conftest import Api

CHROMIUM = os.environ.get("CLAWNSOLE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = Path(os.environ.get("CLAWNSOLE_SCREENSHOTS", "build/screenshots"))
# Playwright's waits (its actions, wait_for_*, and expect) time out after this many milliseconds: a
# deadline for a condition, generous because CI's two cores also run the server, the database and workers.
TIMEOUT_MS = 15_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """A launched (non-persistent) Chromium: new contexts of it are isolated sessions (cookies and all).
    For this package's tests only, not the whole session: Playwright's sync API keeps an event loop running
    in this thread while it is open, and later tests that call asyncio.run (the MCP client's) must not find
    one."""
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives each launch a fresh, temporary --user-data-dir of its own.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


SignIn = Callable[..., Any]


@pytest.fixture
def sign_in(api: Api, browser: Any) -> Iterator[SignIn]:
    """`sign_in(secret, width=1280) -> Page`: a fresh browser context (its own cookies) signed in with the
    token, on the overview page. Closed after the test."""
    contexts: list[Any] = []

    def make(secret: str, width: int = 1280, height: int = 860) -> Any:
        context = browser.new_context(base_url=api.url, viewport={"width": width, "height": height})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.goto("/sign-in")
        page.fill("input[name=token]", secret)
        page.click("button:has-text('Sign in')")
        page.wait_for_url(f"{api.url}/")
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def shot() -> Callable[[Any, str], Path]:
    """`shot(page, name)`: a full-page PNG of the page as it is now."""

    def take(page: Any, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
