"""The README's Quickstart, pasted as written: its shell blocks run with bash, in order, on a
fresh copy of the project (its scripts and configuration beside this test's virtualenv), and
the webhook they create receives the test send and the published notification.

How the walk differs from a person's, and why:
- the gateway and the receiver listen on free loopback ports instead of 8080 and 9001 (the
  test rewrites those numbers and checks that none is left);
- `scripts/bootstrap` is a no-op in the copy: the virtualenv exists already, and installing
  into it is not a test's business;
- the blocks after the two servers' run in one bash with `set -euo pipefail`, and with `curl`
  failing on an HTTP error answer (`--fail-with-body`), so no command may fail unseen.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.processes import ROOT, free_port

pytestmark = pytest.mark.timeout(120)
BLOCK = re.compile(r"^( *)```sh\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
SERVERS = ("scripts/serve", "scripts/example_receiver.py")  # blocks that run until stopped
STRICT = """set -euo pipefail
curl() { command curl --fail-with-body "$@"; }
"""


def quickstart_blocks() -> list[str]:
    """The shell blocks of the README's Quickstart section, in order, dedented."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [textwrap.dedent(indent + body) for indent, body in BLOCK.findall(section)]


def fresh_copy(where: Path) -> Path:
    """What a clone holds for the Quickstart: scripts and config, and .venv (this one)."""
    clone = where / "clone"
    shutil.copytree(
        ROOT / "scripts", clone / "scripts", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "config", clone / "config")
    (clone / "scripts" / "bootstrap").write_text("#!/usr/bin/env bash\n# the test's venv\n")
    (clone / ".venv").symlink_to(sys.prefix)
    return clone


def on_ports(block: str, gateway: int, receiver: int) -> str:
    """The block with the README's ports replaced by this test's."""
    moved = block.replace("127.0.0.1:8080", f"127.0.0.1:{gateway}")
    moved = moved.replace("127.0.0.1:9001", f"127.0.0.1:{receiver}")
    moved = moved.replace("--port 9001", f"--port {receiver}")
    assert "8080" not in moved and "9001" not in moved, moved
    return moved


def start(script: str, clone: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """One server block in a bash of its own session (so that it stops with its children)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            ["bash", "-c", script],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the block's whole process group, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def delivered(gateway: str, key: str, webhook_id: str) -> list[dict[str, object]]:
    """The webhook's history once its Invoice.U notification is recorded delivered."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        path = f"{gateway}/api/v1/Webhooks/{webhook_id}/history/query"
        rows: list[dict[str, object]] = httpx.get(path, headers={"Api-Key": key}).json()["records"]
        if any(r["eventType"] == "Invoice.U" and r["isSuccessful"] for r in rows):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"no delivered Invoice.U notification in the history: {rows}")


def test_the_quickstart_pastes_as_written(tmp_path: Path) -> None:
    blocks = quickstart_blocks()
    servers = [b for b in blocks if any(name in b for name in SERVERS)]
    assert blocks[: len(servers)] == servers and len(servers) == 2, "the two servers come first"
    gateway_port, receiver_port = free_port(), free_port()
    clone = fresh_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_PORT=str(gateway_port), TMPDIR=str(tmp_path))
    walk = [on_ports(b, gateway_port, receiver_port) for b in blocks]
    # The variables the walk kept, for the checks below.
    walk.append('echo "QUICKSTART $KEY $ID"\n')
    logs = [tmp_path / "serve.log", tmp_path / "receiver.log"]
    running = [start(walk[i], clone, env, logs[i]) for i in range(2)]
    try:
        done = subprocess.run(
            ["bash", "-c", STRICT + "\n".join(walk[2:])],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{logs[0].read_text()}"
        key, webhook_id = done.stdout.rsplit("QUICKSTART ", 1)[1].split()
        assert (
            f"database sqlite:///data/gateway.db ({clone / 'data' / 'gateway.db'})" in done.stderr
        )
        # The test send's answer (its latencyMs is its own), delivered by the receiver.
        assert '"isSuccessful":true' in done.stdout, "the test send reached the receiver"
        assert '"processResultMessage":"HTTP 200","latencyMs"' in done.stdout
        assert f'"webhookId":"{webhook_id}"' in done.stdout, "the listing shows the webhook"
        delivered(f"http://127.0.0.1:{gateway_port}", key, webhook_id)
        deadline = time.monotonic() + 10
        while logs[1].read_text().count("verified ") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        received = logs[1].read_text()
        assert received.count("verified ") == 2, received  # the test send and the notification
        assert "REJECTED" not in received
    finally:
        for proc in running:
            stop_session(proc)
