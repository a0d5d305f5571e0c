"""scripts/example_receiver.py verifies GET deliveries: their signed payload is the query
string as sent, which is not JSON."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.acceptance.processes import create_key, example_receiver, gateway_process

pytestmark = pytest.mark.timeout(90)


def _lines(record: Path, timeout: float = 20.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if record.exists() and (text := record.read_text()).strip():
            return [json.loads(line) for line in text.splitlines()]
        time.sleep(0.05)
    raise AssertionError("the receiver recorded no verified notification")


def _history(url: str, key: str, webhook_id: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        path = f"{url}/api/v1/Webhooks/{webhook_id}/history/query"
        rows: list[dict[str, object]] = httpx.get(path, headers={"Api-Key": key}).json()["records"]
        if rows and all(row["isSuccessful"] for row in rows):
            return rows
        time.sleep(0.1)
    raise AssertionError("the GET notification was not recorded delivered")


def test_a_get_delivery_is_verified_over_its_query_string(tmp_path: Path) -> None:
    database = "sqlite:///data/gateway.db"
    key = create_key(tmp_path, database, "get")["apiKey"]
    record = tmp_path / "received.jsonl"
    headers = {"Api-Key": key}
    env = {"GATEWAY_WORKER_PROCESSES": "0"}
    with (
        example_receiver(("--record", str(record))) as receiver,
        gateway_process(tmp_path, database, env) as url,
    ):
        body = {
            "name": "get",
            "requestContentType": "Id",
            "callbackHttpMethod": "GET",
            "callbackUrl": f"{receiver}/hook?partner=a%20b",
        }
        made = httpx.post(f"{url}/api/v1/Webhooks", headers=headers, json=[body])
        hook = made.raise_for_status().json()[0]
        httpx.post(f"{receiver}/secret", content=hook["clientSecret"]).raise_for_status()
        rule = {"webhookId": hook["webhookId"], "tableKey": "Invoice", "eventType": "U"}
        httpx.post(f"{url}/api/v1/WebhookRules", headers=headers, json=[rule]).raise_for_status()
        event = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "42"}, {"id": "7"}]}
        httpx.post(f"{url}/api/v1/Events", headers=headers, json=event).raise_for_status()

        [line] = _lines(record)
        payload = line["payload"]
        assert isinstance(payload, dict)
        assert (payload["ids"], payload["partner"]) == ("42,7", "a b")
        assert payload["webhookId"] == hook["webhookId"]
        [row] = _history(url, key, hook["webhookId"])
        assert row["responseStatusCode"] == "200"

        # It checks what it says: the signature over another query string is refused.
        query = "webhookId=x&ids=1"
        stamp = int(time.time())
        signature = Webhook(hook["clientSecret"]).sign(
            "msg_1", datetime.fromtimestamp(stamp, UTC), query
        )
        signed = {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(stamp),
            "webhook-signature": signature,
        }
        assert httpx.get(f"{receiver}/hook?{query}", headers=signed).status_code == 200
        assert httpx.get(f"{receiver}/hook?{query}2", headers=signed).status_code == 401
        old = datetime.fromtimestamp(stamp - 600, UTC)
        stale = {
            **signed,
            "webhook-timestamp": str(stamp - 600),
            "webhook-signature": Webhook(hook["clientSecret"]).sign("msg_1", old, query),
        }
        assert httpx.get(f"{receiver}/hook?{query}", headers=stale).status_code == 401
