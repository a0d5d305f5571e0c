"""Every record type comes back as it went in through each dialect's table of conversions, and
each kind of value is stored as the dialect keeps it."""

from __future__ import annotations

import dataclasses
import sqlite3
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from asyncpg.pgproto.pgproto import UUID as DriverUUID

from gateway.ids import TextId
from gateway.models import (
    ApiKey,
    Attempt,
    EventType,
    FailureWindow,
    Header,
    NotificationState,
    Scope,
    StatusReason,
    WebhookStatus,
)
from gateway.store import codec
from gateway.store.codec import Kind
from tests.factories import T0, make_api_key, make_event, make_notification, make_rule, make_webhook


def _records() -> list[Any]:
    """Each record type twice: its optional fields unset, and every field set."""
    hook, event = make_webhook(), make_event(records=({"id": "1", "note": "ünï"}, {"id": "2"}))
    bare_attempt = Attempt(uuid4(), 1, T0, None, None, None, None)
    return [
        make_api_key(), make_api_key(scopes=frozenset({Scope.EVENTS}), revoked=T0),
        hook, dataclasses.replace(
            hook, status_code=WebhookStatus.INACTIVE, status_message="paused", partition_key="p",
            expiration_date=T0, failure_count=2, previous_secret="old",
            previous_secret_expires=T0 + timedelta(hours=1), status_reason=StatusReason.PAUSED,
            headers=(Header("X-Key", "v"), Header("x-b", "")), window_start=T0,
            config={"z": 1, "a": [2.5, None, {"é": True}]}, failure_window=FailureWindow(3, 60),
        ),
        make_rule(hook), make_rule(hook, event_type=EventType.DELETE, filter="total gt 5"),
        make_event(), event,
        make_notification(hook, event), make_notification(
            hook, event, state=NotificationState.FAILED, attempts=2, lease_owner="worker-a",
            lease_until=T0, request_sent=True, is_successful=True, response_status_code="500",
            process_result_message="HTTP 500", request_message="POST", response_message="no",
        ),
        bare_attempt, dataclasses.replace(
            bare_attempt, response_status_code="500", process_result_message="HTTP 500",
            request_message="POST", response_message="HTTP 500\n\nno",
        ),
    ]  # fmt: skip


def shape(record: Any) -> list[tuple[str, type, Any]]:
    """Each field's name, type and value: equality alone takes 1 for True, and a driver's own
    UUID type for uuid.UUID (an id that keeps its text, a TextId, counts as uuid.UUID)."""
    values = [(f.name, getattr(record, f.name)) for f in dataclasses.fields(record)]
    return [(name, UUID if isinstance(v, TextId) else type(v), v) for name, v in values]


def through_sqlite(record: Any) -> Any:
    """`record` written to an SQLite table and read back."""
    names = [f.name for f in dataclasses.fields(record)]
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    conn.execute(f"CREATE TABLE t ({', '.join(names)})")
    conn.execute(f"INSERT INTO t VALUES ({', '.join(':' + n for n in names)})",
                 codec.SQLITE.encode(record))  # fmt: skip
    return codec.SQLITE.decode_rows(type(record), conn.execute("SELECT * FROM t").fetchall())[0]


class DriverRow(tuple[Any, ...]):
    """A row as asyncpg gives it: by position, with its column names."""

    names: tuple[str, ...]

    def keys(self) -> tuple[str, ...]:
        return self.names


def through_postgres(record: Any) -> Any:
    """`record` bound as asyncpg binds it and read back as asyncpg reads it (its own UUIDs)."""
    params = codec.POSTGRES.encode(record)
    row = DriverRow(DriverUUID(str(v)) if isinstance(v, UUID) else v for v in params.values())
    row.names = tuple(params)
    return codec.POSTGRES.decode_rows(type(record), [row])[0]


@pytest.mark.parametrize("trip", [through_sqlite, through_postgres])
@pytest.mark.parametrize("record", _records(), ids=lambda r: type(r).__name__)
def test_every_record_type_comes_back_as_it_went_in(trip: Any, record: Any) -> None:
    assert shape(trip(record)) == shape(record)


def test_sqlite_reads_the_ids_that_many_rows_repeat_to_one_object() -> None:
    hook = make_webhook()
    notes = [make_notification(hook), make_notification(hook)]
    read = [through_sqlite(hook), *(through_sqlite(note) for note in notes)]
    assert read[0].webhook_id is read[1].webhook_id is read[2].webhook_id
    assert read[0].group_key is read[1].group_key is read[2].group_key
    assert read[1].notification_id is not read[2].notification_id


def test_a_column_prefix_picks_one_record_out_of_a_joined_row() -> None:
    hook, rule = make_webhook(), make_rule()
    joined = {f"w_{name}": value for name, value in codec.POSTGRES.encode(hook).items()}
    params = {**codec.POSTGRES.encode(rule), **joined}
    row = DriverRow(params.values())
    row.names = tuple(params)
    assert shape(codec.POSTGRES.decode_rows(type(hook), [row], "w_")[0]) == shape(hook)


