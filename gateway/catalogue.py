"""The event-type catalogue as the gateway enforces it (setting `enforce_event_types`): which
(table, event type) pairs a group has declared, and the record schema of each, compiled once.

    schema_problem(schema)            why a schema cannot be saved (None: it can)
    Catalogue.check_events(...)       400 naming the event, the record and the failing path
    Catalogue.check_declared(...)     400 for a rule on an undeclared (table, event type)

How fresh it is: each process keeps a group's catalogue for `ttl` seconds (CACHE_SECONDS) after
reading it. A change made through this process drops its copy at once (`forget`); one made
through another process sharing the database (several `serve` on PostgreSQL) is seen within
`ttl`. Validators are kept by (eventTypeId, modified), so reading a catalogue again compiles
only the schemas that changed. Schemas never fetch anything: a `$ref` outside the schema is
refused when it is saved (jsonschema-rs `offline`), and so is a `$schema` that is not one of
DRAFTS (checking against its meta-schema would fetch it). `format` is asserted as the schema's
draft says (jsonschema-rs's default: in drafts 4 to 7, not in 2019-09 and 2020-12).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import jsonschema_rs
import orjson

from gateway import notices, payloads
from gateway.errors import ValidationError
from gateway.models import Event, EventType, EventTypeDefinition

if TYPE_CHECKING:
    from gateway.store import Store

CACHE_SECONDS = 5.0
MAX_SCHEMA_BYTES = 65_536  # as JSON text
MAX_SCHEMA_DEPTH = 64
MAX_NAMED = 10  # failing events or records one answer names
MAX_MESSAGE = 200  # characters of a validator's message (it may quote the value)
_COMPILED_KEPT = 10_000  # validators kept; the cache starts over when it is this full

Key = tuple[str, EventType]
# The drafts a schema may name in `$schema` (without a trailing "#"): the meta-schema of any other
# would be fetched to check the schema against it, and the gateway fetches nothing.
DRAFTS = frozenset(
    f"{scheme}://json-schema.org/{path}"
    for scheme in ("http", "https")
    for path in ("draft-04/schema", "draft-06/schema", "draft-07/schema",
                 "draft/2019-09/schema", "draft/2020-12/schema")
)  # fmt: skip


def schema_problem(schema: dict[str, Any]) -> str | None:
    """Why this JSON Schema cannot be a record schema: too large or deep, not valid against
    its draft's meta-schema (the path into the schema named), or not compilable (a `$ref` to
    anything outside it, a regular expression that does not parse). None if it can."""
    if len(orjson.dumps(schema)) > MAX_SCHEMA_BYTES:
        return f"must be at most {MAX_SCHEMA_BYTES} bytes as JSON"
    if payloads.nests_deeper(schema, MAX_SCHEMA_DEPTH):
        return f"must nest at most {MAX_SCHEMA_DEPTH} levels"
    draft = schema.get("$schema")
    if draft is not None and (not isinstance(draft, str) or draft.rstrip("#") not in DRAFTS):
        return "names in $schema a draft the gateway does not know (4, 6, 7, 2019-09, 2020-12)"
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        return f"is not a valid JSON Schema{_at(exc.instance_path)}: {_cut(exc.message)}"
    except jsonschema_rs.ReferencingError as exc:  # a meta-schema it could not find
        return f"is not a valid JSON Schema: {_cut(exc.message)}"
    try:
        compile_schema(schema)
    except (ValueError, jsonschema_rs.ReferencingError) as exc:
        return f"cannot be used: {_cut(str(exc).splitlines()[0] if str(exc) else repr(exc))}"
    return None


def compile_schema(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A validator of this schema, which never fetches a `$ref` (offline)."""
    return jsonschema_rs.validator_for(schema, offline=True)


@dataclass(frozen=True, slots=True)
class Declared:
    """A declared event type, with its compiled schema if it has one."""

    definition: EventTypeDefinition
    validator: jsonschema_rs.Validator | None


