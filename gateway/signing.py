"""How requests to partners are signed: the `Signer` interface and its schemes.

    Signer              headers(secrets, msg_id, timestamp, payload) -> the headers to add
    └── StandardWebhooks  standardwebhooks.com v1: HMAC-SHA256 over "id.timestamp.payload"

`signer_for` chooses the scheme of a webhook's requests (deliveries and test sends alike). A
second scheme is one more class here and one more case there.

During a secret rotation every active secret signs, and the signatures travel space-separated
in one `webhook-signature` header, so a partner holding either secret can verify.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Sequence
from secrets import token_bytes
from typing import Protocol

from gateway.models import Webhook

PREFIX = "whsec_"
SECRET_BYTES = 32


def generate_secret() -> str:
    """A new client secret: whsec_ + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode("ascii")


class Signer(Protocol):
    """A signature scheme: the headers that let a partner check a request came from us."""

    def headers(
        self, secrets: Sequence[str], msg_id: str, timestamp: int, payload: bytes
    ) -> dict[str, str]:
        """The headers for one request, signed by each of `secrets` (several during a
        rotation); a new dict, which the caller may add its own headers to."""
        ...


class StandardWebhooks:
    """Standard Webhooks v1: `webhook-id`, `webhook-timestamp`, and `webhook-signature`
    holding "v1,<base64 HMAC-SHA256 of id.timestamp.payload>" per secret, keyed by the
    base64 after the secret's whsec_ prefix."""

    def headers(
        self, secrets: Sequence[str], msg_id: str, timestamp: int, payload: bytes
    ) -> dict[str, str]:
        """The three Standard Webhooks headers for one request."""
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(secrets, msg_id, timestamp, payload),
        }

    def signature(self, secrets: Sequence[str], msg_id: str, timestamp: int, payload: bytes) -> str:
        """Space-separated signatures, one per secret, in the order given."""
        signed = f"{msg_id}.{timestamp}.".encode()
        return " ".join([_sign(secret, signed, payload) for secret in secrets])

    def sign(self, secret: str, msg_id: str, timestamp: int, payload: bytes) -> str:
        """One signature, "v1,<base64 HMAC-SHA256>"."""
        return _sign(secret, f"{msg_id}.{timestamp}.".encode(), payload)


STANDARD_WEBHOOKS = StandardWebhooks()


def signer_for(hook: Webhook) -> Signer:
    """The scheme that signs this webhook's requests: Standard Webhooks v1 for all of them
    until webhooks can name another (DESIGN §11, `signatureScheme`), then chosen here."""
    return STANDARD_WEBHOOKS


def _sign(secret: str, signed: bytes, payload: bytes) -> str:
    """v1 over `signed` (the "id.timestamp." prefix) followed by `payload`."""
    mac = _keyed(secret).copy()
    mac.update(signed)
    mac.update(payload)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


@functools.lru_cache(maxsize=4096)
def _key(secret: str) -> bytes:
    # Decoded once per secret: base64 stays off the hot path.
    encoded = secret.removeprefix(PREFIX)
    try:
        # Missing padding is tolerated, as the standardwebhooks verifier tolerates it; any
        # other deviation raises, so we never sign with a key verifiers would decode otherwise.
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook secret is not whsec_ followed by base64") from exc


@functools.lru_cache(maxsize=4096)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 already keyed with this secret, to copy for each signature: keying
    OpenSSL anew per call (hmac.digest) cost 31,300 instructions a signature, a copy of this
    24,400 (callgrind, a 270-byte message)."""
    return hmac.new(_key(secret), digestmod=hashlib.sha256)
