"""Which answers pass the verification handshake (contract §4), seen through the API: a create
either passes and makes the webhook, or answers 400 saying what came back and makes nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway_server import RunningGateway
from tests.receiver import Answer, Receiver


async def create(gateway: RunningGateway, url: str, method: str = "POST") -> Any:
    key = (await gateway.add_key("acme"))[0]
    body = {
        "name": "n",
        "requestContentType": "Id",
        "callbackHttpMethod": method,
        "callbackUrl": url,
    }
    async with gateway.client(key) as api:
        answer = await api.post("/api/v1/Webhooks", json=[body])
        count = (await api.get("/api/v1/Webhooks/query")).json()["totalCount"]
    return answer, count


@pytest.mark.parametrize("status", [300, 301, 307, 399])
async def test_a_3xx_fails_and_says_redirects_are_not_followed(
    gateway: RunningGateway, receiver: Receiver, status: int
) -> None:
    target = receiver.plan("/elsewhere")
    url = receiver.plan("/hook", Answer(status=status, headers={"location": target}))
    answer, count = await create(gateway, url)
    assert answer.status_code == 400, answer.text
    assert (
        f"callback answered HTTP {status} (redirects are not followed)" in answer.json()["detail"]
    )
    assert count == 0
    assert [s.path for s in receiver.seen] == ["/hook"]


@pytest.mark.parametrize("status", [400, 404, 410, 500])
async def test_any_other_non_2xx_fails_naming_the_status(
    gateway: RunningGateway, receiver: Receiver, status: int
) -> None:
    answer, count = await create(gateway, receiver.plan("/hook", Answer(status=status)))
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert f"callback answered HTTP {status}" in detail and "redirect" not in detail
    assert count == 0


@pytest.mark.parametrize("status", [200, 201, 299])
async def test_any_2xx_echoing_the_code_passes(
    gateway: RunningGateway, receiver: Receiver, status: int
) -> None:
    answer, count = await create(gateway, receiver.plan("/hook", Answer(status=status)))
    assert answer.status_code == 200, answer.text
    assert count == 1


async def test_a_204_cannot_echo_the_code_and_fails(
    gateway: RunningGateway, receiver: Receiver
) -> None:
    answer, count = await create(gateway, receiver.plan("/hook", Answer(status=204)))
    assert answer.status_code == 400, answer.text
    assert "body did not match the code" in answer.json()["detail"]
    assert count == 0


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH"])
async def test_the_handshake_uses_the_webhooks_method(
    gateway: RunningGateway, receiver: Receiver, method: str
) -> None:
    answer, _ = await create(gateway, receiver.plan("/hook"), method=method.lower())
    assert answer.status_code == 200, answer.text
    [seen] = receiver.seen
    assert seen.method == method and seen.is_handshake
