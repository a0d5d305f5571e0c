"""Portal sessions ended before their time, over real HTTP on both stores (gateway.portal.
revocation): a signed-out session's cookie opens nothing when replayed, and DELETE /api/v1/
PortalSessions or `gateway portal-revoke` ends every session and unopened link of one group,
no other group's, and no link made afterwards."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from gateway.models import Scope, WebhookStatus, utcnow
from gateway.portal import revocation
from gateway.portal.web import SESSION_COOKIE
from tests.factories import make_webhook
from tests.gateway_server import RunningGateway
from tests.integration.test_portal_sessions import run_cli
from tests.portal import Partner

ENDED = "signed out or revoked"


async def test_a_signed_out_session_opens_nothing_when_its_cookie_is_replayed(
    gateway_on_each_store: RunningGateway,
) -> None:
    gateway = gateway_on_each_store
    key, record = await gateway.add_key("acme")
    hook = make_webhook(record.group_key, name="invoices")
    await gateway.ctx.store.add_webhooks([hook])
    async with Partner(gateway) as partner, Partner(gateway) as other:
        await partner.enter(key)
        await other.enter(key)
        sealed, csrf = partner.http.cookies[SESSION_COOKIE], partner.csrf
        out = await partner.submit("/portal/sign-out")
        assert out.status_code == 200 and 'id="signed-out"' in out.text
        partner.http.cookies.set(SESSION_COOKIE, sealed, path="/portal")  # a copy kept
        replayed = await partner.page("/portal/webhooks")
        assert replayed.status_code == 401 and ENDED in replayed.text
        assert "new portal link" in replayed.text
        partner.http.cookies.set(SESSION_COOKIE, sealed, path="/portal")
        paused = await partner.submit(f"/portal/webhooks/{hook.webhook_id}/status",
                                      {"action": "pause"}, csrf=csrf, follow=False)  # fmt: skip
        assert paused.status_code == 401 and ENDED in paused.text
        # Nothing changed, and another session of the same group stays open.
        found = await gateway.ctx.store.get_webhook(record.group_key, hook.webhook_id)
        assert found is not None and found.status_code is WebhookStatus.ACTIVE
        assert (await other.page("/portal/webhooks")).status_code == 200


async def test_revoking_a_group_ends_its_sessions_and_unopened_links_only(
    gateway_on_each_store: RunningGateway,
) -> None:
    gateway = gateway_on_each_store
    key, record = await gateway.add_key("acme")
    other_key, _ = await gateway.add_key("other")
    async with (
        Partner(gateway) as inside,
        Partner(gateway) as arriving,
        Partner(gateway) as neighbour,
        Partner(gateway) as newcomer,
    ):
        await inside.enter(key)
        await neighbour.enter(other_key)
        unopened = (await arriving.link(key, readOnly=True))["url"]
        async with gateway.client(key) as api:
            answer = await api.delete("/api/v1/PortalSessions")
        assert answer.status_code == 200, answer.text
        assert str(record.group_key) in answer.json()["messages"][0]
        ended = await inside.page("/portal/webhooks")
        assert ended.status_code == 401 and ENDED in ended.text
        refused = await arriving.open(unopened)
        assert refused.status_code == 401 and "was revoked" in refused.text
        assert (await arriving.page("/portal/webhooks")).status_code == 401
        assert (await neighbour.page("/portal/webhooks")).status_code == 200
        await newcomer.enter(key)  # a link made afterwards opens as usual
        assert (await newcomer.page("/portal/webhooks")).status_code == 200


async def test_revoking_needs_a_webhooks_key(gateway_on_each_store: RunningGateway) -> None:
    gateway = gateway_on_each_store
    key, _ = await gateway.add_key("acme")
    publisher, _ = await gateway.add_key("acme", scopes=frozenset({Scope.EVENTS}))
    async with Partner(gateway) as partner:
        await partner.enter(key)
        async with gateway.client() as nobody, gateway.client(publisher) as platform:
            assert (await nobody.delete("/api/v1/PortalSessions")).status_code == 401
            assert (await platform.delete("/api/v1/PortalSessions")).status_code == 403
        assert (await partner.page("/portal/webhooks")).status_code == 200


async def test_the_command_revokes_a_group_by_name(gateway_on_each_store: RunningGateway) -> None:
    gateway = gateway_on_each_store
    key, record = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        await partner.enter(key)
        argv = ["portal-revoke", "--group", "acme",
                "--database", gateway.ctx.settings.database_url]  # fmt: skip
        printed = await asyncio.to_thread(run_cli, argv)
        assert printed["groupKey"] == str(record.group_key)
        assert (await partner.page("/portal/webhooks")).status_code == 401


async def test_housekeeping_forgets_a_revocation_once_nothing_it_ends_can_be_open(
    gateway_on_each_store: RunningGateway,
) -> None:
    gateway = gateway_on_each_store
    store = gateway.ctx.store
    key, record = await gateway.add_key("acme")
    async with Partner(gateway) as partner:
        await partner.enter(key, expiresInSeconds=600)
        await partner.submit("/portal/sign-out")
        await revocation.end_group(store, record.group_key, utcnow())
        assert await store.prune_portal_revocations(utcnow()) == 0
        # The signed-out session's row outlives its session, the group's the longest one.
        assert await store.prune_portal_revocations(utcnow() + timedelta(minutes=11)) == 1
        assert await store.portal_revoked_before(record.group_key, record.group_key) is not None
        longest = revocation.LONGEST + timedelta(seconds=1)
        assert await store.prune_portal_revocations(utcnow() + longest) == 1
        assert await store.portal_revoked_before(record.group_key, record.group_key) is None


async def test_two_revocations_of_one_subject_keep_the_later_times(
    gateway_on_each_store: RunningGateway,
) -> None:
    store = gateway_on_each_store.ctx.store
    _, record = await gateway_on_each_store.add_key("acme")
    group, now = record.group_key, utcnow()
    await store.revoke_portal(group, now, now + timedelta(hours=1))
    await store.revoke_portal(group, now - timedelta(minutes=5), now + timedelta(minutes=5))
    assert await store.portal_revoked_before(group, group) == now
    assert await store.prune_portal_revocations(now + timedelta(minutes=30)) == 0
    await store.revoke_portal(group, now + timedelta(seconds=1), now)
    assert await store.portal_revoked_before(group, group) == now + timedelta(seconds=1)
