"""The verification handshake (DESIGN §4): prove the partner controls the callback URL.

The gateway calls the callback with its own HTTP method and a `code` query parameter; the
callback passes only by answering 2xx, in time, with exactly that code as plain text. Codes are
itsdangerous-signed, time-limited and single-use, and name the webhook they were issued for.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from uuid import UUID

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from gateway import metrics
from gateway.errors import (
    AddressNotAllowed,
    HandshakeFailed,
    OutboundConnectionError,
    OutboundError,
    OutboundTimeout,
)
from gateway.outbound import Outbound


class _ClockedSerializer(URLSafeTimedSerializer):
    """A serializer whose clock can be set, so expiry is testable without sleeping."""

    def __init__(self, secret_key: str, clock: Callable[[], float]) -> None:
        super().__init__(secret_key, salt="webhook-handshake")
        clock_ = clock

        class _Signer(self.signer):  # type: ignore[name-defined,misc]
            def get_timestamp(self) -> int:
                return int(clock_())

        self.signer = _Signer


class HandshakeCodes:
    """Issues and checks handshake codes."""

    def __init__(
        self, secret_key: str, *, max_age: float = 600, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_age = max_age
        self._clock = clock
        self._serializer = _ClockedSerializer(secret_key, clock)
        self._used: dict[str, float] = {}  # nonce -> when it would expire anyway

    def issue(self, webhook_id: UUID) -> str:
        """A new code for this webhook."""
        return self._serializer.dumps({"w": str(webhook_id), "n": secrets.token_urlsafe(16)})

    def verify(self, code: str, webhook_id: UUID) -> None:
        """Accept the code once, for this webhook, before it expires; else HandshakeFailed."""
        try:
            data = self._serializer.loads(code, max_age=int(self.max_age))
        except SignatureExpired as exc:
            raise HandshakeFailed("code expired") from exc
        except BadSignature as exc:
            raise HandshakeFailed("code signature is invalid") from exc
        if data.get("w") != str(webhook_id):
            raise HandshakeFailed("code was issued for another webhook")
        self._remember(str(data.get("n")))

    def _remember(self, nonce: str) -> None:
        now = self._clock()
        self._used = {n: t for n, t in self._used.items() if t > now}
        if nonce in self._used:
            raise HandshakeFailed("code was already used")
        self._used[nonce] = now + self.max_age


def with_code(url: str, code: str) -> str:
    """The URL with `code` added to its query, keeping the parameters it has."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("code", code)]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def verify_callback(
    outbound: Outbound,
    codes: HandshakeCodes,
    webhook_id: UUID,
    method: str,
    url: str,
    *,
    timeout: float = 10.0,
    max_body: int = 4096,
) -> None:
    """Run the handshake; raise HandshakeFailed saying what came back."""
    try:
        await _exchange(outbound, codes, webhook_id, method, url, timeout, max_body)
    except HandshakeFailed:
        metrics.HANDSHAKES.labels(outcome="failed").inc()
        raise
    metrics.HANDSHAKES.labels(outcome="passed").inc()


async def _exchange(
    outbound: Outbound,
    codes: HandshakeCodes,
    webhook_id: UUID,
    method: str,
    url: str,
    timeout: float,
    max_body: int,
) -> None:
    code = codes.issue(webhook_id)
    body = None if method == "GET" else b""
    try:
        response = await outbound.send(
            method, with_code(url, code), body=body, timeout=timeout, max_body=max_body
        )
    except (AddressNotAllowed, OutboundTimeout) as exc:
        raise HandshakeFailed(exc.detail) from exc
    except OutboundConnectionError as exc:
        raise HandshakeFailed(f"could not connect: {exc.detail}") from exc
    except OutboundError as exc:
        raise HandshakeFailed(exc.detail) from exc
    if 300 <= response.status < 400:
        raise HandshakeFailed(
            f"callback answered HTTP {response.status} (redirects are not followed)"
        )
    if not 200 <= response.status < 300:
        raise HandshakeFailed(f"callback answered HTTP {response.status}")
    echoed = response.body.decode("utf-8", errors="replace").strip()
    if echoed != code:
        raise HandshakeFailed("body did not match the code")
    codes.verify(echoed, webhook_id)
