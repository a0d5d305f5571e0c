"""Strict per-webhook ordering (issue 22), end to end, on SQLite and on PostgreSQL.

`gateway serve` runs as a real process with two worker processes, one deployment per store
shared by the tests of this module (each test has its own table key, receiver and webhooks,
deleted afterwards); one test adds a gateway in the test's process whose own worker takes its
publishes straight from the API (the hand-off). A receiver in the test's event loop
(tests.order_receiver) records every notification's `sequence`, when it arrived and was
answered, and how many requests of the same webhook were in flight then; each answer is held a
little (less than a send's timeout), so two sends at once overlap there.

A Strict webhook's notifications must arrive one at a time, in `sequence` order, through
failures and retries, a pause, Errored and reactivation, a SIGKILLed worker holding the head of
its queue, two worker processes, and a switch of `deliveryOrder` by PATCH; an Unordered webhook
beside it still gets everything, several at once. A retry keeps its place: consecutive attempts
of one notification count as one place in the order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from tests import postgres
from tests.acceptance.processes import (
    children,
    create_key,
    start_gateway,
    stat_fields,
    stop,
)
from tests.gateway_server import gateway_settings, run_gateway
from tests.order_receiver import Arrival, OrderReceiver, run_order_receiver
from tests.tenant import STORES

pytestmark = pytest.mark.timeout(60)
ENV = {
    "GATEWAY_WORKER_PROCESSES": "2",
    # A failed attempt is due again 50 ms later, and a worker looks for due ones every 100 ms.
    "GATEWAY_RETRY_SCHEDULE": "0.05",
    "GATEWAY_RETRY_JITTER": "0",
    "GATEWAY_POLL_INTERVAL": "0.1",
    # A killed worker's lease runs out after 3 s (the shortest a 1 s send timeout allows).
    "GATEWAY_DELIVERY_TIMEOUT": "1",
    "GATEWAY_LEASE_SECONDS": "3",
    "GATEWAY_SHUTDOWN_DEADLINE": "2",
}
STRICT, LOOSE = "/strict", "/loose"


@dataclass
class Deployment:
    """A running `gateway serve`, its database and an API key of its group."""

    serve: subprocess.Popen[bytes]
    url: str
    key: str
    database: str
    workdir: Path


@contextlib.contextmanager
def deploy(workdir: Path, database: str, env: Mapping[str, str]) -> Iterator[Deployment]:
    """`gateway serve` with these settings on this database, stopped afterwards."""
    key = create_key(workdir, database, "strict")["apiKey"]
    serve, url = start_gateway(workdir, database, env)
    try:
        yield Deployment(serve, url, key, database, workdir)
    finally:
        stop(serve)


def database_for(store: str, request: pytest.FixtureRequest) -> str:
    if store == "postgres":
        return postgres.create_schema(request.getfixturevalue("postgres_database"))
    return "sqlite:///data/gateway.db"  # in the deployment's working directory


@pytest.fixture(scope="module", params=STORES)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """serve with two worker processes on each store, for the whole module."""
    database = database_for(request.param, request)
    try:
        with deploy(tmp_path_factory.mktemp("strict"), database, ENV) as running:
            yield running
    finally:
        if request.param == "postgres":
            postgres.drop_schema(database)


@dataclass
class Api:
    """The deployment's API for one test: its own table key, and the webhooks it made."""

    client: httpx.AsyncClient
    receiver: OrderReceiver
    table: str = field(default_factory=lambda: f"T{uuid4().hex}")
    made: list[str] = field(default_factory=list)

    async def webhook(self, path: str, order: str, **settings: Any) -> str:
        """A webhook to the receiver's `path`, subscribed to this test's table; its id."""
        body = {
            "name": path.strip("/"),
            "requestContentType": "Full",
            "callbackHttpMethod": "POST",
            "callbackUrl": self.receiver.url + path,
            "deliveryOrder": order,
            "webhookRules": [{"tableKey": self.table, "eventType": "U"}],
            **settings,
        }
        answer = await self.client.post("/api/v1/Webhooks", json=[body])
        assert answer.status_code == 200, answer.text
        hook: dict[str, Any] = answer.json()[0]
        assert hook["deliveryOrder"] == order
        self.made.append(hook["webhookId"])
        return str(hook["webhookId"])

    async def publish(self, count: int) -> None:
        """`count` events of this test's table in one request: one notification each."""
        events = [
            {"tableKey": self.table, "eventType": "U", "records": [{"id": str(i)}]}
            for i in range(count)
        ]
        answer = await self.client.post("/api/v1/Events", json=events)
        assert answer.status_code == 202, answer.text

    async def patch(self, hook_id: str, **fields: Any) -> dict[str, Any]:
        """PATCH the webhook; the webhook as the answer shows it."""
        answer = await self.client.patch(f"/api/v1/Webhooks/{hook_id}", json=fields)
        assert answer.status_code == 200, answer.text
        changed: dict[str, Any] = answer.json()
        return changed

    async def until_status(self, hook_id: str, status: str, timeout: float = 10.0) -> None:
        """Wait until the webhook's statusCode is `status`; fail after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            answer = await self.client.get(f"/api/v1/Webhooks/{hook_id}")
            if answer.json()["statusCode"] == status:
                return
            assert time.monotonic() < deadline, f"not {status} after {timeout} s: {answer.text}"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def open_api(deployment: Deployment, receiver: OrderReceiver) -> AsyncIterator[Api]:
    """An Api for one test; its webhooks are deleted afterwards, so nothing of theirs is left
    for the deployment's workers to send while the next test runs."""
    headers = {"Api-Key": deployment.key}
    async with httpx.AsyncClient(base_url=deployment.url, headers=headers, timeout=10) as client:
        api = Api(client, receiver)
        try:
            yield api
        finally:
            for hook_id in api.made:
                await client.delete(f"/api/v1/Webhooks/{hook_id}")


