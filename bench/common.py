"""Shared parts of the benchmarks: the receiver process, a gateway on a fresh database, the
bare-client baselines, and the report every scenario prints.

Every benchmark sends traffic to loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import orjson

from gateway import signing
from tests.acceptance.processes import (
    children,
    create_key,
    free_port,
    start_gateway,
    stat_fields,
    stop,
    wait_until_up,
)

BODY_TEMPLATE = {"tableKey": "Invoice", "eventType": "U", "records": [{"id": "1", "total": 10}]}
Body = tuple[bytes, dict[str, str]]


@dataclass
class Receiver:
    """bench/receiver.py in its own process."""

    url: str
    pid: int = 0

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[Receiver]:
        """Start it on a free loopback port; stop it afterwards."""
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "bench.receiver", str(port)])
        try:
            wait_until_up(f"http://127.0.0.1:{port}/count", proc)
            yield cls(f"http://127.0.0.1:{port}", proc.pid)
        finally:
            stop(proc)

    async def count(self, prefix: str = "") -> int:
        """Requests it has seen under `prefix` (handshakes and its own endpoints excluded)."""
        async with aiohttp.ClientSession() as session:
            return await self._count(session, prefix)

    async def _count(self, session: aiohttp.ClientSession, prefix: str) -> int:
        async with session.get(f"{self.url}/count", params={"prefix": prefix}) as answer:
            return int(await answer.text())

    async def wait_for(
        self, total: int, timeout: float, prefix: str = "", interval: float = 0.05
    ) -> None:
        """Poll every `interval` seconds until it has seen `total` requests under `prefix`.
        Each poll's CPU is taken from what this process measures, hence aiohttp: S1's bare
        client rows show about 130 µs of CPU a request for it against about 2,600 for httpx."""
        deadline = time.monotonic() + timeout
        # One session for the whole wait: making one costs more CPU than a hundred polls.
        async with aiohttp.ClientSession() as session:
            while (seen := await self._count(session, prefix)) < total:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"receiver saw {seen} of {total} under {prefix!r}")
                await asyncio.sleep(interval)

    async def last_receipt(self, prefix: str = "") -> float:
        """The wall-clock time (time.time()) of its latest request under `prefix`, 0 if none:
        a clock stopped by polling would stop up to a poll's interval late."""
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}/last", params={"prefix": prefix}) as answer:
                return float(await answer.text())

    async def disorder(self, prefix: str) -> int:
        """Arrivals under `prefix` (a path under `/order/`) that came after one of a higher
        `sequence` on the same path."""
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}/disorder", params={"prefix": prefix}) as answer:
                return int(await answer.text())

    async def latencies(self, reset: bool = False) -> list[float]:
        """Seconds from each body's `sentAt` to its receipt, in arrival order."""
        async with httpx.AsyncClient() as client:
            params = {"reset": "1"} if reset else {}
            found: list[float] = (await client.get(f"{self.url}/latencies", params=params)).json()
            return found

    def cpu_seconds(self) -> float:
        """User + system CPU its process has used so far."""
        return cpu_seconds(self.pid)


