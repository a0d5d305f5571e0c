"""How records become rows and rows become records, in each SQL dialect's values.

A field's kind comes from its type hint (`X | None` is X's kind). Each dialect has a table of
how a value of each kind is written and read back:

    kind       SQLite                                PostgreSQL
    ID         lowercase text                        uuid
    TIME       fixed-width ISO-8601 UTC text         timestamptz
    BOOL       0/1                                   boolean
    ENUM       its value (text)                      its value (text)
    SET        JSON text of the sorted values        text[] of the sorted values
    RECORDS    JSON text                             json text
    JSON       JSON text                             json text

A JSON field holds a dict (an event type's schema, a webhook's config), or a structured setting
(gateway.models.Settable): a part record (a dataclass) or a tuple of them. It is written as
compact JSON (orjson writes dataclasses as objects) and read back as its field's type
(`Field.build`).

`Codec` applies a table: `to_sql` to one value, `encode` to a record, `decode_rows` to rows.
Writing goes by the value's type (so a bare parameter and a record's field are written alike),
reading by the field's kind (a stored value does not say). Nulls pass both ways unchanged.
SQLite's delivery-path rows are written out from the helpers here (`sqlite_queries`).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import operator
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import orjson

from gateway.ids import from_text

R = TypeVar("R")  # a record type (gateway.models)
E = TypeVar("E", bound=enum.Enum)
K = TypeVar("K")
V = TypeVar("V")
Convert = Callable[[Any], Any]
Layout = tuple[type, str, str]  # a record type, its columns' prefix, the columns (one a line)
Placed = tuple[Callable[[Any], Sequence[Any]], list[tuple[int, Convert]]]


class Kind(enum.Enum):
    """What a field holds, as far as storing it goes: a kind above, PLAIN (text or a number, as
    it is) or SHARED_ID (an ID that many rows repeat, read as one object: SHARED_ID_FIELDS)."""

    PLAIN, ID, SHARED_ID, TIME, BOOL, ENUM, SET, RECORDS, JSON = range(9)


SHARED_ID_FIELDS = frozenset({"webhook_id", "group_key"})  # a row's webhook's, its group's


# -- Helpers, shared by the tables and SQLite's written-out rows --------------------------------
def aware(value: datetime) -> datetime:
    """`value`, refused if naive: the store keeps timezone-aware times only."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: the store keeps timezone-aware times only")
    return value


@functools.lru_cache(maxsize=256)
def stamp(value: datetime) -> str:
    """Fixed-width UTC text, so that comparing the text compares the times. Cached: a batch
    repeats the same few times in every row, and formatting was 3% of the publish path."""
    return aware(value).astimezone(UTC).isoformat(timespec="microseconds")


enum_text = str.__str__  # a StrEnum member's text (its value), without enum's property lookup
enum_value = operator.attrgetter("value")


def json_list(value: Sequence[Any]) -> str:
    """Values as a JSON list (an event's records, a set's values once sorted): orjson writes a
    tuple as a list, so none is copied."""
    return orjson.dumps(value).decode()


def json_text(value: Any) -> str:
    """A JSON field's value (a dict, a part record or a tuple of them) as compact JSON text."""
    return orjson.dumps(value).decode()


def records(text: str) -> tuple[dict[str, Any], ...]:
    """Records stored as JSON text."""
    return tuple(orjson.loads(text))


class _Members(dict[Any, E]):
    """An enum's members by value; a value that is none of theirs goes to the enum itself."""

    def __init__(self, kind: type[E]) -> None:
        super().__init__({member.value: member for member in kind})
        self.kind = kind

    def __missing__(self, value: Any) -> E:
        return self.kind(value)  # the enum's own error if unknown


def member(kind: type[E]) -> Callable[[str], E]:
    """The member of this enum whose value is stored: one dict lookup, a third of what calling
    the enum costs (timeit), for every claimed notification; the dict's own __getitem__, so no
    Python runs for a known value."""
    return _Members(kind).__getitem__


