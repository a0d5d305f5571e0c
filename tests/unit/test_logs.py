"""Log lines: every `extra=` field in both formats, one line per record, secrets hidden."""

from __future__ import annotations

import enum
import io
import json
import logging
import shlex
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from gateway import config, logs
from gateway.errors import GatewayError
from gateway.handshake import HandshakeCodes
from gateway.store import store_for_url

WEBHOOK_ID = UUID("0b4c8f6e-3f1a-4d7b-9c2e-5a6f7e8d9c0b")
WHEN = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
CODE = HandshakeCodes("a signing key", store_for_url("memory://")).issue(
    WEBHOOK_ID
)  # a real one, as the callback gets it; issuing never opens the store
FAILED = {
    "webhook_id": WEBHOOK_ID,
    "group_key": UUID("6f1d2a8e-5b7c-4c1e-9f3a-2d4b6c8e0a1f"),
    "status_code": 500,
    "reason": "callback answered HTTP 500",
    "next_attempt": WHEN,
}


class Status(enum.Enum):
    ERRORED = "Errored"


@pytest.fixture(params=logs.FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of this test's own writing to a buffer; the format is set by `render`."""
    logger = logging.getLogger(f"gateway.test_logs.{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, io.StringIO()
    logger.handlers.clear()


def render(
    logger: logging.Logger, out: io.StringIO, fmt: str, *calls: tuple[str, dict[str, Any]]
) -> list[str]:
    """Log each (message, extra) at WARNING through `fmt`; the lines written."""
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter(fmt))
    logger.handlers = [handler]
    for message, extra in calls:
        logger.warning(message, extra=extra)
    return out.getvalue().splitlines()


def logfmt(line: str) -> dict[str, str]:
    """A logfmt line as a dict; quoted values unquoted (shlex keeps `\\"` as a quote)."""
    pairs = shlex.split(line, posix=True)
    return dict(pair.split("=", 1) for pair in pairs)


def test_json_lines_carry_the_head_and_every_extra_field_as_plain_values(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    extra = {**FAILED, "status": Status.ERRORED, "networks": ("127.0.0.0/8",), "n": None}
    [line] = render(*lines, "json", ("webhook errored", extra))
    event = json.loads(line)
    assert list(event)[:4] == ["time", "level", "logger", "message"]
    assert event["level"] == "warning" and event["message"] == "webhook errored"
    assert event["logger"] == lines[0].name
    assert datetime.fromisoformat(event["time"]).tzinfo is not None
    assert event["webhook_id"] == str(WEBHOOK_ID)
    assert event["group_key"] == str(FAILED["group_key"])
    assert event["status_code"] == 500
    assert event["next_attempt"] == "2025-03-04T05:06:07.890000+00:00"
    assert event["reason"] == "callback answered HTTP 500"
    assert (event["status"], event["networks"], event["n"]) == ("Errored", ["127.0.0.0/8"], None)


def test_text_lines_show_every_extra_field_as_key_value_in_a_stable_order(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    backwards = dict(reversed(FAILED.items()))
    first, second = render(*lines, "text", ("webhook errored", FAILED), ("again", backwards))
    fields = logfmt(first)
    assert list(fields)[:4] == ["time", "level", "logger", "message"]
    assert list(fields)[4:] == sorted(FAILED)
    assert fields["message"] == "webhook errored" and fields["level"] == "warning"
    assert fields["webhook_id"] == str(WEBHOOK_ID)
    assert fields["status_code"] == "500"
    assert fields["reason"] == "callback answered HTTP 500"
    assert fields["next_attempt"] == "2025-03-04T05:06:07.890000+00:00"
    assert list(logfmt(second)) == list(fields), "the order does not follow the caller's"


def test_a_field_named_like_the_head_does_not_replace_it(
    lines: tuple[logging.Logger, io.StringIO], fmt: str
) -> None:
    [line] = render(*lines, fmt, ("the message", {"level": "x", "logger": "y", "event": "z"}))
    event = json.loads(line) if fmt == "json" else logfmt(line)
    assert (event["message"], event["level"], event["logger"]) == (
        "the message",
        "warning",
        lines[0].name,
    )
    assert (event["extra_level"], event["extra_logger"], event["extra_event"]) == ("x", "y", "z")


def test_one_line_per_record_with_newlines_in_the_message_and_a_traceback(
    lines: tuple[logging.Logger, io.StringIO], fmt: str
) -> None:
    logger, out = lines
    render(logger, out, fmt, ("first\nsecond\r\x1b[2Jthird", {"detail": "a\nb"}))
    try:
        raise RuntimeError("broken\nacross lines")
    except RuntimeError:
        logger.exception("delivery attempt failed", extra={"webhook_id": WEBHOOK_ID})
    written = out.getvalue()
    assert written.count("\n") == 2 and written.endswith("\n")
    assert "\r" not in written and "\x1b" not in written
    first, second = written.splitlines()
    if fmt == "json":
        assert json.loads(first)["message"] == "first\nsecond\r\x1b[2Jthird"
        failed = json.loads(second)
    else:
        failed = logfmt(second)
    assert failed["message"] == "delivery attempt failed"
    assert failed["webhook_id"] == str(WEBHOOK_ID)
    assert "RuntimeError: broken" in failed["exception"]
    assert failed["exception"].startswith("Traceback (most recent call last):")


def test_secrets_are_hidden_in_the_message_the_fields_and_the_traceback(
    lines: tuple[logging.Logger, io.StringIO], fmt: str
) -> None:
    logger, out = lines
    secrets = {
        "signed handshake code": CODE,
        "code in a URL": "any-code-value",
        "database password": "hunter2-pw",
        "query password": "qp-secret",
        "client secret": "whsec_c2VjcmV0LWJ5dGVzLWhlcmU=",
        "API key": "gwk_Zm9vYmFyYmF6cXV4",
        "field named secret": "plain-words",
    }
    callback = "http://127.0.0.1:9/hook?a=1&code=any-code-value"
    database = "postgresql://gw:hunter2-pw@db:5432/gw?search_path=x&password=qp-secret"
    extra = {
        "url": callback,
        "database": database,
        "headers": {"Api-Key": secrets["API key"], "accept": "*/*"},
        "client_secret": secrets["field named secret"],
        "error": OSError(f"no route to {database}"),  # an object, made a string, then hidden
    }
    message = f"calling {callback} with {secrets['client secret']}; expected {CODE}"
    render(logger, out, fmt, (message, extra))
    try:
        raise ConnectionError(f"{database} nor {callback} took {secrets['API key']}")
    except ConnectionError:
        logger.exception("failed")
    written = out.getvalue()
    assert {label for label, secret in secrets.items() if secret in written} == set()
    # What is hidden is only the secret: the rest still says what happened.
    assert "http://127.0.0.1:9/hook?a=1&code=***" in written
    assert "postgresql://gw:***@db:5432/gw?search_path=x&password=***" in written
    assert "whsec_***" in written and "gwk_***" in written


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("whsec_c2VjcmV0LWJ5dGVzLWhlcmU=", "c2VjcmV0LWJ5dGVzLWhlcmU="),
        ("gwk_Zm9vYmFyYmF6cXV4", "Zm9vYmFyYmF6cXV4"),
        ("whsk_cHJpdmF0ZS1rZXktYnl0ZXM=", "cHJpdmF0ZS1rZXktYnl0ZXM="),
        (CODE, CODE),
        ("echo;code=plain-code-value", "plain-code-value"),
        ("see pg://gw:hunter2@db", "hunter2"),
    ],
)
def test_each_kind_of_secret_is_hidden_on_its_own(
    lines: tuple[logging.Logger, io.StringIO], fmt: str, text: str, secret: str
) -> None:
    """Each alone in a value: no other secret in the same text makes the check look."""
    written = "\n".join(render(*lines, fmt, (text, {"value": text})))
    assert secret not in written and written.count("***") == 2


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://gw:pw@db:5432/gw", "postgresql://gw:***@db:5432/gw"),
        ("postgresql://gw:p@ss/w:rd@db/gw", "postgresql://gw:***@db/gw"),
        ("postgresql://gw:two words@db/gw", "postgresql://gw:***@db/gw"),
        ("postgresql://db/gw?password=pw&sslmode=on", "postgresql://db/gw?password=***&sslmode=on"),
        ("postgres://db/gw?a=b&sslpassword=pw", "postgres://db/gw?a=b&sslpassword=***"),
        ("postgresql://gw@db/gw?search_path=s", "postgresql://gw@db/gw?search_path=s"),
        ("sqlite:///data/gateway.db", "sqlite:///data/gateway.db"),
    ],
)
def test_a_database_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert logs.redact_url(url) == shown


