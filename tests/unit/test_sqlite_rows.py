"""The written-out rows of the publish path's inserts say exactly what the generic encoder
says, column by column."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from datetime import timedelta

import pytest

import gateway.store.sqlite  # noqa: F401  (registers the adapter for None)
from gateway.ids import new_id
from gateway.models import Due, Event, EventType, Notification, NotificationState, utcnow
from gateway.store import sqlite_queries as q
from gateway.store.codec import SQLITE


def _event() -> Event:
    records = ({"id": "1", "total": 10}, {"id": "2", "note": "ünïcode"})
    return Event(new_id(), new_id(), "Invoice", EventType.DELETE, records, utcnow())


def test_an_event_row_is_its_encoding_in_column_order() -> None:
    event = _event()
    assert dict(zip(q.EVENT_COLUMNS, q.event_row(event), strict=True)) == SQLITE.encode(event)


def _notifications() -> tuple[Notification, Notification]:
    """One notification with every optional field unset, and one with every field set."""
    event, now = _event(), utcnow()
    bare = Notification(
        notification_id=new_id(),
        group_key=event.group_key,
        webhook_id=new_id(),
        event_id=event.event_id,
        table_key=event.table_key,
        event_type=event.event_type,
        records=event.records,
        sequence=3,
        triggered_at=event.created,
        state=NotificationState.PENDING,
        next_attempt_at=now,
        created=now,
        timestamp=now,
    )
    # Every optional field set as well, so that none is left out or misplaced.
    full = dataclasses.replace(
        bare,
        state=NotificationState.FAILED,
        attempts=2,
        lease_until=now + timedelta(seconds=60),
        lease_owner="worker-a",
        request_sent=True,
        is_successful=False,
        response_status_code="500",
        process_result_message="HTTP 500",
        request_message="POST http://partner.example/hook",
        response_message="HTTP 500\n\nno",
        timestamp=now + timedelta(seconds=1),
    )
    return bare, full


def test_a_notification_row_is_its_encoding_in_column_order() -> None:
    for note in _notifications():
        row = q.notification_row(note)
        expected = SQLITE.encode(note, event_type_label="Invoice.D")
        assert dict(zip(q.NOTE_COLUMNS, row, strict=True)) == expected
        assert (row[q.ROW_GROUP], row[q.ROW_WEBHOOK], row[q.ROW_SEQUENCE]) == (
            str(note.group_key),
            str(note.webhook_id),
            note.sequence,
        )


def test_numbered_sql_binds_by_place_and_refuses_a_name_it_was_not_given() -> None:
    sql = q._numbered(("a", "now"), "UPDATE t SET x = :a, y = :a + 1, z = :now, w = ':x'")
    assert sql == "UPDATE t SET x = ?1, y = ?1 + 1, z = ?2, w = ':x'"
    with pytest.raises(ValueError, match="not among"):
        q._numbered(("a",), "UPDATE t SET x = :a, y = :b")


def test_the_settle_statement_uses_every_column_of_its_row_and_no_other() -> None:
    places = {int(n) for n in re.findall(r"\?(\d+)", q.SETTLE_ATTEMPT)}
    assert places == set(range(1, len(q.SETTLE_COLUMNS) + 1))


def test_claimed_rows_decode_to_the_notifications_they_were_as_due() -> None:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    conn.execute(f"CREATE TABLE notifications ({', '.join(q.NOTE_COLUMNS)})")
    notes = _notifications()
    conn.executemany(q.INSERT_NOTIFICATION, [q.notification_row(n) for n in notes])
    returned = q.CLAIM_DUE.rsplit("RETURNING", 1)[1]  # the claim's columns, as it lists them
    rows = conn.execute(f"SELECT {returned} FROM notifications").fetchall()
    until = utcnow() + timedelta(seconds=30)
    expected = [
        Due(**{field.name: getattr(n, field.name) for field in dataclasses.fields(Due)}
            | {"lease_until": until, "lease_owner": "worker-b"})
        for n in notes
    ]  # fmt: skip
    assert q.claimed(rows, "worker-b", until) == expected


def test_none_binds_through_a_registered_adapter() -> None:
    """The store registers an adapter for None (gateway.store.sqlite): without one, the sqlite3
    module raises and clears two AttributeErrors for every None it binds, five or six a
    published notification (bench.publish_path under callgrind: 231,000 instructions an event
    without it, 220,000 with it). The adapter binds NULL."""
    adapter = sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)]
    assert adapter(None) is None
    with sqlite3.connect(":memory:") as conn:
        assert conn.execute("SELECT ? IS NULL, typeof(?)", (None, None)).fetchone() == (1, "null")
