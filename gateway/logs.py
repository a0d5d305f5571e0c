"""What the log looks like: one line per record with every `extra=` field, as key=value text
(logfmt) or as JSON lines for log shippers, with secrets hidden; and the start-up summary.

The code logs through the standard library only (`logging.getLogger(__name__)`, fields in
`extra={...}`). One handler on the root logger renders every record, uvicorn's and the
libraries' included, with structlog's ProcessorFormatter:

    record -> _head (time, level, logger, message) -> _extras -> exception, stack
        -> _plain (UUIDs, datetimes, enums as strings) -> _hide_secrets -> _ordered
        -> logfmt (text) or JSON

A secret never reaches a line: URL passwords, `?code=` handshake codes, `?password=` and other
secret-named query parameters, client secrets (`whsec_`), Ed25519 private keys (`whsk_`), API
keys (`gwk_`), signed codes and JWTs, and the value of any field whose name says it is a
secret are replaced by `***`, in the message, the fields and the traceback alike.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any, TextIO

import orjson
from structlog.processors import EventRenamer, JSONRenderer, LogfmtRenderer, format_exc_info
from structlog.stdlib import ProcessorFormatter
from structlog.typing import EventDict, Processor, WrappedLogger

from gateway import __version__
from gateway.config import Settings

FORMATS = ("text", "json")
HEAD = ("time", "level", "logger", "message")
TAIL = ("exception", "stack")
HIDDEN = "***"
# Attributes every LogRecord has, and those a formatter or uvicorn adds: not fields of the event.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's message again, with terminal colours
}
_RESERVED = frozenset((*HEAD, *TAIL, "event", "exc_info", "stack_info"))
_INT64 = 2**63

log = logging.getLogger(__name__)


def configure(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send every log record to standard error (or `stream`) in this format, from `level` up.
    Like logging.basicConfig, it leaves a root logger that already has handlers (a test's
    capture, a host program's set-up) as it is."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level.upper())


def formatter(fmt: str) -> logging.Formatter:
    """A formatter writing each record as one line: "text" (logfmt) or "json"."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    renderer: list[Processor]
    if fmt == "json":
        renderer = [JSONRenderer(serializer=_json_line)]
    else:
        renderer = [_text_values, LogfmtRenderer(bool_as_flag=False)]
    return ProcessorFormatter(
        foreign_pre_chain=[_head, EventRenamer("message"), _extras],
        processors=[
            ProcessorFormatter.remove_processors_meta,
            format_exc_info,
            _stack,
            _plain,
            _hide_secrets,
            _ordered,
            *renderer,
        ],
    )


