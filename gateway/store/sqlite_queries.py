"""The SQLite store's own SQL, by name, and how records map to rows.

Its statements are `statements/shared.sql`'s overlaid by `statements/sqlite.sql`'s (JSON id
lists, the delivery path's positional rows), served as this module's attributes under the names
`SqlStore` uses for both dialects (`__getattr__`); PostgreSQL's row locks are among them as
None (SQLite skips a `steps.Lock`). Parameters are named (`:name`) but on the delivery path,
where rows are bound by position (`?1`, in their columns' order) and written out (`event_row`,
`notification_row`, `settled_row`, `notifications`): they come by the hundred, and the generic
loops cost more than the values. Column names are the record field names.

Values: datetimes are fixed-width ISO-8601 UTC text (so text order is time order), UUIDs lowercase
text, booleans 0/1, records JSON text.
"""

from __future__ import annotations

import enum
import functools
import operator
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import orjson

from gateway.errors import StoreError
from gateway.ids import from_text as _uuid
from gateway.models import (
    ApiKey,
    Attempt,
    ContentType,
    Event,
    EventType,
    HttpMethod,
    Notification,
    NotificationState,
    Scope,
    StatusReason,
    Webhook,
    WebhookRule,
    WebhookStatus,
)
from gateway.outcomes import AttemptOutcome, Settlement
from gateway.store import queries as shared

MIGRATIONS = Path(__file__).parent / "migrations" / "sqlite"
R = TypeVar("R", ApiKey, Webhook, WebhookRule, Notification, Attempt)
E = TypeVar("E", bound=enum.Enum)
Params = Mapping[str, Any]

# The writer's: journal_mode waits out another process (sqlite3.connect's 5 s timeout) before
# busy_timeout drops to 0, after which SqliteStore._begin does the waiting itself.
PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 0",
)
READER_PRAGMAS = (
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA query_only = ON",
)

# PostgreSQL's locks (steps.Lock), which SQLite skips: BEGIN IMMEDIATE already keeps other
# processes out, and its writer holds the whole file.
LOCK_MIGRATIONS = LOCK_ACTIVE_WEBHOOK = LOCK_LEASED_WEBHOOKS = LOCK_WEBHOOK_IDS = LOCK_LEASES = None
# The columns of the rows bound by position: INSERT_EVENT's, INSERT_NOTIFICATION's (the tables'
# columns, in order); SETTLE_ATTEMPT's, numbered from the shared statement by `_numbered`.
EVENT_COLUMNS = shared.COLUMNS["event"]
NOTE_COLUMNS = shared.NOTE_COLUMNS
SETTLE_COLUMNS = (
    "state", "next_attempt_at", "is_successful", "response_status_code",
    "process_result_message", "request_message", "response_message", "now", "notification_id",
    "lease_owner",
)  # fmt: skip
# Where add_events reads and numbers a notification row.
ROW_GROUP = NOTE_COLUMNS.index("group_key")
ROW_WEBHOOK = NOTE_COLUMNS.index("webhook_id")
ROW_SEQUENCE = NOTE_COLUMNS.index("sequence")
ROW_STATE = NOTE_COLUMNS.index("state")
ROW_LEASE_UNTIL = NOTE_COLUMNS.index("lease_until")
ROW_LEASE_OWNER = NOTE_COLUMNS.index("lease_owner")
ROW_MESSAGE = NOTE_COLUMNS.index("process_result_message")


def _numbered(names: Sequence[str], sql: str) -> str:
    """`sql` with each :name written as ?N, N its place in `names` (from 1), so that it binds
    a row by position and still reads by name."""
    for place, name in enumerate(names, start=1):
        sql = re.sub(rf":{name}\b", f"?{place}", sql)
    if ":" in re.sub(r"'[^']*'", "", sql):
        raise ValueError(f"a name in {sql!r} is not among {names}")
    return sql


_STATEMENTS = shared.load("sqlite")
_STATEMENTS["SETTLE_ATTEMPT"] = _numbered(SETTLE_COLUMNS, _STATEMENTS["SETTLE_ATTEMPT"])


def __getattr__(name: str) -> str:
    """A statement by name (`statements/shared.sql` overlaid by `statements/sqlite.sql`)."""
    if name in _STATEMENTS:
        return _STATEMENTS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.lru_cache(maxsize=256)
def edit_webhook(values: tuple[str, ...], expect: tuple[str, ...]) -> str:
    """An owner's edit (queries.edit_webhook)."""
    return shared.edit_webhook(values, expect, same_as="IS")


# -- Values and rows --------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def stamp(value: datetime) -> str:
    """Fixed-width UTC text, so that comparing the text compares the times.

    Cached: a batch of notifications repeats the same few times (created, due, triggered) in
    every row, and formatting was 3% of the publish path.
    """
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware times only")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


_AS_IS = frozenset({str, int, float, bool, type(None)})
_text = str.__str__  # a StrEnum member's text (its value), without enum's property lookup
Convert = Callable[[Any], Any]


