"""Settings precedence, secret-key persistence, request-body validation, the rate limiter."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway import config, supervisor
from gateway.errors import GatewayError, RateLimited, ValidationError
from gateway.models import ContentType, EventType, HttpMethod
from gateway.ratelimit import RateLimiter
from gateway.schemas import EventIn, RuleCreate, WebhookCreate, WebhookPatch, parse

VALID = {
    "name": "invoices",
    "requestContentType": "Full",
    "callbackHttpMethod": "POST",
    "callbackUrl": "https://partner.example/hook",
}


def test_environment_beats_file_and_flags_beat_environment(tmp_path: Path) -> None:
    toml = tmp_path / "g.toml"
    toml.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n')
    env = {"GATEWAY_CONFIG": str(toml), "GATEWAY_PORT": "9100"}
    settings = config.load({"host": "127.0.0.2"}, env=env)
    assert (settings.port, settings.host) == (9100, "127.0.0.2")


def test_comma_separated_networks_from_the_environment() -> None:
    env = {"GATEWAY_ALLOWED_CALLBACK_NETWORKS": "127.0.0.0/8, ::1/128"}
    assert config.load(env=env).allowed_callback_networks == ("127.0.0.0/8", "::1/128")


def test_a_child_process_reads_the_settings_it_is_handed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_SECRET_KEY", "not handed on")
    networks = ("127.0.0.0/8", "::1/128")
    settings = dataclasses.replace(
        config.Settings(), allowed_callback_networks=networks, log_level="debug"
    )
    env = config.child_env(settings, ("allowed_callback_networks", "log_level", "secret_key"))
    assert "GATEWAY_SECRET_KEY" not in env  # None: the child does not get another value
    child = config.load(env=env)
    assert child.allowed_callback_networks == networks
    assert child.log_level == "debug"


def test_the_database_pool_size_is_a_setting() -> None:
    assert config.Settings().database_pool_size == 10
    assert config.load(env={"GATEWAY_DATABASE_POOL_SIZE": "3"}).database_pool_size == 3


def test_the_shipped_config_file_matches_the_defaults() -> None:
    shipped = config.load(env={"GATEWAY_CONFIG": "config/gateway.toml"})
    assert shipped == config.Settings()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_PORT": "eighty"}, "setting port"),
        ({"GATEWAY_RUN_WORKER": "maybe"}, "setting run_worker"),
        ({"GATEWAY_CONFIG": "/nonexistent.toml"}, "does not exist"),
        ({"GATEWAY_LEASE_SECONDS": "29"}, "lease_seconds: 29.0 is too short"),
        ({"GATEWAY_WORKER_PROCESSES": "-1"}, "setting worker_processes"),
        ({"GATEWAY_WORKER_PROCESSES": "many"}, "setting worker_processes"),
        ({"GATEWAY_MAX_RECORD_DEPTH": "253"}, "max_record_depth: 253 is not between 1 and 252"),
        ({"GATEWAY_MAX_RECORD_DEPTH": "0"}, "max_record_depth: 0 is not between 1 and 252"),
        ({"GATEWAY_DATABASE_POOL_SIZE": "0"}, "database_pool_size: 0 is too small"),
        ({"GATEWAY_DATABASE_POOL_SIZE": "ten"}, "setting database_pool_size"),
        # A value the gateway cannot run with: a clear error, not a traceback when serve binds
        # or a worker sends.
        ({"GATEWAY_PORT": "70000"}, "setting port: 70000 is not between 0 and 65535"),
        ({"GATEWAY_PORT": "-5"}, "setting port: -5"),
        ({"GATEWAY_RETRY_JITTER": "2"}, "jitter is a fraction in [0, 1)"),
        ({"GATEWAY_RETRY_SCHEDULE": ""}, "schedule needs at least one delay"),
        ({"GATEWAY_RETRY_SCHEDULE": "5,-1"}, "none negative"),
        ({"GATEWAY_WORKER_CONCURRENCY": "0"}, "setting worker_concurrency: 0 must be at least 1"),
        ({"GATEWAY_CLAIM_BATCH_SIZE": "0"}, "setting claim_batch_size: 0 must be at least 1"),
        ({"GATEWAY_PER_WEBHOOK_CONCURRENCY": "0"}, "per_webhook_concurrency: 0 must be at least"),
        ({"GATEWAY_POLL_INTERVAL": "-1"}, "setting poll_interval: -1.0 must be above 0"),
        ({"GATEWAY_POLL_INTERVAL": "0"}, "setting poll_interval: 0.0 must be above 0"),
        ({"GATEWAY_DELIVERY_TIMEOUT": "0"}, "setting delivery_timeout: 0.0 must be above 0"),
    ],
)
def test_bad_settings_say_which(env: dict[str, str], message: str) -> None:
    with pytest.raises(GatewayError, match=re.escape(message)):
        config.load(env=env)


@pytest.mark.parametrize(
    ("given", "run_worker", "cores", "processes"),
    [
        ("auto", True, 1, 0),  # one core: the worker runs inside serve
        ("auto", True, 2, 2),
        ("AUTO", True, 16, supervisor.AUTO_MOST),
        ("auto", False, 8, 0),  # an API-only serve: delivery runs elsewhere
        ("0", True, 8, 0),
        ("3", True, 1, 3),  # a count is taken as it is
        ("3", False, 2, 3),
    ],
)
def test_worker_processes_auto_follows_the_cores(
    given: str, run_worker: bool, cores: int, processes: int
) -> None:
    env = {"GATEWAY_WORKER_PROCESSES": given, "GATEWAY_RUN_WORKER": str(run_worker)}
    settings = config.load(env=env)
    assert supervisor.process_count(settings, cores=cores) == processes


def test_a_memory_store_keeps_delivery_in_serve() -> None:
    memory = {"GATEWAY_DATABASE_URL": "memory://"}
    assert supervisor.process_count(config.load(env=memory), cores=8) == 0
    with pytest.raises(GatewayError, match="memory"):
        supervisor.process_count(config.load(env={**memory, "GATEWAY_WORKER_PROCESSES": "2"}))


def test_worker_processes_default_to_auto() -> None:
    assert config.Settings().worker_processes is None
    assert config.load(env={}).worker_processes is None


def test_generated_secret_key_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/db/gateway.db"
    first = config.Settings(database_url=url).with_secret_key().secret_key
    second = config.Settings(database_url=url).with_secret_key().secret_key
    assert first and first == second
    assert (tmp_path / "db" / "secret.key").stat().st_mode & 0o077 == 0


def test_property_names_are_case_insensitive_and_emit_format_is_an_alias() -> None:
    body = {
        "Name": "x",
        "EmitFormat": "id",
        "CALLBACKHTTPMETHOD": "get",
        "callbackurl": "http://a.example/h",
    }
    spec, given = parse(WebhookCreate, body)
    assert spec.request_content_type is ContentType.ID
    assert spec.callback_http_method is HttpMethod.GET
    assert given == {"name", "request_content_type", "callback_http_method", "callback_url"}


def test_read_only_properties_are_ignored_and_unknown_ones_rejected() -> None:
    spec, _ = parse(WebhookCreate, {**VALID, "webhookId": "x", "created": "y"})
    assert spec.name == "invoices"
    with pytest.raises(ValidationError) as caught:
        parse(WebhookCreate, {**VALID, "colour": "red"}, where="[0].")
    assert caught.value.errors == {"[0].colour": ["is not a known property"]}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"requestContentType": "Partial"}, "requestContentType"),
        ({"callbackHttpMethod": "DELETE"}, "callbackHttpMethod"),
        ({"callbackUrl": "/relative"}, "callbackUrl"),
        ({"callbackUrl": "ftp://a.example/x"}, "callbackUrl"),
        ({"callbackUrl": "https://a.example/" + "x" * 250}, "callbackUrl"),
        ({"callbackUrl": "https://user:pw@a.example/"}, "callbackUrl"),
        ({"retryCount": 6}, "retryCount"),
        ({"retryCount": -1}, "retryCount"),
        ({"retryCount": "three"}, "retryCount"),
        ({"expirationDate": "not a date"}, "expirationDate"),
    ],
)
def test_each_invalid_field_is_named(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(WebhookCreate, {**VALID, **change}, where="[2].")
    assert f"[2].{field}" in caught.value.errors


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(ValidationError) as caught:
        parse(WebhookCreate, {"name": "x"})
    assert {"requestContentType", "callbackHttpMethod", "callbackUrl"} <= set(caught.value.errors)


def test_naive_expiration_dates_are_utc() -> None:
    spec, _ = parse(WebhookPatch, {"expirationDate": "2030-01-02T03:04:05"})
    assert spec.expiration_date == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("given", ["U", "u", "Update", "UPDATE"])
def test_event_type_names(given: str) -> None:
    spec, _ = parse(
        RuleCreate,
        {
            "webhookId": "0" * 8 + "-0000-0000-0000-" + "0" * 12,
            "tableKey": "Invoice",
            "eventType": given,
        },
    )
    assert spec.event_type is EventType.UPDATE


def test_an_event_needs_records() -> None:
    with pytest.raises(ValidationError) as caught:
        parse(EventIn, {"tableKey": "Invoice", "eventType": "I", "records": []})
    assert "records" in caught.value.errors


def test_a_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be a JSON object"):
        parse(WebhookCreate, ["not", "an", "object"])


def test_rate_limiter_allows_a_burst_then_asks_to_wait() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("k")
    with pytest.raises(RateLimited) as caught:
        limiter.check("k")
    assert caught.value.retry_after == 1
    limiter.check("other-key")  # buckets are per key
    now[0] = 0.5  # half a second refills one token at 2/s
    limiter.check("k")


def test_a_secret_key_that_cannot_be_kept_beside_the_database_is_a_clear_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "afile").touch()
    settings = config.load(env={"GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path}/afile/gw.db"})
    with pytest.raises(GatewayError, match=r"cannot keep the secret key at .*afile/secret\.key"):
        settings.with_secret_key()
