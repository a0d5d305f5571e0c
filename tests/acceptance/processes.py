"""Start the installed `gateway` command and the example receiver as real subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def recorded(record: Path) -> list[dict[str, Any]]:
    """The notifications the example receiver has recorded so far, in arrival order.

    The receiver appends one JSON line per notification while the test reads; a last line
    without its newline is still being written and is left for the next look.
    """
    if not record.exists():
        return []
    complete = record.read_text().split("\n")[:-1]
    return [json.loads(line) for line in complete if line]


def gateway_command() -> str:
    """The installed console script, next to the running interpreter."""
    found = Path(sys.executable).with_name("gateway")
    return str(found) if found.exists() else shutil.which("gateway") or "gateway"


def wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll `url` until it answers, failing early if the process died."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1.0)
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {START_TIMEOUT} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate politely, then kill."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def stat_fields(stat: Path) -> list[str]:
    """The fields of a /proc/<pid>/stat file after the command name, the state first (man 5
    proc numbers them from 3); OSError once the process has gone."""
    return stat.read_text().rsplit(")", 1)[1].split()


def children(pid: int) -> set[int]:
    """The live processes whose parent is `pid` (read from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_fields(stat)
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def gateway_env(database_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a gateway subprocess: this database, loopback callbacks allowed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATABASE_URL=database_url,
        GATEWAY_ALLOWED_CALLBACK_NETWORKS="127.0.0.0/8",
        GATEWAY_LOG_LEVEL="warning",
        GATEWAY_RATE_LIMIT_PER_SECOND="0",
    )
    env.update(extra or {})
    return env


def start_gateway(
    workdir: Path, database_url: str, extra_env: Mapping[str, str] | None = None, port: int = 0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `gateway serve` (on a free port unless given); return the process and its URL."""
    port = port or free_port()
    # TMPDIR: what serve leaves there when a test kills it (its workers' metrics) goes with
    # the test's directory.
    env = {"TMPDIR": str(workdir), **(extra_env or {})}
    proc = subprocess.Popen(
        [gateway_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=workdir,
        env=gateway_env(database_url, env),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/healthz", proc)
    except BaseException:
        stop(proc)
        raise
    return proc, url


@contextlib.contextmanager
def gateway_process(
    workdir: Path, database_url: str, extra_env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """`gateway serve` on a free port; yields its base URL."""
    proc, url = start_gateway(workdir, database_url, extra_env)
    try:
        yield url
    finally:
        stop(proc)


def create_key(
    workdir: Path, database_url: str, group: str, scopes: str = "webhooks,events"
) -> dict[str, str]:
    """`gateway keys create`, parsed; it creates the database if serve has not yet."""
    command = ["keys", "create", "--group", group, "--scopes", scopes, "--create-database"]
    out = subprocess.run(
        [gateway_command(), *command],
        cwd=workdir,
        env=gateway_env(database_url),
        check=True,
        capture_output=True,
        timeout=30,
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result


@contextlib.contextmanager
def example_receiver(extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """scripts/example_receiver.py on a free port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "example_receiver.py"),
            "--port",
            str(port),
            *extra_args,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ready?code=up", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def start_worker(
    workdir: Path, database_url: str, extra_env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `gateway worker` (delivery only) on this database."""
    return subprocess.Popen(
        [gateway_command(), "worker"], cwd=workdir, env=gateway_env(database_url, extra_env)
    )


def subscribe_receiver(
    url: str, key: str, receiver: str, *, content: str = "Full", event_type: str = "U"
) -> dict[str, str]:
    """Create a POST webhook to the example receiver (handshake included), hand the receiver
    its secret, and subscribe it to Invoice events of `event_type`; return the webhook."""
    headers = {"Api-Key": key}
    body = {
        "name": "acceptance",
        "requestContentType": content,
        "callbackHttpMethod": "POST",
        "callbackUrl": f"{receiver}/hook",
        "retryCount": 5,
    }
    created = httpx.post(f"{url}/api/v1/Webhooks", headers=headers, json=[body])
    hook: dict[str, str] = created.raise_for_status().json()[0]
    httpx.post(f"{receiver}/secret", content=hook["clientSecret"]).raise_for_status()
    rule = {"webhookId": hook["webhookId"], "tableKey": "Invoice", "eventType": event_type}
    httpx.post(f"{url}/api/v1/WebhookRules", headers=headers, json=[rule]).raise_for_status()
    return hook
