"""The named SQL statements (gateway/store/statements/*.sql): every name the store reads is there
in both dialects, every block is named once and holds a statement, and the parameters agree
with the rows and parameters the store binds."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from gateway.store import postgres_queries, queries, sql, sqlite_queries
from gateway.store.postgres_queries import Sql

DIALECTS = {"sqlite": sqlite_queries, "postgres": postgres_queries}
# SQLite binds these rows by place (its written-out rows); PostgreSQL binds them by name.
POSITIONAL = {
    "INSERT_EVENT": sqlite_queries.EVENT_COLUMNS,
    "INSERT_NOTIFICATION": sqlite_queries.NOTE_COLUMNS,
    "INSERT_WAITING": sqlite_queries.NOTE_COLUMNS,  # and a constant: queued 1
    "SETTLE_ATTEMPT": sqlite_queries.SETTLE_COLUMNS,
}


def _names_the_store_reads() -> set[str]:
    """Every `self.q.NAME` (or `q.NAME`) in SqlStore's source."""
    return set(re.findall(r"\bq\.([A-Z][A-Z0-9_]*)\b", Path(sql.__file__).read_text()))


def _named(statement: str) -> set[str]:
    """The `:name` parameters of a statement (not the second colon of a `::type` cast)."""
    return set(re.findall(r"(?<![:\w]):([a-z_][a-z0-9_]*)", statement))


def _places(statement: str) -> set[int]:
    return {int(n) for n in re.findall(r"\?(\d+)", statement)}


def test_the_store_reads_its_statements_by_name() -> None:
    # What the next test checks is found at all.
    assert {"CLAIM_DUE", "INSERT_WEBHOOK", "LOCK_LEASES", "SETTLE_UNSENT"} <= (
        _names_the_store_reads()
    )


@pytest.mark.parametrize("module", DIALECTS.values(), ids=DIALECTS.keys())
def test_every_name_the_store_reads_is_there_in_both_dialects(module: ModuleType) -> None:
    assert sorted(name for name in _names_the_store_reads() if not hasattr(module, name)) == []


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("-- name: A\nSELECT 1\n\n-- name: A\nSELECT 2\n", "A is defined twice"),
        ("-- name: A\n-- a comment only\n\n-- name: B\nSELECT 1\n", "A has no statement"),
        ("-- name: A\n", "A has no statement"),
        ("SELECT 1\n-- name: A\nSELECT 2\n", "before the first"),
        ("-- name: find-it\nSELECT 1\n", "not a statement name"),
    ],
)
def test_a_file_with_a_block_named_twice_or_empty_is_refused(text: str, refusal: str) -> None:
    with pytest.raises(ValueError, match=refusal):
        queries.parse(text, "x.sql")


def test_blocks_leave_out_comments_and_fill_in_columns_and_other_blocks() -> None:
    blocks = queries.parse(
        "-- what the file is\n\n-- name: ACTIVE\n-- why\nw.status_code = 'Active'\n\n"
        "-- name: HOOKS\nSELECT {w.webhook_columns AS w_*}\nFROM webhooks w WHERE {ACTIVE}\n",
        "x.sql",
    )
    hooks = queries.filled(blocks)["HOOKS"]
    assert hooks.startswith("SELECT w.webhook_id AS w_webhook_id, w.group_key AS w_group_key, ")
    assert hooks.endswith("\nFROM webhooks w WHERE w.status_code = 'Active'")
    with pytest.raises(ValueError, match=r"HOOKS: no fill-in \{hook_columns\}"):
        queries.filled({"HOOKS": "SELECT {hook_columns} FROM webhooks"})


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_dialect_holds_only_what_differs(dialect: str) -> None:
    shared, own = queries.read("shared"), queries.read(dialect)
    assert [name for name in own if own[name] == shared.get(name)] == []
    # The store fills the listings' and the edit's fill-ins into shared.sql's text only.
    loaded = queries.load(dialect)
    later = [n for n in own if queries.filled_later(loaded[n] + queries.SHARED.get(n, ""))]
    assert later == []


def test_no_run_of_six_lines_is_repeated_between_the_dialects() -> None:
    def runs(dialect: str) -> set[tuple[str, ...]]:
        text = (queries.STATEMENTS / f"{dialect}.sql").read_text(encoding="utf-8")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return {tuple(lines[i : i + 6]) for i in range(len(lines) - 5)}

    assert runs("sqlite") & runs("postgres") == set()


