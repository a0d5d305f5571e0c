"""Managing webhooks without HTTP, on a memory:// store: a handshake before a callback is
trusted, and the workers told of every change they must act on (gateway.wakeup). The handshakes
here are refused before they leave (loopback is not allowed), so nothing is sent."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from gateway.config import Settings
from gateway.errors import HandshakeFailed
from gateway.handshake import HandshakeCodes
from gateway.management import Management
from gateway.models import NotificationState, Webhook, WebhookStatus, utcnow
from gateway.netguard import AddressPolicy
from gateway.outbound import Outbound
from gateway.store import Store
from gateway.store.base import Requeue
from gateway.wakeup import Wakeup
from tests.factories import make_event, make_notification, make_webhook, set_expiration
from tests.throwaway import column


class Told:
    """Stands in for the workers: what the wake-up told them."""

    def __init__(self) -> None:
        self.wakes = 0
        self.changed: list[uuid.UUID] = []

    def wake(self) -> None:
        self.wakes += 1

    def webhook_changed(self, webhook_id: uuid.UUID) -> None:
        self.changed.append(webhook_id)


@dataclasses.dataclass
class Managed:
    management: Management
    store: Store
    told: Told


@pytest.fixture
async def managed(store: Store) -> AsyncIterator[Managed]:
    told = Told()
    async with Outbound(policy=AddressPolicy()) as outbound:
        codes = HandshakeCodes("test-secret-key", store)
        management = Management(Settings(), store, outbound, codes, Wakeup(told), utcnow)
        yield Managed(management, store, told)


async def stored(store: Store, **changes: object) -> Webhook:
    hook = make_webhook(**changes)
    await store.add_webhooks([hook])
    return hook


async def current(store: Store, hook: Webhook) -> Webhook:
    found = await store.get_webhook(hook.group_key, hook.webhook_id)
    assert found is not None
    return found


async def test_a_batch_with_a_failed_handshake_stores_none(managed: Managed) -> None:
    hooks = [make_webhook(), make_webhook()]
    with pytest.raises(HandshakeFailed) as failed:
        await managed.management.create(hooks)
    assert set(failed.value.errors) == {"[0].callbackUrl", "[1].callbackUrl"}
    assert column(managed.store, "SELECT webhook_id FROM webhooks") == set()


async def test_a_pause_parks_and_tells_the_workers_to_read_the_webhook_again(
    managed: Managed,
) -> None:
    hook = await stored(managed.store)
    event = make_event(hook.group_key)
    await managed.store.add_events([event], [make_notification(hook, event)])
    paused = await managed.management.patch(
        hook, {}, WebhookStatus.INACTIVE, uuid.uuid4(), utcnow()
    )
    assert paused.status_code is WebhookStatus.INACTIVE
    states = column(managed.store, "SELECT state FROM notifications")
    assert states == {NotificationState.PARKED.value}
    # One wake: the pause's lifecycle notice may wait for a claim (gateway.notices).
    assert (managed.told.changed, managed.told.wakes) == ([hook.webhook_id], 1)


async def test_a_reactivation_needs_its_handshake(managed: Managed) -> None:
    hook = await stored(managed.store)
    await managed.management.patch(hook, {}, WebhookStatus.INACTIVE, uuid.uuid4(), utcnow())
    paused = await current(managed.store, hook)
    with pytest.raises(HandshakeFailed):
        await managed.management.patch(paused, {}, WebhookStatus.ACTIVE, uuid.uuid4(), utcnow())
    assert (await current(managed.store, hook)).status_code is WebhookStatus.INACTIVE
    # The pause's: told of the change, woken for its lifecycle notice.
    assert (managed.told.changed, managed.told.wakes) == ([hook.webhook_id], 1)


async def test_a_new_secret_keeps_the_old_one_for_the_grace_period(managed: Managed) -> None:
    hook = await stored(managed.store)
    now = utcnow()
    changed = await managed.management.rotate_secret(hook, uuid.uuid4(), now)
    assert changed.client_secret != hook.client_secret
    assert changed.previous_secret == hook.client_secret
    grace = timedelta(seconds=Settings().secret_grace_period)
    assert changed.previous_secret_expires == now + grace
    assert managed.told.changed == [hook.webhook_id]


async def test_expiry_makes_webhooks_inactive_and_tells_the_workers(managed: Managed) -> None:
    hook = await stored(managed.store)
    await stored(managed.store)  # not expiring
    await set_expiration(managed.store, hook, utcnow() - timedelta(seconds=1))
    expired = await managed.management.expire_due()
    assert [h.webhook_id for h in expired] == [hook.webhook_id]
    assert (await current(managed.store, hook)).status_code is WebhookStatus.INACTIVE
    assert managed.told.changed == [hook.webhook_id]


async def test_a_hand_retry_wakes_the_workers_when_it_queues(managed: Managed) -> None:
    hook = await stored(managed.store)
    event = make_event(hook.group_key)
    note = make_notification(hook, event, state=NotificationState.PARKED)
    await managed.store.add_events([event], [note])
    retry = managed.management.retry
    assert await retry(hook.group_key, hook.webhook_id, uuid.uuid4()) is Requeue.NOT_FOUND
    assert managed.told.wakes == 0
    assert await retry(hook.group_key, hook.webhook_id, note.notification_id) is Requeue.QUEUED
    assert managed.told.wakes == 1
