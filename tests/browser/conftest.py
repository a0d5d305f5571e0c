"""Fixtures for browser tests: one headless Chromium per module, a fresh page per test that
records every request it makes, and a gateway (with a receiver) serving on loopback.

`browser_page.page` is a Playwright sync Page; after each test, whether it passed or not, the
page as it was last is saved to test-artifacts/screenshots/<module>.<test>.png. Without a usable
Chromium the tests skip, saying why; under CI (CI=true) they fail instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

from tests.gateway_server import ThreadedGateway, gateway_settings, run_gateway_in_thread
from tests.receiver import Receiver, run_receiver

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# A name for the gateway, as a deployment has: scripts that leave loopback addresses alone (Swagger
# UI's online validator does) behave there as they would for real. Every other name fails to
# resolve, so a page's request for another host never leaves this machine (and is recorded);
# 127.0.0.1 itself is reached as usual (a secure context, as Secure cookies need).
GATEWAY_HOST = "gateway.test"
HOST_RULES = f"MAP {GATEWAY_HOST} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
# Playwright's waits (a selector, a navigation) give up after this many milliseconds.
WAIT_MS = 15_000


def _unavailable(reason: str) -> NoReturn:
    """Skip the browser tests, or fail them under CI, which requires them."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires the browser tests", pytrace=False)
    pytest.skip(f"{reason}; browser tests skipped (CI=true makes them required)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, launched once per module (never downloaded: Debian's package).

    Module scope, not session: the sync API's event loop lives in this thread while the
    browser is open, and the asyncio tests of other modules need the thread without it."""
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        try:
            # Without the sandbox (Chromium's --no-sandbox, which is also Playwright's
            # default): as root, as scripts/test runs on CI, Chromium refuses to start with it,
            # since its sandbox confines renderers by dropping to an unprivileged user in new
            # namespaces, which it will not set up from root ("Running as root without
            # --no-sandbox is not supported"); many containers also deny those namespaces to
            # other users. The browser opens only our own gateway's pages, on loopback.
            launched = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                chromium_sandbox=False,
                args=[f"--host-resolver-rules={HOST_RULES}"],
            )
        except Error as exc:
            _unavailable(f"Chromium at {CHROMIUM} did not start ({_why(exc.message)})")
        try:
            yield launched
        finally:
            launched.close()


def _why(message: str) -> str:
    """Playwright's first line and Chromium's own errors from a failed launch's long log."""
    lines = message.splitlines()
    errors = [line.rsplit("] ", 1)[-1] for line in lines if ":ERROR:" in line]
    return "; ".join(lines[:1] + errors)


@dataclass
class BrowserPage:
    """A test's page and what it did: every URL it requested (in order), and the console's
    errors and uncaught exceptions (a Content-Security-Policy violation is one)."""

    page: Page
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def off_origin(self, origin: str) -> list[str]:
        """The requests that went anywhere but `origin` (scheme://host:port)."""
        return [url for url in self.requests if _origin(url) != origin]


def named(url: str) -> str:
    """A loopback URL of the gateway's (http://127.0.0.1:port/...) under its name."""
    return url.replace("://127.0.0.1:", f"://{GATEWAY_HOST}:", 1)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def screenshot_path(nodeid: str) -> Path:
    """Where a test's last page is kept: its module and name, parameters included."""
    module, _, name = nodeid.partition("::")
    stem = f"{Path(module).stem}.{name}"
    return SCREENSHOTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") + ".png")


@pytest.fixture
def browser_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserPage]:
    """A page in a fresh browser context (no cookies from other tests), recording requests
    and errors; its last state is saved as a screenshot when the test ends."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    opened = BrowserPage(page)
    # On the context: pages the test's page opens (popups, new tabs) are recorded too.
    context.on("request", lambda sent: opened.requests.append(sent.url))
    page.on("console", lambda message: _console(opened, message))
    page.on("pageerror", lambda exc: opened.errors.append(f"uncaught: {exc}"))
    try:
        yield opened
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=screenshot_path(request.node.nodeid), full_page=True)
        except Error:
            pass  # the page crashed or was closed: there is no last page to keep
        context.close()


def _console(opened: BrowserPage, message: ConsoleMessage) -> None:
    if message.type == "error":
        opened.errors.append(message.text)


@pytest.fixture
def live_gateway(tmp_path: Path) -> Iterator[ThreadedGateway]:
    """A gateway on a SQLite file, serving on loopback from its own thread (the browser test
    blocks this one); `live_gateway.call(...)` runs a coroutine on its loop."""
    with run_gateway_in_thread(gateway_settings(tmp_path)) as threaded:
        yield threaded


@pytest.fixture
def live_receiver(live_gateway: ThreadedGateway) -> Iterator[Receiver]:
    """A recording partner endpoint on loopback, serving from the gateway's loop so that
    handshakes and deliveries reach it while the test drives the browser."""
    receiving = run_receiver()
    receiver = live_gateway.call(receiving.__aenter__())
    try:
        yield receiver
    finally:
        live_gateway.call(receiving.__aexit__(None, None, None))
