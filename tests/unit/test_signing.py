"""Our signatures, checked by the standardwebhooks package the way a partner would check them."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway import signing

PAYLOAD = b'{"webhookId":"w","tableKey":"Invoice","eventType":"U","records":[{"id":"42"}]}'
MSG_ID = "0b0f4c1e-6f1b-4a55-9c53-7d1b2c3d4e5f"
V1 = signing.STANDARD_WEBHOOKS


def headers_for(*secrets: str, payload: bytes = PAYLOAD) -> dict[str, str]:
    return V1.headers(secrets, MSG_ID, int(time.time()), payload)


def test_generated_secret_is_whsec_and_32_random_bytes() -> None:
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert signing.generate_secret() != secret


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = signing.generate_secret()
    headers = headers_for(secret)
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(PAYLOAD, headers)["tableKey"] == "Invoice"


def test_during_rotation_old_and_new_secret_each_verify() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    headers = headers_for(new, old)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(PAYLOAD, headers)
    Webhook(new).verify(PAYLOAD, headers)


def test_tampered_payload_fails() -> None:
    secret = signing.generate_secret()
    headers = headers_for(secret)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(PAYLOAD.replace(b"42", b"43"), headers)


def test_wrong_secret_fails() -> None:
    headers = headers_for(signing.generate_secret())
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.generate_secret()).verify(PAYLOAD, headers)


def test_signature_covers_id_and_timestamp() -> None:
    secret = signing.generate_secret()
    signed = V1.sign(secret, MSG_ID, 1_700_000_000, PAYLOAD)
    assert signed != V1.sign(secret, "other-id", 1_700_000_000, PAYLOAD)
    assert signed != V1.sign(secret, MSG_ID, 1_700_000_001, PAYLOAD)
    assert signed == V1.sign(secret, MSG_ID, 1_700_000_000, PAYLOAD)


def test_unpadded_secret_signs_like_the_verifier_decodes_it() -> None:
    secret = signing.generate_secret().rstrip("=")
    Webhook(secret).verify(PAYLOAD, headers_for(secret))


def test_secret_that_is_not_base64_is_refused() -> None:
    with pytest.raises(ValueError, match="not whsec_ followed by base64"):
        V1.sign("whsec_not-base64_at-all", MSG_ID, 1, PAYLOAD)
