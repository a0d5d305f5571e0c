"""What every portal page shares: rendering (`portal_page`), the session (`portal_session`),
reading a state-changing form (`changing_form`: CSRF token, origin, read-only), the security
headers every portal response carries, and the page that says what to do when the portal
refuses something.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.common import context
from gateway.errors import GatewayError, PayloadTooLarge
from gateway.portal import flash, revocation
from gateway.portal.tokens import PREFIX as PREFIX  # the portal pages import it from here
from gateway.portal.tokens import PortalKeys, PortalRefused, Session

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
# Every value escaped, whatever a template's name; a missing variable is an error, not "".
TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)
SESSION_COOKIE = "gateway_portal"
CSRF_FIELD = "csrf_token"
# No inline script or style, nothing from another host, no framing, forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),  # pages show secrets once, and a group's data
]

PortalEndpoint = Callable[[Request], Awaitable[Response]]


class SecurityHeaders:
    """ASGI middleware: every response under the portal carries SECURITY_HEADERS (replacing
    any of the same name), whichever route or error produced it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        names = {name for name, _ in SECURITY_HEADERS}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def keys(request: Request) -> PortalKeys:
    """The signer of portal links and sessions, with the gateway's secret key."""
    return PortalKeys(context(request).settings.secret_key or "")


def portal_session(request: Request) -> Session:
    """The request's portal session; PortalRefused (401, a page saying to ask for a new link)
    if it has none, or one that is forged or has ended."""
    found: Session | None = getattr(request.state, "portal_session", None)
    if found is not None:
        return found
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        advice = "Open the portal link you were given, or ask for a new one."
        raise PortalRefused(401, "You have no portal session in this browser.", advice)
    session = keys(request).unseal(cookie, context(request).clock())
    if getattr(request.state, "portal_revoked", False):
        raise PortalRefused(401, "Your portal session has ended: it was signed out or revoked.",
                            "Ask for a new portal link.")  # fmt: skip
    request.state.portal_session = session
    return session


async def _check_revocation(request: Request) -> None:
    """Take the request's session if it was neither signed out nor revoked (gateway.portal.
    revocation), else mark it ended, so that `portal_session` refuses it; a missing, forged or
    expired one is left for `portal_session` to refuse, as pages that need no session (the
    entry page) never ask."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return
    try:
        session = keys(request).unseal(cookie, context(request).clock())
    except PortalRefused:
        return
    if await revocation.revoked(context(request).store, session):
        request.state.portal_revoked = True
    else:
        request.state.portal_session = session


def portal_page(request: Request, template: str, *, status: int = 200, **ctx: Any) -> Response:
    """A page of the portal: `template` rendered in the base layout, given `ctx` and the
    session (if any), its CSRF field name and token, and whether it is read-only; a page's
    GET also shows (and clears) what the form that redirected to it left to show once."""
    session = getattr(request.state, "portal_session", None)
    once = flash.take(request, session) if status == 200 else None
    shared = {
        "session": session,
        "read_only": session.read_only if session else True,
        "csrf_field": CSRF_FIELD,
        "csrf_token": session.csrf if session else "",
        "prefix": PREFIX,
    }
    response: Response = TEMPLATES.TemplateResponse(
        request, template, {**shared, **ctx, **(once or {})}, status_code=status
    )
    if once is not None:
        flash.clear(response)
    return response


@dataclass(frozen=True)
class Form:
    """A submitted form's fields (the last value of each name; `all` for repeated names)."""

    pairs: list[tuple[str, str]]

    def get(self, name: str, default: str = "") -> str:
        """The field's value, stripped (`default` if absent)."""
        values = self.all(name)
        return values[-1].strip() if values else default

    def all(self, name: str) -> list[str]:
        """Every value given for this name, in order."""
        return [v for k, v in self.pairs if k == name]

    def has(self, name: str) -> bool:
        """Whether the field was sent at all (an unticked checkbox is not)."""
        return any(k == name for k, _ in self.pairs)


async def read_form(request: Request) -> Form:
    """The URL-encoded body of a form POST, within the gateway's body limit."""
    limit = context(request).settings.max_body_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the form is larger than {limit} bytes")
    if request.headers.get("content-type", "").split(";")[0].strip() not in (
        "application/x-www-form-urlencoded",
        "",
    ):
        raise PortalRefused(400, "The portal only takes its own forms.",
                            "Use the forms on the portal's pages.")  # fmt: skip
    return Form(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def same_origin(request: Request) -> bool:
    """Whether the browser says the request comes from one of our pages. Sec-Fetch-Site is
    asked first: with Referrer-Policy no-referrer, Chromium sends `Origin: null` on our own
    form POSTs, so Origin decides only where Sec-Fetch-Site is absent (older browsers), and
    neither given (not a browser) is left to the CSRF token."""
    fetched_from = request.headers.get("sec-fetch-site")
    if fetched_from is not None:
        return fetched_from == "same-origin"
    claimed = request.headers.get("origin")
    if claimed is None:
        return True
    theirs = urlsplit(claimed)
    ours = [str(request.base_url), context(request).settings.public_url or ""]
    return any((theirs.scheme, theirs.netloc) == urlsplit(o)[:2] for o in ours if o)


def _not_from_session() -> PortalRefused:
    return PortalRefused(
        403, "This form was not sent from your portal session, so nothing was changed.",
        "Go back, reload the page and send the form again.",
    )  # fmt: skip


async def changing_form(request: Request, *, writes: bool = True) -> tuple[Session, Form]:
    """The session and form of a state-changing POST, refused (403, nothing changed) if the
    form lacks the session's CSRF token, another site sent it, or (if it `writes` the
    group's data) the session is read-only."""
    session = portal_session(request)
    form = await read_form(request)
    given = form.get(CSRF_FIELD)
    if not same_origin(request) or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise _not_from_session()
    if writes and session.read_only:
        raise PortalRefused(403, "This is a read-only portal session: it cannot change anything.",
                            "Ask for a portal link that is not read-only.")  # fmt: skip
    return session, form


def refused_page(request: Request, exc: GatewayError) -> Response:
    """The page for a refusal: what happened, and what to do about it."""
    advice = getattr(exc, "advice", "") or "Go back and try again."
    status = exc.status if 400 <= exc.status < 600 else 500
    response = portal_page(request, "refused.html", status=status, title=exc.title,
                           detail=exc.detail, advice=advice)  # fmt: skip
    if exc.status == 401:
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


def page(handler: PortalEndpoint) -> PortalEndpoint:
    """A portal endpoint whose refusals and errors become a page instead of problem+json."""

    async def guarded(request: Request) -> Response:
        try:
            await _check_revocation(request)
            return await handler(request)
        except GatewayError as exc:
            return refused_page(request, exc)
        except Exception:  # a bug: logged, and a page without internals
            log.exception("portal page failed", extra={"path": request.url.path})
            failed = GatewayError("Something went wrong on our side; nothing was shown.")
            return refused_page(request, failed)

    guarded.__doc__ = handler.__doc__
    guarded.__name__ = handler.__name__
    return guarded