@pytest.fixture
async def receiver() -> AsyncIterator[OrderReceiver]:
    """A recording receiver on a loopback port."""
    async with run_order_receiver() as running:
        yield running


@pytest.fixture
async def api(deployment: Deployment, receiver: OrderReceiver) -> AsyncIterator[Api]:
    """The shared deployment's API, for this test's table and webhooks."""
    async with open_api(deployment, receiver) as opened:
        yield opened


def places(arrivals: Iterable[Arrival]) -> list[list[Arrival]]:
    """Arrivals grouped by place in the order: consecutive attempts of one notification."""
    return [list(run) for _, run in itertools.groupby(arrivals, lambda a: a.notification_id)]


def assert_strict(arrivals: list[Arrival], sequences: Iterable[int]) -> None:
    """One at a time, and in `sequence` order: a retry keeps its place (its attempts follow
    one another), and the places are exactly these sequences."""
    overlapping = [(a.sequence, a.overlapping) for a in arrivals if a.overlapping]
    assert not overlapping, f"sent while others of the webhook were in flight: {overlapping}"
    order = [run[0].sequence for run in places(arrivals)]
    assert order == list(sequences), f"arrived in this order: {[a.sequence for a in arrivals]}"


def assert_concurrent(arrivals: list[Arrival], count: int) -> None:
    """Every one of 1..count arrived, some while others were in flight (Unordered)."""
    assert {a.sequence for a in arrivals} == set(range(1, count + 1))
    assert max(a.overlapping for a in arrivals) >= 1, "an Unordered webhook sent one at a time"


async def lease_owner_pid(deployment: Deployment, notification_id: str) -> int:
    """The pid of the worker process holding this notification's lease (its owner's name
    is worker-<host>-<pid>-<hex>)."""
    owner = await notification_column(deployment, "lease_owner", notification_id)
    assert owner, f"notification {notification_id} is not leased"
    return int(str(owner).rsplit("-", 2)[1])