def _json_list(value: tuple[Any, ...]) -> str:
    return orjson.dumps(list(value)).decode()


def _json_sorted(value: frozenset[Any]) -> str:
    return orjson.dumps(sorted(value)).decode()


def _converter_for(kind: type) -> Convert | None:
    """How a value of this exact type becomes what SQLite stores (None: as it is)."""
    if kind in _AS_IS:
        return None
    if issubclass(kind, enum.StrEnum):
        return _text
    if issubclass(kind, enum.Enum):
        return operator.attrgetter("value")
    if issubclass(kind, UUID):
        return str
    if issubclass(kind, datetime):
        return stamp
    if issubclass(kind, tuple):
        return _json_list
    if issubclass(kind, frozenset):
        return _json_sorted
    return None


class _Converters(dict[type, Convert | None]):
    """The converter of each type of value met, worked out once per type: a row's values then
    cost one dict lookup each instead of a chain of isinstance checks (rows come by the
    hundred on the publish path)."""

    def __missing__(self, kind: type) -> Convert | None:
        found = self[kind] = _converter_for(kind)
        return found


_CONVERTERS = _Converters()


def to_sql(value: Any) -> Any:
    """One Python value as SQLite stores it."""
    convert = _CONVERTERS[type(value)]
    return value if convert is None else convert(value)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_FIELD_VALUES: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields() builds a new tuple on every call; rows are encoded by the hundred.
    if cls not in _FIELD_NAMES:
        _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
        # Every record type has several fields, so attrgetter returns them as one tuple.
        _FIELD_VALUES[cls] = operator.attrgetter(*_FIELD_NAMES[cls])
    return _FIELD_NAMES[cls]


def encode(record: Any, **extra: Any) -> Params:
    """A record's fields as named parameters; column names are the field names."""
    names = _field_names(type(record))
    values = _FIELD_VALUES[type(record)](record)
    converters = _CONVERTERS
    params = {
        n: v if (convert := converters[type(v)]) is None else convert(v)
        for n, v in zip(names, values, strict=True)
    }
    params.update(extra)
    return params


def reserve_params(counts: Mapping[tuple[str, str], int]) -> Params:
    """RESERVE_SEQUENCES' parameter: how many numbers each (webhook, group) takes."""
    return {"counts": orjson.dumps([[w, g, n] for (w, g), n in counts.items()]).decode()}


def settled_row(outcome: AttemptOutcome, done: Settlement, now: str) -> tuple[Any, ...]:
    """SETTLE_ATTEMPT's parameters, in SETTLE_COLUMNS order (`now` stamped)."""
    return (
        done.state.value, stamp(done.next_attempt_at) if done.next_attempt_at else None,
        done.is_successful, outcome.response_status_code, done.process_result_message,
        outcome.request_message, outcome.response_message, now,
        str(outcome.notification_id), outcome.lease_owner,
    )  # fmt: skip


def event_row(event: Event) -> tuple[Any, ...]:
    """INSERT_EVENT's parameters: `encode(event)` in EVENT_COLUMNS order, written out."""
    return (
        str(event.event_id), str(event.group_key), event.table_key, _text(event.event_type),
        _json_list(event.records), stamp(event.created),
    )  # fmt: skip


def notification_row(note: Notification) -> list[Any]:
    """INSERT_NOTIFICATION's parameters: `encode(note, event_type_label=...)` in NOTE_COLUMNS
    order, written out (a list: add_events sets ROW_SEQUENCE in the transaction)."""
    event_type = _text(note.event_type)
    lease_until = note.lease_until
    return [
        str(note.notification_id), str(note.group_key), str(note.webhook_id),
        str(note.event_id), note.table_key, event_type, f"{note.table_key}.{event_type}",
        _json_list(note.records), note.sequence, stamp(note.triggered_at), _text(note.state),
        stamp(note.next_attempt_at), stamp(note.created), note.attempts,
        None if lease_until is None else stamp(lease_until), note.lease_owner,
        note.request_sent, note.is_successful, note.response_status_code,
        note.process_result_message, note.request_message, note.response_message,
        stamp(note.timestamp),
    ]  # fmt: skip


