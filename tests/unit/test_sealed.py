"""Secrets at rest (gateway.sealed) and what an authentication adds to a request
(gateway.credentials), checked against independent decoders where there is one."""

from __future__ import annotations

import base64
import dataclasses
from uuid import uuid4

import pytest

from gateway import credentials, headers
from gateway.config import Settings
from gateway.errors import Unsealable
from gateway.models import Authentication, AuthenticationKind, SignatureScheme, utcnow
from gateway.sealed import Sealer, sealer
from gateway.sender import Sender
from gateway.store import Store
from gateway.transport import MockTransport, respond
from tests.factories import SECRET_KEY, make_authentication, make_notification, make_webhook

KEY = "a-secret-key-of-this-gateway"
BOUND = b"authentication:1"


def test_a_sealed_text_opens_to_itself() -> None:
    box = Sealer(KEY)
    for text in ("hunter2", "", "pässwörd ✓", "x" * 1024):
        assert box.open(box.seal(text, BOUND), BOUND) == text


def test_a_sealed_text_does_not_show_the_text() -> None:
    sealed = Sealer(KEY).seal("hunter2-hunter2", BOUND)
    assert "hunter2" not in sealed
    assert b"hunter2" not in base64.urlsafe_b64decode(sealed.removeprefix("v1."))


def test_sealing_the_same_text_twice_gives_two_values() -> None:
    box = Sealer(KEY)
    first, second = box.seal("hunter2", BOUND), box.seal("hunter2", BOUND)
    assert first != second
    assert box.open(first, BOUND) == box.open(second, BOUND) == "hunter2"


def test_another_secret_key_does_not_open_it() -> None:
    sealed = Sealer(KEY).seal("hunter2", BOUND)
    with pytest.raises(Unsealable, match="secret key"):
        Sealer(KEY + "!").open(sealed, BOUND)


def test_it_opens_only_where_it_was_bound() -> None:
    """A sealed value copied onto another row does not open there."""
    sealed = Sealer(KEY).seal("hunter2", BOUND)
    with pytest.raises(Unsealable):
        Sealer(KEY).open(sealed, b"authentication:2")


@pytest.mark.parametrize("where", [3, 20, -1])
def test_a_value_changed_by_one_bit_does_not_open(where: int) -> None:
    sealed = Sealer(KEY).seal("hunter2", BOUND)
    raw = bytearray(base64.urlsafe_b64decode(sealed.removeprefix("v1.")))
    raw[where] ^= 1
    altered = "v1." + base64.urlsafe_b64encode(bytes(raw)).decode()
    with pytest.raises(Unsealable):
        Sealer(KEY).open(altered, BOUND)


@pytest.mark.parametrize("value", ["hunter2", "v1.not base64!", "v1.", "v1.AAAA"])
def test_what_is_not_a_sealed_value_does_not_open(value: str) -> None:
    with pytest.raises(Unsealable):
        Sealer(KEY).open(value, BOUND)


def test_without_a_secret_key_nothing_is_sealed() -> None:
    with pytest.raises(Unsealable, match="no secret key"):
        sealer(None)


def authentication(kind: AuthenticationKind, secret: str, **fields: str) -> Authentication:
    now, auth_id = utcnow(), uuid4()
    made = Authentication(
        authentication_id=auth_id, group_key=uuid4(), name="n", kind=kind, username=None,
        header_name=None, sealed_secret=credentials.seal(secret, auth_id, sealer(KEY)),
        created=now, created_user_id=uuid4(), modified=now, modified_user_id=uuid4(),
    )  # fmt: skip
    return dataclasses.replace(made, **fields)


def test_basic_sends_the_pair_as_rfc_7617_says() -> None:
    auth = authentication(AuthenticationKind.BASIC, "pä:ss", username="partner")
    [(name, value)] = credentials.headers(auth, sealer(KEY)).items()
    scheme, encoded = value.split(" ")
    assert (name, scheme) == ("Authorization", "Basic")
    assert base64.b64decode(encoded).decode("utf-8") == "partner:pä:ss"


def test_header_sends_the_named_header() -> None:
    auth = authentication(AuthenticationKind.HEADER, "Bearer t0k3n", header_name="Authorization")
    assert credentials.headers(auth, sealer(KEY)) == {"Authorization": "Bearer t0k3n"}


def test_a_secret_sealed_for_another_authentication_is_refused() -> None:
    auth = authentication(AuthenticationKind.HEADER, "t0k3n", header_name="X-Api-Key")
    moved = dataclasses.replace(auth, authentication_id=uuid4())
    with pytest.raises(Unsealable):
        credentials.headers(moved, sealer(KEY))


@pytest.mark.parametrize(
    "name",
    ["Host", "content-type", "Content-Length", "Transfer-Encoding", "Connection",
     "webhook-signature", "Webhook-Id", "WEBHOOK-TIMESTAMP", "Idempotency-Key",
     "Bad Name", "Bad:Name", "X-Line\r\nInjected", ""],
)  # fmt: skip
def test_header_names_the_gateway_sets_or_http_refuses_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        headers.check_name(name)


@pytest.mark.parametrize("name", ["Authorization", "X-Api-Key", "x-partner-token", "Api_Key"])
def test_other_header_names_are_taken(name: str) -> None:
    assert headers.check_name(name) == name


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "tab\there", " lead", "trail ",
                                   "nul\x00", "ünïcode"])  # fmt: skip
def test_header_values_that_would_break_the_header_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        headers.check_value(value)


@pytest.mark.parametrize("value", ["user:name", "line\nbreak", "nul\x00"])
def test_usernames_with_a_colon_or_control_characters_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        credentials.check_username(value)


async def test_the_gateways_own_headers_win_over_an_authentications_whatever_the_case(
    store: Store,
) -> None:
    """A Header authentication named like the signature header a webhook chose later: the
    request carries the signature once, never the authentication's value beside it."""
    auth = make_authentication(
        kind=AuthenticationKind.HEADER, username=None, header_name="X-Partner-Sig",
        secret="t0k3n",
    )  # fmt: skip
    await store.add_authentications([auth])
    hook = make_webhook(
        auth.group_key, authentication_id=auth.authentication_id,
        signature_scheme=SignatureScheme.HMAC_SHA256_HEX, signature_header="x-partner-sig",
    )  # fmt: skip
    await store.add_webhooks([hook])
    transport = MockTransport(lambda request: respond(200))
    settings = dataclasses.replace(Settings(), secret_key=SECRET_KEY)
    await Sender(settings, transport, store, utcnow).send(hook, make_notification(hook))
    (request,) = transport.requests
    sent = [(name.lower(), value) for name, value in request.headers.items()]
    assert len([name for name, _ in sent if name == "x-partner-sig"]) == 1
    assert all(value != "t0k3n" for _, value in sent)
