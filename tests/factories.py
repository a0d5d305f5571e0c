"""Builders of domain records for tests: valid defaults, any field overridable by keyword.

hook = make_webhook(group_key=GROUP, name="orders")
rule = make_rule(hook, table_key="Invoice")
event = make_event(group_key=GROUP)
note = make_notification(hook, event, state=NotificationState.PARKED)
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from gateway import credentials
from gateway.models import (
    ApiKey,
    Authentication,
    AuthenticationKind,
    ContentType,
    Event,
    EventType,
    EventTypeDefinition,
    HttpMethod,
    Notification,
    NotificationState,
    Recipient,
    Scope,
    Webhook,
    WebhookRule,
    WebhookStatus,
    utcnow,
)
from gateway.sealed import sealer
from gateway.signing import generate_secret
from gateway.store import Store
from gateway.store.base import WebhookEdit

# A fixed moment for tests that compare times; builders default to the real clock.
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
# The secret key of test gateways (tests.gateway_server), which seals authentications' secrets.
SECRET_KEY = "test-secret-key"


def make_api_key(group_key: UUID | None = None, **overrides: Any) -> ApiKey:
    """An API key of this group (a new one by default) with both scopes."""
    key = ApiKey(
        api_key_id=uuid4(),
        group_key=group_key or uuid4(),
        group_name="test-group",
        key_hash=hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
        scopes=frozenset(Scope),
        created=utcnow(),
    )
    return dataclasses.replace(key, **overrides)


def make_webhook(group_key: UUID | None = None, **overrides: Any) -> Webhook:
    """An Active POST webhook of this group (a new one by default)."""
    now = utcnow()
    hook = Webhook(
        webhook_id=uuid4(),
        group_key=group_key or uuid4(),
        name="test webhook",
        status_code=WebhookStatus.ACTIVE,
        status_message=None,
        client_secret=generate_secret(),
        request_content_type=ContentType.FULL,
        callback_http_method=HttpMethod.POST,
        callback_url="http://127.0.0.1:9/hook",
        expiration_date=None,
        retry_count=3,
        created=now,
        created_user_id=uuid4(),
        modified=now,
        modified_user_id=uuid4(),
    )
    return dataclasses.replace(hook, **overrides)


def recipient(webhook: Webhook) -> Recipient:
    """The webhook as publishing reads it (models.Recipient): its fields of those names."""
    names = (f.name for f in dataclasses.fields(Recipient))
    return Recipient(**{name: getattr(webhook, name) for name in names})


def make_rule(webhook: Webhook | None = None, **overrides: Any) -> WebhookRule:
    """A rule for Invoice updates on this webhook (its id and group), without a filter."""
    now = utcnow()
    rule = WebhookRule(
        webhook_rule_id=uuid4(),
        webhook_id=webhook.webhook_id if webhook else uuid4(),
        group_key=webhook.group_key if webhook else uuid4(),
        table_key="Invoice",
        event_type=EventType.UPDATE,
        filter=None,
        created=now,
        created_user_id=uuid4(),
        modified=now,
        modified_user_id=uuid4(),
    )
    return dataclasses.replace(rule, **overrides)


def make_authentication(
    group_key: UUID | None = None, secret: str = "hunter2", **overrides: Any
) -> Authentication:
    """A Basic authentication of this group (a new one by default), its password `secret`
    sealed with the test gateways' key."""
    now, authentication_id = utcnow(), overrides.pop("authentication_id", uuid4())
    auth = Authentication(
        authentication_id=authentication_id,
        group_key=group_key or uuid4(),
        name="test authentication",
        kind=AuthenticationKind.BASIC,
        username="partner",
        header_name=None,
        sealed_secret=credentials.seal(secret, authentication_id, sealer(SECRET_KEY)),
        created=now,
        created_user_id=uuid4(),
        modified=now,
        modified_user_id=uuid4(),
    )
    return dataclasses.replace(auth, **overrides)


def make_event_type(group_key: UUID | None = None, **overrides: Any) -> EventTypeDefinition:
    """A declared Invoice update event type of this group, without a schema."""
    now = utcnow()
    declared = EventTypeDefinition(
        event_type_id=uuid4(),
        group_key=group_key or uuid4(),
        table_key="Invoice",
        event_type=EventType.UPDATE,
        name="Invoice updated",
        description=None,
        category=None,
        record_schema=None,
        deprecated=False,
        created=now,
        created_user_id=uuid4(),
        modified=now,
        modified_user_id=uuid4(),
    )
    return dataclasses.replace(declared, **overrides)


def make_event(group_key: UUID | None = None, **overrides: Any) -> Event:
    """An Invoice update event with one record."""
    event = Event(
        event_id=uuid4(),
        group_key=group_key or uuid4(),
        table_key="Invoice",
        event_type=EventType.UPDATE,
        records=({"id": "42", "total": 10},),
        created=utcnow(),
    )
    return dataclasses.replace(event, **overrides)


def make_notification(
    webhook: Webhook | None = None, event: Event | None = None, **overrides: Any
) -> Notification:
    """A pending notification of this event to this webhook, due now."""
    now = utcnow()
    note = Notification(
        notification_id=uuid4(),
        group_key=webhook.group_key if webhook else uuid4(),
        webhook_id=webhook.webhook_id if webhook else uuid4(),
        event_id=event.event_id if event else uuid4(),
        table_key=event.table_key if event else "Invoice",
        event_type=event.event_type if event else EventType.UPDATE,
        records=event.records if event else ({"id": "42"},),
        sequence=0,
        triggered_at=event.created if event else now,
        state=NotificationState.PENDING,
        next_attempt_at=now,
        created=now,
        timestamp=now,
    )
    return dataclasses.replace(note, **overrides)


async def set_expiration(store: Store, webhook: Webhook, when: datetime) -> Webhook:
    """Give a stored webhook this expiration date, past ones included (the API refuses those):
    an edit of that one field, as the store makes it."""
    edit = WebhookEdit({"expiration_date": when})
    changed = await store.edit_webhook(webhook.group_key, webhook.webhook_id, edit, utcnow())
    assert changed is not None
    return changed


class Wakes:
    """Stands in for the delivery workers a publish wakes (serve's pool of worker processes):
    counts the wake-ups."""

    def __init__(self) -> None:
        self.count = 0

    def wake(self) -> None:
        self.count += 1

    def webhook_changed(self, webhook_id: UUID) -> None:
        pass
