"""The PostgreSQL store's own SQL, by name, and how records map to rows.

Its statements are `statements/shared.sql`'s overlaid by `statements/postgres.sql`'s (row
locks, arrays, NOTIFY, the delivery path), served as this module's attributes under the names
`SqlStore` uses for both dialects, their `:name` parameters numbered as asyncpg's `$1`. Values
are `gateway.store.codec`'s for PostgreSQL: native, and `json` text for records.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from gateway.models import Due, Notification
from gateway.outcomes import AttemptOutcome, Settlement
from gateway.store import queries as shared
from gateway.store.codec import POSTGRES
from gateway.store.steps import Execute, Step

MIGRATIONS = Path(__file__).parent / "migrations" / "postgres"
Params = Mapping[str, Any]
# `:name`, but not the second colon of a `::type` cast.
_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
# Where add_events reads and numbers a notification row (notification_row: by name).
ROW_GROUP, ROW_WEBHOOK, ROW_SEQUENCE, ROW_STATE = "group_key", "webhook_id", "sequence", "state"
ROW_LEASE_UNTIL, ROW_LEASE_OWNER = "lease_until", "lease_owner"
ROW_MESSAGE = "process_result_message"


@dataclass(frozen=True, slots=True)
class Sql:
    """A statement with numbered placeholders and the parameter name behind each number."""

    text: str
    names: tuple[str, ...]

    def args(self, params: Params) -> list[Any]:
        """The positional arguments for these named parameters."""
        return [params[name] for name in self.names]


@functools.lru_cache(maxsize=512)
def number(template: str) -> Sql:
    """`template` with its `:name` placeholders as `$n`, one number per distinct name (cached:
    the text the store makes as it runs, a listing's filter or an owner's edit, repeats)."""
    names: dict[str, int] = {}
    text = _NAMED.sub(lambda match: f"${names.setdefault(match[1], len(names) + 1)}", template)
    return Sql(text, tuple(names))


def sql(statement: Sql | str) -> Sql:
    """A statement served by name, or text the store made as it ran, numbered."""
    return number(statement) if isinstance(statement, str) else statement


# SETTLE_ATTEMPT's parameters that differ from one attempt to the next, with their types: the
# columns of the batch it settles in one statement (`batched`). The rest (`now`) is the batch's.
SETTLE_ARRAYS = {
    "notification_id": "uuid", "lease_owner": "text", "state": "text",
    "next_attempt_at": "timestamptz", "is_successful": "boolean", "response_status_code": "text",
    "process_result_message": "text", "request_message": "text", "response_message": "text",
    "elapsed_ms": "float8",
}  # fmt: skip


def batched(statement: str, arrays: Mapping[str, str]) -> str:
    """A shared statement that updates one row (`UPDATE ... SET ... WHERE`, its parameters
    named) as one statement for a whole batch: each parameter in `arrays` becomes a column of
    the batch (`:state` reads `p.p_state`, prefixed so that the table's own columns stay
    unambiguous), passed as an array of its type; any other parameter is one value for all.
    asyncpg's executemany runs a statement once per row: settling 100 attempts a batch, each
    cost the server 28.9 us that way and 14.2 us in one statement (an ad hoc benchmark read
    through pg_stat_statements, 2026-12-05; S1 showed 22.6 against 16.0 us a notification)."""
    names = "|".join(arrays)
    rewritten = re.sub(rf"(?<![:\w]):({names})\b", r"p.p_\1", statement)
    head, found, where = rewritten.partition("\nWHERE ")
    if not found:
        raise ValueError(f"not an UPDATE ... WHERE: {statement[:60]!r}")
    rows = ", ".join(f":{name}::{kind}[]" for name, kind in arrays.items())
    columns = ", ".join(f"p_{name}" for name in arrays)
    return f"{head}\nFROM unnest({rows}) AS p ({columns})\nWHERE {where}"


# The publish path's inserts, many rows a transaction: each runs as one statement over arrays
# (`unnested`), not once per row as asyncpg's executemany would.
UNNESTED = ("INSERT_EVENT", "INSERT_NOTIFICATION", "INSERT_WAITING")
_INSERT = re.compile(r"INSERT INTO (\w+) \(([^()]*)\)\s+VALUES \(([^()]*)\)\s*", re.ASCII)


def unnested(statement: Sql, types: Mapping[tuple[str, str], str]) -> Sql | None:
    """`INSERT INTO t (columns) VALUES ($1, ...)` as one statement for any number of rows: each
    $n an array of its column's type (`types`, by table and column, as the server names them),
    the rows read from the arrays side by side; its parameters are the same names, each given a
    list. None if a column is an array itself, which unnest would flatten.

    In bench.pg_cycle's cycle (64 events to one webhook at a time), the notifications' insert
    took the server 15.0 us a row through executemany and 12.6 in one statement, and the
    server's CPU a notification fell from 62.5 / 61.5 to 50.5 / 51.5 us (the events' insert
    unnested too; two runs each way, alternately, read through pg_stat_statements, 2026-12-05):
    the per-row messages cost the server more than the insert itself."""
    table, columns, values = _insert(statement).groups()
    items = [item.strip() for item in values.split(",")]
    arrays = {
        item: types[table, column.strip()]
        for column, item in zip(columns.split(","), items, strict=True)
        if item.startswith("$")
    }
    if any(kind.endswith("]") for kind in arrays.values()):
        return None
    picked = ", ".join(f"u.c{item[1:]}" if item in arrays else item for item in items)
    sources = ", ".join(f"{item}::{kind}[]" for item, kind in arrays.items())
    aliases = ", ".join(f"c{item[1:]}" for item in arrays)
    text = (f"INSERT INTO {table} ({columns}) SELECT {picked}\n"
            f"FROM unnest({sources}) AS u ({aliases})")  # fmt: skip
    return Sql(text, statement.names)


def inserts_into(statement: Sql) -> str:
    """The table an `INSERT INTO t (columns) VALUES (...)` writes."""
    return _insert(statement)[1]


def _insert(statement: Sql) -> re.Match[str]:
    found = _INSERT.fullmatch(statement.text)
    if found is None:
        raise ValueError(f"not an INSERT ... VALUES (...): {statement.text[:60]!r}")
    return found


_LOADED = shared.load("postgres")
_LOADED["SETTLE_ATTEMPT"] = batched(_LOADED["SETTLE_ATTEMPT"], SETTLE_ARRAYS)
# The statements filled in as they run (queries.FILLED_LATER) stay text, numbered by `sql`.
_STATEMENTS = {
    name: statement if shared.filled_later(statement) else number(statement)
    for name, statement in _LOADED.items()
}

__getattr__ = shared.served(__name__, _STATEMENTS)


# An owner's edit, and the listings, made as queries.py makes them; numbered by `sql` as they run.
edit_webhook = functools.partial(shared.edit_webhook, same_as="IS NOT DISTINCT FROM")
listings = functools.partial(shared.listings, "is_successful::int")
migration_files = functools.partial(shared.migration_files, MIGRATIONS)
# The delivery path's rows are the generic ones (gateway.store.codec).
event_row = POSTGRES.encode


def claimed(rows: Sequence[Any], owner: str, lease_until: datetime) -> list[Due]:
    """A claim's rows (CLAIM_DUE returns a Due's columns, its lease among them, as set)."""
    return POSTGRES.decode_rows(Due, rows)


def notification_row(note: Notification) -> dict[str, Any]:
    """INSERT_NOTIFICATION's parameters."""
    return POSTGRES.encode(note, event_type_label=f"{note.table_key}.{note.event_type.value}")


