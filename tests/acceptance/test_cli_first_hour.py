"""What the `gateway` command tells a new user: where settings come from, which scopes exist,
which database a key went into (and no new one made by mistake), and a busy port."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from gateway.models import Scope
from tests.acceptance.processes import gateway_command, gateway_env, start_gateway, stop

pytestmark = pytest.mark.timeout(60)


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The `gateway` command with these arguments, its output as text."""
    return subprocess.run(
        [gateway_command(), *args],
        cwd=cwd,
        env=env or gateway_env("sqlite:///data/gateway.db"),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serve_help_says_where_settings_come_from(tmp_path: Path) -> None:
    shown = run(["serve", "--help"], tmp_path)
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "config/gateway.toml" in text
    assert "GATEWAY_CONFIG" in text
    assert "[env: GATEWAY_PORT]" in text


def test_keys_create_help_lists_the_scopes(tmp_path: Path) -> None:
    shown = run(["keys", "create", "--help"], tmp_path)
    text = " ".join(shown.stdout.split())
    assert f"from: {', '.join(s.value for s in Scope)}" in text
    refused = run(
        ["keys", "create", "--group", "g", "--scopes", "admin", "--create-database"], tmp_path
    )
    assert refused.returncode == 2
    assert "scopes are: webhooks, events" in refused.stderr
    # A key that could do nothing, or of no group, is no key.
    for args, says in ((["--group", "g", "--scopes", " , "], "at least one scope"),
                       (["--group", " "], "needs a group name")):  # fmt: skip
        refused = run(["keys", "create", *args, "--create-database"], tmp_path)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr


def test_keys_create_refuses_to_make_a_new_database_unless_asked(tmp_path: Path) -> None:
    refused = run(["keys", "create", "--group", "acme"], tmp_path)
    assert refused.returncode == 2
    message = " ".join(refused.stderr.split())
    assert f"no database at {tmp_path / 'data' / 'gateway.db'}" in message
    for hint in ("--database-url", "GATEWAY_DATABASE_URL", "GATEWAY_CONFIG", "--create-database"):
        assert hint in message
    assert not (tmp_path / "data").exists(), "nothing was created"
    for other in (["keys", "list"], ["keys", "revoke", "00000000-0000-0000-0000-000000000000"]):
        assert run(other, tmp_path).returncode == 2
    assert not (tmp_path / "data").exists()

    made = run(["keys", "create", "--group", "acme", "--create-database"], tmp_path)
    assert made.returncode == 0, made.stderr
    database = tmp_path / "data" / "gateway.db"
    assert json.loads(made.stdout)["database"] == f"sqlite:///data/gateway.db ({database})"
    assert f"database sqlite:///data/gateway.db ({database})" in made.stderr
    assert database.is_file()
    listed = run(["keys", "list"], tmp_path)
    assert listed.returncode == 0 and f"({database})" in listed.stderr
    assert [k["groupName"] for k in json.loads(listed.stdout)] == ["acme"]


def test_a_key_made_elsewhere_for_serves_database_works(tmp_path: Path) -> None:
    served, elsewhere = tmp_path / "served", tmp_path / "elsewhere"
    served.mkdir()
    elsewhere.mkdir()
    proc, url = start_gateway(served, "sqlite:///data/gateway.db", {"GATEWAY_RUN_WORKER": "false"})
    try:
        database = f"sqlite:///{served / 'data' / 'gateway.db'}"
        made = run(["keys", "create", "--group", "acme"], elsewhere, gateway_env(database))
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)["apiKey"]
        status = httpx.get(f"{url}/api/v1/Status", headers={"Api-Key": key})
        assert status.status_code == 200
        assert not (elsewhere / "data").exists()
    finally:
        stop(proc)


def test_a_busy_port_is_named_before_any_worker_process_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = gateway_env("sqlite:///data/gateway.db", {"GATEWAY_LOG_LEVEL": "info"})
        served = run(["serve", "--port", str(port), "--worker-processes", "2"], tmp_path, env)
    assert served.returncode != 0
    assert f"port {port} is in use on 127.0.0.1; set --port or GATEWAY_PORT" in served.stderr
    assert "worker process started" not in served.stderr