@dataclass
class Gateway:
    """`gateway serve` (and any `gateway worker` processes) on one database."""

    url: str
    key: str
    database_url: str
    pids: list[int] = field(default_factory=list)

    def client(self, timeout: float = 120) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers={"Api-Key": self.key}, timeout=timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU its processes have used so far."""
        return sum(cpu_seconds(pid) for pid in self.pids)


@contextlib.asynccontextmanager
async def gateway(
    database: str = "sqlite",
    env: Mapping[str, str] | None = None,
    workers: int | None = None,
    prepare: Callable[[str], Awaitable[None]] | None = None,
    settle: bool = True,
) -> AsyncIterator[Gateway]:
    """A gateway on a fresh database; `prepare(database_url)` runs after migrations, before
    `serve` starts (to seed rows directly). `workers` is serve's `worker_processes`: None is
    its default ("auto"), 0 the worker inside serve, N that many `gateway worker` processes
    started by serve. `Gateway.pids` holds serve's and its worker processes'. It is yielded
    once they have settled; with `settle=False` as soon as serve answers (a gateway seeded
    with pending work is never idle: it would drain meanwhile, or time out)."""
    processes = "auto" if workers is None else str(workers)
    settings = {"GATEWAY_WORKER_PROCESSES": processes, **(env or {})}
    with tempfile.TemporaryDirectory() as workdir:
        async with fresh_database(database, workdir) as url:
            key = create_key(Path(workdir), url, "bench", "webhooks,events")["apiKey"]
            if prepare is not None:
                await prepare(url)
            serve, base = start_gateway(Path(workdir), url, settings)
            try:
                # serve starts its worker processes before it listens: all exist by now, but
                # may still be importing; a scenario's clock starts once they have settled.
                gw = Gateway(base, key, url, [serve.pid, *sorted(children(serve.pid))])
                if settle:
                    await settled(gw.pids)
                yield gw
            finally:
                stop(serve)  # and its workers, before the schema they use is dropped


@contextlib.asynccontextmanager
async def fresh_database(database: str, workdir: str) -> AsyncIterator[str]:
    """A fresh SQLite file in `workdir`, or a fresh schema in a PostgreSQL database."""
    if database == "sqlite":
        yield f"sqlite:///{workdir}/gateway.db"
        return
    schema = f"bench_{uuid.uuid4().hex}"
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        separator = "&" if "?" in database else "?"
        yield f"{database}{separator}search_path={schema}"
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


async def subscribe(
    api: httpx.AsyncClient, callback_urls: Sequence[str], content: str = "Full", **fields: Any
) -> list[str]:
    """One POST webhook per URL (handshake included), each with a rule for Invoice U events
    and any other webhook `fields` (`deliveryOrder="Strict"`); return their ids."""
    ids = []
    for i, url in enumerate(callback_urls):
        hook = {
            "name": f"bench-{i}",
            "requestContentType": content,
            "callbackHttpMethod": "POST",
            "callbackUrl": url,
            "retryCount": 5,
            **fields,
        }
        created = (await api.post("/api/v1/Webhooks", json=[hook])).raise_for_status().json()
        ids.append(created[0]["webhookId"])
        rule = {"webhookId": ids[-1], "tableKey": "Invoice", "eventType": "U"}
        (await api.post("/api/v1/WebhookRules", json=[rule])).raise_for_status()
    return ids


def events(count: int, start: int = 0, **extra: Any) -> list[dict[str, Any]]:
    """`count` Invoice update events, one record each; `extra` goes into each record."""
    return [
        {**BODY_TEMPLATE, "records": [{"id": str(start + i), "total": i, **extra}]}
        for i in range(count)
    ]


def event_batches(count: int, per_request: int = 100) -> list[bytes]:
    """`count` events as JSON request bodies of `per_request` each, encoded before a clock
    starts: the platform's backend encodes its own events."""
    return [
        orjson.dumps(events(min(per_request, count - start), start))
        for start in range(0, count, per_request)
    ]


async def publish(gw: Gateway, batches: Sequence[bytes], lanes: int = 4) -> None:
    """POST each batch to /api/v1/Events, `lanes` requests at a time (as a platform's backend
    publishes from several threads; one lane at a time would measure the round trip of a
    publish while delivery holds the store, not the gateway's throughput).

    Through aiohttp: the CPU this process spends is taken from the gateway it measures, and
    httpx spent about 3 ms of it per request here (S1's bare httpx row)."""
    pending = iter(batches)
    headers = {"Api-Key": gw.key, "Content-Type": "application/json"}
    async with aiohttp.ClientSession(f"{gw.url}/", headers=headers) as session:

        async def lane() -> None:
            for body in pending:
                async with session.post("api/v1/Events", data=body) as answer:
                    answer.raise_for_status()

        await asyncio.gather(*(lane() for _ in range(lanes)))


async def delivered_count(api: httpx.AsyncClient) -> int:
    """Notifications the store records as delivered, read from /metrics."""
    return int(await metric(api, 'gateway_notifications{state="succeeded"}'))


async def metric(api: httpx.AsyncClient, sample: str) -> float:
    """One sample of /metrics, named with its labels as exposed; 0 when absent."""
    text = (await api.get("/metrics")).text
    found = re.search(rf"^{re.escape(sample)} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def failed_attempts(api: httpx.AsyncClient, webhook_id: str) -> int:
    """The failed attempts the store records for one webhook, from its history (/metrics
    counts only serve's own worker's attempts, not its worker processes')."""
    total, page = 0, 0
    while True:
        params: dict[str, str | int] = {"filter": "failureCount gt 0", "pageSize": 500}
        params["pageNumber"] = page
        answer = await api.get(f"/api/v1/Webhooks/{webhook_id}/history/query", params=params)
        records = answer.raise_for_status().json()["records"]
        total += sum(int(record["failureCount"]) for record in records)
        if len(records) < 500:
            return total
        page += 1


async def wait_delivered(api: httpx.AsyncClient, total: int, timeout: float = 600) -> None:
    """Poll /metrics until the store records `total` notifications as delivered."""
    deadline = time.monotonic() + timeout
    while (done := await delivered_count(api)) < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"store recorded {done} of {total} as delivered")
        await asyncio.sleep(0.05)


def signed_bodies(count: int) -> list[Body]:
    """The same kind of signed JSON body the gateway sends, one per notification."""
    secret = signing.generate_secret()
    out = []
    stamp = int(time.time())
    for i in range(count):
        body = json.dumps({**BODY_TEMPLATE, "sequence": i}).encode()
        headers = signing.STANDARD_WEBHOOKS.headers([secret], f"msg_{i}", stamp, body)
        headers["content-type"] = "application/json"
        out.append((body, headers))
    return out