async def notification_column(deployment: Deployment, column: str, notification_id: str) -> Any:
    """One column of one notification's row, read from outside the gateway."""
    sql = f"SELECT {column} FROM notifications WHERE notification_id = "
    if deployment.database.startswith("postgresql"):
        conn = await asyncpg.connect(deployment.database)
        try:
            return await conn.fetchval(sql + "$1", UUID(notification_id))
        finally:
            await conn.close()
    with contextlib.closing(sqlite3.connect(deployment.workdir / "data" / "gateway.db")) as db:
        return db.execute(sql + "?", (notification_id,)).fetchone()[0]


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        return stat_fields(Path(f"/proc/{pid}/stat"))[0] != "Z"
    except OSError:
        return False


async def test_failed_attempts_are_retried_before_anything_after_them(
    api: Api, receiver: OrderReceiver
) -> None:
    await api.webhook(STRICT, "Strict", retryCount=5)
    await api.webhook(LOOSE, "Unordered")
    failing = {3: 2, 7: 3, 12: 1}  # sequence: 500s before its 200
    for sequence, times in failing.items():
        receiver.plan(STRICT, sequence, *[500] * times)
    await api.publish(15)
    await receiver.until_delivered(STRICT, 15)
    await receiver.until_delivered(LOOSE, 15)

    arrivals = receiver.of(STRICT)
    assert_strict(arrivals, range(1, 16))
    for run in places(arrivals):
        statuses = [a.status for a in run]
        failed = failing.get(run[0].sequence, 0)
        # A 200 ends its place: only a 200 the gateway never got (a timeout) is sent again.
        assert statuses[:failed] == [500] * failed and set(statuses[failed:]) == {200}, run
    assert_concurrent(receiver.of(LOOSE), 15)


async def test_a_permanent_failure_lets_the_queue_move_on(
    api: Api, receiver: OrderReceiver, deployment: Deployment
) -> None:
    # ServerErrorsOnly: a 400 fails the notification for good, and is not retried.
    await api.webhook(STRICT, "Strict", retryPolicy="ServerErrorsOnly")
    receiver.plan(STRICT, 3, 400)
    await api.publish(6)
    await receiver.until("sequence 6 answered", lambda: 6 in receiver.delivered(STRICT), timeout=20)

    arrivals = receiver.of(STRICT)
    assert_strict(arrivals, range(1, 7))
    third = places(arrivals)[2]
    assert [a.status for a in third] == [400], "the 400 was not retried"
    failed = third[0].notification_id
    assert await notification_column(deployment, "state", failed) == "failed"


async def test_a_pause_parks_the_queue_and_a_resume_sends_it_in_order(
    api: Api, receiver: OrderReceiver
) -> None:
    hook = await api.webhook(STRICT, "Strict")
    receiver.holds[STRICT] = 0.05
    await api.publish(10)
    await receiver.until("3 deliveries", lambda: len(receiver.delivered(STRICT)) >= 3, 20)
    assert (await api.patch(hook, statusCode="Inactive"))["statusCode"] == "Inactive"
    await asyncio.sleep(0.2)  # a send the pause overtook arrives within this
    await receiver.until("the send in flight answered", lambda: not receiver.in_flight(STRICT), 5)
    paused_at = len(receiver.of(STRICT))
    await api.publish(5)  # while paused: queued behind the ten
    await asyncio.sleep(0.5)  # a worker that missed the pause would send within this
    assert len(receiver.of(STRICT)) == paused_at, "sent while Inactive"
    assert paused_at < 10, "the pause came too late to park anything"

    assert (await api.patch(hook, statusCode="Active"))["statusCode"] == "Active"
    await receiver.until_delivered(STRICT, 15)
    assert_strict(receiver.of(STRICT), range(1, 16))


