"""The filter language: parsing, the messages users see, SQL compilation, record evaluation."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from gateway.errors import FilterError
from gateway.filter_values import parse_order
from gateway.filters import (
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    And,
    Comparison,
    FieldType,
    Literal,
    Or,
    evaluate,
    parse_filter,
)
from gateway.store.filter_sql import Column, compile_filter, compile_order

FIELDS = {"name", "total", "created", "active", "id"}
COLUMNS = {
    "name": Column("name", FieldType.TEXT),
    "total": Column("total", FieldType.INTEGER),
    "created": Column("created", FieldType.DATETIME),
    "active": Column("active", FieldType.BOOLEAN),
    "id": Column("id", FieldType.UUID),
}
GUID = "0a1b2c3d-0000-4000-8000-00000000000a"
QMARK: Callable[[int], str] = lambda n: "?"  # noqa: E731
DOLLAR: Callable[[int], str] = lambda n: f"${n}"  # noqa: E731


def word(value: Any, text: str) -> Literal:
    return Literal(value, False, text)


def quoted(text: str) -> Literal:
    return Literal(text, True, text)


def cmp(field: str, op: str, *values: Literal, negated: bool = False) -> Comparison:
    return Comparison(field, op, values, negated)


def error_of(text: str, **options: Any) -> FilterError:
    with pytest.raises(FilterError) as caught:
        parse_filter(text, **options)
    return caught.value


# -- Parsing: what is accepted ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = a", cmp("name", "eq", word("a", "a"))),
        ("name EQ a", cmp("name", "eq", word("a", "a"))),
        ("name eq a", cmp("name", "eq", word("a", "a"))),
        ("name != a", cmp("name", "ne", word("a", "a"))),
        ("name <> a", cmp("name", "ne", word("a", "a"))),
        ("name ne a", cmp("name", "ne", word("a", "a"))),
        ("total > 1", cmp("total", "gt", word(1, "1"))),
        ("total GT 1", cmp("total", "gt", word(1, "1"))),
        ("total >= 1", cmp("total", "ge", word(1, "1"))),
        ("total ge 1", cmp("total", "ge", word(1, "1"))),
        ("total < 1", cmp("total", "lt", word(1, "1"))),
        ("total Lt 1", cmp("total", "lt", word(1, "1"))),
        ("total <= 1", cmp("total", "le", word(1, "1"))),
        ("total le 1", cmp("total", "le", word(1, "1"))),
        ("total>=1", cmp("total", "ge", word(1, "1"))),
        ("name='x'", cmp("name", "eq", quoted("x"))),
        ("name contains x", cmp("name", "contains", word("x", "x"))),
        ("name STARTSWITH x", cmp("name", "startswith", word("x", "x"))),
        ("name EndsWith x", cmp("name", "endswith", word("x", "x"))),
        ("name NOT CONTAINS x", cmp("name", "contains", word("x", "x"), negated=True)),
        ("name not eq x", cmp("name", "eq", word("x", "x"), negated=True)),
        ("total in (1, 'two',3)", cmp("total", "in", word(1, "1"), quoted("two"), word(3, "3"))),
        ("total IN (7)", cmp("total", "in", word(7, "7"))),
        ("total NOT IN (1,2)", cmp("total", "in", word(1, "1"), word(2, "2"), negated=True)),
        ("total between 1 and 5", cmp("total", "between", word(1, "1"), word(5, "5"))),
        (
            "total NOT BETWEEN -1 AND 5",
            cmp("total", "between", word(-1, "-1"), word(5, "5"), negated=True),
        ),
        ("name is null", cmp("name", "null")),
        ("name IS NOT NULL", cmp("name", "null", negated=True)),
        ("NaMe Is NoT nUlL", cmp("name", "null", negated=True)),
        ("statusCode eq Active", cmp("statuscode", "eq", word("Active", "Active"))),
    ],
)
def test_each_operator_and_form_parses(text: str, expected: Comparison) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'O''Brien and co'", "O'Brien and co"),
        ("''''", "'"),
        ("''", ""),
        ("'a ( b ) , c'", "a ( b ) , c"),
        ("'and'", "and"),
        ("'null'", "null"),
        ("'42'", "42"),
        ("'2024-01-31'", "2024-01-31"),
        ("42", 42),
        ("-3", -3),
        ("2.50", Decimal("2.50")),
        ("-0.5", Decimal("-0.5")),
        ("true", True),
        ("FALSE", False),
        ("Active", "Active"),
        ("abc-def", "abc-def"),
        ("2024-13-45", "2024-13-45"),
        ("2024-01-31", datetime(2024, 1, 31, tzinfo=UTC)),
        ("2024-01-31T10:00:00Z", datetime(2024, 1, 31, 10, tzinfo=UTC)),
        ("2024-01-31T10:00:00", datetime(2024, 1, 31, 10, tzinfo=UTC)),
        (
            "2024-01-31T10:00:00+02:00",
            datetime(2024, 1, 31, 10, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
)
def test_values(text: str, value: Any) -> None:
    node = parse_filter(f"name eq {text}")
    assert isinstance(node, Comparison)
    parsed = node.values[0].value
    assert (parsed, type(parsed)) == (value, type(value))


def test_bare_datetimes_are_timezone_aware() -> None:
    node = parse_filter("created lt 2024-01-31")
    assert isinstance(node, Comparison) and node.values[0].value.utcoffset() == timedelta(0)


def test_and_or_chains_and_nested_parentheses() -> None:
    node = parse_filter("(name eq a OR name eq b) and (total gt 1 or (total lt -1 AND id is null))")
    assert node == And(
        (
            Or((cmp("name", "eq", word("a", "a")), cmp("name", "eq", word("b", "b")))),
            Or(
                (
                    cmp("total", "gt", word(1, "1")),
                    And((cmp("total", "lt", word(-1, "-1")), cmp("id", "null"))),
                )
            ),
        )
    )


def test_a_chain_of_one_connective_is_one_node() -> None:
    node = parse_filter("name eq a and total eq 1 and id is null")
    assert isinstance(node, And) and len(node.items) == 3
    assert isinstance(parse_filter("name eq a or name eq b or name eq c"), Or)


def test_between_keeps_its_and_apart_from_the_connective() -> None:
    node = parse_filter("total between 1 and 5 and name eq x")
    assert node == And(
        (cmp("total", "between", word(1, "1"), word(5, "5")), cmp("name", "eq", word("x", "x")))
    )


def test_redundant_parentheses_vanish() -> None:
    assert parse_filter("((name eq a))") == cmp("name", "eq", word("a", "a"))


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_means_no_filter(text: str) -> None:
    assert parse_filter(text) is None


def test_known_fields_match_in_any_case_and_come_out_lowercase() -> None:
    node = parse_filter("NAME eq a and Total gt 1", fields=FIELDS)
    assert node == And((cmp("name", "eq", word("a", "a")), cmp("total", "gt", word(1, "1"))))


def test_positions_are_kept_for_later_messages() -> None:
    node = parse_filter("name eq a or total in (1, 'x')")
    assert isinstance(node, Or)
    first, second = node.items
    assert isinstance(first, Comparison) and isinstance(second, Comparison)
    assert (first.position, second.position) == (0, 13)
    assert [v.position for v in second.values] == [23, 26]


def test_azure_literals_when_enabled() -> None:
    node = parse_filter(
        f"created gt datetime'2024-01-01T00:00:00Z' and id eq GUID'{GUID.upper()}'",
        azure_literals=True,
    )
    assert isinstance(node, And)
    created, id_ = node.items
    assert isinstance(created, Comparison) and isinstance(id_, Comparison)
    assert created.values[0].value == datetime(2024, 1, 1, tzinfo=UTC)
    assert id_.values[0].value == UUID(GUID)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        (
            "created gt datetime'2024-01-01'",
            "datetime'...' literals are not supported in this filter at position 11",
        ),
        (
            f"id eq guid'{GUID}'",
            "guid'...' literals are not supported in this filter at position 6",
        ),
    ],
)
def test_azure_literals_are_refused_unless_enabled(text: str, detail: str) -> None:
    assert error_of(text).detail == detail


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("created gt datetime'yesterday'", "invalid datetime literal 'yesterday' at position 11"),
        ("id eq guid'not-a-guid'", "invalid guid literal 'not-a-guid' at position 6"),
    ],
)
def test_malformed_azure_literals(text: str, detail: str) -> None:
    assert error_of(text, azure_literals=True).detail == detail


# -- Parsing: what users are told -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("colour eq red", "unknown field 'colour'; allowed: active, created, id, name, total", 0),
        (
            "name eq a and Colour eq red",
            "unknown field 'Colour'; allowed: active, created, id, name, total",
            14,
        ),
        ("name eq", "expected a value after 'eq'", 7),
        ("name =", "expected a value after '='", 6),
        ("name eq )", "expected a value after 'eq' but found ')'", 8),
        ("name eq and", "expected a value after 'eq' but found 'and'", 8),
        ("name eq 'open", "unterminated quoted string", 8),
        ("name eq 'it''s", "unterminated quoted string", 12),
        ("name eq 'it's'", "unterminated quoted string", 13),
        ("name eq a)", "unexpected ')'", 9),
        ("name eq a b", "unexpected 'b'", 10),
        ("name eq a 'b'", "unexpected 'b'", 10),
        ("(name eq a", "expected ')'", 10),
        ("(name eq a b)", "expected ')' but found 'b'", 11),
        ("()", "expected a field name or '(' but found ')'", 1),
        ("name eq a and", "expected a field name or '('", 13),
        ("'name' eq a", "expected a field name or '(' but found 'name'", 0),
        ("42 eq a", "expected a field name or '(' but found '42'", 0),
        ("name", "expected an operator after 'name'", 4),
        ("name not", "expected an operator after 'name'", 8),
        (
            "name like 'a%'",
            "unknown operator 'like';"
            " use EQ, NE, GT, GE, LT, LE, CONTAINS, STARTSWITH, ENDSWITH, IN, BETWEEN or IS",
            5,
        ),
        ("name == a", "expected a value after '=' but found '='", 6),
        ("name ! a", "unexpected character '!'", 5),
        ("name eq a; drop table", "unexpected 'drop'", 11),
        ("name eq a and total eq 1 or total eq 2", "mixing AND and OR needs parentheses", 25),
        ("name eq a or total eq 1 AND total eq 2", "mixing AND and OR needs parentheses", 24),
        ("name eq null", "null is not a value; use IS NULL or IS NOT NULL", 8),
        ("name is a", "expected NULL after IS", 8),
        ("name is not", "expected NULL after IS NOT", 11),
        ("name not is null", "write IS NOT NULL rather than NOT IS NULL", 9),
        ("total between 1 5", "expected AND between the two BETWEEN values", 16),
        ("total between 1 and", "expected a value after 'and'", 19),
        ("total in 1, 2", "expected '(' after IN", 9),
        ("total in", "expected '(' after IN", 8),
        ("total in ()", "expected a value after '(' but found ')'", 10),
        ("total in (1,)", "expected a value after ',' but found ')'", 12),
        ("total in (1 2)", "expected ',' or ')' in the IN list but found '2'", 12),
        ("total in (1, 2", "expected ',' or ')' to continue the IN list", 14),
    ],
)
def test_malformed_filters_say_where_and_why(text: str, message: str, position: int) -> None:
    error = error_of(text, fields=FIELDS)
    assert error.detail == f"{message} at position {position}"
    assert error.position == position
    assert error.errors == {"filter": [error.detail]}


def test_the_allowed_list_uses_the_callers_spelling() -> None:
    error = error_of("colour eq red", fields=["statusCode", "name"])
    assert error.detail == "unknown field 'colour'; allowed: name, statusCode at position 0"
    assert parse_filter("STATUSCODE eq x", fields=["statusCode"]) is not None


def test_length_limit() -> None:
    at_limit = "name eq " + "a" * (MAX_FILTER_LENGTH - 8)
    assert len(at_limit) == MAX_FILTER_LENGTH == 2000
    assert parse_filter(at_limit) is not None
    error = error_of(at_limit + "a")
    assert error.detail == "filter is longer than 2000 characters at position 2000"
    assert parse_filter("name eq abc", max_length=11) is not None
    assert error_of("name eq abcd", max_length=11).position == 11


def test_even_blank_text_counts_against_the_length_limit() -> None:
    assert error_of(" " * 30, max_length=20).detail.startswith("filter is longer than 20")


def nested(depth: int) -> str:
    return "(" * depth + "name eq a" + ")" * depth


def test_depth_limit() -> None:
    assert MAX_DEPTH == 10
    assert parse_filter(nested(10)) == cmp("name", "eq", word("a", "a"))
    assert error_of(nested(11)).detail == "parentheses nest deeper than 10 at position 10"
    assert parse_filter(nested(3), max_depth=3) is not None
    assert error_of(nested(4), max_depth=3).position == 3


def test_depth_counts_nesting_not_the_number_of_groups() -> None:
    siblings = " and ".join(["(name eq a)"] * 20)
    assert isinstance(parse_filter(siblings, max_depth=1), And)
    assert error_of("(name eq a) and ((name eq b))", max_depth=1).position == 17


# -- SQL --------------------------------------------------------------------------------------


def compiled(text: str, placeholder: Callable[[int], str] = QMARK) -> tuple[str, list[Any]]:
    return compile_filter(
        parse_filter(text, fields=FIELDS, azure_literals=True), COLUMNS, placeholder
    )


@pytest.mark.parametrize(
    ("text", "sql", "params"),
    [
        ("name eq 'a'", "name = $1", ["a"]),
        ("name ne a", "name <> $1", ["a"]),
        ("total gt 1", "total > $1", [1]),
        ("total ge '2'", "total >= $1", [2]),
        ("total lt -3", "total < $1", [-3]),
        ("total le 4", "total <= $1", [4]),
        ("total not eq 4", "NOT (total = $1)", [4]),
        ("name contains 'Ab'", "LOWER(name) LIKE LOWER($1) ESCAPE '\\'", ["%Ab%"]),
        ("name startswith ab", "LOWER(name) LIKE LOWER($1) ESCAPE '\\'", ["ab%"]),
        ("name endswith ab", "LOWER(name) LIKE LOWER($1) ESCAPE '\\'", ["%ab"]),
        ("name not contains ab", "LOWER(name) NOT LIKE LOWER($1) ESCAPE '\\'", ["%ab%"]),
        ("name contains '50%_\\'", "LOWER(name) LIKE LOWER($1) ESCAPE '\\'", ["%50\\%\\_\\\\%"]),
        ("total in (1, 2, 3)", "total IN ($1, $2, $3)", [1, 2, 3]),
        ("total not in (1)", "total NOT IN ($1)", [1]),
        ("total between 1 and 3", "total BETWEEN $1 AND $2", [1, 3]),
        ("total not between 1 and 3", "total NOT BETWEEN $1 AND $2", [1, 3]),
        ("name is null", "name IS NULL", []),
        ("name is not null", "name IS NOT NULL", []),
        (
            "(name eq a or name eq b) and total gt 1",
            "((name = $1 OR name = $2) AND total > $3)",
            ["a", "b", 1],
        ),
    ],
)
def test_compiled_sql_and_params(text: str, sql: str, params: list[Any]) -> None:
    assert compiled(text, DOLLAR) == (sql, params)


def test_no_filter_compiles_to_true() -> None:
    assert compile_filter(None, COLUMNS, QMARK) == ("1=1", [])


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ("created gt 2024-01-31", datetime(2024, 1, 31, tzinfo=UTC)),
        ("created gt '2024-01-31T10:00:00'", datetime(2024, 1, 31, 10, tzinfo=UTC)),
        (
            "created gt '2024-01-31T10:00:00-05:00'",
            datetime(2024, 1, 31, 15, tzinfo=UTC),
        ),
        ("created gt datetime'2024-01-31T10:00:00Z'", datetime(2024, 1, 31, 10, tzinfo=UTC)),
        ("active eq true", True),
        ("active eq FALSE", False),
        ("active eq 'True'", True),
        ("active eq 1", True),
        ("active eq 0", False),
        ("total eq '12'", 12),
        ("total eq 9223372036854775807", 2**63 - 1),
        ("id eq '0A1B2C3D-0000-4000-8000-00000000000A'", GUID),
        ("id eq '{0a1b2c3d-0000-4000-8000-00000000000a}'", GUID),
        (f"id eq guid'{GUID.upper()}'", GUID),
        ("name eq 007", "007"),
        ("name eq 2.50", "2.50"),
        ("name eq TRUE", "TRUE"),
        ("name eq 2024-01-31", "2024-01-31"),
        ("name eq 'it''s'", "it's"),
    ],
)
def test_values_are_bound_as_the_columns_type(text: str, param: Any) -> None:
    _, params = compiled(text)
    assert params == [param] and type(params[0]) is type(param)
    if isinstance(param, datetime):
        assert params[0].utcoffset() is not None


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("total eq many", "field 'total' needs a whole number, not 'many' at position 9"),
        ("total eq 1.5", "field 'total' needs a whole number, not '1.5' at position 9"),
        ("total eq '\u0661'", "field 'total' needs a whole number, not '\u0661' at position 9"),
        ("total eq true", "field 'total' needs a whole number, not 'true' at position 9"),
        (
            "total eq 9223372036854775808",
            "field 'total' needs a whole number, not '9223372036854775808' at position 9",
        ),
        ("total in (1, x)", "field 'total' needs a whole number, not 'x' at position 13"),
        ("active eq yes", "field 'active' needs true or false, not 'yes' at position 10"),
        ("active eq 2", "field 'active' needs true or false, not '2' at position 10"),
        (
            "created lt yesterday",
            "field 'created' needs an ISO date or datetime, not 'yesterday' at position 11",
        ),
        (
            "created lt 20240131",
            "field 'created' needs an ISO date or datetime, not '20240131' at position 11",
        ),
        (
            "created between 2024-01-01 and '2024-02-30'",
            "field 'created' needs an ISO date or datetime, not '2024-02-30' at position 31",
        ),
        ("id eq 42", "field 'id' needs a GUID, not '42' at position 6"),
        ("total contains 5", "CONTAINS needs a text field; 'total' is integer at position 0"),
        (
            "created startswith 2024",
            "STARTSWITH needs a text field; 'created' is datetime at position 0",
        ),
    ],
)
def test_values_that_do_not_fit_the_column_are_refused(text: str, detail: str) -> None:
    with pytest.raises(FilterError) as caught:
        compiled(text)
    assert caught.value.detail == detail


def test_a_field_without_a_column_is_refused_at_compile_time() -> None:
    node = parse_filter("total gt 1 and colour eq red")
    detail = "unknown field 'colour'; allowed: active, created, id, name, total at position 15"
    with pytest.raises(FilterError) as caught:
        compile_filter(node, COLUMNS, QMARK)
    assert caught.value.detail == detail


def test_literals_built_by_hand_bind_too() -> None:
    # Literals made in code have no source text or positions.
    node = Comparison("active", "in", (Literal(True, False), Literal("0", True)))
    assert compile_filter(node, COLUMNS, QMARK) == ("active IN (?, ?)", [True, False])


SQL_VOCABULARY = re.compile(
    r"\s+|[(),?]|<>|<=|>=|=|<|>|'\\'|\$\d+"
    r"|\b(?:AND|OR|NOT|IN|BETWEEN|IS|NULL|LIKE|LOWER|ESCAPE|name|total|created|active|id)\b"
)


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("name eq 'x'' OR 1=1 --'", ["x' OR 1=1 --"]),
        ("name eq '''; DROP TABLE t; --'", ["'; DROP TABLE t; --"]),
        ("name contains ''' OR ''1''=''1'", ["%' OR '1'='1%"]),
        ("name in ('a)', 'b''); DELETE FROM t --')", ["a)", "b'); DELETE FROM t --"]),
        ("name startswith 'LOWER(name) ESCAPE'", ["LOWER(name) ESCAPE%"]),
        ("name eq ? or name eq '$9'", ["?", "$9"]),
        ("name eq '\\' or name eq \"x\"", ["\\", '"x"']),
        ("name between 'a'' AND 1=1' and 'z'", ["a' AND 1=1", "z"]),
    ],
)
def test_user_text_only_travels_as_parameters(text: str, params: list[Any]) -> None:
    sql, bound = compiled(text, DOLLAR)
    assert bound == params
    assert SQL_VOCABULARY.sub("", sql) == ""
    assert sql.count("$") == len(bound)
    for value in params:
        assert value not in sql


def test_placeholders_are_numbered_across_the_whole_filter() -> None:
    sql, params = compiled("total in (1, 2) or (name eq a and total between 3 and 4)", DOLLAR)
    assert sql == "(total IN ($1, $2) OR (name = $3 AND total BETWEEN $4 AND $5))"
    assert params == [1, 2, "a", 3, 4]


def test_column_expressions_come_from_the_whitelist() -> None:
    columns = {"failures": Column("(attempts - is_successful)", FieldType.INTEGER)}
    node = parse_filter("FAILURES ge 3", fields=columns)
    assert compile_filter(node, columns, QMARK) == ("(attempts - is_successful) >= ?", [3])


# -- order ------------------------------------------------------------------------------------

ORDER_COLUMNS = {**COLUMNS, "createdat": Column("created_at", FieldType.DATETIME)}


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        ("name", "name ASC"),
        ("name desc", "name DESC"),
        ("NAME Asc , total DESC", "name ASC, total DESC"),
        ("createdAt desc,name", "created_at DESC, name ASC"),
        ("  total  ", "total ASC"),
        (None, "created_at DESC, id ASC"),
        ("", "created_at DESC, id ASC"),
        ("   ", "created_at DESC, id ASC"),
    ],
)
def test_order(text: str | None, sql: str) -> None:
    terms = parse_order(text, ORDER_COLUMNS, default="createdAt DESC, id")
    assert compile_order(terms, ORDER_COLUMNS) == sql


def test_a_column_that_may_be_null_orders_nulls_first_ascending_and_last_descending() -> None:
    """As SQLite and SQL Server do, where PostgreSQL would not unless told; a column that is
    never null says nothing (PostgreSQL then reads its index in order)."""
    columns = {**ORDER_COLUMNS, "nickname": Column("nickname", FieldType.TEXT, nullable=True)}
    up = parse_order("nickname, name desc", columns, default="id")
    assert compile_order(up, columns) == "nickname ASC NULLS FIRST, name DESC"
    down = parse_order("nickname desc", columns, default="id")
    assert compile_order(down, columns) == "nickname DESC NULLS LAST"


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        (
            "colour",
            "unknown field 'colour'; allowed: active, created, createdat, id, name, total"
            " at position 0",
        ),
        (
            "name, secret desc",
            "unknown field 'secret'; allowed: active, created, createdat, id, name, total"
            " at position 6",
        ),
        ("name sideways", "order direction must be ASC or DESC, not 'sideways' at position 5"),
        ("name desc extra", "expected 'field [ASC|DESC]', not 'name desc extra' at position 0"),
        ("name,,total", "expected 'field [ASC|DESC]', not '' at position 5"),
        ("name, total;", "expected 'field [ASC|DESC]', not 'total;' at position 6"),
        (
            "name; DROP TABLE t",
            "expected 'field [ASC|DESC]', not 'name; DROP TABLE t' at position 0",
        ),
        ("name asc, NAME desc", "field 'NAME' appears twice in order at position 10"),
    ],
)
def test_bad_order_says_where_and_why(text: str, detail: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_order(text, ORDER_COLUMNS, default="name")
    assert caught.value.detail == detail
    assert caught.value.errors == {"order": [detail]}


# -- SQL run for real -------------------------------------------------------------------------

ROWS: list[dict[str, Any]] = [
    {"name": "alpha", "total": 10, "created": "2024-01-01T00:00:00.000000+00:00",
     "active": True, "id": GUID},
    {"name": "Beta", "total": 200, "created": "2024-06-01T12:30:00.000000+00:00",
     "active": False, "id": "0a1b2c3d-0000-4000-8000-00000000000b"},
    {"name": "Gamma_x", "total": 3000, "created": "2025-01-01T00:00:00.000000+00:00",
     "active": True, "id": None},
    {"name": None, "total": 5, "created": "2023-01-01T00:00:00.000000+00:00",
     "active": False, "id": None},
    {"name": "50% off", "total": -1, "created": None, "active": None, "id": None},
    {"name": "O'Brien", "total": None, "created": "2024-06-01T00:00:00.000000+00:00",
     "active": True, "id": None},
]  # fmt: skip

SELECTIONS = [
    ("total gt 100", ["Beta", "Gamma_x"]),
    ("total ge 200", ["Beta", "Gamma_x"]),
    ("total lt 10", ["50% off", None]),
    ("total le '10'", ["50% off", None, "alpha"]),
    ("total ne 10", ["50% off", None, "Beta", "Gamma_x"]),
    ("total not eq 10", ["50% off", None, "Beta", "Gamma_x"]),
    ("name eq beta", []),
    ("name eq Beta", ["Beta"]),
    ("name = 'O''Brien'", ["O'Brien"]),
    ("name startswith 'GAM'", ["Gamma_x"]),
    ("name endswith 'X'", ["Gamma_x"]),
    ("name contains '_'", ["Gamma_x"]),
    ("name contains '%'", ["50% off"]),
    ("name contains 'A'", ["alpha", "Beta", "Gamma_x"]),
    ("name not contains a", ["50% off", "O'Brien"]),
    ("name is null", [None]),
    ("name is not null", ["50% off", "alpha", "Beta", "Gamma_x", "O'Brien"]),
    ("total in (10, 5)", [None, "alpha"]),
    ("total not in (10, 5)", ["50% off", "Beta", "Gamma_x"]),
    ("total between 5 and 200", [None, "alpha", "Beta"]),
    ("total not between 5 and 200", ["50% off", "Gamma_x"]),
    ("created ge 2024-06-01 and active eq false", ["Beta"]),
    ("created gt '2024-06-01'", ["Beta", "Gamma_x"]),
    ("created eq 2024-06-01T00:00:00Z", ["O'Brien"]),
    ("created eq '2024-06-01T14:30:00+02:00'", ["Beta"]),
    ("created lt datetime'2024-01-01T00:00:01Z'", [None, "alpha"]),
    ("created between 2024-01-01 and 2024-12-31", ["alpha", "Beta", "O'Brien"]),
    ("created is null", ["50% off"]),
    ("active eq true", ["alpha", "Gamma_x", "O'Brien"]),
    ("active eq 0", [None, "Beta"]),
    ("active ne true", [None, "Beta"]),
    (f"id eq '{GUID.upper()}'", ["alpha"]),
    (f"id eq guid'{GUID}'", ["alpha"]),
    ("(name eq alpha or name eq Beta) and total lt 100", ["alpha"]),
    ("name eq alpha or (total gt 100 and active eq true)", ["alpha", "Gamma_x"]),
    ("name eq 'x'' OR 1=1 --'", []),
]


def ordered(names: Iterable[str | None]) -> list[str | None]:
    return sorted(names, key=lambda name: (name is not None, name or ""))


def run_sql(text: str, placeholder: Callable[[int], str]) -> list[Any]:
    db = sqlite3.connect(":memory:")
    try:
        db.execute(
            "CREATE TABLE t (name TEXT, total INTEGER, created TEXT, active INTEGER, id TEXT)"
        )
        db.executemany("INSERT INTO t VALUES (:name, :total, :created, :active, :id)", ROWS)
        sql, params = compiled(text, placeholder)
        # What the SQLite store does with datetimes: fixed-width ISO text in UTC.
        bound = [
            p.astimezone(UTC).isoformat(timespec="microseconds") if isinstance(p, datetime) else p
            for p in params
        ]
        rows = db.execute(f"SELECT name FROM t WHERE {sql}", bound).fetchall()
        return ordered(row[0] for row in rows)
    finally:
        db.close()


@pytest.mark.parametrize(("text", "expected"), SELECTIONS)
def test_compiled_sql_selects_the_right_rows(text: str, expected: list[Any]) -> None:
    assert run_sql(text, QMARK) == ordered(expected)
    assert run_sql(text, lambda n: f"?{n}") == ordered(expected)  # numbered, like PostgreSQL


@pytest.mark.parametrize(("text", "expected"), SELECTIONS)
def test_evaluate_agrees_with_sql_on_the_same_rows(text: str, expected: list[Any]) -> None:
    node = parse_filter(text, azure_literals=True)
    assert ordered(r["name"] for r in ROWS if evaluate(node, r)) == ordered(expected)


# -- Evaluation against records ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "record", "passes"),
    [
        ("total gt 100", {"Total": "150"}, True),
        ("total gt 100", {"total": "99.5"}, False),
        ("total gt 100", {"total": 1e3}, True),
        ("total gt 100", {"total": 50}, False),
        ("total gt 100", {"total": "lots"}, False),
        ("total ne 100", {"total": "lots"}, True),
        ("total eq 100", {"total": "1e2"}, True),
        ("total eq 100", {"total": True}, False),
        ("total eq 100", {"total": float("nan")}, False),
        ("total eq 0.1", {"total": 0.1}, True),
        ("total eq '42'", {"total": 42}, True),
        ("total eq '42'", {"total": "042"}, False),
        ("code eq 007", {"code": "7"}, True),
        ("status eq open", {"STATUS": "open"}, True),
        ("status eq open", {"status": "Open"}, False),
        ("status ne open", {"status": "Open"}, True),
        ("status gt m", {"status": "open"}, True),
        ("status eq open", {}, False),
        ("status ne open", {}, False),
        ("status not eq open", {"status": None}, False),
        ("status not in (a, b)", {}, False),
        ("status is null", {}, True),
        ("status is null", {"status": None}, True),
        ("status is null", {"status": ""}, False),
        ("status is not null", {"status": None}, False),
        ("status is not null", {"status": 0}, True),
        ("name contains SMITH", {"name": "Jo Smith"}, True),
        ("name startswith jo", {"name": "JOHN"}, True),
        ("name endswith HN", {"name": "john"}, True),
        ("name not contains smith", {"name": "Jo Smith"}, False),
        ("name contains '%'", {"name": "50% off"}, True),
        ("name contains '_'", {"name": "ab"}, False),
        ("code startswith 12", {"code": 1234}, True),
        ("due lt 2024-02-01", {"due": "2024-01-15"}, True),
        ("due lt 2024-02-01", {"due": "2024-02-01T00:00:01Z"}, False),
        ("due eq '2024-02-01'", {"due": "2024-02-01T00:00:00+00:00"}, True),
        ("due eq 2024-02-01T02:00:00+02:00", {"due": "2024-02-01"}, True),
        ("due eq 2024-02-01", {"due": datetime(2024, 2, 1)}, True),
        ("due lt 2024-02-01", {"due": "soon"}, False),
        ("due between 2024-01-01 and 2024-12-31", {"due": "2024-07-04T10:00:00Z"}, True),
        ("paid eq true", {"paid": True}, True),
        ("paid eq true", {"paid": "TRUE"}, True),
        ("paid eq true", {"paid": 1}, True),
        ("paid eq false", {"paid": True}, False),
        ("paid eq false", {"paid": "no"}, False),
        ("paid ne false", {"paid": "no"}, True),
        ("paid eq 'true'", {"paid": True}, True),
        ("id in (1, 2)", {"id": "2"}, True),
        ("id in (1, 2)", {"id": 3}, False),
        ("id not in (1, 2)", {"id": 3}, True),
        ("id not in (1, 2)", {"id": 2}, False),
        ("total between 1 and 10", {"total": 10}, True),
        ("total between 1 and 10", {"total": 11}, False),
        ("total not between 1 and 10", {"total": 11}, True),
        ("total eq 1 or total eq 2", {"total": 2}, True),
        ("total eq 1 and total eq 2", {"total": 2}, False),
        (f"ref eq guid'{GUID.upper()}'", {"ref": GUID}, True),
        (f"ref eq guid'{GUID}'", {"ref": "not a guid"}, False),
        ("lines eq x", {"lines": ["x"]}, False),
        ("lines contains x", {"lines": ["x"]}, False),
        ("lines is not null", {"lines": {"a": 1}}, True),
    ],
)
def test_rule_filters_evaluate_against_records(
    text: str, record: dict[str, Any], passes: bool
) -> None:
    assert evaluate(parse_filter(text, azure_literals=True), record) is passes


def test_no_filter_passes_everything() -> None:
    assert evaluate(None, {"anything": 1}) is True
    assert evaluate(None, {}) is True