@pytest.mark.parametrize("name", POSITIONAL)
def test_sqlite_binds_the_delivery_rows_by_place_and_postgresql_by_name(name: str) -> None:
    columns = POSITIONAL[name]
    positional = getattr(sqlite_queries, name)
    assert _named(positional) == set()
    assert _places(positional) == set(range(1, len(columns) + 1))
    assert set(getattr(postgres_queries, name).names) == set(columns)
    if name.startswith("INSERT_"):  # ?N is the Nth column named (constants may follow both)
        places = ", ".join(f"?{n}" for n in range(1, len(columns) + 1))
        written = " ".join(positional.split())
        assert f"({', '.join(columns)}" in written and f"VALUES ({places}" in written


def test_the_dialects_own_statements_take_the_same_parameters() -> None:
    both = queries.read("sqlite").keys() & queries.read("postgres").keys()
    differ = {
        name: (_named(getattr(sqlite_queries, name)), set(getattr(postgres_queries, name).names))
        for name in both - POSITIONAL.keys() - {"RESERVE_SEQUENCES"}
    }
    assert {name: found for name, found in differ.items() if found[0] != found[1]} == {}


def test_the_sequence_reservation_takes_what_each_dialect_binds() -> None:
    assert _named(sqlite_queries.RESERVE_SEQUENCES) == set(sqlite_queries.reserve_params({}))
    assert set(postgres_queries.RESERVE_SEQUENCES.names) == set(postgres_queries.reserve_params({}))


def test_postgresql_numbers_its_statements_as_it_reads_them() -> None:
    for name, text in queries.load("postgres").items():
        statement = getattr(postgres_queries, name)
        if queries.filled_later(text):
            assert statement == text  # numbered once filled in, by postgres_queries.sql
        else:
            assert isinstance(statement, Sql)
            assert _named(statement.text) == set()
            assert set(statement.names) == _named(text)


def test_postgresql_settles_a_batch_in_one_statement_of_arrays() -> None:
    statement = postgres_queries.SETTLE_ATTEMPT
    rows = [tuple(range(len(postgres_queries.SETTLE_ARRAYS)))] * 2
    step = postgres_queries.settling(rows, now="now")
    assert set(step.params) == set(statement.names)  # every parameter, each an array but `now`
    assert step.params["now"] == "now"
    assert all(step.params[name] == [i, i] for i, name in enumerate(postgres_queries.SETTLE_ARRAYS))
    text = " ".join(statement.text.split())
    assert "unnest(" in text and "= p.p_state" in text and "::text[]" in text


def test_a_statement_batched_for_postgresql_must_update_where() -> None:
    with pytest.raises(ValueError, match=r"not an UPDATE \.\.\. WHERE"):
        postgres_queries.batched("DELETE FROM events", {"event_id": "uuid"})


def test_an_insert_becomes_one_statement_over_arrays() -> None:
    """postgres_queries.unnested: each $n an array of its column's type, constants kept, the
    parameters' names unchanged; a column that is an array itself keeps executemany."""
    insert = Sql("INSERT INTO t (a, b, queued) VALUES ($1, $2, 1)", ("a", "b"))
    types = {("t", "a"): "uuid", ("t", "b"): "timestamp with time zone", ("t", "queued"): "int"}
    one = postgres_queries.unnested(insert, types)
    assert one == Sql(
        "INSERT INTO t (a, b, queued) SELECT u.c1, u.c2, 1\n"
        "FROM unnest($1::uuid[], $2::timestamp with time zone[]) AS u (c1, c2)",
        ("a", "b"),
    )
    assert postgres_queries.unnested(insert, {**types, ("t", "b"): "text[]"}) is None
    with pytest.raises(ValueError, match="not an INSERT"):
        postgres_queries.unnested(Sql("UPDATE t SET a = $1", ("a",)), types)


def test_the_publish_path_inserts_can_be_unnested() -> None:
    """Every statement named in UNNESTED is a plain INSERT ... VALUES (postgres.open would
    refuse to start otherwise)."""
    for name in postgres_queries.UNNESTED:
        statement = getattr(postgres_queries, name)
        assert postgres_queries.inserts_into(statement) in {"events", "notifications"}
