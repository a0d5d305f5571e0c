"""What a value in the filter language means: field types, literals, coercion, `order` terms.

`gateway.filters` parses and evaluates expressions; this module says what a literal means for a
field of a given type, which SQL binding (`gateway.store.filter_sql`) and the evaluation of rule
filters share, and reads the `order` parameter into terms. Nothing here writes SQL.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from gateway.errors import FilterError

LIKE_OPS = ("contains", "startswith", "endswith")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ].+)?", re.ASCII)
_INTEGER = re.compile(r"-?\d{1,19}", re.ASCII)  # longer cannot fit in 64 bits
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", re.ASCII)
_ORDER_TERM = re.compile(r"(\s*)([A-Za-z_][A-Za-z0-9_]*)(?:\s+([A-Za-z]+))?\s*")


class FieldType(enum.Enum):
    TEXT = "text"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    UUID = "uuid"


@dataclass(frozen=True)
class Literal:
    """A value as the filter wrote it: parsed `value`, and `text` as written (unescaped)."""

    value: Any  # str, int, Decimal, bool, datetime (aware) or UUID
    quoted: bool
    text: str | None = None
    position: int | None = field(default=None, compare=False)

    @property
    def source(self) -> str:
        """The value as text: what a TEXT column or a LIKE pattern compares against."""
        if self.text is not None:
            return self.text
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return self.value.isoformat() if isinstance(self.value, datetime) else str(self.value)


def parse_datetime(text: str) -> datetime:
    """An ISO-8601 date or datetime; a date means midnight and a naive time means UTC."""
    if not _ISO_DATE.fullmatch(text):
        raise ValueError(f"not an ISO date: {text!r}")
    return storable(datetime.fromisoformat(text))


def storable(value: datetime) -> datetime:
    """An aware datetime (naive means UTC) whose time in UTC falls within years 1 to 9999, as
    the stores keep times (ValueError if not: 9999-12-31T23:00-05:00 is in year 10000 in UTC)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        aware.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is outside years 1 to 9999 in UTC") from None
    return aware


def as_bool(value: Any) -> bool | None:
    """true/false (any case) or 1/0 as a bool; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str) and str(value).lower() in ("true", "1", "false", "0"):
        return str(value).lower() in ("true", "1")
    return None


def as_number(value: Any) -> Decimal | None:
    """A finite number, or text spelling one, as a Decimal; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        return Decimal(text) if _NUMBER.fullmatch(text) else None
    if isinstance(value, int | float | Decimal):
        # repr gives a float's shortest exact spelling: 0.1 stays 0.1, not 0.1000000000000000055.
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return number if number.is_finite() else None
    return None


def as_datetime(value: Any) -> datetime | None:
    """A datetime or ISO text as an aware datetime (naive means UTC); None for anything else."""
    try:
        if isinstance(value, datetime):
            return storable(value)
        return parse_datetime(value.strip()) if isinstance(value, str) else None
    except ValueError:
        return None


def as_uuid(value: Any) -> UUID | None:
    """A UUID, or text spelling one in any case; None for anything else."""
    if isinstance(value, UUID):
        return value
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _as_integer(value: Any) -> int | None:
    # Whole numbers only, and within 64 bits so that every driver can bind them.
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return value
    return None


def _as_uuid_text(value: Any) -> str | None:
    uuid = as_uuid(value)
    return None if uuid is None else str(uuid)


_BIND: dict[FieldType, tuple[Callable[[Any], Any], str]] = {
    FieldType.INTEGER: (_as_integer, "a whole number"),
    FieldType.BOOLEAN: (as_bool, "true or false"),
    FieldType.DATETIME: (as_datetime, "an ISO date or datetime"),
    FieldType.UUID: (_as_uuid_text, "a GUID"),
}


def field_value(lit: Literal, kind: FieldType, field_name: str) -> Any:
    """The literal as the field type's Python value; a FilterError naming the field if it is
    not one."""
    if kind is FieldType.TEXT:
        return lit.source
    convert, expected = _BIND[kind]
    value = convert(lit.value)
    if value is None:
        message = f"field '{field_name}' needs {expected}, not '{lit.source}'"
        raise FilterError(message, lit.position)
    return value


def unknown_field(
    name: str, allowed: Collection[str], position: int | None, *, parameter: str = "filter"
) -> FilterError:
    """The error for a field that is not among those allowed, listing them."""
    message = f"unknown field '{name}'; allowed: {', '.join(sorted(allowed))}"
    return FilterError(message, position, field=parameter)


@dataclass(frozen=True, slots=True)
class OrderTerm:
    """One term of an `order` parameter: a field (lowercase) and its direction."""

    field: str
    descending: bool


def parse_order(text: str | None, fields: Collection[str], *, default: str) -> list[OrderTerm]:
    """`field [ASC|DESC], ...` over `fields` (lowercase names) as terms; empty text reads
    `default` instead. A FilterError (for the `order` parameter) names what is wrong."""
    source = text if text and text.strip() else default
    terms: list[OrderTerm] = []
    seen: set[str] = set()
    offset = 0
    for item in source.split(","):
        terms.append(_order_term(item, offset, fields, seen))
        offset += len(item) + 1
    return terms


def _order_term(item: str, offset: int, fields: Collection[str], seen: set[str]) -> OrderTerm:
    match = _ORDER_TERM.fullmatch(item)
    if match is None:
        where = offset + len(item) - len(item.lstrip())
        message = f"expected 'field [ASC|DESC]', not '{item.strip()}'"
        raise FilterError(message, where, field="order")
    name, direction = match.group(2), (match.group(3) or "ASC").upper()
    where = offset + len(match.group(1))
    if name.lower() not in fields:
        raise unknown_field(name, fields, where, parameter="order")
    if direction not in ("ASC", "DESC"):
        message = f"order direction must be ASC or DESC, not '{match.group(3)}'"
        raise FilterError(message, offset + match.start(3), field="order")
    if name.lower() in seen:
        raise FilterError(f"field '{name}' appears twice in order", where, field="order")
    seen.add(name.lower())
    return OrderTerm(name.lower(), direction == "DESC")