def test_each_statement_is_read_by_its_own_columns_order() -> None:
    # The positions of a record's fields are found once per statement's columns, not once per
    # record type: a second statement reading the same type in another order reads as well.
    hook = make_webhook()
    params = codec.POSTGRES.encode(hook)
    for names in (tuple(params), tuple(reversed(params)), ("extra", *params)):
        row = DriverRow(params.get(name, "not a field") for name in names)
        row.names = names
        assert shape(codec.POSTGRES.decode_rows(type(hook), [row])[0]) == shape(hook)


def test_sqlite_keeps_text_that_sorts_as_the_values_do() -> None:
    note = make_notification(request_sent=True, lease_until=T0)
    stored = codec.SQLITE.encode(note)
    assert stored["notification_id"] == str(note.notification_id)
    assert type(stored["state"]) is str and stored["state"] == "pending"
    assert stored["request_sent"] is True  # bound as 1
    assert stored["records"] == '[{"id":"42"}]'
    assert codec.SQLITE.encode(make_api_key())["scopes"] == '["events","webhooks"]'
    east = timezone(timedelta(hours=2))
    times = [datetime(2030, 1, 1, 1, tzinfo=east), T0, datetime(2030, 1, 1, 12, 0, 0, 5, UTC)]
    texts = [codec.SQLITE.to_sql(t) for t in times]
    assert texts[1] == "2030-01-01T12:00:00.000000+00:00"
    assert texts == sorted(texts) and len({len(t) for t in texts}) == 1


def test_postgres_binds_native_values() -> None:
    note = make_notification(request_sent=True)
    stored = codec.POSTGRES.encode(note)
    assert stored["notification_id"] is note.notification_id and stored["created"] is note.created
    assert type(stored["state"]) is str and stored["state"] == "pending"
    assert stored["request_sent"] is True
    assert stored["records"] == '[{"id":"42"}]'
    assert codec.POSTGRES.encode(make_api_key())["scopes"] == ["events", "webhooks"]


@pytest.mark.parametrize("dialect", [codec.SQLITE, codec.POSTGRES], ids=["sqlite", "postgres"])
def test_a_naive_time_is_refused(dialect: codec.Codec) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        dialect.to_sql(datetime(2030, 1, 1))


def test_each_field_kind_comes_from_its_type_hint() -> None:
    kinds = {f.name: (f.kind, f.members) for f in codec.fields_of(ApiKey)}
    assert kinds == {
        "api_key_id": (Kind.ID, None), "group_key": (Kind.SHARED_ID, None),
        "group_name": (Kind.PLAIN, None), "key_hash": (Kind.PLAIN, None),
        "scopes": (Kind.SET, Scope), "created": (Kind.TIME, None), "revoked": (Kind.TIME, None),
    }  # fmt: skip
    status = {f.name: (f.kind, f.members) for f in codec.fields_of(type(make_webhook()))}
    assert status["status_reason"] == (Kind.ENUM, StatusReason)
    structured = ("headers", "config", "failure_window")
    assert {status[name][0] for name in structured} == {Kind.JSON}


def test_a_structured_setting_is_compact_json_in_its_own_order() -> None:
    hook = make_webhook(
        headers=(Header("X-Key", "v"),), config={"z": 1, "a": None},
        failure_window=FailureWindow(3, 60),
    )  # fmt: skip
    for dialect in (codec.SQLITE, codec.POSTGRES):
        row = dialect.encode(hook)
        assert row["headers"] == '[{"name":"X-Key","value":"v"}]'
        assert row["config"] == '{"z":1,"a":null}'
        assert row["failure_window"] == '{"count":3,"seconds":60}'
        assert dialect.to_sql(()) == "[]"


@pytest.mark.parametrize("record", _records()[::2], ids=lambda r: type(r).__name__)
def test_only_text_and_numbers_are_stored_as_they_are(record: Any) -> None:
    hints = typing.get_type_hints(type(record))
    for field in codec.fields_of(type(record)):
        plain = hints[field.name] in (str, int, str | None, int | None)
        assert (field.kind is Kind.PLAIN) == plain, field.name


def test_a_stored_enum_value_reads_as_its_member_and_an_unknown_one_is_refused() -> None:
    read = codec.member(EventType)
    assert read("U") is EventType.UPDATE and read("D") is EventType.DELETE
    with pytest.raises(ValueError, match="'X' is not a valid EventType"):
        read("X")


def test_a_single_stored_id_or_time_reads_as_its_field_would() -> None:
    ident, moment = uuid4(), datetime(2030, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    assert codec.SQLITE.read(Kind.ID, str(ident)) == ident
    assert codec.SQLITE.read(Kind.TIME, codec.SQLITE.to_sql(moment)) == moment
    assert codec.POSTGRES.read(Kind.ID, DriverUUID(str(ident))).__class__ is UUID
    assert codec.POSTGRES.read(Kind.TIME, moment) is moment