def _opt(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else convert(v)


def _records(text: str) -> tuple[dict[str, Any], ...]:
    return tuple(orjson.loads(text))


_SHARED_IDS: dict[str, UUID] = {}
SHARED_IDS_SIZE = 10_000  # the cache starts over when it is this full


def _shared_uuid(text: str) -> UUID:
    """An id that many rows repeat (their webhook's, their group's), one object per text: it
    is parsed once, and the worker's dicts keyed by it match it by identity instead of calling
    uuid.UUID.__eq__ (13 times a notification, counted with cProfile)."""
    found = _SHARED_IDS.get(text)
    if found is None:
        if len(_SHARED_IDS) >= SHARED_IDS_SIZE:
            _SHARED_IDS.clear()
        found = _SHARED_IDS[text] = _uuid(text)
    return found


_time = datetime.fromisoformat


def _member(kind: type[E]) -> Callable[[str], E]:
    """The member of this enum whose value is stored: one dict lookup, where calling the enum
    costs three times as much (timeit), twice per claimed notification."""
    members = {member.value: member for member in kind}

    def lookup(value: str) -> E:
        found = members.get(value)
        return kind(value) if found is None else found  # the enum's own error if unknown

    return lookup


_AUDIT: dict[str, Callable[[Any], Any]] = {
    "created": _time, "created_user_id": _uuid, "modified": _time, "modified_user_id": _uuid
}  # fmt: skip
# Per record type, how a column's SQLite value becomes the field's value (others pass as is).
_DECODE: dict[type, dict[str, Callable[[Any], Any]]] = {
    ApiKey: {"api_key_id": _uuid, "group_key": _uuid, "created": _time, "revoked": _opt(_time),
             "scopes": lambda text: frozenset(Scope(s) for s in orjson.loads(text))},
    Webhook: {"webhook_id": _shared_uuid, "group_key": _shared_uuid,
              "status_code": _member(WebhookStatus),
              "request_content_type": _member(ContentType),
              "callback_http_method": _member(HttpMethod),
              "expiration_date": _opt(_time), "previous_secret_expires": _opt(_time),
              "status_reason": _member(StatusReason), **_AUDIT},
    WebhookRule: {"webhook_rule_id": _uuid, "webhook_id": _uuid, "group_key": _uuid,
                  "event_type": _member(EventType), **_AUDIT},
    Notification: {"notification_id": _uuid, "group_key": _shared_uuid, "webhook_id": _shared_uuid,
                   "event_id": _uuid, "event_type": _member(EventType), "records": _records,
                   "triggered_at": _time, "state": _member(NotificationState),
                   "next_attempt_at": _time, "created": _time, "lease_until": _opt(_time),
                   "request_sent": bool, "is_successful": bool, "timestamp": _time},
    Attempt: {"notification_id": _uuid, "timestamp": _time},
}  # fmt: skip


Decoder = tuple[str, str, Callable[[Any], Any] | None]  # field, column, conversion
_DECODERS: dict[tuple[type, str], tuple[Decoder, ...]] = {}


def _decoders(cls: type, prefix: str) -> tuple[Decoder, ...]:
    """How to read each field of `cls` from a row, worked out once per type and prefix."""
    if (cls, prefix) not in _DECODERS:
        convert = _DECODE[cls]
        _DECODERS[cls, prefix] = tuple(
            (name, prefix + name, convert.get(name)) for name in _field_names(cls)
        )
    return _DECODERS[cls, prefix]


_EVENT_TYPE = _member(EventType)
_STATE = _member(NotificationState)


def notifications(rows: Sequence[sqlite3.Row]) -> list[Notification]:
    """`decode_rows(Notification, rows)` for rows of NOTE_COLUMNS in their order (a claim's),
    written out: a claim decodes hundreds of rows, and the generic loop over each row's
    columns cost more than the conversions themselves."""
    return [
        Notification(
            _uuid(r[0]), _shared_uuid(r[1]), _shared_uuid(r[2]), _uuid(r[3]), r[4],
            _EVENT_TYPE(r[5]), _records(r[7]), r[8], _time(r[9]), _STATE(r[10]), _time(r[11]),
            _time(r[12]), r[13], None if r[14] is None else _time(r[14]), r[15], bool(r[16]),
            bool(r[17]), r[18], r[19], r[20], r[21], _time(r[22]),
        )  # r[6] is event_type_label, which the record does not keep
        for r in rows
    ]  # fmt: skip


def decode(cls: type[R], row: sqlite3.Row, prefix: str = "") -> R:
    """The record of this type in `row` (columns named `prefix` + field name)."""
    return decode_rows(cls, [row], prefix)[0]


def decode_rows(cls: type[R], rows: Sequence[sqlite3.Row], prefix: str = "") -> list[R]:
    """The records of this type in `rows`, which share their columns.

    Each field's column is found by name once for all the rows, then read by position: a
    lookup by name compares against every column name before it, and a claimed batch is
    hundreds of rows of 23 columns.
    """
    if not rows:
        return []
    position = {column: i for i, column in enumerate(rows[0].keys())}
    plan = [(position[column], convert) for _, column, convert in _decoders(cls, prefix)]
    return [
        cls(*[convert(value) if (value := row[i]) is not None and convert is not None else value
              for i, convert in plan])
        for row in rows
    ]  # fmt: skip


def listings() -> shared.Listings:
    """The paged listings (queries.listings), `is_successful` as stored: 0 or 1."""
    return shared.listings("is_successful")


def migration_files() -> list[tuple[int, str]]:
    """(version, SQL) of every migration of this dialect, in order."""
    return shared.migration_files(MIGRATIONS)


def statements(script: str) -> Iterable[str]:
    """Split a migration into statements, so it can run inside our own transaction
    (executescript would commit first)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip() and not pending.strip().startswith("--"):
        raise StoreError(f"incomplete statement in migration: {pending.strip()[:80]}")
