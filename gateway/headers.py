"""The headers a webhook's owner adds to its requests (`headers`), and the names the gateway
keeps for itself.

An owner's headers go on every request to the callback: handshakes, test sends and
notifications (`owner_headers`). A name is an HTTP token (RFC 9110 tchar) that is not RESERVED
and does not start with a RESERVED_PREFIXES prefix; a value is visible ASCII with inner spaces,
so no CR, LF or other control character can reach the request. Names compare in any case.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gateway.models import Header, Webhook

# RFC 9110 §5.6.2: token = 1*tchar.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")  # no space at either end
TOKEN_PATTERN = f"^{TOKEN.pattern}$"
VALUE_PATTERN = f"^({VALUE.pattern})?$"

# Names the gateway (or its HTTP client) sets on a request itself, lower-case: what a request
# is and how it travels, who sends it and how its answer comes (gateway.outbound's session),
# how it is signed (webhook-* below, and an HMAC scheme's signatureHeader, checked with the
# webhook's scheme), and Idempotency-Key. A signatureHeader may be none of these either.
# Authorization is refused for now: reusable authentications will set it, and then refuse it
# only where one is set (the one place to change is here).
RESERVED = frozenset({
    "host", "content-length", "content-type", "transfer-encoding", "connection",
    "keep-alive", "te", "trailer", "upgrade", "expect", "proxy-connection",
    "user-agent", "accept-encoding",
    "idempotency-key", "authorization",
})  # fmt: skip
RESERVED_PREFIXES = ("webhook-",)  # Standard Webhooks' webhook-id, -timestamp, -signature


def _any_case(word: str) -> str:
    """A regular expression of `word` in any letter case (the names here hold letters and
    hyphens only, which need no escape outside a character class)."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


# For the schema: the names RESERVED and RESERVED_PREFIXES refuse (as `not` of a name's schema).
RESERVED_PATTERN = "^(({}))$".format(
    "|".join([*map(_any_case, sorted(RESERVED)), *(_any_case(p) + ".*" for p in RESERVED_PREFIXES)])
)


def check_name(name: str) -> str:
    """A header name an owner may set, or ValueError saying why not."""
    if not TOKEN.fullmatch(name):
        raise ValueError("must be an HTTP token: letters, digits and !#$%&'*+-.^_`|~")
    lowered = name.lower()
    if lowered in RESERVED or lowered.startswith(RESERVED_PREFIXES):
        raise ValueError(f"{name} is set by the gateway and cannot be given")
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


def owner_headers(hook: Webhook) -> dict[str, str]:
    """The headers the webhook's owner set, for a request to its callback."""
    return {header.name: header.value for header in hook.headers}


def beside(hook: Webhook, own: dict[str, str]) -> dict[str, str]:
    """The owner's headers and the gateway's `own`, which win over one of the same name in
    any case (validation refuses those, but a PATCH of the headers racing one of
    signatureHeader could still store one)."""
    taken = {name.lower() for name in own}
    kept = {h.name: h.value for h in hook.headers if h.name.lower() not in taken}
    return {**kept, **own}
