"""How requests to partners are signed: the `Signer` interface and its schemes.

    Signer                    headers(secrets, msg_id, timestamp, payload) -> the headers to add
    ├── StandardWebhooks        v1: HMAC-SHA256 over "id.timestamp.payload", keyed by the
    │                           base64 after the client secret's whsec_
    ├── StandardWebhooksEd25519 v1a: Ed25519 over the same, by the webhook's private key
    └── HmacHeader              one header (`signatureHeader`) holding an HMAC of the payload
                                alone, keyed by the client secret's text: HmacSha256Hex
                                ("sha256=<hex>") and HmacSha512Base64 (base64 of the digest)

`signer_for` chooses the scheme of a webhook's requests (deliveries and test sends alike; the
handshake is not signed: the partner learns the secret or public key from the create's answer,
after its handshake). Every scheme sends `webhook-id` and `webhook-timestamp`.

During a secret rotation every active secret (or Ed25519 key) signs: the Standard Webhooks
schemes put the signatures space-separated in `webhook-signature`, as the specification says;
the HMAC schemes comma-separate them in their header, the list form of HTTP, so a partner
holding either secret can verify. The current secret's signature comes first.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import datetime
from secrets import token_bytes
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.models import SignatureScheme, Webhook

PREFIX = "whsec_"
SECRET_BYTES = 32
PRIVATE_PREFIX, PUBLIC_PREFIX = "whsk_", "whpk_"  # Ed25519 keys, as Standard Webhooks names them
DEFAULT_HEADER = "X-Webhook-Signature"
ED25519 = SignatureScheme.STANDARD_WEBHOOKS_ED25519
# The fields a change of scheme may write beside the scheme (store.base.EDITABLE).
SCHEME_FIELDS = frozenset({"signature_header", "signing_key", "public_key", "previous_signing_key"})


def generate_secret() -> str:
    """A new client secret: whsec_ + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(token_bytes(SECRET_BYTES)).decode("ascii")


def generate_key_pair() -> tuple[str, str]:
    """A new Ed25519 key pair: (whsk_ + base64 of the raw private key, whpk_ + base64 of the
    raw public key)."""
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    raw = private.private_bytes_raw()
    return PRIVATE_PREFIX + _b64(raw), PUBLIC_PREFIX + _b64(public)


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
        if len(secrets) == 1:  # no rotation in its grace period: nothing to list and join
            return _sign(secrets[0], signed, payload)
        return " ".join([_sign(secret, signed, payload) for secret in secrets])

    def sign(self, secret: str, msg_id: str, timestamp: int, payload: bytes) -> str:
        """One signature, "v1,<base64 HMAC-SHA256>"."""
        return _sign(secret, f"{msg_id}.{timestamp}.".encode(), payload)


class StandardWebhooksEd25519:
    """Standard Webhooks v1a: the v1 headers, with "v1a,<base64 Ed25519 signature of
    id.timestamp.payload>" per private key (whsk_) in `webhook-signature`."""

    def headers(
        self, secrets: Sequence[str], msg_id: str, timestamp: int, payload: bytes
    ) -> dict[str, str]:
        """The three Standard Webhooks headers, signed by each private key in `secrets`."""
        message = f"{msg_id}.{timestamp}.".encode() + payload
        signatures = ["v1a," + _b64(_private_key(key).sign(message)) for key in secrets]
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signatures),
        }


class HmacHeader:
    """An HMAC of the payload alone, keyed by the client secret's text (UTF-8), in one header:
    `webhook-id` and `webhook-timestamp` travel beside it, unsigned."""

    def __init__(self, header: str, digest: str, encode: Callable[[hmac.HMAC], str]) -> None:
        self.header = header
        self.digest = digest
        self.encode = encode

    def headers(
        self, secrets: Sequence[str], msg_id: str, timestamp: int, payload: bytes
    ) -> dict[str, str]:
        """`webhook-id`, `webhook-timestamp` and the signature header, one value per secret."""
        values = []
        for secret in secrets:
            mac = _keyed_text(secret, self.digest).copy()
            mac.update(payload)
            values.append(self.encode(mac))
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            self.header: ", ".join(values),
        }


def _sha256_hex(mac: hmac.HMAC) -> str:
    return "sha256=" + mac.hexdigest()


def _sha512_base64(mac: hmac.HMAC) -> str:
    # The raw 64-byte digest, as the wire contract says (not its hex text read as bytes).
    return _b64(mac.digest())


