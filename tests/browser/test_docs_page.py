"""GET /docs in Chromium: Swagger UI renders the gateway's own OpenAPI document, loading every
file from the gateway and nothing from any other host."""

from __future__ import annotations

from tests.browser.conftest import BrowserPage, named
from tests.gateway_server import ThreadedGateway


def test_docs_renders_the_operations_from_the_gateway_alone(
    browser_page: BrowserPage, live_gateway: ThreadedGateway
) -> None:
    page = browser_page.page
    # By name: Swagger UI's online validator, which would send the document's address to
    # validator.swagger.io, leaves loopback addresses alone.
    origin = named(live_gateway.url)
    page.goto(origin + "/docs")
    page.locator(".opblock").first.wait_for()

    paths = page.locator(".opblock-summary-path").all_inner_texts()
    for expected in ("/api/v1/Webhooks", "/api/v1/WebhookRules", "/api/v1/Events"):
        assert expected in paths
    # The title comes from the document itself, so the page read /openapi.json.
    assert "Webhook gateway" in page.locator(".info .title").inner_text()
    # Opening an operation renders its examples (the highlighted code is styled inline).
    page.locator(".opblock-summary").first.click()
    page.locator(".opblock-body .highlight-code").first.wait_for()

    assert f"{origin}/openapi.json" in browser_page.requests
    assert browser_page.off_origin(origin) == []
    # A Content-Security-Policy violation is reported as a console error.
    assert browser_page.errors == []
