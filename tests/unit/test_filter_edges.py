"""Corners of the filter language that mutation testing found unchecked (issue 23).

What an Azure-Table literal parses to, where errors point, how the allowed fields are listed,
and how a record value of another kind (an object, a boolean, a date-like text) compares.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest

from gateway.errors import FilterError
from gateway.filters import Comparison, FieldType, Literal, evaluate, fields_of, parse_filter
from gateway.store.filter_sql import Column, compile_filter

GUID = "0a1b2c3d-0000-4000-8000-00000000000a"
COLUMNS = {
    "name": Column("name", FieldType.TEXT),
    "total": Column("total", FieldType.INTEGER),
    "active": Column("active", FieldType.BOOLEAN),
}


def qmark(_: int) -> str:
    return "?"


def parse_error(text: str, **options: Any) -> str:
    with pytest.raises(FilterError) as caught:
        parse_filter(text, **options)
    return caught.value.detail


def compile_error(text: str, **options: Any) -> str:
    with pytest.raises(FilterError) as caught:
        compile_filter(parse_filter(text, **options), COLUMNS, qmark)
    return caught.value.detail


# -- Azure-Table literals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        (
            f"name eq guid'{GUID.upper()}'",
            Literal(UUID(GUID), True, GUID.upper()),
        ),
        (
            "name eq datetime'2024-01-31'",
            Literal(datetime(2024, 1, 31, tzinfo=UTC), True, "2024-01-31"),
        ),
    ],
)
def test_an_azure_literal_is_a_quoted_value_written_as_given(text: str, literal: Literal) -> None:
    assert parse_filter(text, azure_literals=True) == Comparison("name", "eq", (literal,))


def test_an_azure_literal_compares_with_text_as_it_was_written() -> None:
    where, params = compile_filter(
        parse_filter("name contains datetime'2024-01-31'", azure_literals=True), COLUMNS, qmark
    )
    assert params == ["%2024-01-31%"]
    assert "LIKE" in where


def test_an_error_about_an_azure_literal_points_at_it() -> None:
    detail = compile_error(f"name eq 'a' and active eq guid'{GUID}'", azure_literals=True)
    assert detail == f"field 'active' needs true or false, not '{GUID}' at position 26"


def test_an_unexpected_azure_literal_is_shown_as_written() -> None:
    detail = parse_error(f"name eq 'a' guid'{GUID}'", azure_literals=True)
    assert detail == f"unexpected guid'{GUID}' at position 12"


# -- Where errors point ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("name eq 'a' and zzz is null", 16),
        ("name eq 'a' and zzz is not null", 16),
        ("name eq 'a' and zzz between 1 and 2", 16),
        ("name eq 'a' and zzz in (1, 2)", 16),
        ("name eq 'a' and zzz eq 1", 16),
    ],
)
def test_an_unknown_field_found_when_compiling_points_at_its_comparison(
    text: str, position: int
) -> None:
    detail = compile_error(text)
    assert detail == f"unknown field 'zzz'; allowed: active, name, total at position {position}"


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("total between", "expected a value after 'between' at position 13"),
        ("total BETWEEN", "expected a value after 'BETWEEN' at position 13"),
        ("total between 1 and", "expected a value after 'and' at position 19"),
    ],
)
def test_a_between_without_its_values_says_which_is_missing(text: str, detail: str) -> None:
    assert parse_error(text) == detail


def test_allowed_fields_are_listed_alphabetically_whatever_their_case() -> None:
    detail = parse_error("zzz eq 1", fields=["Total", "created", "Name", "active"])
    assert detail == "unknown field 'zzz'; allowed: active, created, Name, Total at position 0"


# -- Which fields a filter reads ---------------------------------------------------------------


def test_fields_of_names_every_compared_field_in_lowercase() -> None:
    node = parse_filter("(Total gt 1 or NAME eq 'x') and active is null and total lt 9")
    assert fields_of(node) == {"total", "name", "active"}
    assert fields_of(parse_filter("statusCode eq Active")) == {"statuscode"}
    assert fields_of(None) == set()


# -- Values of another kind in records ----------------------------------------------------------


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], []])
def test_an_object_or_list_is_never_equal_to_a_value_nor_ordered(value: Any) -> None:
    record = {"name": value}
    assert evaluate(parse_filter("name ne 'x'"), record) is True
    assert evaluate(parse_filter("name eq 'x'"), record) is False
    assert evaluate(parse_filter("name gt 'x'"), record) is False
    assert evaluate(parse_filter("name lt 'x'"), record) is False


@pytest.mark.parametrize(
    ("text", "value", "passes"),
    [
        ("flag contains 'tru'", True, True),
        ("flag startswith 'TRUE'", True, True),
        ("flag endswith 'alse'", False, True),
        ("flag contains 'true'", False, False),
        ("flag contains 'false'", True, False),
        ("flag eq 'TRUE'", True, True),
    ],
)
def test_a_json_boolean_reads_as_true_or_false_in_text_comparisons(
    text: str, value: bool, passes: bool
) -> None:
    assert evaluate(parse_filter(text), {"flag": value}) is passes


@pytest.mark.parametrize(
    ("text", "passes"),
    [("flag ne 'maybe'", True), ("flag eq 'maybe'", False), ("flag gt 'maybe'", False)],
)
def test_a_boolean_against_a_word_that_is_no_boolean_is_only_unequal(
    text: str, passes: bool
) -> None:
    assert evaluate(parse_filter(text), {"flag": True}) is passes


@pytest.mark.parametrize(
    ("value", "text", "passes"),
    [
        ("2030-01-01", "ref lt 'abc'", True),  # a date, but the literal is no date: as text
        ("abc", "ref gt '2030-01-01'", True),
        (GUID, "ref gt 'zzz'", False),
        ("zzz", f"ref gt '{GUID}'", True),
        (5, "ref lt 'abc'", True),  # a number against a word: as text, "5" < "abc"
    ],
)
def test_values_that_only_one_side_can_read_as_a_date_or_number_compare_as_text(
    value: Any, text: str, passes: bool
) -> None:
    assert evaluate(parse_filter(text), {"ref": value}) is passes


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("\x00", 0),
        ("name eq 'a\x00b'", 10),
        ("name eq a\x00", 9),
        ("name eq '\x00\x00'", 9),  # the first of several
    ],
)
def test_a_nul_is_refused_where_it_stands(text: str, position: int) -> None:
    assert parse_error(text) == f"the NUL character (U+0000) is not allowed at position {position}"
