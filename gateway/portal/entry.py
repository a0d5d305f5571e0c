"""Entering and leaving the portal: the page a link opens, the exchange of the link's token for
a session cookie, and signing out.

The link is `/portal/#token=...`. The fragment never leaves the browser, so the GET of the
entry page carries no token and no access log can show one; the page's script (static/
portal.js) puts the token in a form, removes it from the address bar and POSTs it to
/portal/session, which answers with the session cookie and a redirect to the webhooks page.
Signing out ends the session in the store too (gateway.portal.revocation), so a copy of its
cookie opens nothing.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.api.common import context
from gateway.portal import revocation
from gateway.portal.flash import served_over_https
from gateway.portal.tokens import PortalRefused, Session
from gateway.portal.web import (
    PREFIX,
    SESSION_COOKIE,
    changing_form,
    keys,
    page,
    portal_page,
    portal_session,
    read_form,
    same_origin,
)

log = logging.getLogger(__name__)
HOME = f"{PREFIX}/webhooks"


@page
async def enter(request: Request) -> Response:
    """The page a portal link opens: the form our script sends the link's token with. It is
    served even to a browser with a session (the server cannot see whether the URL carries a
    new link, which may be for another group or not read-only); without a token in the URL,
    the script goes on to the webhooks page of the session there is."""
    try:
        has_session = bool(portal_session(request))
    except PortalRefused:
        has_session = False
    return portal_page(
        request, "enter.html", title="Opening your portal", has_session=has_session, home=HOME
    )


@page
async def exchange(request: Request) -> Response:
    """Exchange a link's token (form field `token`) for a session cookie, once per link."""
    ctx = context(request)
    form = await read_form(request)
    if not same_origin(request):
        raise PortalRefused(403, "This portal link was sent from another site.",
                            "Open the link you were given directly in your browser.")  # fmt: skip
    now = ctx.clock()
    grant = keys(request).redeem(form.get("token"), now)
    # The nonce lives in the handshake codes' table, prefixed: the same single use, pruned
    # by the same housekeeping once the link has expired. Taken first: a link used, then
    # signed out, says it was used.
    if not await ctx.store.take_handshake_nonce(f"portal:{grant.nonce}", grant.link_expires):
        raise PortalRefused(401, "This portal link has already been used.",
                            "A link opens one session. Ask for a new portal link.")  # fmt: skip
    if await revocation.revoked(ctx.store, grant):
        raise PortalRefused(401, "This portal link was revoked.",
                            "Ask for a new portal link.")  # fmt: skip
    session = keys(request).open_session(grant, now)
    log.info("portal session opened", extra={
        "link_id": str(session.link_id), "group_key": str(session.group_key),
        "read_only": session.read_only, "expires_at": session.expires_at.isoformat(),
    })  # fmt: skip
    response = RedirectResponse(HOME, status_code=303)
    set_session_cookie(request, response, session)
    return response


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    """The session's signed cookie: HttpOnly, SameSite=Strict, only under /portal, Secure
    when the portal is served over https (here, or at public_url in front of a proxy), gone
    when the session ends."""
    remaining = int((session.expires_at - context(request).clock()).total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        keys(request).seal(session),
        max_age=max(remaining, 0),
        path=PREFIX,
        secure=served_over_https(request),
        httponly=True,
        samesite="strict",
    )


@page
async def sign_out(request: Request) -> Response:
    """End this browser's session, here and wherever its cookie is replayed (any session may,
    read-only ones too)."""
    session, _ = await changing_form(request, writes=False)
    await revocation.sign_out(context(request).store, session)
    log.info("portal session signed out", extra={
        "link_id": str(session.link_id), "group_key": str(session.group_key)})  # fmt: skip
    response = portal_page(request, "signed_out.html", title="Signed out")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response
