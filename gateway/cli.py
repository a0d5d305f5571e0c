"""The `gateway` command: serve, worker, migrate, keys, portal-link, portal-revoke."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import json
import logging
import secrets
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from uuid import UUID, uuid4, uuid5

from gateway import config, heap, logs
from gateway.errors import GatewayError
from gateway.models import ApiKey, Scope, utcnow
from gateway.portal.tokens import (
    DEFAULT_SESSION_SECONDS,
    MAX_SESSION_SECONDS,
    MIN_SESSION_SECONDS,
)
from gateway.store import Store, sqlite_file, store_for_url

log = logging.getLogger("gateway")
# Group keys for new group names are derived from the name, so two databases agree on them.
GROUP_NAMESPACE = UUID("6f1d2a8e-5b7c-4c1e-9f3a-2d4b6c8e0a1f")


# Where settings come from, under every subcommand's --help.
SETTINGS_SOURCES = (
    f"Settings come from {config.DEFAULT_CONFIG_FILE} in the working directory (every setting "
    f"with its default, documented), or from the TOML file {config.ENV_PREFIX}CONFIG names; "
    f"then {config.ENV_PREFIX}* environment variables; then these flags, which win."
)
SCOPES = ", ".join(s.value for s in Scope)


def _subcommand(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text, epilog=SETTINGS_SOURCES)


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
    serve = _subcommand(sub, "serve", "run the API (and the delivery worker)")
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
    worker = _subcommand(sub, "worker", "run only the delivery worker")
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
    migrate = _subcommand(sub, "migrate", "apply database migrations")
    _common(migrate)
    keys = _subcommand(sub, "keys", "manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = _subcommand(keys_sub, "create", "create a key; prints it once as JSON")
    _common(create)
    create.add_argument("--group", required=True, help="group name; its key is shared")
    create.add_argument(
        "--scopes",
        default="webhooks,events",
        help=f"comma-separated scopes, from: {SCOPES} (webhooks: manage webhooks, rules and "
        "history; events: publish events, write the event-type catalogue); default: %(default)s",
    )
    create.add_argument(
        "--create-database",
        action="store_true",
        help="create the SQLite database if its file does not exist (without it, a key is "
        "created only in a database that exists, such as the one `gateway serve` made)",
    )
    revoke = _subcommand(keys_sub, "revoke", "revoke a key by its apiKeyId")
    _common(revoke)
    revoke.add_argument("api_key_id", help="the apiKeyId to revoke")
    listing = _subcommand(keys_sub, "list", "list keys (never the keys themselves)")
    _common(listing)
    _portal_link_parser(sub)
    revoke_portal = sub.add_parser(
        "portal-revoke",
        help="end every portal session of one group, and its links not yet opened",
        description="End every partner portal session of one group and every link of it not "
        "yet opened, in every process sharing the database (DELETE /api/v1/PortalSessions "
        "does the same for the caller's group). Links made afterwards open as usual.",
        epilog=SETTINGS_SOURCES,
    )
    _common(revoke_portal)
    revoke_portal.add_argument(
        "--group", required=True, help="group name, as given to `keys create`"
    )
    return parser


def _portal_link_parser(sub: Any) -> None:
    link = sub.add_parser(
        "portal-link",
        help="print a link that opens the partner portal for one group",
        description="Print a link (JSON: url, expiresAt, linkExpiresAt) that opens the partner "
        "portal for one group. Open it within 15 minutes; it opens one session, which ends at "
        "expiresAt. It is signed with the gateway's secret key: run this with the same "
        "settings (database, secret key) as `gateway serve`.",
        epilog=SETTINGS_SOURCES,
    )
    _common(link)
    link.add_argument("--group", required=True, help="group name, as given to `keys create`")
    link.add_argument(
        "--read-only", action="store_true", help="a session that sees everything, changes nothing"
    )
    link.add_argument(
        "--expires-in",
        type=int,
        default=DEFAULT_SESSION_SECONDS,
        metavar="SECONDS",
        help=f"how long the session lasts, {MIN_SESSION_SECONDS} to {MAX_SESSION_SECONDS} "
        f"(default {DEFAULT_SESSION_SECONDS})",
    )
    _flag(link, "--secret-key", "key that signs the link; the one `serve` runs with")
    _flag(
        link,
        "--public-url",
        "the gateway's address as browsers reach it (default http://host:port)",
    )


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
        "portal-link": lambda: _portal_link(settings.with_secret_key(), args),
        "portal-revoke": lambda: _portal_revoke(settings, args.group),
    }
    name = args.keys_command if args.command == "keys" else args.command
    if args.command in ("keys", "portal-link", "portal-revoke"):
        # portal-link too: in a new database it would sign with a new secret key.
        _existing_database(settings.database_url, getattr(args, "create_database", False))
        print(f"gateway: database {database_name(settings.database_url)}", file=sys.stderr)
    result = asyncio.run(commands[name]())
    print(json.dumps(result, indent=2))
    return 0


def _serve(settings: config.Settings) -> int:
    import uvicorn

    from gateway.app import create_app
    from gateway.supervisor import worker_processes

    _serve_summary(settings)
    _check_port(settings.host, settings.port)  # before worker processes start for nothing
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


def _check_port(host: str, port: int) -> None:
    """Fail, saying which setting to change, when serve could not listen on host:port. The
    probe binds as uvicorn does (the family by the host's spelling, SO_REUSEADDR), then closes:
    uvicorn binds its own socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise GatewayError(
                    f"port {port} is in use on {host}; set --port or GATEWAY_PORT (or port in "
                    f"{config.DEFAULT_CONFIG_FILE}) to a free one"
                ) from exc
            raise GatewayError(
                f"cannot listen on {host} port {port} ({exc.strerror or exc}); set --host or "
                "GATEWAY_HOST, --port or GATEWAY_PORT"
            ) from exc


def database_name(url: str) -> str:
    """The database a URL names, for people: the password hidden, a SQLite file's full path."""
    path = sqlite_file(url)
    shown = logs.redact_url(url)
    return f"{shown} ({path.resolve()})" if path is not None else shown


def _existing_database(url: str, create: bool) -> None:
    """Refuse to work on a SQLite file that does not exist, unless asked to create it: a key
    made in a new database beside the working directory would answer 401 at the gateway."""
    path = sqlite_file(url)
    if path is None or create or path.exists():
        return
    raise GatewayError(
        f"no database at {path.resolve()} (database_url {logs.redact_url(url)}). Keys belong "
        "in the database `gateway serve` uses: run this where serve runs (serve creates the "
        "database on its first start), or name that database with --database-url, "
        f"GATEWAY_DATABASE_URL or database_url in {config.DEFAULT_CONFIG_FILE} (or the file "
        "GATEWAY_CONFIG names); `keys create --create-database` makes a new one here"
    )


async def _migrate(settings: config.Settings) -> dict[str, Any]:
    async with store_for_url(settings.database_url) as store:
        applied = list(getattr(store, "applied_migrations", []))
    return {"database": logs.redact_url(settings.database_url), "applied": applied}


async def _create_key(settings: config.Settings, group: str, scopes_text: str) -> dict[str, Any]:
    try:
        scopes = frozenset(Scope(s.strip()) for s in scopes_text.split(",") if s.strip())
    except ValueError as exc:
        raise GatewayError(f"unknown scope in {scopes_text!r}; scopes are: {SCOPES}") from exc
    if not scopes:
        raise GatewayError(f"a key needs at least one scope; scopes are: {SCOPES}")
    if not group.strip():
        raise GatewayError("a key needs a group name (--group)")
    from gateway.api.common import hash_key  # the API's modules load only where used

    key = "gwk_" + secrets.token_urlsafe(32)
    async with store_for_url(settings.database_url) as store:
        group_key = await _group_key(store, group)
        record = ApiKey(uuid4(), group_key, group, hash_key(key), scopes, utcnow())
        await store.add_api_key(record)
    return {**_key_view(record), "apiKey": key, "database": database_name(settings.database_url)}


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


async def _portal_link(settings: config.Settings, args: argparse.Namespace) -> dict[str, Any]:
    """A portal link for a group by name, as POST /api/v1/PortalSessions answers one."""
    from gateway.portal.tokens import portal_link
    from gateway.wire import PortalSessionModel

    seconds = args.expires_in
    if not MIN_SESSION_SECONDS <= seconds <= MAX_SESSION_SECONDS:
        raise GatewayError(
            f"--expires-in must be between {MIN_SESSION_SECONDS} and {MAX_SESSION_SECONDS} seconds"
        )
    async with store_for_url(settings.database_url) as store:
        group_key = await _group_key(store, args.group)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    base = settings.public_url or f"http://{host}:{settings.port}"
    url, grant = portal_link(
        settings.secret_key or "",
        base,
        group_key,
        read_only=args.read_only,
        session_seconds=seconds,
        now=utcnow(),
    )
    answer = PortalSessionModel(
        url=url,
        expires_at=grant.session_expires,
        link_expires_at=grant.link_expires,
        group_key=group_key,
        read_only=grant.read_only,
    )
    return answer.wire()


async def _portal_revoke(settings: config.Settings, group: str) -> dict[str, Any]:
    """End a group's portal sessions and unopened links (gateway.portal.revocation)."""
    from gateway.portal import revocation

    now = utcnow()
    async with store_for_url(settings.database_url) as store:
        group_key = await _group_key(store, group)
        await revocation.end_group(store, group_key, now)
    return {"groupKey": str(group_key), "revokedBefore": now.isoformat()}


async def _group_key(store: Store, group: str) -> UUID:
    """The key of a group by name: the one its keys have, else the one `keys create` gives it."""
    return await store.group_key_for_name(group) or uuid5(GROUP_NAMESPACE, group)


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
