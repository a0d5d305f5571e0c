"""Portal links and session cookies (gateway.portal.tokens) and the webhook form's bodies
(gateway.portal.webhook_forms): pure logic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from itsdangerous import URLSafeSerializer

from gateway.errors import ValidationError
from gateway.handshake import HandshakeCodes
from gateway.portal import webhook_forms as forms
from gateway.portal.tokens import (
    EPOCH,
    LINK_LIFETIME,
    SESSION_SALT,
    PortalKeys,
    PortalRefused,
    portal_link,
)
from gateway.store import Store
from tests.factories import make_webhook

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
KEYS = PortalKeys("portal-test-key")


def test_a_link_grants_its_group_and_session_end_until_it_expires() -> None:
    group = uuid4()
    token, grant = KEYS.issue(group, read_only=True, session_seconds=7200, now=NOW)
    redeemed = KEYS.redeem(token, NOW + LINK_LIFETIME - timedelta(seconds=1))
    assert redeemed == grant and redeemed.group_key == group and redeemed.read_only
    assert redeemed.session_expires == NOW + timedelta(hours=2)
    with pytest.raises(PortalRefused, match="expired") as refused:
        KEYS.redeem(token, NOW + LINK_LIFETIME)
    assert refused.value.status == 401 and "new portal link" in refused.value.advice


def test_a_link_never_outlives_its_session() -> None:
    _, grant = KEYS.issue(uuid4(), read_only=False, session_seconds=60, now=NOW)
    assert grant.link_expires == grant.session_expires == NOW + timedelta(seconds=60)


def test_a_session_cookie_holds_the_session_until_it_ends() -> None:
    _, grant = KEYS.issue(uuid4(), read_only=False, session_seconds=600, now=NOW)
    session = KEYS.open_session(grant, NOW)
    assert KEYS.unseal(KEYS.seal(session), NOW + timedelta(seconds=599)) == session
    with pytest.raises(PortalRefused, match="ended"):
        KEYS.unseal(KEYS.seal(session), NOW + timedelta(seconds=600))
    other = KEYS.open_session(grant, NOW)
    assert other.csrf != session.csrf  # each session its own CSRF token


def test_a_link_and_its_session_keep_when_the_link_was_issued_to_the_microsecond() -> None:
    """gateway.portal.revocation compares it with a revocation's time: a link made just after
    one, in the same second, must not pass for one made before it."""
    issued = NOW + timedelta(microseconds=654_321)
    token, grant = KEYS.issue(uuid4(), read_only=False, session_seconds=600, now=issued)
    assert grant.issued_at == issued and grant.session_expires == NOW + timedelta(minutes=10)
    session = KEYS.open_session(KEYS.redeem(token, issued), issued)
    assert KEYS.unseal(KEYS.seal(session), issued).issued_at == issued


def test_a_cookie_from_before_issue_times_were_kept_reads_as_issued_at_the_epoch() -> None:
    session = KEYS.open_session(KEYS.issue(uuid4(), read_only=False, session_seconds=600,
                                           now=NOW)[1], NOW)  # fmt: skip
    old = {"i": str(session.link_id), "g": str(session.group_key), "r": False,
           "x": int(session.expires_at.timestamp()), "c": session.csrf}  # fmt: skip
    sealed = URLSafeSerializer("portal-test-key", salt=SESSION_SALT).dumps(old)
    assert KEYS.unseal(sealed, NOW).issued_at == EPOCH


async def test_nothing_signed_for_one_purpose_passes_for_another(store: Store) -> None:
    token, grant = KEYS.issue(uuid4(), read_only=False, session_seconds=600, now=NOW)
    cookie = KEYS.seal(KEYS.open_session(grant, NOW))
    code = HandshakeCodes("portal-test-key", store).issue(uuid4())
    for wrong in (cookie, code):
        with pytest.raises(PortalRefused, match="not valid"):
            KEYS.redeem(wrong, NOW)
    for wrong in (token, code):
        with pytest.raises(PortalRefused, match="not valid"):
            KEYS.unseal(wrong, NOW)
    with pytest.raises(PortalRefused, match="not valid"):
        PortalKeys("another-key").redeem(token, NOW)


def test_the_link_carries_its_token_in_the_fragment() -> None:
    url, grant = portal_link("k", "https://hooks.example/", uuid4(), read_only=False,
                             session_seconds=3600, now=NOW)  # fmt: skip
    base, _, fragment = url.partition("#")
    assert base == "https://hooks.example/portal/" and fragment.startswith("token=")
    assert PortalKeys("k").redeem(fragment.removeprefix("token="), NOW) == grant


def test_an_edit_sends_only_what_changed() -> None:
    hook = make_webhook(name="before", retry_count=3)
    sent = {**forms.shown(hook), "name": "after", "headers": "X-A: 1\nX-B: two: parts"}
    assert forms.patch_body(hook, sent) == {
        "name": "after",
        "headers": [{"name": "X-A", "value": "1"}, {"name": "X-B", "value": "two: parts"}],
    }
    assert forms.patch_body(hook, forms.shown(hook)) == {}


def test_blank_optional_fields_are_null_and_dates_are_utc() -> None:
    hook = make_webhook(expiration_date=NOW)
    sent = {**forms.shown(hook), "expirationDate": "", "retryCount": "five"}
    assert forms.patch_body(hook, sent) == {"expirationDate": None, "retryCount": "five"}
    assert forms.create_body({"expirationDate": "2030-01-02T03:04"})["expirationDate"] == (
        "2030-01-02T03:04:00Z"
    )


def test_a_header_line_without_a_colon_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        forms.create_body({"headers": "X-A: 1\nbroken"})
    assert forms.field_errors(refused.value) == {
        "headers": ["write each header as Name: value ('broken')"]
    }