async def test_errored_by_failures_parks_the_queue_and_reactivation_resumes_it_in_order(
    api: Api, receiver: OrderReceiver
) -> None:
    # retryCount 1: the second consecutive failure makes it Errored.
    hook = await api.webhook(STRICT, "Strict", retryCount=1)
    receiver.plan(STRICT, 4, 500, 500, 500, 500)
    await api.publish(8)
    await api.until_status(hook, "Errored")
    await asyncio.sleep(0.3)  # anything sent after the failures would arrive within this
    stopped = places(receiver.of(STRICT))
    assert [run[0].sequence for run in stopped] == [1, 2, 3, 4], "nothing went past the head"
    assert [a.status for a in stopped[-1]] == [500, 500]
    await api.publish(4)  # while Errored
    await asyncio.sleep(0.3)
    assert places(receiver.of(STRICT)) == stopped, "sent while Errored"

    receiver.plan(STRICT, 4)  # the callback is mended: 200 from now on
    assert (await api.patch(hook, statusCode="Active"))["statusCode"] == "Active"
    await receiver.until_delivered(STRICT, 12)
    arrivals = receiver.of(STRICT)
    assert_strict(arrivals, range(1, 13))
    resumed = arrivals[sum(map(len, stopped))]
    assert (resumed.sequence, resumed.status) == (4, 200), "the failed head goes first"


async def test_a_sigkilled_worker_holding_the_head_is_overtaken_by_nothing(
    api: Api, receiver: OrderReceiver, deployment: Deployment
) -> None:
    await api.webhook(STRICT, "Strict")
    await api.webhook(LOOSE, "Unordered")
    release = receiver.catch(STRICT, 4)
    await api.publish(10)
    await receiver.until("sequence 4", lambda: 4 in receiver.sequences(STRICT), 20)
    # Killed well within the send's timeout (1 s): the worker dies holding the head.
    head = next(a for a in receiver.of(STRICT) if a.sequence == 4)
    pid = await lease_owner_pid(deployment, head.notification_id)
    assert pid in children(deployment.serve.pid), "the head is leased to a worker process"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, f"worker {pid} outlived its SIGKILL"
        await asyncio.sleep(0.02)
    killed_at = time.monotonic()
    release.set()  # the answer goes nowhere: its worker is dead

    # While the dead worker's lease runs (3 s), the strict queue waits behind its head; the
    # Unordered webhook beside it does not.
    await api.publish(10)
    await receiver.until(
        "the Unordered webhook's sequences 11..20",
        lambda: receiver.delivered(LOOSE) >= set(range(11, 21)),
        timeout=10,
    )
    assert receiver.sequences(STRICT) == [1, 2, 3, 4], "the head's lease has not run out yet"
    loose_done = time.monotonic() - killed_at

    await receiver.until_delivered(STRICT, 20)
    await receiver.until_delivered(LOOSE, 20)
    arrivals = receiver.of(STRICT)
    assert_strict(arrivals, range(1, 21))
    again = arrivals[4]
    assert (again.sequence, again.notification_id) == (4, head.notification_id), "head again"
    assert len(arrivals) == 21, "only the head went twice"
    assert_concurrent(receiver.of(LOOSE), 20)
    print(
        f"the head went again {again.arrived - killed_at:.2f} s after its worker was killed; "
        f"the Unordered webhook's ten published meanwhile had arrived after {loose_done:.2f} s"
    )


async def test_switching_to_strict_lets_the_sends_in_flight_finish_first(
    api: Api, receiver: OrderReceiver
) -> None:
    hook = await api.webhook(STRICT, "Unordered")
    # Long enough to switch while the six are in flight; shorter than a send's timeout (1 s).
    receiver.holds[STRICT] = 0.6
    await api.publish(6)
    await receiver.until("six arrivals", lambda: len(receiver.of(STRICT)) == 6, 20)
    assert receiver.in_flight(STRICT) >= 2, "the switch should come while several are in flight"
    assert (await api.patch(hook, deliveryOrder="Strict"))["deliveryOrder"] == "Strict"
    receiver.holds[STRICT] = 0.03
    await api.publish(10)
    await receiver.until_delivered(STRICT, 16)

    arrivals = receiver.of(STRICT)
    before, after = arrivals[:6], arrivals[6:]
    assert {a.sequence for a in before} == set(range(1, 7))
    finished = max(a.answered or 0.0 for a in before)
    assert after[0].arrived >= finished, "a strict send started before the ones in flight ended"
    assert_strict(after, range(7, 17))


