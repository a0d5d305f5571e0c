"""What every answer's model shares (gateway.wire): wire names that are the camelCase of the
domain records' attributes, a closed schema that requires what is always sent, fields copied
from a domain record by name, and the fields filter and order may name, read off the types.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from datetime import datetime
from typing import Any, ClassVar, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from gateway.filter_values import FieldType

# What filter and order compare a field's values as, by its type.
_FIELD_TYPES = {UUID: FieldType.UUID, datetime: FieldType.DATETIME, bool: FieldType.BOOLEAN}
_FIELD_TYPES[int] = FieldType.INTEGER


def _sometimes_sent(schema: dict[str, Any], model: Any) -> None:
    """The schema requires every property but those sent only on request, and none at all
    of a resource whose properties a request may select."""
    optional = {to_camel(name) for name in model.ON_REQUEST}
    required = [] if model.SELECTABLE else schema.get("required", [])
    schema["required"] = [name for name in required if name not in optional]
    if not schema["required"]:
        del schema["required"]


class Resource(BaseModel):
    """An answer's object: closed, immutable, written with camelCase names."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        extra="forbid",
        frozen=True,
        json_schema_extra=_sometimes_sent,
    )
    # Fields sent only on request (include): never copied from the record, never required,
    # never filtered on.
    ON_REQUEST: ClassVar[frozenset[str]] = frozenset()
    # Fields that filter and order may not name either, beyond those that are not scalars.
    UNQUERIED: ClassVar[frozenset[str]] = frozenset()
    # Whether a request may pick the fields sent (select), so that none is required.
    SELECTABLE: ClassVar[bool] = False

    @classmethod
    def copied(cls, record: Any, **computed: Any) -> Self:
        """This resource of a domain record: each field the record has, by the same name
        (but those sent on request), and the computed ones given."""
        fields = {n: getattr(record, n) for n in _copied(cls, type(record)) if n not in computed}
        return cls.model_validate({**fields, **computed})

    def wire(self, only: set[str] | None = None) -> dict[str, Any]:
        """The JSON object (only the fields named, if named); fields left unset (sent on
        request) are left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True, include=only)

    @classmethod
    def queryable(cls) -> dict[str, FieldType]:
        """The fields a filter or order may name: lower-case wire name -> how it compares."""
        return _queryable(cls)

    @classmethod
    def attributes(cls) -> dict[str, str]:
        """Each field's attribute name (its record's field) by lower-case wire name."""
        return _attributes(cls)


def _copied(model: type[Resource], record: type[Any]) -> tuple[str, ...]:
    """The fields of `model` that records of this type have by the same name (worked out
    once per pair: a query answers up to 500 records)."""
    found = _SHARED.get((model, record))
    if found is None:
        names = {f.name for f in dataclasses.fields(record)}
        names -= model.ON_REQUEST
        found = _SHARED[model, record] = tuple(n for n in model.model_fields if n in names)
    return found


_SHARED: dict[tuple[type[Resource], type[Any]], tuple[str, ...]] = {}


@functools.cache
def _queryable(model: type[Resource]) -> dict[str, FieldType]:
    out = {}
    for wire_name, name in _attributes(model).items():
        kind = _scalar(model.model_fields[name].annotation)
        if kind is not None and name not in model.UNQUERIED | model.ON_REQUEST:
            out[wire_name] = kind
    return out


@functools.cache
def _attributes(model: type[Resource]) -> dict[str, str]:
    fields = model.model_fields.items()
    return {(info.alias or to_camel(name)).lower(): name for name, info in fields}


def _scalar(annotation: Any) -> FieldType | None:
    """How a field of this type compares, or None if it is not a scalar."""
    if isinstance(annotation, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is not None:
        return None  # a list or a mapping
    if annotation in _FIELD_TYPES:
        return _FIELD_TYPES[annotation]
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, str)):
        return FieldType.TEXT
    return None
