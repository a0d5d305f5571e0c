"""Portal links and sessions over real HTTP, on both stores: POST /api/v1/PortalSessions and
`gateway portal-link`, the exchange of a link's token for a session cookie (once, and never in
a log), refusals of forged and expired links and cookies with a page saying what to do, CSRF,
and the security headers of every portal response."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.models import utcnow
from gateway.portal.web import CONTENT_SECURITY_POLICY, SESSION_COOKIE
from tests.factories import make_webhook
from tests.gateway_server import RunningGateway, gateway_settings, run_gateway
from tests.portal import Partner, token_of

PROBLEM = "application/problem+json"


@pytest.fixture
async def gateway(gateway_on_each_store: RunningGateway) -> RunningGateway:
    return gateway_on_each_store


def later(gateway: RunningGateway, seconds: float) -> None:
    """Move the gateway's clock forward."""
    moved = utcnow() + timedelta(seconds=seconds)
    gateway.ctx.clock = lambda: moved


def parsed(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_link_opens_a_session_of_its_group_without_the_token_in_any_url(
    gateway: RunningGateway,
) -> None:
    key, record = await gateway.add_key("acme")
    _, other = await gateway.add_key("other")
    mine = make_webhook(record.group_key, name="acme invoices")
    theirs = make_webhook(other.group_key, name="other invoices")
    await gateway.ctx.store.add_webhooks([mine, theirs])
    async with Partner(gateway) as partner:
        link = await partner.link(key)
        assert link["url"].startswith(f"{gateway.url}/portal/#token=")
        assert link["groupKey"] == str(record.group_key) and link["readOnly"] is False
        lasts = parsed(link["expiresAt"]) - utcnow()
        assert timedelta(minutes=59) < lasts <= timedelta(hours=1)
        assert parsed(link["linkExpiresAt"]) <= utcnow() + timedelta(minutes=15)
        answer = await partner.open(link["url"])
        assert answer.status_code == 303
        assert answer.headers["location"] == "/portal/webhooks"
        cookie = answer.headers["set-cookie"].lower()
        for attribute in ("httponly", "samesite=strict", "path=/portal", "max-age="):
            assert attribute in cookie
        page = await partner.page("/portal/webhooks")
    assert page.status_code == 200
    assert "acme invoices" in page.text and "other invoices" not in page.text
    assert token_of(link["url"]) not in page.text


async def test_the_body_is_optional_and_checked(gateway: RunningGateway) -> None:
    key, _ = await gateway.add_key("acme")
    async with gateway.client(key) as api:
        empty = await api.post("/api/v1/PortalSessions")
        assert empty.status_code == 200, empty.text
        short = await api.post(
            "/api/v1/PortalSessions", json={"expiresInSeconds": 60, "readOnly": True}
        )
        assert short.status_code == 200 and short.json()["readOnly"] is True
        lasts = parsed(short.json()["expiresAt"]) - utcnow()
        assert timedelta(seconds=50) < lasts <= timedelta(seconds=60)
        # A link never outlives its session.
        assert short.json()["linkExpiresAt"] == short.json()["expiresAt"]
        bodies: list[Any] = [
            {"expiresInSeconds": 59},
            {"expiresInSeconds": 86_401},
            {"expiresInSeconds": "soon"},
            {"expiresInSeconds": 600.5},
            {"readOnly": "yes"},
            {"expires": 60},
            [],
        ]
        for bad in bodies:
            answer = await api.post("/api/v1/PortalSessions", json=bad)
            assert answer.status_code == 400, (bad, answer.text)
            assert answer.headers["content-type"] == PROBLEM
        malformed = await api.post("/api/v1/PortalSessions", content=b"{")
        assert malformed.status_code == 400
    events_key, _ = await gateway.add_key("acme", frozenset({cli.Scope.EVENTS}))
    async with gateway.client(events_key) as api:
        assert (await api.post("/api/v1/PortalSessions")).status_code == 403
    async with gateway.client() as api:
        assert (await api.post("/api/v1/PortalSessions")).status_code == 401


async def test_the_command_prints_a_link_the_gateway_opens(gateway: RunningGateway) -> None:
    _, record = await gateway.add_key("acme")
    await gateway.ctx.store.add_webhooks([make_webhook(record.group_key, name="by the cli")])
    settings = gateway.ctx.settings
    argv = ["portal-link", "--group", "acme", "--read-only", "--expires-in", "600",
            "--database", settings.database_url, "--secret-key", settings.secret_key or "",
            "--public-url", gateway.url]  # fmt: skip
    printed = await asyncio.to_thread(run_cli, argv)
    assert printed["readOnly"] is True and printed["groupKey"] == str(record.group_key)
    async with Partner(gateway) as partner:
        assert (await partner.open(printed["url"])).status_code == 303
        page = await partner.page("/portal/webhooks")
    assert "by the cli" in page.text and 'id="read-only-badge"' in page.text


def run_cli(argv: list[str]) -> dict[str, Any]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    found: dict[str, Any] = json.loads(out.getvalue())
    return found


def test_the_command_refuses_a_session_length_out_of_bounds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["portal-link", "--group", "acme", "--expires-in", "59", "--database", "memory://",
            "--secret-key", "k"]  # fmt: skip
    assert cli.main(argv) == 2
    assert "between 60 and 86400" in capsys.readouterr().err


async def test_a_link_opens_one_session_only(gateway: RunningGateway) -> None:
    key, _ = await gateway.add_key("acme")
    async with Partner(gateway) as first, Partner(gateway) as second:
        url = (await first.link(key))["url"]
        assert (await first.open(url)).status_code == 303
        again = await second.open(url)
        assert again.status_code == 401
        assert "already been used" in again.text and "new portal link" in again.text
        assert "max-age=0" in again.headers.get("set-cookie", "max-age=0").lower()  # no session
        assert (await second.page("/portal/webhooks")).status_code == 401
        assert (await first.page("/portal/webhooks")).status_code == 200


@pytest.mark.parametrize("change", ["forged", "truncated", "empty"])
async def test_a_forged_link_gets_a_page_saying_what_to_do(
    gateway: RunningGateway, change: str
) -> None:
    key, _ = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        token = token_of((await partner.link(key))["url"])
        bad = {"forged": token[:-3] + ("aaa" if token[-3:] != "aaa" else "bbb"),
               "truncated": token[:20], "empty": ""}[change]  # fmt: skip
        answer = await partner.http.post("/portal/session", data={"token": bad})
        assert answer.status_code == 401
        assert answer.headers["content-type"].startswith("text/html")
        assert "not valid" in answer.text and "ask whoever gave you the link" in answer.text.lower()
        assert "max-age=0" in answer.headers.get("set-cookie", "max-age=0").lower()
        # The genuine token still works: the forged one was refused for what it was.
        assert (
            await partner.http.post("/portal/session", data={"token": token})
        ).status_code == 303


async def test_an_expired_link_and_an_ended_session_are_refused(gateway: RunningGateway) -> None:
    key, _ = await gateway.add_key("acme")
    async with Partner(gateway) as late, Partner(gateway) as partner:
        stale = (await late.link(key))["url"]
        await partner.enter(key, expiresInSeconds=1200)
        later(gateway, 16 * 60)
        answer = await late.open(stale)
        assert answer.status_code == 401 and "has expired" in answer.text
        assert (await partner.page("/portal/webhooks")).status_code == 200  # 20 minutes
        later(gateway, 21 * 60)
        ended = await partner.page("/portal/webhooks")
        assert ended.status_code == 401 and "has ended" in ended.text
        assert "new portal link" in ended.text
        assert "max-age=0" in ended.headers["set-cookie"].lower()  # the cookie is dropped


async def test_a_forged_or_missing_cookie_is_refused(gateway: RunningGateway) -> None:
    key, _ = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        nothing = await partner.page("/portal/webhooks")
        assert nothing.status_code == 401 and "no portal session" in nothing.text
        await partner.enter(key)
        sealed = partner.http.cookies[SESSION_COOKIE]
        partner.http.cookies.set(SESSION_COOKIE, sealed[:-2] + "xx", path="/portal")
        forged = await partner.page("/portal/webhooks")
        assert forged.status_code == 401 and "not valid" in forged.text


async def test_a_link_token_is_no_session_cookie(gateway: RunningGateway) -> None:
    """The salts keep one signed thing from passing as another."""
    key, _ = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        token = token_of((await partner.link(key))["url"])
        partner.http.cookies.set(SESSION_COOKIE, token, path="/portal")
        assert (await partner.page("/portal/webhooks")).status_code == 401


async def test_the_entry_page_offers_an_open_session(gateway: RunningGateway) -> None:
    key, _ = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        fresh = await partner.http.get("/portal/")
        assert fresh.status_code == 200 and 'id="portal-enter"' in fresh.text
        assert '<script src="/portal/static/portal.js"' in fresh.text
        await partner.enter(key)
        # The entry page is served with a session too: the URL may carry a new link, which
        # only the page's script sees; without one, the script goes on to the webhooks.
        again = await partner.http.get("/portal/")
        assert again.status_code == 200 and 'data-home="/portal/webhooks"' in again.text
        assert 'id="portal-continue-link"' in again.text


async def test_the_token_never_reaches_the_access_log(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn's access log writes each request line; the token is in none of them."""
    key, _ = await gateway.add_key("acme")
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    async with Partner(gateway) as partner:
        url = (await partner.link(key))["url"]
        assert (await partner.open(url)).status_code == 303
        await partner.page("/portal/webhooks")
    access = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert any("/portal/session" in line for line in access), access  # the log was on
    everything = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert token_of(url) not in everything


async def test_sign_out_needs_the_csrf_token(gateway: RunningGateway) -> None:
    key, _ = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        await partner.enter(key)
        for wrong in ("", "not-the-token"):
            refused = await partner.submit("/portal/sign-out", csrf=wrong)
            assert refused.status_code == 403 and "nothing was changed" in refused.text
            assert (await partner.page("/portal/webhooks")).status_code == 200
        other_site = await partner.http.post(
            "/portal/sign-out",
            data={"csrf_token": partner.csrf},
            headers={"origin": "https://evil.example"},
        )
        assert other_site.status_code == 403
        out = await partner.submit("/portal/sign-out")
        assert out.status_code == 200 and 'id="signed-out"' in out.text
        assert (await partner.page("/portal/webhooks")).status_code == 401


async def test_every_portal_response_carries_the_security_headers(
    gateway: RunningGateway,
) -> None:
    key, _ = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        answers = [await partner.http.get("/portal/"),
                   await partner.page("/portal/webhooks"),  # refused: no session
                   await partner.http.get("/portal/static/portal.css"),
                   await partner.http.get("/portal/static/portal.js"),
                   await partner.http.get("/portal/no-such-page"),
                   await partner.http.delete("/portal/webhooks"),
                   await partner.http.post("/portal/session", data={"token": "x"})]  # fmt: skip
        await partner.enter(key)
        answers += [
            await partner.page("/portal/webhooks"),
            await partner.submit("/portal/sign-out"),
        ]
    assert [a.status_code for a in answers[4:6]] == [404, 405]
    for answer in answers:
        where = f"{answer.request.method} {answer.request.url.path} {answer.status_code}"
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, where
        assert answer.headers["x-content-type-options"] == "nosniff", where
        assert answer.headers["referrer-policy"] == "no-referrer", where
    policy = CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    for answer in answers:  # no inline script or style for the policy to block
        assert "<script>" not in answer.text and "style=" not in answer.text


async def test_the_exchange_takes_what_browsers_send_from_our_page_only(
    gateway: RunningGateway,
) -> None:
    """Chromium posts our entry form with `Origin: null` (Referrer-Policy no-referrer) and
    `Sec-Fetch-Site: same-origin`: accepted. A form posted from another site is refused, so
    another site cannot sign a visitor into a session of its own group."""
    key, _ = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        for sent_by in ({"sec-fetch-site": "cross-site", "origin": "https://evil.example"},
                        {"sec-fetch-site": "same-site"},
                        {"origin": "https://evil.example"}):  # fmt: skip
            token = token_of((await partner.link(key))["url"])
            refused = await partner.http.post(
                "/portal/session", data={"token": token}, headers=sent_by
            )
            assert refused.status_code == 403, sent_by
            assert "another site" in refused.text
        token = token_of((await partner.link(key))["url"])
        ours = {"origin": "null", "sec-fetch-site": "same-origin"}
        opened = await partner.http.post("/portal/session", data={"token": token}, headers=ours)
        assert opened.status_code == 303
        await partner.page("/portal/webhooks")
        sign_out = await partner.http.post(
            "/portal/sign-out",
            data={"csrf_token": partner.csrf},
            headers={"sec-fetch-site": "cross-site"},
        )
        assert sign_out.status_code == 403
        assert (await partner.page("/portal/webhooks")).status_code == 200


async def test_behind_an_https_public_url_links_use_it_and_the_cookie_is_secure(
    tmp_path: Path,
) -> None:
    settings = gateway_settings(tmp_path, public_url="https://hooks.example")
    async with run_gateway(settings) as gateway:
        key, _ = await gateway.add_key("acme")
        async with Partner(gateway) as partner:
            link = await partner.link(key)
            assert link["url"].startswith("https://hooks.example/portal/#token=")
            opened = await partner.open(link["url"])
    assert opened.status_code == 303
    assert "secure" in opened.headers["set-cookie"].lower()