def _head(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    record: logging.LogRecord = event["_record"]
    event["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    event["level"] = record.levelname.lower()
    event["logger"] = record.name
    return event


def _extras(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Every field passed with `extra=`. structlog's ExtraAdder would let a field named like
    the head ("message", "level") overwrite it; here such a field keeps an `extra_` prefix,
    and a name logfmt cannot carry (spaces, `=`, quotes) gets underscores."""
    record: logging.LogRecord = event["_record"]
    for key, value in vars(record).items():
        if key in _RECORD_ATTRIBUTES:
            continue
        name = _KEY_UNSAFE.sub("_", str(key)) or "_"
        event[f"extra_{name}" if name in _RESERVED else name] = value
    return event


_KEY_UNSAFE = re.compile(r'[\s="\x00-\x1f\x7f]')


def _stack(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """`stack_info=True`: the stack the record carries (structlog's StackInfoRenderer would
    take the formatter's own)."""
    stack = event.pop("stack_info", None)
    if isinstance(stack, str):
        event["stack"] = stack
    return event


def _plain(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Every value as JSON has it: UUIDs and other objects as strings, datetimes in ISO 8601."""
    return {key: plain(value) for key, value in event.items()}


def plain(value: Any) -> Any:
    """`value` made of str, int, float, bool, None, lists and string-keyed dicts only."""
    if value is None or isinstance(value, str | bool | float):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((plain(item) for item in value), key=str)
    return str(value)


# The name of a field or query parameter whose value is a secret.
_SECRET_NAME = r"[\w.-]*(?:password|passwd|secret|token|api[_-]?key|authorization|cookie)"
_SECRET_FIELD = re.compile(rf"(?i){_SECRET_NAME}(?:[_-]?key)?")  # secret_key too
_SECRET_TEXT = [
    # scheme://user:password@host: from the user's colon to the last @ before a space, so a
    # password holding an unencoded / or @ is hidden whole (at worst, more than it is).
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/?#@:]*:)\S*@"), rf"\g<1>{HIDDEN}@"),
    # ?code= carries a handshake code; ?password=, ?token=, ?api_key= ... what they say.
    (re.compile(rf"(?i)([?&;](?:code|pwd|{_SECRET_NAME})=)[^&#\s\"'<>]+"), rf"\g<1>{HIDDEN}"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), f"whsec_{HIDDEN}"),  # client secrets
    (re.compile(r"\bwhsk_[A-Za-z0-9+/=]+"), f"whsk_{HIDDEN}"),  # Ed25519 private keys
    (re.compile(r"\bgwk_[A-Za-z0-9_-]+"), f"gwk_{HIDDEN}"),  # API keys
    # Signed handshake codes (itsdangerous: base64 JSON, timestamp, signature) and JWTs.
    (re.compile(r"\.?\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"), HIDDEN),
]


# What each pattern above starts with: text without any (most values) is returned at once.
_MAYBE_SECRET = re.compile(r"://|[?&;][\w.-]*=|whsec_|whsk_|gwk_|eyJ")


def hide_secrets(text: str) -> str:
    """`text` with every secret the log must not show replaced by `***`."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _hide_secrets(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    return {key: _hidden(key, value) for key, value in event.items()}


def _hidden(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return HIDDEN if _names_a_secret(key) else hide_secrets(value)
    if isinstance(value, dict):
        return {k: _hidden(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hidden(key, item) for item in value]
    return value


@functools.lru_cache(maxsize=1024)
def _names_a_secret(key: str) -> bool:
    return key not in HEAD and _SECRET_FIELD.fullmatch(key) is not None


def _ordered(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """The head first, then the fields by name, then a traceback: the same order every time."""
    fields = sorted(key for key in event if key not in HEAD and key not in TAIL)
    order = [*HEAD, *fields, *(key for key in TAIL if key in event)]
    return {key: event.get(key) for key in order}


def _json_line(event: EventDict, **_: Any) -> str:
    # After _plain every value is JSON's own; orjson escapes every control character.
    return orjson.dumps(event).decode()


def _text_values(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """Lists as comma-separated items, dicts as JSON, and control characters escaped: logfmt
    escapes newlines only, and a carriage return or a terminal escape must not end or rewrite
    the line either."""
    return {key: _control_escaped(_text_value(value)) for key, value in event.items()}


def _text_value(value: Any) -> Any:
    if isinstance(value, list) and all(not isinstance(v, list | dict) for v in value):
        return ",".join("" if v is None else str(v) for v in value)
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return value


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\x85\u2028\u2029]")


def _control_escaped(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], value)


def redact_url(url: str) -> str:
    """The URL with its password hidden, whether in the user info or a query parameter."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return hide_secrets(url)
    location, question, query = rest.partition("?")
    creds, at, host = location.rpartition("@")
    if at and ":" in creds:
        location = f"{creds.split(':', 1)[0]}:{HIDDEN}@{host}"
    return hide_secrets(f"{scheme}{sep}{location}{question}{query}")


def startup_summary(command: str, settings: Settings, **facts: Any) -> None:
    """Log what this process runs with: version, database (password hidden), the networks
    callbacks may reach beside global addresses, the callback policy (HTTPS only, extra trusted
    roots, webhooks per group), the log format, and what `facts` add."""
    log.info(
        "gateway %s starting",
        command,
        extra={
            "version": __version__,
            "pid": os.getpid(),
            "database": redact_url(settings.database_url),
            "allowed_callback_networks": list(settings.allowed_callback_networks),
            "require_https_callbacks": settings.require_https_callbacks,
            "ca_bundle": settings.ca_bundle or "",
            "max_webhooks_per_group": settings.max_webhooks_per_group,
            "log_format": settings.log_format,
            "log_level": settings.log_level,
            **facts,
        },
    )
