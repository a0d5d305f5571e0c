"""What `gateway serve` writes to standard error: its start-up summary, uvicorn's lines and
those of the worker processes it starts, all in the log format it was given, one record a
line with its fields, and never a password or the secret key."""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import __version__
from tests.acceptance.processes import (
    create_key,
    free_port,
    gateway_command,
    gateway_env,
    stop,
    wait_until_up,
)

pytestmark = pytest.mark.timeout(120)
LINE_TIMEOUT = 30.0
PASSWORD = "pw-in-the-url-4c1e"  # trust authentication lets any password through
QUERY_PASSWORD = "pw-in-the-query-9f3a"
SECRET_KEY = "handshake-signing-key-7d2b"
Event = dict[str, Any]


def parse_json(line: str) -> Event:
    event: Event = json.loads(line)
    return event


def parse_text(line: str) -> Event:
    """A logfmt line as a dict of its keys and (unquoted) values."""
    return dict(pair.split("=", 1) for pair in shlex.split(line))


PARSERS: dict[str, Callable[[str], Event]] = {"json": parse_json, "text": parse_text}


def with_passwords(url: str) -> str:
    """The test database's URL with a password in the user info and one as a parameter."""
    scheme, rest = url.split("://", 1)
    user, location = rest.split("@", 1)
    joiner = "&" if "?" in location else "?"
    return f"{scheme}://{user}:{PASSWORD}@{location}{joiner}password={QUERY_PASSWORD}"


@contextlib.contextmanager
def serve(
    workdir: Path, database_url: str, fmt: str, env: dict[str, str]
) -> Iterator[tuple[str, Path]]:
    """`gateway serve --log-format fmt` with its standard error in a file; yields its URL and
    that file. The format is a flag: the worker processes get it only from serve."""
    port = free_port()
    stderr = workdir / "stderr.log"
    command = [gateway_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with stderr.open("wb") as sink:
        proc = subprocess.Popen(
            [*command, "--log-format", fmt],
            cwd=workdir,
            env=gateway_env(database_url, {"TMPDIR": str(workdir), **env}),
            stderr=sink,
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/healthz", proc)
            yield f"http://127.0.0.1:{port}", stderr
        finally:
            stop(proc)


def events(stderr: Path, parse: Callable[[str], Event]) -> list[Event]:
    """Every line written so far, parsed: a line that does not parse fails the test."""
    return [parse(line) for line in stderr.read_text().splitlines()]


def wait_for(stderr: Path, parse: Callable[[str], Event], message: str) -> Event:
    """The first record with this message, waiting for it up to LINE_TIMEOUT."""
    deadline = time.monotonic() + LINE_TIMEOUT
    while time.monotonic() < deadline:
        found = [e for e in events(stderr, parse) if e.get("message") == message]
        if found:
            return found[0]
        time.sleep(0.05)
    raise TimeoutError(f"no {message!r} in {stderr.read_text()}")


@pytest.fixture(params=["json-postgresql", "text-sqlite"])
def setup(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """(log format, database URL to serve, that URL as the log must show it)."""
    fmt, store = str(request.param).split("-")
    if store == "sqlite":
        return fmt, "sqlite:///data/gateway.db", "sqlite:///data/gateway.db"
    url = with_passwords(request.getfixturevalue("postgres_url"))
    shown = url.replace(PASSWORD, "***").replace(QUERY_PASSWORD, "***")
    return fmt, url, shown


def test_serve_and_its_workers_log_a_summary_and_their_fields_in_the_format_given(
    tmp_path: Path, setup: tuple[str, str, str]
) -> None:
    fmt, database_url, shown = setup
    parse = PARSERS[fmt]
    env = {
        "GATEWAY_LOG_LEVEL": "info",
        "GATEWAY_WORKER_PROCESSES": "1",
        "GATEWAY_SECRET_KEY": SECRET_KEY,
    }
    key = create_key(tmp_path, database_url, "logs")["apiKey"]
    with serve(tmp_path, database_url, fmt, env) as (url, stderr):
        worker = wait_for(stderr, parse, "gateway worker starting")
        # A handshake that cannot connect: its line names the webhook and says why.
        nobody = f"http://127.0.0.1:{free_port()}/hook"
        hook = {
            "name": "n",
            "callbackUrl": nobody,
            "callbackHttpMethod": "POST",
            "requestContentType": "Id",
        }
        refused = httpx.post(f"{url}/api/v1/Webhooks", headers={"Api-Key": key}, json=[hook])
        assert refused.status_code == 400 and "connection refused" in refused.text, refused.text
        failed = wait_for(stderr, parse, "handshake failed")
    written = stderr.read_text()
    lines = events(stderr, parse)  # every line parses: uvicorn's and the worker's too
    serving = [e for e in lines if e["message"] == "gateway serve starting"]
    assert len(serving) == 1, written
    summary = serving[0]
    assert summary["database"] == shown
    assert summary["listen"] == url
    assert summary["log_format"] == worker["log_format"] == fmt
    assert summary["version"] == worker["version"] == __version__
    assert str(summary["worker_processes"]) == "1"
    assert summary["delivery"] == "1 worker process"
    networks = summary["allowed_callback_networks"]
    assert networks == (["127.0.0.0/8"] if fmt == "json" else "127.0.0.0/8")
    assert worker["database"] == shown
    assert worker["lease_owner"].startswith("worker-")
    assert f"-{worker['pid']}-" in worker["lease_owner"]
    assert worker["pid"] != summary["pid"]
    assert str(worker["started_by_serve"]) in ("True", "true")
    assert any(
        e["logger"] == "uvicorn.error" and e["message"].startswith(f"Uvicorn running on {url}")
        for e in lines
    ), written
    assert failed["logger"] == "gateway.handshake"
    assert failed["detail"] == "could not connect: connection refused"
    assert len(failed["webhook_id"]) == 36
    for secret in (PASSWORD, QUERY_PASSWORD, SECRET_KEY):
        assert secret not in written
