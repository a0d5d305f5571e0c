"""What an Authentication adds to a request to a partner, and what its parts may hold.

    Basic   Authorization: Basic base64(username ":" password), in UTF-8 (RFC 7617)
    Header  <headerName>: <headerValue>, a name and value as gateway.headers takes them

The secret part (password, header value) is sealed as the request that sets it is read
(`seal`), and opened only here, as a request to a partner is made (`headers`): it is never
written to the store, a log or an answer in the clear.
"""

from __future__ import annotations

import base64
import unicodedata
from uuid import UUID

from gateway.models import Authentication, AuthenticationKind
from gateway.sealed import Sealer


def check_username(value: str) -> str:
    """A Basic username: no colon (it ends the username, RFC 7617), no control characters."""
    if ":" in value:
        raise ValueError("must not contain a colon")
    return check_printable(value)


def check_printable(value: str) -> str:
    """No control characters (CR, LF, NUL, ...), which no credential needs."""
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("must not contain control characters")
    return value


def bound(authentication_id: UUID) -> bytes:
    """What an authentication's sealed secret is bound to: it opens on its own row only."""
    return b"authentication:" + authentication_id.bytes


def seal(secret: str, authentication_id: UUID, sealer: Sealer) -> str:
    """An authentication's secret part, sealed for storing."""
    return sealer.seal(secret, bound(authentication_id))


def headers(auth: Authentication, sealer: Sealer) -> dict[str, str]:
    """The headers this authentication adds to a request (gateway.errors.Unsealable if its
    secret does not open with this gateway's key)."""
    secret = sealer.open(auth.sealed_secret, bound(auth.authentication_id))
    if auth.kind is AuthenticationKind.BASIC:
        pair = f"{auth.username}:{secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    assert auth.header_name is not None  # a Header authentication always has one
    return {auth.header_name: secret}
