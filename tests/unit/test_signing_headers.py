"""The Standard Webhooks headers exactly as they go out: names, values and signature order."""

from __future__ import annotations

import base64
import hashlib
import hmac

from gateway import signing

PAYLOAD = b'{"tableKey":"Invoice"}'
KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
V1 = signing.STANDARD_WEBHOOKS


def expected_signature(key: bytes, msg_id: str, timestamp: int, payload: bytes) -> str:
    """The signature as the Standard Webhooks specification defines it, computed here."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + payload, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def test_the_three_headers_by_their_exact_names() -> None:
    headers = V1.headers([SECRET], "msg_1", 1_700_000_000, PAYLOAD)
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": expected_signature(KEY, "msg_1", 1_700_000_000, PAYLOAD),
    }


def test_every_secret_signs_in_the_order_given() -> None:
    other = bytes(32)
    secrets = [SECRET, "whsec_" + base64.b64encode(other).decode()]
    header = V1.signature(secrets, "msg_1", 5, PAYLOAD)
    assert header == " ".join(
        [
            expected_signature(KEY, "msg_1", 5, PAYLOAD),
            expected_signature(other, "msg_1", 5, PAYLOAD),
        ]
    )


def test_generated_secrets_are_new_each_time() -> None:
    made = {signing.generate_secret() for _ in range(50)}
    assert len(made) == 50
    assert all(len(base64.b64decode(s.removeprefix("whsec_"))) == 32 for s in made)