class Catalogue:
    """Each group's declared event types, read from the store and kept for `ttl` seconds."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self._clock = clock
        self._groups: dict[UUID, tuple[float, dict[Key, Declared]]] = {}
        self._changes: dict[UUID, int] = {}  # forget()s by group, so a read in flight is dropped
        self._compiled: dict[tuple[UUID, datetime], jsonschema_rs.Validator] = {}

    def forget(self, group_key: UUID) -> None:
        """Drop this group's copy: its catalogue was changed through this process."""
        self._groups.pop(group_key, None)
        self._changes[group_key] = self._changes.get(group_key, 0) + 1

    async def declared(self, group_key: UUID) -> Mapping[Key, Declared]:
        """This group's event types by (table, event type), at most `ttl` seconds old."""
        now = self._clock()
        cached = self._groups.get(group_key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        changes = self._changes.get(group_key, 0)
        entries = await self.store.event_types_of_group(group_key)
        found = {(e.table_key, e.event_type): Declared(e, self._validator(e)) for e in entries}
        if self._changes.get(group_key, 0) == changes:  # else a change came while reading
            self._groups[group_key] = (now, found)
        return found

    def _validator(self, entry: EventTypeDefinition) -> jsonschema_rs.Validator | None:
        if entry.record_schema is None:
            return None
        key = (entry.event_type_id, entry.modified)
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) >= _COMPILED_KEPT:
                self._compiled.clear()
            found = self._compiled[key] = compile_schema(entry.record_schema)
        return found

    async def check_declared(
        self, group_key: UUID, table_key: str, event_type: EventType, where: str
    ) -> None:
        """ValidationError naming `where` unless this (table, event type) is declared, or is
        the gateway's own lifecycle notices' (gateway.notices), which every group has."""
        if (table_key, event_type) == (notices.TABLE_KEY, notices.EVENT_TYPE):
            return
        if (table_key, event_type) not in await self.declared(group_key):
            raise ValidationError.field(where, f"{_label(table_key, event_type)} {_UNDECLARED}")

    async def check_events(self, group_key: UUID, events: Sequence[Event]) -> None:
        """ValidationError naming each event (by its index in the batch) whose type is not
        declared, and each record (by index) that fails its type's schema, with the path in
        the record that fails; at most MAX_NAMED of them."""
        declared = await self.declared(group_key)
        errors: dict[str, list[str]] = {}
        for index, event in enumerate(events):
            entry = declared.get((event.table_key, event.event_type))
            if entry is None:
                label = _label(event.table_key, event.event_type)
                errors[f"[{index}].eventType"] = [f"{label} {_UNDECLARED}"]
            elif entry.validator is not None:
                _check_records(entry.validator, event, f"[{index}].records", errors)
            if len(errors) >= MAX_NAMED:
                break
        if errors:
            detail = "; ".join(f"{where}: {messages[0]}" for where, messages in errors.items())
            if len(errors) >= MAX_NAMED:
                detail += f" (only the first {MAX_NAMED} are named)"
            raise ValidationError(detail, errors=errors)


_UNDECLARED = "is not a declared event type (see /api/v1/EventTypes)"


def _check_records(
    validator: jsonschema_rs.Validator, event: Event, where: str, errors: dict[str, list[str]]
) -> None:
    """Name each record of `event` that fails, with its first failure, in `errors`."""
    for number, record in enumerate(event.records):
        if validator.is_valid(record):  # the fast path: no error objects made
            continue
        label = _label(event.table_key, event.event_type)
        first = next(iter(validator.iter_errors(record)))
        at = _at(first.instance_path)
        errors[f"{where}[{number}]"] = [f"fails the schema of {label}{at}: {_cut(first.message)}"]
        if len(errors) >= MAX_NAMED:
            return


def _label(table_key: str, event_type: EventType) -> str:
    return f"{table_key}.{event_type.value}"


def _at(path: Sequence[str | int]) -> str:
    """ " at <JSON Pointer (RFC 6901)>" of a path into a document; "" for the document itself
    (whose pointer is the empty string)."""
    parts = "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)
    return f" at {parts}" if parts else ""


def _cut(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
