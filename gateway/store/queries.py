"""The store's SQL statements, read from named blocks in `statements/`, and what both dialects
share.

`load(dialect)` gives a dialect's statements by name: `shared.sql`'s blocks overlaid by its own
file's (only what differs), their fill-ins filled (shared.sql's header lists them), but those the
store fills as it runs a statement (FILLED_LATER: a listing's `{where}` and `{order}` from
`filter_sql`, whitelisted columns and placeholders only; an owner's edit's `{sets}` and
`{guards}`), which only shared.sql's statements have. Each dialect's module (`sqlite_queries`,
`postgres_queries`) serves them as its attributes, under the names `SqlStore` reads.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from gateway.models import (
    ApiKey,
    Attempt,
    Authentication,
    Due,
    Event,
    EventTypeDefinition,
    Notification,
    Recipient,
    Webhook,
    WebhookRule,
)
from gateway.store.filter_sql import Column, Listing

if TYPE_CHECKING:
    from gateway.resource import Resource

T = TypeVar("T")
STATEMENTS = Path(__file__).parent / "statements"
FILLED_LATER = frozenset({"where", "order", "sets", "guards"})
_HEADER = re.compile(r"^-- name:(.*)$", re.MULTILINE)
_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_FILL_IN = re.compile(r"\{([^{}]*)\}")
_COLUMN_LIST = re.compile(
    r"(?:(?P<alias>\w+)\.)?(?P<table>\w+?)_(?P<form>columns|values)(?: AS (?P<prefix>\w+)\*)?"
)

# What a transaction tells listening processes on commit (steps.Notify; PostgreSQL only):
# new work is due; an owner changed a webhook (paused, reactivated, new secret; its id).
NEW_WORK_CHANNEL = "gateway_new_work"
WEBHOOK_CHANGED_CHANNEL = "gateway_webhook_changed"


def _fields(record: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(record))


# Each table's columns by its name in fill-ins: its record's fields, so that a record is written
# and read by its field names. A notification's also keep, after its event type, the label the
# history filters on (`Invoice.Update`), which the record does not.
_NOTE = _fields(Notification)
_LABEL_AT = _NOTE.index("event_type") + 1
NOTE_COLUMNS = (*_NOTE[:_LABEL_AT], "event_type_label", *_NOTE[_LABEL_AT:])
_DUE = _fields(Due)
COLUMNS = {
    "api_key": _fields(ApiKey), "webhook": _fields(Webhook), "rule": _fields(WebhookRule),
    "recipient": _fields(Recipient),
    "event": _fields(Event), "notification": NOTE_COLUMNS, "due": _DUE,
    # What SQLite's claim reads back: a Due but its lease, which the claim has just set.
    "claimed": _DUE[:_DUE.index("lease_until")],
    "attempt": _fields(Attempt),
    "authentication": _fields(Authentication),
    "event_type": _fields(EventTypeDefinition),
}  # fmt: skip


def load(dialect: str) -> dict[str, str]:
    """The statements `dialect` runs by name, filled in (but FILLED_LATER)."""
    return filled({**read("shared"), **read(dialect)})


def served(module: str, statements: Mapping[str, T]) -> Callable[[str], T]:
    """A dialect module's `__getattr__`, which serves its statements by name."""

    def statement(name: str) -> T:
        if name in statements:
            return statements[name]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return statement


def read(name: str) -> dict[str, str]:
    """The blocks of `statements/<name>.sql` as written, fill-ins and all."""
    return parse((STATEMENTS / f"{name}.sql").read_text(encoding="utf-8"), f"{name}.sql")


def parse(text: str, source: str) -> dict[str, str]:
    """Each block's statement by its name: the lines under its `-- name: NAME` line up to the
    next one, but comments and blank lines. Refuses a name given twice, a block with no
    statement, and a statement before the first name."""
    preamble, *headed = _HEADER.split(text)
    if _sql_lines(preamble):
        raise ValueError(f"{source}: a statement before the first '-- name:' line")
    blocks: dict[str, str] = {}
    for name, body in zip(headed[::2], headed[1::2], strict=True):
        name = name.strip()
        if not _NAME.fullmatch(name):
            raise ValueError(f"{source}: {name!r} is not a statement name (UPPER_CASE)")
        if name in blocks:
            raise ValueError(f"{source}: {name} is defined twice")
        if not (lines := _sql_lines(body)):
            raise ValueError(f"{source}: {name} has no statement")
        blocks[name] = "\n".join(lines)
    return blocks


def _sql_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("--")]  # fmt: skip


def filled(blocks: Mapping[str, str]) -> dict[str, str]:
    """Every block with its fill-ins filled: another block's name by its statement, a column
    fill-in (`column_list`) by its columns, FILLED_LATER left as it is."""

    def fill(name: str) -> str:
        return _FILL_IN.sub(lambda found: fill_in(found[1], name), blocks[name])

    def fill_in(what: str, block: str) -> str:
        if what in blocks:
            return fill(what)
        return f"{{{what}}}" if what in FILLED_LATER else column_list(what, block)

    return {name: fill(name) for name in blocks}


