"""The headers a webhook's owner adds to its requests (`headers`), and the names the gateway
keeps for itself.

An owner's headers go on every request to the callback: handshakes, test sends and
notifications (`owner_headers`). A name is an HTTP token (RFC 9110 tchar) that is not RESERVED
and does not start with a RESERVED_PREFIXES prefix; a value is visible ASCII with inner spaces,
so no CR, LF or other control character can reach the request. Names compare in any case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from gateway.models import Header, Webhook

# RFC 9110 §5.6.2: token = 1*tchar.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")  # no space at either end
TOKEN_PATTERN = f"^{TOKEN.pattern}$"
VALUE_PATTERN = f"^({VALUE.pattern})?$"

# Names the gateway (or its HTTP client) sets on a request itself, lower-case: what a request
# is and how it travels, who sends it and how its answer comes (gateway.outbound's session),
# how it is signed (webhook-* below, and an HMAC scheme's signatureHeader, checked with the
# webhook's scheme), and Idempotency-Key. No header the owner names may be one of these: an
# owner's header, a signatureHeader, an Authentication's headerName.
RESERVED = frozenset({
    "host", "content-length", "content-type", "transfer-encoding", "connection",
    "keep-alive", "te", "trailer", "upgrade", "expect", "proxy-connection",
    "user-agent", "accept-encoding",
    "idempotency-key",
})  # fmt: skip
RESERVED_PREFIXES = ("webhook-",)  # Standard Webhooks' webhook-id, -timestamp, -signature
# What an Authentication sets (Basic, or a Header one's usual name): an owner's header may be
# it only while the webhook has no authentication (`check_authorization`), a signatureHeader
# never.
AUTHORIZATION = "authorization"


def _any_case(word: str) -> str:
    """A regular expression of `word` in any letter case (the names here hold letters and
    hyphens only, which need no escape outside a character class)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


def name_schema(*also: str) -> dict[str, Any]:
    """For the schema: an HTTP token, none of the names `check_name` refuses (in any case)."""
    names = [*map(_any_case, sorted({*RESERVED, *also})),
             *(_any_case(prefix) + ".*" for prefix in RESERVED_PREFIXES)]  # fmt: skip
    return {"pattern": TOKEN_PATTERN, "not": {"pattern": "^(({}))$".format("|".join(names))}}


def check_name(name: str, *also: str) -> str:
    """A header name the owner may give (and none of `also`, lower-case), or ValueError
    saying why not."""
    if not TOKEN.fullmatch(name):
        raise ValueError("must be an HTTP token: letters, digits and !#$%&'*+-.^_`|~")
    lowered = name.lower()
    if lowered in RESERVED or lowered in also or lowered.startswith(RESERVED_PREFIXES):
        raise ValueError(f"{name} is set by the gateway itself and cannot be given")
    return name


def check_value(value: str) -> str:
    """A header value an owner may set, or ValueError saying why not."""
    if value and not VALUE.fullmatch(value):
        raise ValueError(
            "must be visible ASCII characters and inner spaces (no control characters such "
            "as CR or LF, no space at either end)"
        )
    return value


def check_distinct(headers: Iterable[Header]) -> None:
    """Refuse a name given twice (in any case)."""
    seen: set[str] = set()
    for header in headers:
        if header.name.lower() in seen:
            raise ValueError(f"{header.name} is given twice (names compare in any case)")
        seen.add(header.name.lower())


def check_apart_from(given: Iterable[Header], signature_header: str | None) -> None:
    """Refuse a header named as the one an HMAC scheme signs in (`signatureHeader`)."""
    taken = signature_header.lower() if signature_header else None
    for header in given:
        if header.name.lower() == taken:
            raise ValueError(f"{header.name} is the signature header (signatureHeader)")


def check_authorization(given: Iterable[Header], authentication_id: UUID | None) -> None:
    """Refuse an Authorization header beside an authentication, which sets it."""
    if authentication_id is None:
        return
    for header in given:
        if header.name.lower() == AUTHORIZATION:
            raise ValueError(
                f"{header.name} is set by the webhook's authentication (authenticationId)"
            )


def owner_headers(hook: Webhook) -> dict[str, str]:
    """The headers the webhook's owner set, for a request to its callback."""
    return {header.name: header.value for header in hook.headers}


def beside(given: Mapping[str, str], own: Mapping[str, str]) -> dict[str, str]:
    """`given` headers (an owner's, an authentication's) with `own`, which win over one of the
    same name in any case: validation keeps names apart, but a PATCH racing another could
    still store two alike, and a webhook's signatureHeader may be chosen after its
    authentication's header."""
    taken = {name.lower() for name in own}
    return {**{k: v for k, v in given.items() if k.lower() not in taken}, **own}
