"""The installed `gateway serve`, driven by the published ADS Platform client (lockstep-sdk).

Everything here crosses real sockets: the client talks HTTP to the gateway subprocess, and the
gateway runs each handshake against scripts/example_receiver.py in another subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lockstep.lockstep_api import LockstepApi

from tests.acceptance.processes import create_key, example_receiver, gateway_process

pytestmark = pytest.mark.timeout(120)


@dataclass
class Deployment:
    url: str
    receiver: str
    key_a: str
    key_b: str

    def client(self, key: str) -> LockstepApi:
        """The SDK client as its documentation shows it (with_api_key returns nothing)."""
        api = LockstepApi(self.url, "acceptance")
        api.with_api_key(key)
        return api


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    workdir: Path = tmp_path_factory.mktemp("gateway")
    database = "sqlite:///data/gateway.db"
    key_a = create_key(workdir, database, "group-a")["apiKey"]
    key_b = create_key(workdir, database, "group-b")["apiKey"]
    with example_receiver() as receiver, gateway_process(workdir, database) as url:
        yield Deployment(url, receiver, key_a, key_b)


def _webhook(receiver: str, name: str, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "requestContentType": "Full",
        "callbackHttpMethod": "POST",
        "callbackUrl": f"{receiver}/hooks/{name}",
        "retryCount": 2,
        **extra,
    }


def test_status_names_the_group(deployment: Deployment) -> None:
    status = deployment.client(deployment.key_a).status.ping()
    assert status.success, status.error
    assert status.value.loggedIn is True
    assert status.value.groupKey


def test_full_webhook_lifecycle_through_the_sdk(deployment: Deployment) -> None:
    api = deployment.client(deployment.key_a)
    created = api.webhooks.create_webhooks(
        [_webhook(deployment.receiver, "invoices"), _webhook(deployment.receiver, "payments")]
    )
    assert created.success, created.error
    hooks = {h.name: h for h in created.value}
    assert {h.statusCode for h in hooks.values()} == {"Active"}
    hook_id = hooks["invoices"].webhookId
    assert hooks["invoices"].clientSecret.startswith("whsec_")

    fetched = api.webhooks.retrieve_webhook(hook_id)
    assert fetched.success and fetched.value.callbackUrl.endswith("/hooks/invoices")

    # Rules: create, retrieve, patch, query.
    rules = api.webhookRules.create_webhook_rules(
        [
            {"webhookId": hook_id, "tableKey": "Invoice", "eventType": "U"},
            {
                "webhookId": hook_id,
                "tableKey": "Invoice",
                "eventType": "Insert",
                "filter": "total gt 100",
            },
        ]
    )
    assert rules.success, rules.error
    insert_rule = next(r for r in rules.value if r.eventType == "I")
    assert api.webhookRules.retrieve_webhook_rule(insert_rule.webhookRuleId).value.filter == (
        "total gt 100"
    )
    patched_rule = api.webhookRules.update_webhook_rule(
        insert_rule.webhookRuleId, {"filter": "total gt 500"}
    )
    assert patched_rule.success and patched_rule.value.filter == "total gt 500"
    queried_rules = api.webhookRules.query_webhook_rules(
        f"webhookId eq '{hook_id}'", None, "eventType DESC", 10, 0
    )
    assert queried_rules.success, queried_rules.error
    assert [r.eventType for r in queried_rules.value.records] == ["U", "I"]

    # Query with filter, order, paging and include.
    page = api.webhooks.query_webhooks(
        "name startswith 'inv' or name eq 'payments'", "WebhookRules", "name DESC", 1, 0
    )
    assert page.success, page.error
    assert page.value.totalCount == 2 and len(page.value.records) == 1
    first = page.value.records[0]
    assert first.name == "payments" and first.webhookRules == []
    second = api.webhooks.query_webhooks(None, "WebhookRules", "name DESC", 1, 1).value.records[0]
    assert second.name == "invoices" and len(second.webhookRules) == 2

    # PATCH: a name; a URL change with handshake; pause and reactivate.
    assert api.webhooks.update_webhook(hook_id, {"name": "invoices-v2"}).value.name == "invoices-v2"
    moved = api.webhooks.update_webhook(hook_id, {"callbackUrl": f"{deployment.receiver}/moved"})
    assert moved.success and moved.value.callbackUrl.endswith("/moved")
    paused = api.webhooks.update_webhook(hook_id, {"statusCode": "Inactive"})
    assert paused.value.statusCode == "Inactive"
    resumed = api.webhooks.update_webhook(hook_id, {"statusCode": "Active"})
    assert resumed.value.statusCode == "Active"

    # A new secret.
    old_secret = resumed.value.clientSecret
    renewed = api.webhooks.regenerate_client_secret(hook_id)
    assert renewed.success and renewed.value.clientSecret not in (None, old_secret)

    # Retry of an unknown history entry: the SDK cannot parse any reply, so call it directly.
    retry = httpx.get(
        f"{deployment.url}/api/v1/Webhooks/{hook_id}/history/{hook_id}/retry",
        headers={"Api-Key": deployment.key_a},
    )
    assert retry.status_code == 404
    assert retry.headers["content-type"].startswith("application/problem+json")

    # Delete a rule, then the webhooks.
    assert api.webhookRules.delete_webhook_rule(insert_rule.webhookRuleId).success
    assert api.webhookRules.retrieve_webhook_rule(insert_rule.webhookRuleId).status_code == 404
    for hook in hooks.values():
        assert api.webhooks.delete_webhook(hook.webhookId).success
    assert api.webhooks.retrieve_webhook(hook_id).status_code == 404


def test_a_failed_handshake_creates_nothing(deployment: Deployment) -> None:
    api = deployment.client(deployment.key_a)
    before = api.webhooks.query_webhooks(None, None, None, 500, 0).value.totalCount
    good = _webhook(deployment.receiver, "good")
    bad = _webhook(deployment.receiver, "bad", callbackUrl="http://127.0.0.1:9/closed")
    result = api.webhooks.create_webhooks([good, bad])
    assert not result.success and result.status_code == 400
    assert api.webhooks.query_webhooks(None, None, None, 500, 0).value.totalCount == before


def test_another_group_sees_none_of_it(deployment: Deployment) -> None:
    api_a = deployment.client(deployment.key_a)
    api_b = deployment.client(deployment.key_b)
    hook = api_a.webhooks.create_webhooks([_webhook(deployment.receiver, "private")]).value[0]
    rule = api_a.webhookRules.create_webhook_rules(
        [{"webhookId": hook.webhookId, "tableKey": "Invoice", "eventType": "D"}]
    ).value[0]
    assert api_b.webhooks.retrieve_webhook(hook.webhookId).status_code == 404
    assert api_b.webhooks.update_webhook(hook.webhookId, {"name": "mine"}).status_code == 404
    assert api_b.webhooks.delete_webhook(hook.webhookId).status_code == 404
    assert api_b.webhooks.regenerate_client_secret(hook.webhookId).status_code == 404
    assert api_b.webhookRules.retrieve_webhook_rule(rule.webhookRuleId).status_code == 404
    assert api_b.webhookRules.delete_webhook_rule(rule.webhookRuleId).status_code == 404
    assert api_b.webhooks.query_webhooks(None, None, None, 500, 0).value.totalCount == 0
    assert api_b.webhookRules.query_webhook_rules(None, None, None, 500, 0).value.totalCount == 0
    # ... and group A's records are untouched.
    assert api_a.webhooks.retrieve_webhook(hook.webhookId).value.name == "private"
    assert api_a.webhookRules.retrieve_webhook_rule(rule.webhookRuleId).success