def column_list(fill_in: str, block: str) -> str:
    """The text of a column fill-in (`webhook_columns`, `webhook_values`, `w.webhook_columns`,
    `w.webhook_columns AS w_*`)."""
    found = _COLUMN_LIST.fullmatch(fill_in)
    if found is None or found["table"] not in COLUMNS:
        raise ValueError(f"{block}: no fill-in {{{fill_in}}}")
    names = COLUMNS[found["table"]]
    if found["form"] == "values":
        if found["alias"] or found["prefix"]:
            raise ValueError(f"{block}: values take no alias: {{{fill_in}}}")
        return ", ".join(f":{name}" for name in names)
    alias = f"{found['alias']}." if found["alias"] else ""
    renamed = f" AS {found['prefix']}{{}}" if found["prefix"] else ""
    return ", ".join(f"{alias}{name}{renamed.format(name)}" for name in names)


def filled_later(statement: str) -> bool:
    """Whether the store fills some of this statement in as it runs it (FILLED_LATER)."""
    return _FILL_IN.search(statement) is not None


# The statements with fill-ins left for the store (FILLED_LATER), as both dialects run them.
SHARED = filled(read("shared"))


def edit_webhook(values: tuple[str, ...], expect: tuple[str, ...], *, same_as: str) -> str:
    """An owner's edit (EDIT_WEBHOOK): set only the named columns (`:v_<name>`), only while the
    expected ones still hold their values (`:e_<name>`, compared with `same_as`, the dialect's
    null-safe equality). Names come from store.base.EDITABLE, never from a request."""
    # With nothing to set, the row is still matched (locked) and its expectations checked.
    sets = ", ".join(f"{name} = :v_{name}" for name in values) or "modified = modified"
    guards = "".join(f" AND {name} {same_as} :e_{name}" for name in expect)
    return SHARED["EDIT_WEBHOOK"].format(sets=sets, guards=guards)


@functools.cache
def migration_files(directory: Path) -> tuple[tuple[int, str], ...]:
    """(version, SQL) of every migration file in `directory`, in order (0001_x.sql: 1); read
    once (readiness compares the database's latest with the last)."""
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return tuple((int(f.name[:4]), f.read_text(encoding="utf-8")) for f in files)


class Listings(NamedTuple):
    """The paged listings of a dialect."""

    webhooks: Listing
    rules: Listing
    history: Listing
    authentications: Listing
    event_types: Listing


@functools.cache
def listings(is_successful_as_int: str) -> Listings:
    """The listings of a dialect, which says how `is_successful` counts as 0 or 1 in SQL. Built
    on first use, from the wire models (pydantic), which a worker process never loads: it lists
    nothing (tests/unit/test_worker_imports.py)."""
    from gateway import wire

    return Listings(
        listed(wire.WebhookModel, "WEBHOOKS", "created ASC, webhookId ASC", "webhook_id"),
        listed(wire.WebhookRuleModel, "RULES", "created ASC, webhookRuleId ASC",
               "webhook_rule_id"),
        listed(wire.WebhookHistoryTableStorageModel, "HISTORY", "timestamp DESC",
               "notification_id", webhookhistoryid="notification_id",
               eventtype="event_type_label",
               # As the wire shows it: every attempt but a final successful one is a failure.
               failurecount=f"(attempts - {is_successful_as_int})"),
        listed(wire.AuthenticationModel, "AUTHENTICATIONS", "created ASC, authenticationId ASC",
               "authentication_id"),
        listed(wire.EventTypeModel, "EVENT_TYPES", "tableKey ASC, eventType ASC",
               "event_type_id"),
    )  # fmt: skip


def listed(model: type[Resource], name: str, order: str, key: str, /, **sql: str) -> Listing:
    """The listing that QUERY_<name> and COUNT_<name> page, over the fields `model` lets a
    query name: each, by lower-case wire name, compares the column of the record field it
    shows (of the same name), or the SQL given here for it. Ordered by `order` (wire names)
    unless the query says, and last by `key`, the primary key, so pages never overlap or skip.
    A field whose type admits None orders as a column that may be null (filter_sql)."""
    attributes = model.attributes()
    columns = {wire_name: Column(sql.get(wire_name, attributes[wire_name]), field_type,
                                 _nullable(model, attributes[wire_name]))
               for wire_name, field_type in model.queryable().items()}  # fmt: skip
    return Listing(SHARED[f"QUERY_{name}"], SHARED[f"COUNT_{name}"], columns, order, key)


def _nullable(model: type[Resource], attribute: str) -> bool:
    """Whether the model's field shows a column that may be null (its type admits None)."""
    field = model.model_fields.get(attribute)
    return field is not None and type(None) in typing.get_args(field.annotation)
