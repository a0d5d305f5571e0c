"""The `gateway` command: serve, worker, migrate, keys."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import secrets
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from uuid import UUID, uuid4, uuid5

from gateway import config, heap, logs
from gateway.errors import GatewayError
from gateway.models import ApiKey, Scope, utcnow
from gateway.store import store_for_url

log = logging.getLogger("gateway")
# Group keys for new group names are derived from the name, so two databases agree on them.
GROUP_NAMESPACE = UUID("6f1d2a8e-5b7c-4c1e-9f3a-2d4b6c8e0a1f")


def _flag(parser: argparse.ArgumentParser, name: str, help_text: str, **kw: Any) -> None:
    setting = name.lstrip("-").replace("-", "_")
    env = config.env_name(setting)
    parser.add_argument(name, dest=setting, default=None, help=f"{help_text} [env: {env}]", **kw)


def _common(parser: argparse.ArgumentParser) -> None:
    env = config.env_name("database_url")
    parser.add_argument(
        "--database",
        "--database-url",
        dest="database_url",
        metavar="URL",
        help=f"database URL, e.g. sqlite:///data/gateway.db [env: {env}]",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (and the delivery worker)")
    _common(serve)
    _flag(serve, "--host", "address to listen on (default 127.0.0.1)")
    _flag(serve, "--port", "port to listen on (default 8080)", type=int)
    _flag(serve, "--secret-key", "key signing handshake codes (default: generated, kept)")
    _flag(serve, "--allowed-callback-networks", "comma-separated CIDRs callbacks may reach")
    _flag(serve, "--log-level", "debug, info, warning or error")
    _flag(serve, "--log-format", "text (key=value) or json (one object a line)")
    _flag(serve, "--worker-processes", "delivery processes to run beside the API: a count, or "
          "auto (the default: one per core, at most 4; on one core the worker runs inside "
          "serve); 0 runs the worker inside serve")  # fmt: skip
    worker = sub.add_parser("worker", help="run only the delivery worker")
    _common(worker)
    _flag(worker, "--allowed-callback-networks", "comma-separated CIDRs callbacks may reach")
    _flag(worker, "--log-level", "debug, info, warning or error")
    _flag(worker, "--log-format", "text (key=value) or json (one object a line)")
    worker.add_argument(
        "--parent-stdin",
        action="store_true",
        help="claim at once on each byte read from standard input, and stop when it ends "
        "(how `serve` runs its worker processes)",
    )
    migrate = sub.add_parser("migrate", help="apply database migrations")
    _common(migrate)
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key; prints it once as JSON")
    _common(create)
    create.add_argument("--group", required=True, help="group name; its key is shared")
    create.add_argument("--scopes", default="webhooks,events", help="comma-separated scopes")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its apiKeyId")
    _common(revoke)
    revoke.add_argument("api_key_id", help="the apiKeyId to revoke")
    listing = keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    _common(listing)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gateway` command."""
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in _setting_names()}
    try:
        settings = config.load(overrides)
        logs.configure(settings.log_level, settings.log_format)
        return _dispatch(args, settings)
    except GatewayError as exc:
        print(f"gateway: {exc.detail}", file=sys.stderr)
        return 2


def _setting_names() -> set[str]:
    return {f.name for f in dataclasses.fields(config.Settings)}


def _dispatch(args: argparse.Namespace, settings: config.Settings) -> int:
    if args.command == "serve":
        return _serve(settings.with_secret_key())
    if args.command == "worker":
        from gateway.worker_main import run_worker

        return run_worker(settings.with_secret_key(), parent_stdin=args.parent_stdin)
    commands: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
        "migrate": lambda: _migrate(settings),
        "create": lambda: _create_key(settings, args.group, args.scopes),
        "revoke": lambda: _revoke_key(settings, args.api_key_id),
        "list": lambda: _list_keys(settings),
    }
    name = args.keys_command if args.command == "keys" else args.command
    result = asyncio.run(commands[name]())
    print(json.dumps(result, indent=2))
    return 0


def _serve(settings: config.Settings) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.supervisor import worker_processes

    _serve_summary(settings)
    with worker_processes(settings) as (serving, pool):
        app = create_app(serving, worker_pool=pool)
        heap.freeze_startup()  # after the imports: they are most of what lives this long
        uvicorn.run(
            app,
            host=serving.host,
            port=serving.port,
            log_level=serving.log_level,
            log_config=None,  # uvicorn's records go to our handler, in our format
            access_log=False,
        )
    return 0


def _serve_summary(settings: config.Settings) -> None:
    """The start-up line of `gateway serve`, before it opens the database: an operator sees
    which one it tries even when that fails."""
    from gateway.supervisor import process_count

    count = process_count(settings)
    if count:
        delivery = f"{count} worker process{'es' if count > 1 else ''}"
    else:
        delivery = "in serve" if settings.run_worker else "off (API only)"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    logs.startup_summary(
        "serve",
        settings,
        listen=f"http://{host}:{settings.port}",
        worker_processes=count,
        delivery=delivery,
    )


async def _migrate(settings: config.Settings) -> dict[str, Any]:
    async with store_for_url(settings.database_url) as store:
        applied = list(getattr(store, "applied_migrations", []))
    return {"database": logs.redact_url(settings.database_url), "applied": applied}


async def _create_key(settings: config.Settings, group: str, scopes_text: str) -> dict[str, Any]:
    try:
        scopes = frozenset(Scope(s.strip()) for s in scopes_text.split(",") if s.strip())
    except ValueError as exc:
        raise GatewayError(f"unknown scope in {scopes_text!r}; use webhooks, events") from exc
    from gateway.api.common import hash_key  # the API's modules load only where used

    key = "gwk_" + secrets.token_urlsafe(32)
    async with store_for_url(settings.database_url) as store:
        group_key = await store.group_key_for_name(group) or uuid5(GROUP_NAMESPACE, group)
        record = ApiKey(uuid4(), group_key, group, hash_key(key), scopes, utcnow())
        await store.add_api_key(record)
    return {**_key_view(record), "apiKey": key}


async def _revoke_key(settings: config.Settings, api_key_id: str) -> dict[str, Any]:
    try:
        key_id = UUID(api_key_id)
    except ValueError as exc:
        raise GatewayError(f"{api_key_id!r} is not an apiKeyId") from exc
    async with store_for_url(settings.database_url) as store:
        if not await store.revoke_api_key(key_id, utcnow()):
            raise GatewayError(f"no API key {key_id}")
    return {"apiKeyId": str(key_id), "revoked": True}


async def _list_keys(settings: config.Settings) -> list[dict[str, Any]]:
    async with store_for_url(settings.database_url) as store:
        return [_key_view(k) for k in await store.list_api_keys()]


def _key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "apiKeyId": str(key.api_key_id),
        "groupKey": str(key.group_key),
        "groupName": key.group_name,
        "scopes": sorted(s.value for s in key.scopes),
        "created": key.created.isoformat(),
        "revoked": key.revoked.isoformat() if key.revoked else None,
    }


if __name__ == "__main__":
    sys.exit(main())