async def test_switching_to_strict_holds_back_what_the_workers_claimed_but_had_not_sent(
    api: Api, receiver: OrderReceiver
) -> None:
    """In flight is what was sent: the workers claimed all forty at once, sent a few, and
    hold the rest; told of the switch, they give those back (Worker.webhook_changed), and
    they go one at a time, in order."""
    hook = await api.webhook(STRICT, "Unordered")
    receiver.holds[STRICT] = 0.3
    await api.publish(40)
    await receiver.until("the first sends", lambda: len(receiver.of(STRICT)) >= 4, 20)
    assert (await api.patch(hook, deliveryOrder="Strict"))["deliveryOrder"] == "Strict"
    # A send a worker began before it heard of the switch arrives within this.
    switched_at = time.monotonic() + 0.1
    receiver.holds[STRICT] = 0.03
    await receiver.until_delivered(STRICT, 40, timeout=30)

    arrivals = receiver.of(STRICT)
    sent = [a for a in arrivals if a.arrived < switched_at]
    later = [a for a in arrivals if a.arrived >= switched_at]
    assert later, "everything was sent before the switch"
    assert later[0].arrived >= max(a.answered or 0.0 for a in sent), "sent beside those in flight"
    assert_strict(later, sorted(set(range(1, 41)) - {a.sequence for a in sent}))


async def test_switching_to_unordered_sends_the_queue_at_once(
    api: Api, receiver: OrderReceiver
) -> None:
    hook = await api.webhook(STRICT, "Strict")
    receiver.holds[STRICT] = 0.1
    await api.publish(12)
    await receiver.until("3 deliveries", lambda: len(receiver.delivered(STRICT)) >= 3, 20)
    switched = await api.patch(hook, deliveryOrder="Unordered")
    switched_at = time.monotonic()
    assert switched["deliveryOrder"] == "Unordered"
    await receiver.until_delivered(STRICT, 12)

    arrivals = receiver.of(STRICT)
    before = [a for a in arrivals if a.arrived < switched_at]
    assert_strict(before, range(1, len(places(before)) + 1))
    assert {a.sequence for a in arrivals} == set(range(1, 13))
    later = [a for a in arrivals if a.arrived > switched_at]
    assert max(a.overlapping for a in later) >= 1, "still one at a time after the switch"


async def test_a_gateways_own_worker_beside_worker_processes_keeps_the_order(
    deployment: Deployment, receiver: OrderReceiver, tmp_path: Path
) -> None:
    """A second gateway on the same database, in this process, delivers from its own worker (a
    publish hands its new notifications straight to it), beside serve's two worker processes:
    three workers claim from the same queues."""
    database = deployment.database
    if not database.startswith("postgresql"):
        database = f"sqlite:///{deployment.workdir}/data/gateway.db"
    settings = gateway_settings(
        tmp_path, database_url=database, run_worker=True, retry_schedule=(0.05,),
        poll_interval=0.1, delivery_timeout=1.0, lease_seconds=3.0,
    )  # fmt: skip
    async with run_gateway(settings) as second:
        beside = dataclasses.replace(deployment, url=second.url)
        async with open_api(beside, receiver) as api:
            await api.webhook(STRICT, "Strict")
            await api.webhook(LOOSE, "Unordered")
            for _ in range(4):
                await api.publish(8)
            await receiver.until_delivered(STRICT, 32)
            await receiver.until_delivered(LOOSE, 32)
    assert_strict(receiver.of(STRICT), range(1, 33))
    assert_concurrent(receiver.of(LOOSE), 32)
