"""The SQLite store's own SQL, by name, and how records map to rows.

Statements are `statements/shared.sql`'s overlaid by `sqlite.sql`'s, served as this module's
attributes; PostgreSQL's row locks are among them as None (SQLite skips a `steps.Lock`).
Parameters are named (`:name`), but the delivery path's rows are bound by position (`?1`, in
their columns' order) and written out (`event_row`, `notification_row`, `settled_row`,
`notifications`): they come by the hundred, and the codec's generic loops cost more than the
values. Values are the codec's for SQLite (`gateway.store.codec.SQLITE`).
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from gateway.errors import StoreError
from gateway.ids import from_text as _uuid
from gateway.models import Due, Event, EventType, Notification
from gateway.outcomes import AttemptOutcome, Settlement
from gateway.store import queries as shared
from gateway.store.codec import enum_text, json_list, member, shared_uuid, stamp
from gateway.store.steps import ExecuteMany, Step

MIGRATIONS = Path(__file__).parent / "migrations" / "sqlite"
Params = Mapping[str, Any]

# The writer's: journal_mode waits out another process (sqlite3.connect's 5 s timeout) before
# busy_timeout drops to 0, after which sqlite._run_atomically does the waiting itself.
PRAGMAS = ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL",
           "PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 0")  # fmt: skip
READER_PRAGMAS = (
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA query_only = ON",
)

# PostgreSQL's locks (steps.Lock), which SQLite skips: BEGIN IMMEDIATE already keeps other
# processes out, and its writer holds the whole file.
LOCK_MIGRATIONS = LOCK_LEASED_WEBHOOKS = LOCK_WEBHOOK_IDS = LOCK_LEASES = LOCK_GROUP_WEBHOOKS = None
LOCK_AUTHENTICATION = LOCK_NOTICE_SUBSCRIBERS = None
# The columns of the rows bound by position: INSERT_EVENT's, INSERT_NOTIFICATION's (the tables'
# columns, in order); SETTLE_ATTEMPT's, numbered from the shared statement by `_numbered`.
EVENT_COLUMNS = shared.COLUMNS["event"]
NOTE_COLUMNS = shared.NOTE_COLUMNS
SETTLE_COLUMNS = (
    "state", "next_attempt_at", "is_successful", "response_status_code",
    "process_result_message", "request_message", "response_message", "now", "notification_id",
    "lease_owner", "elapsed_ms",
)  # fmt: skip
# Where add_events reads and numbers a notification row.
ROW_GROUP, ROW_WEBHOOK, ROW_SEQUENCE, ROW_STATE, ROW_LEASE_UNTIL, ROW_LEASE_OWNER, ROW_MESSAGE = (
    NOTE_COLUMNS.index(name) for name in ("group_key", "webhook_id", "sequence", "state",
    "lease_until", "lease_owner", "process_result_message"))  # fmt: skip


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

__getattr__ = shared.served(__name__, _STATEMENTS)


@functools.lru_cache(maxsize=256)
def edit_webhook(values: tuple[str, ...], expect: tuple[str, ...]) -> str:
    """An owner's edit (queries.edit_webhook)."""
    return shared.edit_webhook(values, expect, same_as="IS")


# -- The delivery path's rows, written out ----------------------------------------------------
_text, _time, _loads = enum_text, datetime.fromisoformat, orjson.loads


def reserve_params(counts: Mapping[tuple[str, str], int]) -> Params:
    """RESERVE_SEQUENCES' parameter: how many numbers each (webhook, group) takes."""
    return {"counts": orjson.dumps([[w, g, n] for (w, g), n in counts.items()]).decode()}


def settled_row(outcome: AttemptOutcome, done: Settlement, now: str) -> tuple[Any, ...]:
    """SETTLE_ATTEMPT's parameters, in SETTLE_COLUMNS order (`now` stamped)."""
    return (
        # is_successful as 0 or 1: the sqlite3 module binds a bool through its adapter lookup.
        _text(done.state), stamp(done.next_attempt_at) if done.next_attempt_at else None,
        int(done.is_successful), outcome.response_status_code, done.process_result_message,
        outcome.request_message, outcome.response_message, now,
        str(outcome.notification_id), outcome.lease_owner, outcome.elapsed_ms,
    )  # fmt: skip


def event_row(event: Event) -> tuple[Any, ...]:
    """INSERT_EVENT's parameters: `SQLITE.encode(event)` in EVENT_COLUMNS order."""
    return (
        str(event.event_id), str(event.group_key), event.table_key, _text(event.event_type),
        json_list(event.records), stamp(event.created),
    )  # fmt: skip


def notification_row(note: Notification) -> list[Any]:
    """INSERT_NOTIFICATION's parameters: `SQLITE.encode(note, event_type_label=...)` in
    NOTE_COLUMNS order (a list: add_events sets ROW_SEQUENCE in the transaction). Its flags are
    the 0 and 1 SQLite stores: the sqlite3 module binds an exact int, str or float at once, but
    looks a bool (as a None) up among its adapters first, raising and clearing an AttributeError
    on the way (three a notification were 4% of a publish's instructions: bench.publish_path)."""
    event_type = _text(note.event_type)
    lease_until = note.lease_until
    return [
        str(note.notification_id), str(note.group_key), str(note.webhook_id),
        str(note.event_id), note.table_key, event_type, f"{note.table_key}.{event_type}",
        json_list(note.records), note.sequence, stamp(note.triggered_at), _text(note.state),
        stamp(note.next_attempt_at), stamp(note.created), note.attempts,
        None if lease_until is None else stamp(lease_until), note.lease_owner,
        int(note.request_sent), int(note.is_successful), note.response_status_code,
        note.process_result_message, note.request_message, note.response_message,
        stamp(note.timestamp), int(note.is_test),
    ]  # fmt: skip


def settling(rows: Sequence[tuple[Any, ...]], now: str) -> Step:
    """SETTLE_ATTEMPT over these rows (`settled_row`, `now` among them), one run a row: each
    binds by position, as cheaply as a batch's arrays would be read."""
    return ExecuteMany(_STATEMENTS["SETTLE_ATTEMPT"], rows, encoded=True)


_EVENT_TYPE = member(EventType)


def claimed(rows: Sequence[sqlite3.Row], owner: str, lease_until: datetime) -> list[Due]:
    """A claim's rows (CLAIM_DUE's columns, in order: a Due's but its lease) as leased to
    `owner` until `lease_until`; the records are codec.records, written out."""
    return [
        Due(_uuid(r[0]), shared_uuid(r[1]), shared_uuid(r[2]), _uuid(r[3]), r[4], _EVENT_TYPE(r[5]),
            tuple(_loads(r[6])), r[7], _time(r[8]), r[9], lease_until, owner)
        for r in rows
    ]  # fmt: skip


listings = functools.partial(shared.listings, "is_successful")  # stored as 0 or 1 already
migration_files = functools.partial(shared.migration_files, MIGRATIONS)


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
