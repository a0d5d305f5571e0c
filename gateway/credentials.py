"""What an Authentication adds to a request to a partner, and what its parts may hold.

    Basic   Authorization: Basic base64(username ":" password), in UTF-8 (RFC 7617)
    Header  <headerName>: <headerValue>, the name an HTTP token the gateway does not set itself

The secret part (password, header value) is sealed as the request that sets it is read
(`seal`), and opened only here, as a request to a partner is made (`headers`): it is never
written to the store, a log or an answer in the clear.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from uuid import UUID

from gateway.models import Authentication, AuthenticationKind
from gateway.sealed import Sealer

# An HTTP token (RFC 9110 §5.6.2): what a header name may be.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A header value that passes every HTTP stack unchanged: visible ASCII and inner spaces.
_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")
# Headers the gateway sets itself, or that belong to the connection, lower-case: an
# authentication does not replace them. (Authorization is allowed: "Bearer <token>" is what a
# Header authentication is most often for.)
RESERVED = frozenset({
    "host", "content-length", "content-type", "transfer-encoding", "connection", "keep-alive",
    "te", "trailer", "upgrade", "accept-encoding", "idempotency-key", "x-webhook-signature",
})  # fmt: skip
RESERVED_PREFIXES = ("webhook-",)  # Standard Webhooks: webhook-id, -timestamp, -signature


def check_header_name(name: str) -> str:
    """A Header authentication's header name, or ValueError saying why it cannot be one."""
    if not _TOKEN.fullmatch(name):
        raise ValueError("must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")
    lowered = name.lower()
    if lowered in RESERVED or lowered.startswith(RESERVED_PREFIXES):
        raise ValueError(f"{name} is set by the gateway itself")
    return name


def check_header_value(value: str) -> str:
    """A header value: visible ASCII with inner spaces only (no CR, LF or other control
    characters, which would end or split the header), or ValueError."""
    if not _VALUE.fullmatch(value):
        raise ValueError("must be visible ASCII characters, with spaces only between them")
    return value


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