class SharedIds(dict[str, UUID]):
    """One object per id text that many rows repeat: parsed once, and the worker's dicts keyed
    by it match by identity instead of calling UUID.__eq__ (13 times a notification, cProfile).
    Read through its __getitem__ (`shared_uuid`): no Python runs for a text seen before. It
    starts over when `size` ids are kept."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __missing__(self, text: str) -> UUID:
        if len(self) >= self.size:
            self.clear()
        found = self[text] = from_text(text)
        return found


SHARED_IDS = SharedIds(10_000)
shared_uuid: Callable[[str], UUID] = SHARED_IDS.__getitem__


def plain_uuid(value: Any) -> UUID:
    """A uuid.UUID: asyncpg hands back its own UUID type; records hold plain ones."""
    return value if type(value) is UUID else UUID(bytes=value.bytes)


# -- The dialects' tables: each kind's conversion, if its value does not pass as it is --------
# Writing goes by a value's type, which never says SHARED_ID. A SET is read as its list of
# values, which `Codec` makes members (as it does an ENUM's value).
Table = Mapping[Kind, Convert]
SQLITE_WRITE: Table = {Kind.ID: str, Kind.TIME: stamp, Kind.ENUM: enum_value,
                       Kind.SET: lambda v: json_list(sorted(v)),
                       Kind.RECORDS: json_list, Kind.JSON: json_text}  # fmt: skip
SQLITE_READ: Table = {Kind.ID: from_text, Kind.SHARED_ID: shared_uuid,
                      Kind.TIME: datetime.fromisoformat, Kind.BOOL: bool, Kind.SET: orjson.loads,
                      Kind.RECORDS: records, Kind.JSON: orjson.loads}  # fmt: skip
POSTGRES_WRITE: Table = {Kind.TIME: aware, Kind.ENUM: enum_value, Kind.SET: sorted,
                         Kind.RECORDS: json_list, Kind.JSON: json_text}  # fmt: skip
POSTGRES_READ: Table = {Kind.ID: plain_uuid, Kind.SHARED_ID: plain_uuid, Kind.RECORDS: records,
                        Kind.JSON: orjson.loads}  # fmt: skip


# -- Record types --------------------------------------------------------------------------
def kind_of(hint: Any) -> Kind:
    """The kind of a value of this type (a type, or a field's type hint)."""
    base = typing.get_origin(hint) or hint
    if base is types.UnionType or base is typing.Union:  # X | None
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return kind_of(hint)
    if _build(hint) is not None:  # a part record, or a tuple of them
        return Kind.JSON
    for cls, kind in _KIND_OF_TYPE:
        if isinstance(base, type) and issubclass(base, cls):
            return kind
    return Kind.PLAIN


_KIND_OF_TYPE = (
    (bool, Kind.BOOL), (UUID, Kind.ID), (datetime, Kind.TIME), (enum.Enum, Kind.ENUM),
    (frozenset, Kind.SET), (tuple, Kind.RECORDS), (dict, Kind.JSON),
)  # fmt: skip


def _build(hint: Any) -> Convert | None:
    """How a structured setting's JSON, loaded, becomes a value of this type: a part record
    from its object, a tuple of them from a list (None: not such a type; a dict is as loaded)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        part = hint
        return lambda loaded: part(**loaded)
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and args and (item := _build(args[0])) is not None:
        return lambda loaded: tuple(map(item, loaded))
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """A record's field as the store sees it."""

    name: str
    kind: Kind
    members: type[enum.Enum] | None  # an ENUM's or a SET's enum
    build: Convert | None = None  # a JSON field's: its loaded JSON as the field's type


@functools.cache
def fields_of(cls: type) -> tuple[Field, ...]:
    """The fields of a record type, in order, each with its kind."""
    hints = typing.get_type_hints(cls)
    return tuple(_field(f.name, hints[f.name]) for f in dataclasses.fields(cls))


def _field(name: str, hint: Any) -> Field:
    kind = kind_of(hint)
    if kind is Kind.ID and name in SHARED_ID_FIELDS:
        kind = Kind.SHARED_ID
    types_ = (t for t in (hint, *typing.get_args(hint)) if isinstance(t, type))
    members = next((t for t in types_ if issubclass(t, enum.Enum)), None)
    if kind is not Kind.JSON:
        return Field(name, kind, members)
    built = [b for arg in (hint, *typing.get_args(hint)) if (b := _build(arg)) is not None]
    return Field(name, kind, members, built[0] if built else None)


def _getter(cls: type) -> tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]:
    """A record type's field names, and one call reading their values off a record as a tuple
    (every record type has several fields)."""
    names = tuple(f.name for f in fields_of(cls))
    return names, operator.attrgetter(*names)


