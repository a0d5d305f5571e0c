"""GET /docs over HTTP: the page and every file it loads come from the gateway, with their
types, under a Content-Security-Policy that allows nothing else; no key is needed, as for
/openapi.json. (tests/browser/test_docs_page.py renders it in Chromium.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from tests.gateway_server import RunningGateway

TYPES = {
    "/docs/assets/swagger-ui-bundle.js": "text/javascript",
    "/docs/assets/docs.js": "text/javascript",
    "/docs/assets/swagger-ui.css": "text/css",
    "/docs/assets/favicon-32x32.png": "image/png",
}


class References(HTMLParser):
    """Every URL an HTML page names in an attribute that loads or links something."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value for name, value in attrs if value is not None}
        self.urls += [found[a] for a in ("src", "href", "action", "srcset") if a in found]
        if tag == "script" and "src" not in found:
            self.inline_scripts += 1


def references(html: str) -> References:
    parser = References()
    parser.feed(html)
    return parser


async def test_the_page_loads_only_its_own_files(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        found = references(page.text)
        # Same-origin paths only: no scheme, no host, no protocol-relative //host.
        assert found.urls
        assert all(url.startswith("/") and not url.startswith("//") for url in found.urls)
        assert found.inline_scripts == 0
        for url in found.urls:
            answer = await client.get(url)
            assert answer.status_code == 200, url
        # The assets, and the noscript link to the document itself.
        assert set(found.urls) == {*TYPES, "/openapi.json"}


async def test_each_file_answers_with_its_type(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        for path, media_type in TYPES.items():
            answer = await client.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["content-type"].split(";")[0] == media_type, path
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert len(answer.content) > 0
        script = (await client.get("/docs/assets/docs.js")).text
    # Our script starts Swagger UI on our document and names no other host.
    assert 'url: "/openapi.json"' in script
    assert not re.search(r"\w+://", script)


async def test_the_policy_allows_no_other_host_and_no_inline_script(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        policy = (await client.get("/docs")).headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert "unsafe" not in policy
    assert not re.search(r"https?:", policy)


async def test_files_the_page_does_not_load_are_not_served(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        for name in ("swagger-editor-bundle.js", "LICENSE", "index.css", "..%2Fswagger-ui.css"):
            answer = await client.get(f"/docs/assets/{name}")
            assert answer.status_code == 404, name
            assert answer.headers["content-type"] == "application/problem+json"


async def test_docs_is_no_operation_of_the_api(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        document = (await client.get("/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/docs")]
