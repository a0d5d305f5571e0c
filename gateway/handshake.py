"""The verification handshake (contract §4): prove the partner controls the callback URL.

The gateway calls the callback with the webhook's own HTTP method, its owner's headers and a
`code` query parameter (no signature and no Idempotency-Key: it is no notification, and each
code is new); the callback passes only by answering 2xx, in time, with exactly that code as
plain text.
Codes are itsdangerous-signed, time-limited and single-use, and name the webhook they were
issued for, so an echo can be neither forged, replayed later, nor borrowed from another webhook.
Single use holds across processes: the nonce of an accepted code is taken in the store, which
every `serve` sharing the database asks.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit
from uuid import UUID

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from gateway import metrics
from gateway.errors import (
    AddressNotAllowed,
    HandshakeFailed,
    OutboundConnectionError,
    OutboundError,
    OutboundTimeout,
)
from gateway.store import Store
from gateway.transport import Transport

log = logging.getLogger(__name__)

SALT = "webhook-handshake"
# Seconds a used nonce is kept beyond its code's life, so that a process whose clock runs ahead
# cannot prune it while one whose clock lags would still accept the code.
CLOCK_MARGIN = 60
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Told with a refusal that the operator's allow-list could lift (a loopback or private address):
# the first thing someone trying the gateway on one machine runs into.
ALLOW_HINT = (
    "the gateway's operator can allow its network (local development only) with "
    "GATEWAY_ALLOWED_CALLBACK_NETWORKS, or allowed_callback_networks in the config file "
    "(GATEWAY_CONFIG, by default config/gateway.toml)"
)


class _ClockedSigner(TimestampSigner):
    """A timestamp signer reading an injectable clock, so tests can expire codes instantly."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock

    def get_timestamp(self) -> int:
        """Whole seconds from the injected clock, as itsdangerous expects."""
        return int(self.clock())


class HandshakeCodes:
    """Issues handshake codes and accepts each one once, for its webhook, before it expires;
    used nonces are kept in `store`, so that a code accepted by one process is refused by all."""

    def __init__(
        self,
        secret_key: str,
        store: Store,
        *,
        max_age: float = 600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_age = max_age
        self.store = store
        self._clock = clock
        self._serializer = URLSafeTimedSerializer(
            secret_key, salt=SALT, signer=_ClockedSigner, signer_kwargs={"clock": clock}
        )

    def issue(self, webhook_id: UUID) -> str:
        """A new code for this webhook."""
        return self._serializer.dumps({"w": str(webhook_id), "n": secrets.token_urlsafe(16)})

    async def verify(self, code: str, webhook_id: UUID) -> None:
        """Accept the code once for this webhook, or raise HandshakeFailed saying why not."""
        try:
            data, issued = self._serializer.loads(code, return_timestamp=True)
        except BadSignature as exc:
            raise HandshakeFailed("code signature is invalid") from exc
        if not isinstance(data, dict) or not isinstance(data.get("n"), str):
            raise HandshakeFailed("code signature is invalid")
        # Whole seconds, like the signed timestamp, so a code lives max_age to max_age + 1 s.
        if int(self._clock()) - issued.timestamp() > self.max_age:
            raise HandshakeFailed("code expired")
        if data.get("w") != str(webhook_id):
            raise HandshakeFailed("code was issued for another webhook")
        # The code passes until max_age + 1 s after it was issued (whole seconds, above).
        expires = datetime.fromtimestamp(issued.timestamp() + self.max_age + 1 + CLOCK_MARGIN, UTC)
        if not await self.store.take_handshake_nonce(data["n"], expires):
            raise HandshakeFailed("code was already used")


def with_code(url: str, code: str) -> str:
    """The URL with `code` added to its query, keeping its other parameters as written."""
    parts = urlsplit(url)
    # The partner's own parameters travel byte for byte; only a `code` of theirs gives way,
    # since two codes would leave the callback guessing which one to echo.
    kept = [p for p in parts.query.split("&") if p and unquote_plus(p.split("=")[0]) != "code"]
    query = "&".join([*kept, "code=" + quote(code, safe="")])
    return urlunsplit(parts._replace(query=query))


async def verify_callback(
    outbound: Transport,
    codes: HandshakeCodes,
    webhook_id: UUID,
    method: str,
    url: str,
    *,
    group: UUID | None = None,
    timeout: float = 10.0,
    max_body: int = 4096,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Run the handshake against the callback; raise HandshakeFailed saying what came back.
    With `group` (the API always gives it), the request takes one of that group's outbound
    slots (gateway.outbound.Outbound `per_group`), waited for within `timeout`. `headers` go
    with it (the owner's and the webhook's authentication's), as with every request to the
    callback."""
    try:
        await _exchange(
            outbound, codes, webhook_id, group, method.upper(), url, timeout, max_body, headers
        )
    except HandshakeFailed as exc:
        metrics.HANDSHAKES.labels(outcome="failed").inc()
        log.info("handshake failed", extra={"webhook_id": str(webhook_id), "detail": exc.detail})
        raise
    metrics.HANDSHAKES.labels(outcome="passed").inc()
    log.info("handshake passed", extra={"webhook_id": str(webhook_id)})


async def _exchange(
    outbound: Transport,
    codes: HandshakeCodes,
    webhook_id: UUID,
    group: UUID | None,
    method: str,
    url: str,
    timeout: float,
    max_body: int,
    headers: Mapping[str, str] | None,
) -> None:
    code = codes.issue(webhook_id)
    body = b"" if method in BODY_METHODS else None
    try:
        response = await outbound.send(
            method,
            with_code(url, code),
            headers=headers,
            body=body,
            timeout=timeout,
            max_body=max_body,
            group=group,
        )
    except OutboundError as exc:
        raise HandshakeFailed(_describe(exc)) from exc
    if 300 <= response.status < 400:
        raise HandshakeFailed(
            f"callback answered HTTP {response.status} (redirects are not followed)"
        )
    if not 200 <= response.status < 300:
        raise HandshakeFailed(f"callback answered HTTP {response.status}")
    if response.body.decode("utf-8", errors="replace").strip() != code:
        raise HandshakeFailed("body did not match the code")
    await codes.verify(code, webhook_id)


def _describe(exc: OutboundError) -> str:
    if isinstance(exc, OutboundConnectionError):
        return f"could not connect: {exc.detail}"
    if isinstance(exc, AddressNotAllowed) and exc.openable:
        return f"{exc.detail}; {ALLOW_HINT}"
    if isinstance(exc, AddressNotAllowed | OutboundTimeout):
        return exc.detail  # already phrased for users: "timed out after 10 s", "... not allowed"
    return f"callback request failed: {exc.detail}"
