"""Portal links and sessions: what the gateway signs, and what it accepts back.

A link's token (salt `portal-link`) names one group, whether the session it opens is read-only,
when that session ends (a fixed time: `expiresAt` of the link's answer), until when the link
may be opened (LINK_LIFETIME, or the session's end if sooner), when it was issued, and a nonce
that the store takes when it is opened, so a link opens one session only. The session cookie
(salt `portal-session`) holds the group, read-only, its expiry, when its link was issued and
the session's CSRF token; gateway.portal.revocation ends one before its time. Both are
signed with the gateway's secret key, so every process sharing it accepts them; each salt keeps
one kind of token from passing as another, or as a handshake code. Expiry is checked against
the gateway's clock here, not by itsdangerous, so tests can move time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from itsdangerous import BadData, URLSafeSerializer

from gateway.errors import GatewayError

# A token's issue time, in whole microseconds since this instant (one from before issue times
# were kept reads as this instant: issued before any revocation).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

PREFIX = "/portal"  # every portal page, and the path of its cookies
ENTRY_PATH = f"{PREFIX}/"
LINK_SALT = "portal-link"
SESSION_SALT = "portal-session"
# How long a link may wait to be opened, at most: it travels through mail and chat.
LINK_LIFETIME = timedelta(minutes=15)
# A session's length in seconds: the default, and the bounds POST /PortalSessions accepts.
DEFAULT_SESSION_SECONDS = 3600
MIN_SESSION_SECONDS = 60
MAX_SESSION_SECONDS = 86_400


class PortalRefused(GatewayError):
    """A link or session the portal does not accept, or a request it refuses; the page says
    what to do. `status` is set per instance."""

    title = "The portal cannot open this"

    def __init__(self, status: int, detail: str, advice: str) -> None:
        super().__init__(detail)
        self.status = status
        self.advice = advice


def _ask_again(what: str) -> PortalRefused:
    return PortalRefused(
        401, what, "Ask whoever gave you the link (your account manager or the operator) "
        "for a new portal link.",
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Grant:
    """What a link grants: a session over one group until `session_expires`."""

    link_id: UUID  # recorded as the modifier of what the session changes
    group_key: UUID
    read_only: bool
    session_expires: datetime
    link_expires: datetime
    nonce: str
    issued_at: datetime


@dataclass(frozen=True, slots=True)
class Session:
    """An open portal session, as its cookie holds it."""

    link_id: UUID
    group_key: UUID
    read_only: bool
    expires_at: datetime
    csrf: str  # the token every state-changing form must carry
    issued_at: datetime  # its link's


class PortalKeys:
    """Signs and opens portal links and session cookies with the gateway's secret key."""

    def __init__(self, secret_key: str) -> None:
        self._links = URLSafeSerializer(secret_key, salt=LINK_SALT)
        self._sessions = URLSafeSerializer(secret_key, salt=SESSION_SALT)

    def issue(
        self, group_key: UUID, *, read_only: bool, session_seconds: int, now: datetime
    ) -> tuple[str, Grant]:
        """A new link's token and what it grants: a session ending `session_seconds` from
        now, opened within LINK_LIFETIME or before that end, whichever comes first."""
        issued_at = _exact(now)
        now = now.replace(microsecond=0)  # its ends are whole seconds
        session_expires = now + timedelta(seconds=session_seconds)
        link_expires = min(now + LINK_LIFETIME, session_expires)
        grant = Grant(uuid4(), group_key, read_only, session_expires, link_expires,
                      secrets.token_urlsafe(16), issued_at)  # fmt: skip
        data = {"i": str(grant.link_id), "g": str(group_key), "r": read_only,
                "s": int(session_expires.timestamp()), "x": int(link_expires.timestamp()),
                "n": grant.nonce, "t": _micros(issued_at)}  # fmt: skip
        return self._links.dumps(data), grant

    def redeem(self, token: str, now: datetime) -> Grant:
        """What a link's token grants (PortalRefused if forged or expired; the caller takes
        its nonce)."""
        data = _loaded(self._links, token, "This portal link is not valid.")
        try:
            grant = Grant(UUID(data["i"]), UUID(data["g"]), bool(data["r"]),
                          _instant(data["s"]), _instant(data["x"]), str(data["n"]),
                          _issued(data))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise _ask_again("This portal link is not valid.") from exc
        if now >= grant.link_expires:
            raise _ask_again("This portal link has expired: a link opens a session only "
                             "within a few minutes of being made.")  # fmt: skip
        return grant

    def open_session(self, grant: Grant, now: datetime) -> Session:
        """The session a redeemed link opens, with a fresh CSRF token."""
        csrf = secrets.token_urlsafe(24)
        return Session(grant.link_id, grant.group_key, grant.read_only, grant.session_expires,
                       csrf, grant.issued_at)  # fmt: skip

    def seal(self, session: Session) -> str:
        """The session's cookie value."""
        return self._sessions.dumps({
            "i": str(session.link_id), "g": str(session.group_key), "r": session.read_only,
            "x": int(session.expires_at.timestamp()), "c": session.csrf,
            "t": _micros(session.issued_at),
        })  # fmt: skip

    def unseal(self, value: str, now: datetime) -> Session:
        """The session a cookie holds (PortalRefused if forged or expired)."""
        data = _loaded(self._sessions, value, "Your portal session is not valid.")
        try:
            session = Session(UUID(data["i"]), UUID(data["g"]), bool(data["r"]),
                              _instant(data["x"]), str(data["c"]), _issued(data))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise _ask_again("Your portal session is not valid.") from exc
        if now >= session.expires_at:
            raise _ask_again("Your portal session has ended.")
        return session


def _loaded(serializer: URLSafeSerializer, value: str, refusal: str) -> dict[str, Any]:
    try:
        data = serializer.loads(value)
    except BadData as exc:
        raise _ask_again(refusal) from exc
    if not isinstance(data, dict):
        raise _ask_again(refusal)
    return data


def _instant(epoch: Any) -> datetime:
    return datetime.fromtimestamp(int(epoch), UTC)


def _exact(now: datetime) -> datetime:
    """`now` as a token holds it: in UTC, to the microsecond."""
    return EPOCH + MICROSECOND * _micros(now)


def _micros(instant: datetime) -> int:
    return (instant - EPOCH) // MICROSECOND


def _issued(data: dict[str, Any]) -> datetime:
    """When a token was issued; EPOCH for one made before issue times were kept."""
    return EPOCH + MICROSECOND * int(data.get("t", 0))


def portal_link(
    secret_key: str,
    base_url: str,
    group_key: UUID,
    *,
    read_only: bool,
    session_seconds: int,
    now: datetime,
) -> tuple[str, Grant]:
    """A new portal link for one group and what it grants (POST /PortalSessions, `gateway
    portal-link`). The token rides in the URL's fragment, which browsers never send: it
    reaches the gateway only in the body of the entry page's POST, so no access log, proxy
    or Referer sees it."""
    token, grant = PortalKeys(secret_key).issue(
        group_key, read_only=read_only, session_seconds=session_seconds, now=now
    )
    return f"{base_url.rstrip('/')}{ENTRY_PATH}#token={token}", grant
