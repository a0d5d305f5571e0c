"""Secrets kept at rest: sealed with a key derived from the gateway's secret key, so that the
database alone (a copied file, a dump, a replica) does not reveal them.

    key    = HKDF-SHA256(secret_key, salt=SALT, info=INFO), 32 bytes
    sealed = "v1." + base64url(nonce (12 random bytes) + AES-256-GCM(key, nonce, text, bound))

`bound` is what the sealed text belongs to (an authentication's id): GCM authenticates it
without storing it, so a sealed value copied onto another row does not open there. Opening
with another secret key, or a value changed by one bit, fails (`Unsealable`), never returns
wrong text. The primitives are the `cryptography` package's; nothing here is hand-made crypto.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import Unsealable

VERSION = "v1."
SALT = b"webhook-gateway sealed secrets"
INFO = b"aes-256-gcm v1"
NONCE_BYTES = 12


class Sealer:
    """Seals and opens short texts with the key derived from one secret key."""

    def __init__(self, secret_key: str) -> None:
        if not secret_key:
            raise Unsealable("the gateway has no secret key, which keeps secrets at rest")
        kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=INFO)
        self._aead = AESGCM(kdf.derive(secret_key.encode()))

    def seal(self, text: str, bound: bytes) -> str:
        """`text` sealed, bound to `bound`; a fresh nonce each time, so sealing the same text
        twice gives two different values."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, text.encode(), bound)
        return VERSION + base64.urlsafe_b64encode(sealed).decode("ascii")

    def open(self, sealed: str, bound: bytes) -> str:
        """The text sealed in `sealed` for `bound`; Unsealable if it does not open."""
        if not sealed.startswith(VERSION):
            raise Unsealable("not a sealed value of this gateway")
        try:
            raw = base64.urlsafe_b64decode(sealed.removeprefix(VERSION))
            text = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], bound)
        except (binascii.Error, ValueError, InvalidTag) as exc:
            raise Unsealable(
                "a stored secret does not open with this gateway's secret key (was the key "
                "changed?); set the secret again"
            ) from exc
        return text.decode()


@functools.lru_cache(maxsize=4)
def sealer(secret_key: str | None) -> Sealer:
    """The sealer of this secret key, its key derived once."""
    return Sealer(secret_key or "")
