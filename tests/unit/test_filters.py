"""The filter language: parsing, the messages users see, SQL compilation, record evaluation."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.errors import FilterError
from gateway.filters import (
    And,
    Column,
    Comparison,
    FieldType,
    Or,
    compile_filter,
    compile_order,
    evaluate,
    parse_filter,
)

FIELDS = {"name", "total", "created", "active", "id"}
COLUMNS = {
    "name": Column("name", FieldType.TEXT),
    "total": Column("total", FieldType.INTEGER),
    "created": Column("created", FieldType.DATETIME),
    "active": Column("active", FieldType.BOOLEAN),
    "id": Column("id", FieldType.UUID),
}


@pytest.mark.parametrize(
    ("text", "op", "negated"),
    [
        ("name eq 'a'", "eq", False),
        ("name = a", "eq", False),
        ("NAME EQ a", "eq", False),
        ("name != a", "ne", False),
        ("name <> a", "ne", False),
        ("name NE a", "ne", False),
        ("total > 1", "gt", False),
        ("total GT 1", "gt", False),
        ("total >= 1", "ge", False),
        ("total < 1", "lt", False),
        ("total le 1", "le", False),
        ("name contains x", "contains", False),
        ("name STARTSWITH x", "startswith", False),
        ("name endswith x", "endswith", False),
        ("name not contains x", "contains", True),
        ("total in (1, 2)", "in", False),
        ("total NOT IN (1,2)", "in", True),
        ("total between 1 and 5", "between", False),
        ("total not between 1 and 5", "between", True),
        ("name is null", "null", False),
        ("name IS NOT NULL", "null", True),
    ],
)
def test_each_operator_parses(text: str, op: str, negated: bool) -> None:
    node = parse_filter(text, fields=FIELDS)
    assert isinstance(node, Comparison) and (node.op, node.negated) == (op, negated)


def test_values_quoting_numbers_booleans_and_dates() -> None:
    node = parse_filter("name eq 'O''Brien and co'")
    assert isinstance(node, Comparison) and node.values[0].value == "O'Brien and co"
    for text, value in [("total eq -3", -3), ("active eq TRUE", True), ("name eq bare", "bare")]:
        parsed = parse_filter(text)
        assert isinstance(parsed, Comparison) and parsed.values[0].value == value


def test_and_or_with_parentheses() -> None:
    node = parse_filter("(name eq a or name eq b) and total gt 1")
    assert isinstance(node, And) and isinstance(node.items[0], Or)


def test_empty_and_whitespace_mean_no_filter() -> None:
    assert parse_filter("") is None and parse_filter("   ") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour eq red", "unknown field 'colour'; allowed: active, created, id, name, total"),
        ("name eq", "expected a value after 'eq' but the filter ended at position 7"),
        ("name eq 'open", "unterminated quoted string at position 8"),
        ("name eq a and total eq 1 or total eq 2", "mixing AND and OR needs parentheses"),
        ("name eq a)", "unexpected ')' at position 9"),
        ("(name eq a", "expected ')' but the filter ended"),
        ("name like a", "unknown operator 'like'"),
        ("name is a", "expected NULL after IS"),
        ("total between 1 5", "expected AND in BETWEEN"),
        ("total in 1, 2", "expected '(' after IN"),
        ("created gt datetime'2024-01-01'", "literals are for history filters"),
    ],
)
def test_malformed_filters_say_where_and_why(text: str, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(text, fields=FIELDS)
    assert message in caught.value.detail
    assert caught.value.errors == {"filter": [caught.value.detail]}


def test_limits_on_length_and_depth() -> None:
    with pytest.raises(FilterError, match="longer than 20 characters"):
        parse_filter("name eq " + "a" * 20, max_length=20)
    deep = "(" * 4 + "name eq a" + ")" * 4
    assert parse_filter(deep, max_depth=4) is not None
    with pytest.raises(FilterError, match="nest deeper than 3"):
        parse_filter(deep, max_depth=3)


def test_azure_literals_in_history_filters() -> None:
    node = parse_filter(
        "created gt datetime'2024-01-01T00:00:00Z' and "
        "id eq guid'0000000A-0000-0000-0000-000000000000'",
        azure_literals=True,
    )
    assert isinstance(node, And)
    first = node.items[0]
    assert isinstance(first, Comparison)
    assert first.values[0].value == datetime(2024, 1, 1, tzinfo=UTC)


def test_user_text_only_travels_as_parameters() -> None:
    sql, params = compile_filter(
        parse_filter("name eq 'x'' OR 1=1 --' or name contains '50%_off'"), COLUMNS, lambda n: "?"
    )
    assert sql == "(name = ? OR LOWER(name) LIKE LOWER(?) ESCAPE '\\')"
    assert params == ["x' OR 1=1 --", "%50\\%\\_off%"]


def test_postgres_placeholders_are_numbered() -> None:
    sql, params = compile_filter(parse_filter("total between 1 and 3"), COLUMNS, lambda n: f"${n}")
    assert (sql, params) == ("total BETWEEN $1 AND $2", [1, 3])


def test_values_that_do_not_fit_the_column_are_refused() -> None:
    with pytest.raises(FilterError, match="not a valid value for total"):
        compile_filter(parse_filter("total eq many"), COLUMNS, lambda n: "?")


def test_order() -> None:
    assert compile_order("name desc, total", COLUMNS, default="name") == "name DESC, total ASC"
    assert compile_order(None, COLUMNS, default="total DESC") == "total DESC"
    with pytest.raises(FilterError, match="unknown field 'colour'") as caught:
        compile_order("colour", COLUMNS, default="name")
    assert "order" in caught.value.errors
    with pytest.raises(FilterError, match="ASC or DESC"):
        compile_order("name sideways", COLUMNS, default="name")


ROWS = [
    ("alpha", 10, "2024-01-01T00:00:00.000000+00:00", 1),
    ("beta", 200, "2024-06-01T00:00:00.000000+00:00", 0),
    ("Gamma_x", 3000, "2025-01-01T00:00:00.000000+00:00", 1),
    (None, 5, "2023-01-01T00:00:00.000000+00:00", 0),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("total gt 100", ["beta", "Gamma_x"]),
        ("name startswith 'GAM'", ["Gamma_x"]),
        ("name contains '_'", ["Gamma_x"]),
        ("name is null", [None]),
        ("total not in (10, 5)", ["beta", "Gamma_x"]),
        ("created ge 2024-06-01 and active eq false", ["beta"]),
        ("(name eq alpha or name eq beta) and total lt 100", ["alpha"]),
        ("created between 2024-01-01 and 2024-12-31", ["alpha", "beta"]),
    ],
)
def test_compiled_sql_selects_the_right_rows(text: str, expected: list[Any]) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (name TEXT, total INTEGER, created TEXT, active INTEGER, id TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, NULL)", ROWS)
    sql, params = compile_filter(parse_filter(text, fields=FIELDS), COLUMNS, lambda n: "?")
    stored = [
        p.isoformat(timespec="microseconds") if isinstance(p, datetime) else p for p in params
    ]
    rows = db.execute(f"SELECT name FROM t WHERE {sql} ORDER BY total", stored).fetchall()
    assert [r[0] for r in rows] == expected


@pytest.mark.parametrize(
    ("text", "record", "passes"),
    [
        ("total gt 100", {"Total": "150"}, True),
        ("total gt 100", {"total": 50}, False),
        ("status eq open", {"STATUS": "open"}, True),
        ("status eq open", {}, False),
        ("status is null", {}, True),
        ("status is not null", {"status": None}, False),
        ("name contains SMITH", {"name": "Jo Smith"}, True),
        ("due lt 2024-02-01", {"due": "2024-01-15"}, True),
        ("paid eq true", {"paid": True}, True),
        ("id in (1, 2)", {"id": "2"}, True),
        ("id not in (1, 2)", {"id": 3}, True),
        ("total between 1 and 10", {"total": 10}, True),
        ("total eq 1 or total eq 2", {"total": 2}, True),
    ],
)
def test_rule_filters_evaluate_against_records(
    text: str, record: dict[str, Any], passes: bool
) -> None:
    assert evaluate(parse_filter(text), record) is passes


def test_no_filter_passes_everything() -> None:
    assert evaluate(None, {"anything": 1})
