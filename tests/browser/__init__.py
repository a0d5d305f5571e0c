"""Tests in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

The fixtures are in conftest.py. Tests here are synchronous (Playwright's sync API); the gateway
and the receiver serve from their own event loop in a thread, so they answer while a test
blocks on the browser. A journey looks like this:

    def test_partner_creates_a_webhook(
        browser_page: BrowserPage, live_gateway: ThreadedGateway, live_receiver: Receiver
    ) -> None:
        key, record = live_gateway.call(live_gateway.gateway.add_key("acme"))
        page = browser_page.page
        page.goto(live_gateway.url + "/...")
        page.get_by_label("Callback URL").fill(live_receiver.url + "/hook")
        ...
        assert browser_page.off_origin(live_gateway.url) == []
        assert browser_page.errors == []

Its last page is kept in test-artifacts/screenshots/<module>.<test>.png, passed or failed.
"""