async def bare_aiohttp(url: str, bodies: Sequence[Body], inflight: int) -> float:
    """Requests a second from one pooled aiohttp session, `inflight` at a time."""
    connector = aiohttp.TCPConnector(limit=inflight)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(body: bytes, headers: dict[str, str]) -> None:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()

        return await drive(bodies, inflight, post)


async def bare_httpx(url: str, bodies: Sequence[Body], inflight: int) -> float:
    """Requests a second from one pooled httpx AsyncClient, `inflight` at a time."""
    limits = httpx.Limits(max_connections=inflight, max_keepalive_connections=inflight)
    async with httpx.AsyncClient(limits=limits) as client:

        async def post(body: bytes, headers: dict[str, str]) -> None:
            await client.post(url, content=body, headers=headers)

        return await drive(bodies, inflight, post)


async def drive(
    bodies: Sequence[Body], inflight: int, send: Callable[[bytes, dict[str, str]], Awaitable[None]]
) -> float:
    """Send every body through `inflight` lanes; return bodies a second."""
    queue = list(reversed(bodies))

    async def lane() -> None:
        while queue:
            body, headers = queue.pop()
            await send(body, headers)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(inflight)))
    return len(bodies) / (time.perf_counter() - start)


async def settled(pids: Sequence[int], *, quiet: float = 0.005, timeout: float = 30.0) -> None:
    """Wait until each process used at most `quiet` CPU seconds in a tenth of a second: started
    and idle. A worker process that serve has just started spends its first half-second or so
    importing, which no scenario means to measure: S1 counted it in the CPU of every
    notification, and in its rate as a later start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = [cpu_seconds(pid) for pid in pids]
        await asyncio.sleep(0.1)
        if all(cpu_seconds(pid) - was <= quiet for pid, was in zip(pids, before, strict=True)):
            return
    raise RuntimeError(f"the gateway's processes {list(pids)} kept busy for {timeout:g} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = stat_fields(Path(f"/proc/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident memory of a live process (Linux /proc)."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Row:
    label: str
    figure: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.met is None else ("pass" if self.met else "MISS")


REPORT_FILE = "BENCH_REPORT_FILE"
PROBE_LOOPS = 2_000_000
SPEED_CHANGE = 0.15  # more than this between the probes, and the report says so


def cpu_probe() -> float:
    """Milliseconds of this thread's CPU for a fixed pure-Python loop: the machine's speed."""
    start = time.thread_time()
    total = 0
    for i in range(PROBE_LOOPS):
        total += i
    return (time.thread_time() - start) * 1000


def speed_note(start: float, end: float) -> str:
    """The probe at both ends of the run, and a warning when the machine's speed moved."""
    note = f"CPU probe: {start:.0f} ms at the start, {end:.0f} ms at the end"
    change = end / start - 1
    if abs(change) > SPEED_CHANGE:
        note += (
            f" ({change:+.0%}: the machine's speed changed during the run, so figures measured"
            " at different times of it do not compare)"
        )
    return note


@dataclass
class Report:
    """What every benchmark prints: its command, the machine, and one table.

    The machine's speed is probed when the report is made (before the measuring starts) and
    again when it is printed: on a shared host it can change by half within one run, and
    ratios against a baseline measured at the other end of the run then mislead.

    With REPORT_FILE (BENCH_REPORT_FILE) set in the environment, as bench.run_all sets it,
    print() also appends the report to that file as one JSON line: its title, the probe's
    line and its rows, for run_all's table of every target.
    """

    title: str
    rows: list[Row] = field(default_factory=list)
    probe_at_start: float = field(default_factory=cpu_probe)

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.rows.append(Row(*args, **kwargs))

    def print(self) -> None:
        print(f"\n## {self.title}\n")
        print(f"command: python -m {shlex.join([_module_name(), *sys.argv[1:]])}")
        print(f"machine: {machine()}")
        probe = speed_note(self.probe_at_start, cpu_probe())
        print(probe + "\n")
        print("| scenario | figure | baseline | ratio | target | |")
        print("|---|---|---|---|---|---|")
        for r in self.rows:
            print(
                f"| {r.label} | {r.figure} | {r.baseline} | {r.ratio} | {r.target} | {r.verdict} |"
            )
        sys.stdout.flush()
        if path := os.environ.get(REPORT_FILE):
            line = {"title": self.title, "probe": probe, "rows": [asdict(r) for r in self.rows]}
            with open(path, "ab") as out:
                out.write(orjson.dumps(line) + b"\n")


def _module_name() -> str:
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else sys.argv[0]


def machine() -> str:
    """CPU count, model, Python, and the load average when the benchmark ran."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} cpus ({model}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, load average {load}"
    )


def percent(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"