def reserve_params(counts: Mapping[tuple[UUID, UUID], int]) -> Params:
    """RESERVE_SEQUENCES' parameters: how many numbers each (webhook, group) takes."""
    return {"webhook_ids": [w for w, _ in counts], "group_keys": [g for _, g in counts],
            "counts": list(counts.values())}  # fmt: skip


def settled_row(outcome: AttemptOutcome, done: Settlement, now: datetime) -> tuple[Any, ...]:
    """One attempt's row of SETTLE_ATTEMPT's batch, in SETTLE_ARRAYS order (`settling`)."""
    return (
        outcome.notification_id, outcome.lease_owner, done.state.value, done.next_attempt_at,
        done.is_successful, outcome.response_status_code, done.process_result_message,
        outcome.request_message, outcome.response_message, outcome.elapsed_ms,
    )  # fmt: skip


def settling(rows: Sequence[tuple[Any, ...]], now: datetime) -> Step:
    """SETTLE_ATTEMPT over these rows (`settled_row`), in one statement: a column each."""
    columns = zip(*rows, strict=True)
    arrays = dict(zip(SETTLE_ARRAYS, map(list, columns), strict=True))
    return Execute(_STATEMENTS["SETTLE_ATTEMPT"], {"now": now, **arrays})


def statements(script: str) -> list[Sql]:
    """A migration as one statement of no parameters, which asyncpg sends as it is (the
    simple query protocol runs several statements in one call)."""
    return [Sql(script, ())]
