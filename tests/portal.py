"""A partner in the portal over real HTTP, for tests: opens a portal link as the entry page's
script does (the token from the URL's fragment POSTed to /portal/session), keeps the session
cookie, and sends the portal's forms with the page's CSRF token."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.gateway_server import RunningGateway

SIGN_OUT = "/portal/sign-out"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def token_of(url: str) -> str:
    """The token a portal link carries in its fragment."""
    fragment = urlsplit(url).fragment
    assert fragment.startswith("token="), url
    return fragment.removeprefix("token=")


class Partner:
    """One browser's portal session on a gateway."""

    def __init__(self, gateway: RunningGateway) -> None:
        self.gateway = gateway
        self.http = httpx.AsyncClient(base_url=gateway.url, timeout=10.0)
        self.csrf = ""

    async def __aenter__(self) -> Partner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def link(self, key: str, **body: Any) -> dict[str, Any]:
        """A portal link from POST /api/v1/PortalSessions with this API key."""
        async with self.gateway.client(key) as api:
            answer = await api.post("/api/v1/PortalSessions", json=body or None)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found

    async def open(self, url: str) -> httpx.Response:
        """Open a portal link as a browser with our script does; the exchange's answer."""
        entry = await self.http.get(urlsplit(url).path)  # the fragment stays in the browser
        assert entry.status_code in (200, 303), entry.text
        return await self.http.post("/portal/session", data={"token": token_of(url)})

    async def enter(self, key: str, **body: Any) -> None:
        """Get a link with this key, open it, and read the session's CSRF token."""
        answer = await self.open((await self.link(key, **body))["url"])
        assert answer.status_code == 303, answer.text
        await self.page("/portal/webhooks")

    async def page(self, path: str) -> httpx.Response:
        """GET a portal page, remembering the CSRF token its forms carry."""
        answer = await self.http.get(path)
        if found := CSRF.search(answer.text):
            self.csrf = found.group(1)
        return answer

    async def submit(
        self,
        path: str,
        data: dict[str, Any] | None = None,
        *,
        csrf: str | None = None,
        follow: bool = True,
    ) -> httpx.Response:
        """POST a portal form with the session's CSRF token (or the one given: "" for none).
        As a browser, it follows the redirect a form that succeeded answers with (POST/
        redirect/GET), and returns the page it leads to; `follow=False` returns the POST's own
        answer. A form answered 200 without a redirect fails the test: reloading that page
        would send the form again (signing out alone answers with its page: no session is
        left to redirect to)."""
        fields = dict(data or {})
        token = self.csrf if csrf is None else csrf
        if token:
            fields["csrf_token"] = token
        answer = await self.http.post(path, data=fields, follow_redirects=follow)
        if follow and answer.status_code == 200 and path != SIGN_OUT:
            assert [r.status_code for r in answer.history] == [303], (path, answer.text)
        return answer
