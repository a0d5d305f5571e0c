"""S4 ingest: events accepted a second, 100 to a request, beside a bare Starlette endpoint.

    python -m bench.s4_ingest [--requests 300] [--per-request 100] [--connections 4] [--quick]

`--connections` publishers (one pooled aiohttp session, that many keep-alive connections, one
request in flight on each) send `--requests` requests of `--per-request` Invoice update events
each, after 20 unmeasured ones; a request counts once it is answered 202. The bodies are
serialized before the clock starts, so the client spends its CPU on HTTP only.

Gateway runs, each on a fresh SQLite file with the delivery worker off (GATEWAY_RUN_WORKER=false)
so that only ingest is measured: with 1 subscribed webhook (each event is stored with one
pending notification; checked through /metrics afterwards), the same with the event-type
catalogue enforced (GATEWAY_ENFORCE_EVENT_TYPES=true, Invoice.U declared with INVOICE_SCHEMA,
which every record is checked against), and with no webhook (events only).
Baseline: bench/bare_ingest.py, a bare Starlette endpoint under the same uvicorn settings as
`gateway serve` that parses the same body with orjson and answers 202, driven the same way; the
ratio is the gateway's rate over that framework floor. Target: >= 10,000 events/s with 1 webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx

from bench.common import Body, Receiver, Report, drive, events, gateway, subscribe
from tests.acceptance.processes import free_port, stop, wait_until_up

WARMUP = 20
# What an invoice record of bench.common.events looks like, as a platform would declare it: its
# two properties typed and bounded, the optional ones an invoice carries, nothing else.
INVOICE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["id", "total"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 64},
        "total": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "customerId": {"type": "string", "maxLength": 64},
        "dueDate": {"type": "string", "format": "date"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku", "quantity"],
                "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer"}},
            },
        },
    },
    "additionalProperties": False,
}


def bodies(requests: int, per_request: int, key: str) -> list[Body]:
    """Serialized event batches with distinct record ids, and their headers."""
    headers = {"content-type": "application/json", "Api-Key": key}
    return [
        (json.dumps(events(per_request, i * per_request)).encode(), headers)
        for i in range(requests)
    ]


async def rate(url: str, batches: list[Body], connections: int) -> float:
    """Requests answered 202 a second, `connections` in flight (the first WARMUP unmeasured)."""
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(body: bytes, headers: dict[str, str]) -> None:
            async with session.post(f"{url}/api/v1/Events", data=body, headers=headers) as answer:
                await answer.read()
                if answer.status != 202:
                    raise AssertionError(f"HTTP {answer.status}: {await answer.text()}")

        await drive(batches[:WARMUP], connections, post)
        return await drive(batches[WARMUP:], connections, post)


@contextmanager
def bare_server() -> Iterator[str]:
    """bench/bare_ingest.py on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bare_ingest", str(port)])
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


async def gateway_rate(
    receiver: Receiver, webhooks: int, args: argparse.Namespace, *, enforced: bool = False
) -> tuple[float, float]:
    """(events a second, gateway CPU seconds per 1,000 events) with `webhooks` subscribed,
    and with `enforced`, the catalogue enforced (Invoice.U declared with INVOICE_SCHEMA)."""
    total = args.requests + WARMUP
    env = {"GATEWAY_RUN_WORKER": "false", "GATEWAY_ENFORCE_EVENT_TYPES": str(enforced).lower()}
    async with gateway(env=env) as gw, gw.client() as api:
        if enforced:
            invoice = {"tableKey": "Invoice", "eventType": "U", "name": "Invoice updated",
                       "schema": INVOICE_SCHEMA}  # fmt: skip
            (await api.post("/api/v1/EventTypes", json=[invoice])).raise_for_status()
        await subscribe(api, [f"{receiver.url}/s4/{i}" for i in range(webhooks)])
        batches = bodies(total, args.per_request, gw.key)
        cpu = gw.cpu_seconds()
        per_second = await rate(gw.url, batches, args.connections) * args.per_request
        # Read around the whole run, warm-up included: per event of all that were sent.
        cpu_ms_per_1k = (gw.cpu_seconds() - cpu) / (total * args.per_request) * 1e6
        pending = await _pending(api)
    if pending != total * args.per_request * webhooks:
        raise AssertionError(f"{pending} pending notifications after {total} requests")
    return per_second, cpu_ms_per_1k


async def _pending(api: httpx.AsyncClient) -> int:
    """Pending notifications, read from /metrics."""
    text = (await api.get("/metrics")).text
    found = re.search(r'^gateway_notifications\{state="pending"\} ([0-9.e+]+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


async def main(args: argparse.Namespace) -> None:
    report = Report(
        f"S4 ingest: {args.per_request} events a request, {args.connections} connections, "
        "SQLite, delivery worker off"
    )
    with bare_server() as url:
        bare = await rate(url, bodies(args.requests + WARMUP, args.per_request, ""),
                          args.connections) * args.per_request  # fmt: skip
    with Receiver.start() as receiver:
        one, one_cpu = await gateway_rate(receiver, 1, args)
        checked, checked_cpu = await gateway_rate(receiver, 1, args, enforced=True)
        none, none_cpu = await gateway_rate(receiver, 0, args)
    report.add("bare Starlette + orjson, 202", f"{bare:,.0f} events/s")
    report.add("gateway, 1 webhook (1 notification an event)",
               f"{one:,.0f} events/s ({one_cpu:.2f} CPU-ms/1k events)",
               f"{bare:,.0f}/s", f"{one / bare:.1%}", "≥ 10,000/s", one >= 10_000)  # fmt: skip
    report.add("gateway, 1 webhook, event types enforced (each record checked)",
               f"{checked:,.0f} events/s ({checked_cpu:.2f} CPU-ms/1k events)",
               f"{one:,.0f}/s (not enforced)", f"{checked / one:.1%}")  # fmt: skip
    report.add("gateway, 0 webhooks (events only)",
               f"{none:,.0f} events/s ({none_cpu:.2f} CPU-ms/1k events)",
               f"{bare:,.0f}/s", f"{none / bare:.1%}")  # fmt: skip
    report.print()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured requests a run")
    parser.add_argument("--per-request", type=int, default=100, help="events a request")
    parser.add_argument("--connections", type=int, default=4, help="concurrent publishers")
    parser.add_argument("--quick", action="store_true", help="50 requests a run")
    args = parser.parse_args()
    if args.quick:
        args.requests = 50
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
