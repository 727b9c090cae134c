"""Playwright driving Debian's Chromium against pytest-django's live server.

Browser tests are marked ``browser``. Without /usr/bin/chromium they skip, unless
``BATON_REQUIRE_BROWSER=1`` (CI sets it), in which case they fail: CI must never pass by
not running them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
SCREENSHOTS = OUTPUT / "screenshots"
PASSWORD = "correct horse battery staple"  # tests.factories.UserFactory's


def _require_browser() -> None:
    if CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK):
        return
    reason = f"{CHROMIUM} is missing: apt-get install -y chromium"
    if os.environ.get("BATON_REQUIRE_BROWSER") == "1":
        pytest.fail(f"BATON_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per module; each test gets its own context (profile).

    ``launch`` always starts Chromium on a fresh temporary user-data-dir and removes it on
    close, so no state leaks between runs.

    Playwright's sync API keeps an asyncio loop running in this thread while it is started,
    so Django's guard would refuse the ORM calls the tests make around it (fixtures,
    database checks); they are ordinary blocking calls, hence DJANGO_ALLOW_ASYNC_UNSAFE,
    set only while the browser runs so that other test modules keep the guard.
    """
    _require_browser()
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def new_page(chromium: Any, settings: Any, live_server: Any) -> Iterator[Callable[..., Any]]:
    """Make pages, each in its own browser context (``new_page(viewport=..., ...)``)."""
    # The live server speaks plain http; secure-only cookies would never come back.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        context = chromium.new_context(
            **{"viewport": {"width": 1280, "height": 860}, "locale": "en-US", **options}
        )
        contexts.append(context)
        # Generous: the live server shares a busy 2-core machine with the browser and the
        # tests. A wait that runs out means the page never got there, not that it was slow.
        context.set_default_timeout(30_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.js_errors = errors
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    """A desktop-sized page; ``page.js_errors`` collects uncaught script errors."""
    return new_page()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-output/screenshots/ and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^a-z0-9_-]+', '_', name.lower())}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Any, base_url: str, username: str) -> None:
    """Log in through the log-in page, typing into its fields and pressing Enter."""
    page.goto(f"{base_url}/accounts/login/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    with page.expect_navigation():
        page.locator("#id_password").press("Enter")
    assert "/accounts/login" not in page.url, "login failed: " + page.locator("body").inner_text()