def test_a_field_that_only_names_a_secret_key_is_kept(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    extra = {"api_key_id": "5d2c", "status_code": 410, "secret_grace_period": 86400.0}
    [line] = render(*lines, "json", ("key used", extra))
    event = json.loads(line)
    assert (event["api_key_id"], event["status_code"]) == ("5d2c", 410)
    assert event["secret_grace_period"] == 86400.0


def test_the_log_format_is_a_setting_with_two_choices() -> None:
    assert config.Settings().log_format == "text"
    assert config.load(env={"GATEWAY_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(GatewayError, match="log_format: cannot use 'xml'"):
        config.load(env={"GATEWAY_LOG_FORMAT": "xml"})
    with pytest.raises(GatewayError, match="log_level"):
        config.load(env={"GATEWAY_LOG_LEVEL": "loud"})


def test_serve_hands_what_its_flags_set_to_its_worker_processes() -> None:
    """Every flag of serve's that a worker process uses (all but where serve listens and how
    many workers it runs): a `--secret-key` a worker did not get left it unable to open the
    authentications' secrets."""
    from gateway import cli, supervisor

    serve = cli.build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = {action.dest for action in serve._actions if action.option_strings} - {"help"}
    assert flags - {"host", "port", "worker_processes"} == set(supervisor.PASSED_ON)
    settings = config.Settings(log_format="json", log_level="debug", secret_key="from a flag")
    child = config.load(env=config.child_env(settings, supervisor.PASSED_ON))
    assert (child.log_format, child.log_level) == ("json", "debug")
    assert child.secret_key == "from a flag"


def test_configure_leaves_a_root_logger_that_has_handlers_alone() -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    assert root.handlers, "pytest's capture is installed on the root logger"
    logs.configure("debug", "json", stream=sys.stdout)
    assert (list(root.handlers), root.level) == before
