"""The filter language in SQL: a parsed filter as a WHERE fragment, `order` terms as ORDER BY.

Only column expressions from the listing's whitelist and bind markers ever reach the SQL text;
every value the user wrote travels as a parameter, typed by `gateway.filter_values`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.filter_values import LIKE_OPS, FieldType, OrderTerm, parse_order, unknown_field
from gateway.filters import And, Node, Or, typed_values

SQL_OPS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


@dataclass(frozen=True)
class Column:
    sql: str  # a trusted column expression, never user text
    type: FieldType
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class Listing:
    """What a paged query over one table needs (its SQL in the store's dialect)."""

    select: str  # with {where} and {order}
    count: str  # with {where}
    columns: Mapping[str, Column]  # by lowercase wire name
    default_order: str  # wire names, read like a caller's order
    tiebreak: str  # the primary key, so that pages never overlap or skip


def compile_filter(
    node: Node | None, columns: Mapping[str, Column], placeholder: Callable[[int], str]
) -> tuple[str, list[Any]]:
    """A SQL WHERE fragment and its parameters; user text travels only as parameters."""
    if node is None:
        return "1=1", []
    params: list[Any] = []

    def bind(value: Any) -> str:
        params.append(value)
        return placeholder(len(params))

    return _sql(node, columns, bind), params


def where_filter(
    columns: Mapping[str, Column], node: Node | None, encode: Callable[[Any], Any]
) -> tuple[str, dict[str, Any]]:
    """The extra WHERE condition for a parsed filter (`AND (...)`, or nothing), with its named
    parameters (`:f1` ...), each made a value of the store's driver by `encode`."""
    if node is None:
        return "", {}
    fragment, values = compile_filter(node, columns, lambda i: f":f{i}")
    return f" AND ({fragment})", {f"f{i}": encode(v) for i, v in enumerate(values, start=1)}


def order_by(listing: Listing, order: str | None) -> str:
    """The ORDER BY body for a caller's `order` (or the listing's default), tiebreak last."""
    terms = parse_order(order, listing.columns, default=listing.default_order)
    return f"{compile_order(terms, listing.columns)}, {listing.tiebreak}"


def compile_order(terms: Sequence[OrderTerm], columns: Mapping[str, Column]) -> str:
    """Order terms (read by `parse_order` over the same columns) as an ORDER BY body. Nulls
    sort before every value, as on SQLite and on the ADS Platform (SQL Server): PostgreSQL,
    which sorts them after, is told so for the columns that may hold one (NULLS FIRST would
    keep it from reading an index in order, so the others say nothing)."""
    return ", ".join(_order_term(columns[term.field], term.descending) for term in terms)


def _order_term(column: Column, descending: bool) -> str:
    direction = "DESC" if descending else "ASC"
    if not column.nullable:
        return f"{column.sql} {direction}"
    return f"{column.sql} {direction} NULLS {'LAST' if descending else 'FIRST'}"


def _sql(node: Node, columns: Mapping[str, Column], bind: Callable[[Any], str]) -> str:
    if isinstance(node, And | Or):
        glue = " AND " if isinstance(node, And) else " OR "
        return "(" + glue.join(_sql(item, columns, bind) for item in node.items) + ")"
    column = columns.get(node.field)
    if column is None:
        raise unknown_field(node.field, columns, node.position)
    values = typed_values(node, column.type, columns)
    if node.op in LIKE_OPS:
        values = [like_pattern(node.op, values[0])]
    return comparison_sql(column, node.op, values, node.negated, bind)


def like_pattern(op: str, text: str) -> str:
    """A LIKE pattern in which the user's % and _ are literal (escaped with a backslash)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"contains": f"%{escaped}%", "startswith": f"{escaped}%"}.get(op, f"%{escaped}")


def comparison_sql(
    column: Column, op: str, values: Sequence[Any], negated: bool, bind: Callable[[Any], str]
) -> str:
    """One comparison over a column; `values` are already bound to the column's type."""
    col, not_ = column.sql, "NOT " if negated else ""
    if op == "null":
        return f"{col} IS {not_}NULL"
    if op in LIKE_OPS:
        # LOWER on both sides: case-insensitive on SQLite and PostgreSQL alike (no ILIKE there).
        return f"LOWER({col}) {not_}LIKE LOWER({bind(values[0])}) ESCAPE '\\'"
    if op == "in":
        return f"{col} {not_}IN ({', '.join(bind(v) for v in values)})"
    if op == "between":
        return f"{col} {not_}BETWEEN {bind(values[0])} AND {bind(values[1])}"
    sql = f"{col} {SQL_OPS[op]} {bind(values[0])}"
    return f"NOT ({sql})" if negated else sql