class _Memo(dict[K, V], Generic[K, V]):
    """`make(key)`, made once per key: rows come by the hundred, and then each value costs one
    dict lookup instead of a chain of isinstance checks."""

    def __init__(self, make: Callable[[K], V]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key: K) -> V:
        found = self[key] = self.make(key)
        return found


class Codec:
    """One dialect's table applied to values, records and rows."""

    def __init__(self, write: Table, read: Table) -> None:
        self._read = read
        self._writers: _Memo[type, Convert | None] = _Memo(lambda cls: write.get(kind_of(cls)))
        self._getters = _Memo(_getter)
        self._plans: _Memo[type, list[tuple[str, Convert | None]]] = _Memo(self._plan)
        # A plan by position for each (type, prefix, columns) a statement reads: a statement's
        # columns are the same at every call, and finding them by name cost as much as
        # decoding a webhook's one row (the worker reads one at a time).
        self._placed: _Memo[Layout, Placed] = _Memo(self._place)

    def read(self, kind: Kind, value: Any) -> Any:
        """A stored value of this kind (not null) as its field holds it."""
        convert = self._read.get(kind)
        return value if convert is None else convert(value)

    def to_sql(self, value: Any) -> Any:
        """One Python value as the dialect stores it."""
        convert = self._writers[type(value)]
        return value if convert is None else convert(value)

    def encode(self, record: object, **extra: Any) -> dict[str, Any]:
        """A record's fields as named parameters (column names are field names), and `extra`."""
        names, values = self._getters[type(record)]
        writers = self._writers
        params = {
            n: v if (convert := writers[type(v)]) is None else convert(v)
            for n, v in zip(names, values(record), strict=True)
        }
        params.update(extra)
        return params

    def decode_rows(self, cls: type[R], rows: Sequence[Any], prefix: str = "") -> list[R]:
        """The records of this type in `rows`, whose columns are `prefix` + field name (others
        are ignored). Columns are found by name once, then read by position: a lookup by name
        compares every column name before it, and a claim is hundreds of rows of 23 columns."""
        if not rows:
            return []
        # A statement's columns, as one key: a tuple of them would hash and compare each name.
        values_of, converted = self._placed[cls, prefix, "\n".join(rows[0].keys())]
        records = []
        for row in rows:
            values = list(values_of(row))
            for i, convert in converted:  # only the fields whose kind is converted
                if (value := values[i]) is not None:
                    values[i] = convert(value)
            records.append(cls(*values))
        return records

    def _place(self, layout: Layout) -> Placed:
        """For rows of `layout`'s columns: a call taking `cls`'s fields' values off a row (in
        C), and the fields, by place, whose stored values are converted."""
        cls, prefix, columns = layout
        position = {column: i for i, column in enumerate(columns.split("\n"))}
        plan = self._plans[cls]
        get = operator.itemgetter(*(position[prefix + name] for name, _ in plan))
        # itemgetter of one position gives the value, not a tuple of it
        values_of: Callable[[Any], Sequence[Any]] = get if len(plan) > 1 else _one_tuple(get)
        converted = [(i, convert) for i, (_, convert) in enumerate(plan) if convert is not None]
        return values_of, converted

    def _plan(self, cls: type) -> list[tuple[str, Convert | None]]:
        """Each field of `cls` with how its stored value is read: a SET's or ENUM's as members."""
        plan: list[tuple[str, Convert | None]] = []
        for field in fields_of(cls):
            convert, enum_type = self._read.get(field.kind), field.members
            if field.build is not None:
                convert = _then(convert or _same, field.build)
            elif enum_type is not None:
                to_member, values = member(enum_type), convert or list
                convert = to_member if field.kind is Kind.ENUM else _members_of(to_member, values)
            plan.append((field.name, convert))
        return plan


def _one_tuple(get: Callable[[Any], Any]) -> Callable[[Any], tuple[Any]]:
    return lambda row: (get(row),)


def _same(value: Any) -> Any:
    return value


def _then(first: Convert, second: Convert) -> Convert:
    return lambda stored: second(first(stored))


def _members_of(to_member: Convert, values: Convert) -> Convert:
    return lambda stored: frozenset(map(to_member, values(stored)))


SQLITE = Codec(SQLITE_WRITE, SQLITE_READ)
POSTGRES = Codec(POSTGRES_WRITE, POSTGRES_READ)
