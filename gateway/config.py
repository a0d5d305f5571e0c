"""Settings: defaults < TOML file < environment (GATEWAY_*) < command-line flags.

This is the only module that reads the environment. `config/gateway.toml` documents every
setting with its default; `GATEWAY_CONFIG` names another file.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.netguard import AddressPolicy
from gateway.payloads import MAX_RECORD_DEPTH
from gateway.retry import RetryPolicy

ENV_PREFIX = "GATEWAY_"
DEFAULT_CONFIG_FILE = Path("config/gateway.toml")
# Settings that take one of a few words.
CHOICES = {
    "log_level": ("debug", "info", "warning", "error", "critical"),
    "log_format": ("text", "json"),
}


@dataclass(frozen=True)
class Settings:
    """Every tunable of the gateway; see config/gateway.toml for what each one means."""

    database_url: str = "sqlite:///data/gateway.db"
    database_pool_size: int = 10
    host: str = "127.0.0.1"
    port: int = 8080
    secret_key: str | None = None
    allowed_callback_networks: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: str = "text"  # or "json": one JSON object a line, for log shippers
    # The gateway's address as partners' browsers reach it (portal links); None: the address a
    # request came to, or for `gateway portal-link` http://host:port.
    public_url: str | None = None
    # API
    max_body_bytes: int = 1_048_576
    max_batch_size: int = 100
    max_events_per_request: int = 1000
    max_records_per_event: int = 1000
    max_record_depth: int = 32
    max_filter_length: int = 2000
    max_filter_depth: int = 10
    # Publishes and rules only for declared event types, records checked against their schemas.
    enforce_event_types: bool = False
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 200
    max_webhooks_per_group: int = 0  # 0: no limit
    require_https_callbacks: bool = False
    # A PEM file of extra roots that https callbacks' certificates may chain to (a private CA),
    # trusted beside the system's; certificates are verified whether it is set or not.
    ca_bundle: str | None = None
    # Handshake and lifecycle
    handshake_timeout: float = 10.0
    expiry_sweep_interval: float = 60.0
    lifecycle_warning_before: float = 259_200.0  # 72 hours; 0: no `expiring` notices
    reverify_interval: float = 0.0  # 0: off
    secret_grace_period: float = 86_400.0
    # Delivery
    run_worker: bool = True
    worker_processes: int | None = None  # None: "auto", see gateway.supervisor.process_count
    delivery_timeout: float = 10.0
    retry_schedule: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    retry_jitter: float = 0.2
    retry_after_cap: float = 3600.0
    worker_concurrency: int = 128
    per_webhook_concurrency: int = 8
    per_group_concurrency: int | None = None  # None: "auto", see group_concurrency()
    per_group_handshakes: int = 16
    claim_batch_size: int = 256
    poll_interval: float = 0.5
    lease_seconds: float = 60.0
    shutdown_deadline: float = 10.0
    history_message_limit: int = 4096
    history_retention_days: float = 30.0
    max_response_bytes: int = 65_536

    def group_concurrency(self) -> int:
        """The most sends one group may have in flight in one worker: per_group_concurrency,
        or with "auto" half the worker's senders (at least 1), so a group whose callbacks all
        hang leaves the other half to the other groups. The default senders (128) give a lone
        group the 64 that the whole worker had before groups shared it."""
        if self.per_group_concurrency is not None:
            return self.per_group_concurrency
        return max(1, self.worker_concurrency // 2)

    def group_holding_limit(self) -> int:
        """How many notifications one group may hold in one worker (claimed, not yet attempted)
        before claims pass it over: its senders' worth and one claim batch more, so a busy
        group is claimed for while less than a batch waits behind its sends, and that batch
        arrives before its senders run dry. With twice its senders as the limit, and the
        claim batch counting every group below it, a lone group's queue ran out during each
        claim when two worker processes shared SQLite (S1 to ten webhooks)."""
        return self.group_concurrency() + self.claim_batch_size

    def holding_limit(self) -> int:
        """How many notifications one worker may hold in all before it stops claiming: room
        for two groups at their holding limit, so one group at its limit never stops
        another's claims, while the worker does not lease more than it can send in a lease
        (what one worker holds, the others cannot take)."""
        return 2 * self.group_holding_limit()

    def with_secret_key(self) -> Settings:
        """A copy whose secret key is set, generated and kept beside the database if needed."""
        if self.secret_key:
            return self
        return dataclasses.replace(self, secret_key=_stored_secret_key(self.database_url))


def load(
    overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build settings from the config file, the environment and explicit overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    values.update(_read_toml(_config_path(env)))
    values.update(_read_env(env))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _build(values)


def child_env(settings: Settings, names: tuple[str, ...]) -> dict[str, str]:
    """This process's environment with the named settings set as they are here, for a child
    process of ours that must run with the same ones (flags included)."""
    env = dict(os.environ)
    for name in names:
        value = getattr(settings, name)
        if value is None:
            env.pop(env_name(name), None)
        elif isinstance(value, tuple):
            env[env_name(name)] = ",".join(str(item) for item in value)
        else:
            env[env_name(name)] = str(value)
    return env


def env_name(setting: str) -> str:
    """The environment variable that sets this setting, e.g. GATEWAY_DATABASE_URL."""
    return ENV_PREFIX + setting.upper()


def _config_path(env: Mapping[str, str]) -> Path | None:
    named = env.get(ENV_PREFIX + "CONFIG")
    if named:
        if not Path(named).is_file():
            raise GatewayError(f"config file {named} (from {ENV_PREFIX}CONFIG) does not exist")
        return Path(named)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise GatewayError(f"config file {path} is not valid TOML: {exc}") from exc
    # Sections only group settings for the reader; names are unique across them.
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def _read_env(env: Mapping[str, str]) -> dict[str, Any]:
    return {f.name: env[env_name(f.name)] for f in fields(Settings) if env_name(f.name) in env}


def _build(values: Mapping[str, Any]) -> Settings:
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise GatewayError(f"unknown setting(s): {', '.join(unknown)}")
    converted = {name: _convert(name, known[name], value) for name, value in values.items()}
    settings = Settings(**converted)
    try:
        AddressPolicy(settings.allowed_callback_networks)  # a bad entry stops the start, named
    except GatewayError as exc:
        raise GatewayError(f"setting allowed_callback_networks: {exc.detail}") from exc
    if not 1 <= settings.max_record_depth <= MAX_RECORD_DEPTH:
        raise GatewayError(
            f"setting max_record_depth: {settings.max_record_depth} is not between 1 and "
            f"{MAX_RECORD_DEPTH} (deeper records could not be encoded in a notification)"
        )
    for name in ("lifecycle_warning_before", "reverify_interval"):
        if getattr(settings, name) < 0:
            raise GatewayError(f"setting {name}: must be 0 (off) or a number of seconds")
    if settings.database_pool_size < 1:
        raise GatewayError(
            f"setting database_pool_size: {settings.database_pool_size} is too small; a store "
            "needs at least one connection"
        )
    if settings.lease_seconds < 3 * settings.delivery_timeout:
        # A claim is sent only while twice the timeout is left of its lease (gateway.delivery);
        # a third is the time it may wait behind its webhook's other notifications.
        raise GatewayError(
            f"setting lease_seconds: {settings.lease_seconds} is too short; it must be at least "
            f"three times delivery_timeout ({settings.delivery_timeout})"
        )
    if not 0 <= settings.port <= 65535:
        raise GatewayError(f"setting port: {settings.port} is not between 0 and 65535")
    _check_worker(settings)
    _check_group_limits(settings)
    _check_callback_policy(settings)
    return settings


# Connections an API process's outbound client (handshakes, test sends) keeps at most: the pool
# every group shares, which per_group_handshakes keeps any one group from filling.
API_MAX_CONNECTIONS = 256


# Settings without which a worker would never send, or would claim without pause.
AT_LEAST_ONE = ("worker_concurrency", "per_webhook_concurrency", "claim_batch_size")
ABOVE_ZERO = ("poll_interval", "delivery_timeout", "handshake_timeout", "expiry_sweep_interval")


def _check_worker(settings: Settings) -> None:
    for name in AT_LEAST_ONE:
        if getattr(settings, name) < 1:
            raise GatewayError(f"setting {name}: {getattr(settings, name)} must be at least 1")
    for name in ABOVE_ZERO:
        if not getattr(settings, name) > 0:
            raise GatewayError(f"setting {name}: {getattr(settings, name)} must be above 0")
    try:
        RetryPolicy(settings.retry_schedule, settings.retry_jitter, settings.retry_after_cap)
    except ValueError as exc:
        raise GatewayError(f"setting retry_schedule or retry_jitter: {exc}") from exc


def _check_group_limits(settings: Settings) -> None:
    if settings.per_group_concurrency is not None and settings.per_group_concurrency < 1:
        raise GatewayError("setting per_group_concurrency: must be auto or at least 1")
    if not 1 <= settings.per_group_handshakes <= API_MAX_CONNECTIONS // 2:
        raise GatewayError(
            f"setting per_group_handshakes: {settings.per_group_handshakes} is out of range; "
            f"it must be between 1 and {API_MAX_CONNECTIONS // 2}, half of an API process's "
            f"{API_MAX_CONNECTIONS} outbound connections, so one group never holds them all"
        )


def _check_callback_policy(settings: Settings) -> None:
    if settings.max_webhooks_per_group < 0:
        raise GatewayError("setting max_webhooks_per_group: must be 0 (no limit) or more")
    if settings.ca_bundle:
        try:
            # A bare context: only the file's certificates are loaded, to see that it has some.
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(settings.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise GatewayError(
                f"setting ca_bundle: cannot read PEM certificates from {settings.ca_bundle} ({exc})"
            ) from exc


def _convert(name: str, spec: dataclasses.Field[Any], value: Any) -> Any:
    default = spec.default if spec.default is not dataclasses.MISSING else None
    try:
        if name in ("worker_processes", "per_group_concurrency"):
            return _to_count_or_auto(value)
        if name in CHOICES:
            return _to_choice(value, CHOICES[name])
        if isinstance(default, bool):
            return _to_bool(value)
        if isinstance(default, tuple) or name in ("allowed_callback_networks", "retry_schedule"):
            items = value.split(",") if isinstance(value, str) else list(value)
            cast = float if name == "retry_schedule" else str
            return tuple(cast(str(item).strip()) for item in items if str(item).strip())
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return None if value is None else str(value)
    except (TypeError, ValueError) as exc:
        raise GatewayError(f"setting {name}: cannot use {value!r} ({exc})") from exc


def _to_choice(value: Any, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}")
    return text


def _to_count_or_auto(value: Any) -> int | None:
    if value is None or str(value).strip().lower() == "auto":
        return None
    count = int(value)
    if count < 0:
        raise ValueError("expected auto or a count of 0 or more")
    return count


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _stored_secret_key(database_url: str) -> str:
    """Read, or create once, the secret key file kept beside the database."""
    path = secret_key_path(database_url)
    try:
        return _read_or_create_key(path)
    except OSError as exc:
        raise GatewayError(f"cannot keep the secret key at {path}: {exc}") from exc


def _read_or_create_key(path: Path) -> str:
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Create with owner-only permissions; O_EXCL so two processes starting at once agree.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def secret_key_path(database_url: str) -> Path:
    """Where the generated secret key lives: beside a SQLite file, else in ./data."""
    if database_url.startswith("sqlite:///"):
        return Path(database_url.removeprefix("sqlite:///")).parent / "secret.key"
    return Path("data") / "secret.key"
