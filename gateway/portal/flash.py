"""What a portal form's success shows once: POST/redirect/GET.

A form that changed something answers 303 to the page of what it changed (`done`), so a
reload of that page re-sends nothing. What the page shows once (the notice's words, a new
signing secret and when the old one stops signing, a test send's result) rides to that GET in
a short-lived cookie: sealed (AES-GCM, gateway.sealed, with the key derived from the gateway's
secret key), so a new secret never sits readable in the browser's cookie store; HttpOnly,
SameSite=Strict, path /portal, bound to the session that posted and the page it is for. The
page's GET shows it and clears it in its answer (`take`), so a reload shows it no more. It is
never logged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway import sealed
from gateway.api.common import context
from gateway.errors import Unsealable
from gateway.portal.tokens import PREFIX, Session

FLASH_COOKIE = "gateway_portal_flash"
FLASH_BOUND = b"portal-flash"  # what a flash is sealed for: it opens as nothing else
# Long enough for the redirect's GET, short enough that a stale one never turns up later.
LIFETIME = timedelta(minutes=2)
# Browsers keep cookies up to 4096 bytes; a test's answer is shortened until it fits.
MOST_BYTES = 3500


def _seal(request: Request, data: dict[str, Any]) -> str:
    sealer = sealed.sealer(context(request).settings.secret_key)
    return sealer.seal(orjson.dumps(data).decode(), FLASH_BOUND)


def _open(request: Request, value: str) -> Any:
    sealer = sealed.sealer(context(request).settings.secret_key)
    return orjson.loads(sealer.open(value, FLASH_BOUND))


def served_over_https(request: Request) -> bool:
    """Whether the portal is served over https (here, or at public_url behind a proxy)."""
    public = context(request).settings.public_url or ""
    return request.url.scheme == "https" or public.startswith("https:")


def done(
    request: Request, session: Session, path: str, notice: tuple[str, str], *,
    secret: dict[str, Any] | None = None, tested: dict[str, Any] | None = None, query: str = "",
) -> Response:  # fmt: skip
    """A 303 to the page at `path` (with `query`), which shows `notice` (kind, words) and the
    secret or test result once."""
    until = datetime.timestamp(context(request).clock() + LIFETIME)
    data: dict[str, Any] = {"p": path, "i": str(session.link_id), "x": int(until),
                            "n": list(notice)}  # fmt: skip
    if secret is not None:
        old = secret["old_until"]
        data["s"] = [secret["value"], secret["public_key"], old.timestamp() if old else None]
    value = _sealed(request, data, tested)
    response = RedirectResponse(f"{path}?{query}" if query else path, status_code=303)
    response.set_cookie(FLASH_COOKIE, value, max_age=int(LIFETIME.total_seconds()), path=PREFIX,
                        secure=served_over_https(request), httponly=True,
                        samesite="strict")  # fmt: skip
    return response


def _sealed(request: Request, data: dict[str, Any], tested: dict[str, Any] | None) -> str:
    """The cookie's value; a test's answer cut shorter until the cookie fits a browser."""
    if tested is None:
        return _seal(request, data)
    body = tested["body"]
    while True:
        value = _seal(request, {**data, "t": [tested["delivered"], body]})
        if len(value) <= MOST_BYTES or not body:
            return value
        body = body[: len(body) // 2]


def take(request: Request, session: Session | None) -> dict[str, Any] | None:
    """What the flash cookie shows on this page (notice, secret, tested), if it is for this
    page and session; {} for one to drop (forged, ended, or of another session); None when
    there is none, or it is for another page (left for that one, until it ends)."""
    value = request.cookies.get(FLASH_COOKIE)
    if not value or request.method != "GET":
        return None
    try:
        data = _open(request, value)
        if data["p"] != request.url.path:
            return None
        ended = context(request).clock().timestamp() >= data["x"]
        if ended or session is None or data["i"] != str(session.link_id):
            return {}
        return _shown(data)
    except (Unsealable, KeyError, TypeError, ValueError, IndexError):
        return {}


def _shown(data: dict[str, Any]) -> dict[str, Any]:
    kind, words = data["n"]
    shown: dict[str, Any] = {"notice": (str(kind), str(words))}
    if "s" in data:
        value, public_key, old = data["s"]
        old_until = datetime.fromtimestamp(old, UTC) if old is not None else None
        shown["secret"] = {"value": value, "public_key": public_key, "old_until": old_until}
    if "t" in data:
        delivered, body = data["t"]
        shown["tested"] = {"delivered": bool(delivered), "body": body}
    return shown


def clear(response: Response) -> None:
    """Drop the flash cookie: its page has shown it."""
    response.delete_cookie(FLASH_COOKIE, path=PREFIX, httponly=True, samesite="strict")