STANDARD_WEBHOOKS = StandardWebhooks()
STANDARD_WEBHOOKS_ED25519 = StandardWebhooksEd25519()
_HMAC_SCHEMES: dict[SignatureScheme, tuple[str, Callable[[hmac.HMAC], str]]] = {
    SignatureScheme.HMAC_SHA256_HEX: ("sha256", _sha256_hex),
    SignatureScheme.HMAC_SHA512_BASE64: ("sha512", _sha512_base64),
}


def signer_for(hook: Webhook) -> Signer:
    """The scheme that signs this webhook's requests (its `signatureScheme`)."""
    scheme = hook.signature_scheme
    if scheme is SignatureScheme.STANDARD_WEBHOOKS:
        return STANDARD_WEBHOOKS
    if scheme is ED25519:
        return STANDARD_WEBHOOKS_ED25519
    return _hmac_header(scheme, hook.signature_header or DEFAULT_HEADER)


def signing_secrets(hook: Webhook, now: datetime) -> list[str]:
    """What signs this webhook's requests at `now`: its client secret, or its private key with
    StandardWebhooksEd25519; and the one it replaced while its grace period lasts."""
    key = hook.signing_key if hook.signature_scheme is ED25519 else None
    current = key or hook.client_secret
    expires = hook.previous_secret_expires
    if expires is None or expires <= now:  # the common case: no rotation in its grace period
        return [current]
    previous = hook.previous_signing_key if key else hook.previous_secret
    return [current, previous] if previous else [current]


def scheme_fields(
    scheme: SignatureScheme, header: str | None, current: Webhook | None = None
) -> dict[str, Any]:
    """The fields that go with a scheme, for a new webhook or a change of `current`: the
    header an HMAC scheme signs in (`header`, or the default; none for the others), and with
    StandardWebhooksEd25519 a new key pair unless `current` already has one (any other scheme
    drops a key pair). The private key is made here and never leaves the gateway."""
    fields: dict[str, Any] = {
        "signature_header": (header or DEFAULT_HEADER) if scheme.names_header else None
    }
    has_keys = current is not None and current.signing_key is not None
    if scheme is ED25519 and not has_keys:
        private, public = generate_key_pair()
        fields |= {"signing_key": private, "public_key": public, "previous_signing_key": None}
    elif scheme is not ED25519 and has_keys:
        fields |= {"signing_key": None, "public_key": None, "previous_signing_key": None}
    return fields


@functools.lru_cache(maxsize=64)
def _hmac_header(scheme: SignatureScheme, header: str) -> HmacHeader:
    digest, encode = _HMAC_SCHEMES[scheme]
    return HmacHeader(header, digest, encode)


def _sign(secret: str, signed: bytes, payload: bytes) -> str:
    """v1 over `signed` (the "id.timestamp." prefix) followed by `payload`."""
    mac = _keyed(secret).copy()
    mac.update(signed)
    mac.update(payload)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _decoded(text: str, prefix: str) -> bytes:
    encoded = text.removeprefix(prefix)
    try:
        # Missing padding is tolerated, as the standardwebhooks verifier tolerates it; any
        # other deviation raises, so we never sign with a key verifiers would decode otherwise.
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"webhook secret is not {prefix} followed by base64") from exc


@functools.lru_cache(maxsize=4096)
def _key(secret: str) -> bytes:
    # Decoded once per secret: base64 stays off the hot path.
    return _decoded(secret, PREFIX)


@functools.lru_cache(maxsize=4096)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC-SHA256 already keyed with this secret, to copy for each signature: keying
    OpenSSL anew per call (hmac.digest) cost 31,300 instructions a signature, a copy of this
    24,400 (callgrind, a 270-byte message)."""
    return hmac.new(_key(secret), digestmod=hashlib.sha256)


@functools.lru_cache(maxsize=4096)
def _keyed_text(secret: str, digest: str) -> hmac.HMAC:
    """An HMAC already keyed with the secret's text as UTF-8 (whsec_ and all: what the
    partners' receivers are given), to copy for each signature."""
    return hmac.new(secret.encode(), digestmod=digest)


@functools.lru_cache(maxsize=4096)
def _private_key(key: str) -> Ed25519PrivateKey:
    """The Ed25519 key of a whsk_ text, loaded once."""
    return Ed25519PrivateKey.from_private_bytes(_decoded(key, PRIVATE_PREFIX))
