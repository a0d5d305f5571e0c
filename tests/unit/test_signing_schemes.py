"""The signature schemes beside Standard Webhooks v1 (gateway.signing): what each one sends, the
key pair StandardWebhooksEd25519 keeps, and what a change of scheme writes. End to end, with
the partners' own verifiers, in tests/integration/test_signature_schemes.py."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway import signing
from gateway.models import SignatureScheme, Webhook
from tests.factories import make_webhook

PAYLOAD = b'{"tableKey":"Invoice","records":[{"id":"1"}]}'
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
OLD = "whsec_" + base64.b64encode(bytes(32)).decode()


def hook_with(scheme: SignatureScheme, header: str | None = None, **fields: Any) -> Webhook:
    """A webhook of this scheme, with the fields the API would store beside it."""
    made = make_webhook(signature_scheme=scheme, **fields)
    return dataclasses.replace(made, **signing.scheme_fields(scheme, header))


def test_a_key_pair_is_whsk_and_whpk_of_one_raw_ed25519_key() -> None:
    private, public = signing.generate_key_pair()
    raw = base64.b64decode(private.removeprefix("whsk_"), validate=True)
    derived = Ed25519PrivateKey.from_private_bytes(raw).public_key()
    shown = base64.b64decode(public.removeprefix("whpk_"), validate=True)
    assert private.startswith("whsk_") and public.startswith("whpk_")
    assert derived.public_bytes(Encoding.Raw, PublicFormat.Raw) == shown
    assert len(shown) == 32
    assert signing.generate_key_pair()[0] != private


def test_ed25519_signs_id_timestamp_payload_with_every_key_given() -> None:
    new, old = hook_with(SignatureScheme.STANDARD_WEBHOOKS_ED25519), signing.generate_key_pair()
    signer = signing.signer_for(new)
    assert new.signing_key is not None and new.public_key is not None
    headers = signer.headers([new.signing_key, old[0]], "msg_1", 1_700_000_000, PAYLOAD)
    assert (headers["webhook-id"], headers["webhook-timestamp"]) == ("msg_1", "1700000000")
    values = headers["webhook-signature"].split(" ")
    for value, public in zip(values, [new.public_key, old[1]], strict=True):
        version, signature = value.split(",")
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public.removeprefix("whpk_")))
        key.verify(base64.b64decode(signature), b"msg_1.1700000000." + PAYLOAD)  # raises if not
        assert version == "v1a"


def test_the_hmac_schemes_sign_the_payload_alone_keyed_by_the_secret_text() -> None:
    sha256 = signing.signer_for(hook_with(SignatureScheme.HMAC_SHA256_HEX))
    sha512 = signing.signer_for(hook_with(SignatureScheme.HMAC_SHA512_BASE64, "X-Tribe"))
    key = SECRET.encode("utf-8")
    hex_value = "sha256=" + hmac.new(key, PAYLOAD, hashlib.sha256).hexdigest()
    raw_value = base64.b64encode(hmac.new(key, PAYLOAD, hashlib.sha512).digest()).decode()
    assert sha256.headers([SECRET], "m", 5, PAYLOAD) == {
        "webhook-id": "m", "webhook-timestamp": "5", "X-Webhook-Signature": hex_value,
    }  # fmt: skip
    assert sha512.headers([SECRET], "m", 5, PAYLOAD)["X-Tribe"] == raw_value
    # During a rotation: one value per secret, the current one first, comma-separated.
    old_hex = "sha256=" + hmac.new(OLD.encode(), PAYLOAD, hashlib.sha256).hexdigest()
    both = sha256.headers([SECRET, OLD], "m", 5, PAYLOAD)["X-Webhook-Signature"]
    assert both == f"{hex_value}, {old_hex}"


def test_what_signs_is_the_client_secret_or_the_private_key_and_the_previous_one() -> None:
    ends = datetime(2026, 1, 1, tzinfo=UTC)  # the previous credential's grace ends here
    during, after = ends - timedelta(seconds=1), ends
    hmac_hook = hook_with(SignatureScheme.HMAC_SHA256_HEX, client_secret=SECRET,
                          previous_secret=OLD, previous_secret_expires=ends)  # fmt: skip
    assert signing.signing_secrets(hmac_hook, during) == [SECRET, OLD]
    assert signing.signing_secrets(hmac_hook, after) == [SECRET]
    ed = hook_with(SignatureScheme.STANDARD_WEBHOOKS_ED25519, previous_secret=OLD,
                   previous_secret_expires=ends)  # fmt: skip
    ed = dataclasses.replace(ed, previous_signing_key="whsk_old")
    assert signing.signing_secrets(ed, during) == [ed.signing_key, "whsk_old"]
    assert signing.signing_secrets(ed, after) == [ed.signing_key]
    never_rotated = dataclasses.replace(hmac_hook, previous_secret=None)
    assert signing.signing_secrets(never_rotated, during) == [SECRET]


def test_a_scheme_brings_its_header_and_its_key_pair() -> None:
    fields = signing.scheme_fields
    assert fields(SignatureScheme.STANDARD_WEBHOOKS, None) == {"signature_header": None}
    assert fields(SignatureScheme.HMAC_SHA256_HEX, None) == {
        "signature_header": "X-Webhook-Signature"
    }
    assert fields(SignatureScheme.HMAC_SHA512_BASE64, "X-T") == {"signature_header": "X-T"}
    made = fields(SignatureScheme.STANDARD_WEBHOOKS_ED25519, None)
    assert made["signing_key"].startswith("whsk_") and made["public_key"].startswith("whpk_")
    # A webhook that has a pair keeps it; another scheme drops it, previous key and all.
    current = hook_with(SignatureScheme.STANDARD_WEBHOOKS_ED25519)
    assert fields(SignatureScheme.STANDARD_WEBHOOKS_ED25519, None, current) == {
        "signature_header": None
    }
    assert fields(SignatureScheme.HMAC_SHA256_HEX, None, current) == {
        "signature_header": "X-Webhook-Signature", "signing_key": None, "public_key": None,
        "previous_signing_key": None,
    }  # fmt: skip
