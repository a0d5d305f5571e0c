"""Rows written straight into a gateway's SQLite file, for the benchmarks that need more of
them than the API could create in reasonable time (S2, S3, S6).

Every row goes through the store's own record types and SQLite encoders (`codec.SQLITE`,
`sqlite_queries`) with the store's own INSERT statements, so it is exactly what `SqliteStore`
would have written. The seeding runs in `bench.common.gateway`'s `prepare` hook: after
`gateway keys create` has migrated the file, before `gateway serve` opens it.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from uuid import UUID, uuid4

from gateway import signing
from gateway.ids import new_id
from gateway.models import (
    ContentType,
    Event,
    EventType,
    HttpMethod,
    Notification,
    NotificationState,
    Webhook,
    WebhookRule,
    WebhookStatus,
    utcnow,
)
from gateway.store import sqlite_queries as q
from gateway.store.codec import SQLITE

BENCH_GROUP = "bench"  # the group of the key bench.common.gateway creates
# Event and notification ids as gateway/api/events.py and gateway/publishing.py make them (kept
# in step with them: the kind of id decides where inserts land in the primary-key indexes).
row_id = new_id


@contextmanager
def connect(database_url: str) -> Iterator[sqlite3.Connection]:
    """The gateway's SQLite file, with the store's pragmas; refuses an unmigrated file."""
    if not database_url.startswith("sqlite:///"):
        raise ValueError(f"seeding writes SQLite files only, not {database_url}")
    conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        for pragma in q.PRAGMAS:
            conn.execute(pragma)
        _check_migrated(conn)
        yield conn
    finally:
        conn.close()


def _check_migrated(conn: sqlite3.Connection) -> None:
    wanted = [version for version, _ in q.migration_files()]
    applied = [row[0] for row in conn.execute(q.APPLIED_VERSIONS)]
    if applied != wanted:
        raise RuntimeError(f"database has migrations {applied}, the store expects {wanted}")


def bench_key(conn: sqlite3.Connection) -> tuple[UUID, UUID]:
    """(group key, api key id) of the benchmark's key: the owner of what is seeded for it."""
    sql = "SELECT group_key, api_key_id FROM api_keys WHERE group_name = ? ORDER BY created"
    row = conn.execute(sql, (BENCH_GROUP,)).fetchone()
    if row is None:
        raise RuntimeError(f"no API key of group {BENCH_GROUP!r} in the database")
    return UUID(row[0]), UUID(row[1])


def webhook(group_key: UUID, user: UUID, url: str, name: str, now: datetime) -> Webhook:
    """An Active POST webhook, as a create whose handshake passed would store it."""
    return Webhook(
        webhook_id=uuid4(),
        group_key=group_key,
        name=name,
        status_code=WebhookStatus.ACTIVE,
        status_message=None,
        client_secret=signing.generate_secret(),
        request_content_type=ContentType.FULL,
        callback_http_method=HttpMethod.POST,
        callback_url=url,
        expiration_date=None,
        retry_count=5,
        created=now,
        created_user_id=user,
        modified=now,
        modified_user_id=user,
    )


def rule(
    hook: Webhook, table_key: str, event_type: EventType, filter_text: str | None = None
) -> WebhookRule:
    """A rule of `hook`, owned by its group and creator."""
    return WebhookRule(
        webhook_rule_id=uuid4(),
        webhook_id=hook.webhook_id,
        group_key=hook.group_key,
        table_key=table_key,
        event_type=event_type,
        filter=filter_text,
        created=hook.created,
        created_user_id=hook.created_user_id,
        modified=hook.modified,
        modified_user_id=hook.modified_user_id,
    )


def subscribed(conn: sqlite3.Connection, urls: Sequence[str], name: str) -> list[Webhook]:
    """One webhook of the benchmark's group per URL, each with a rule for Invoice updates."""
    group, user = bench_key(conn)
    now = utcnow()
    hooks = [webhook(group, user, url, f"{name}-{i}", now) for i, url in enumerate(urls)]
    insert(conn, hooks, [rule(h, "Invoice", EventType.UPDATE) for h in hooks])
    return hooks


def insert(
    conn: sqlite3.Connection, hooks: Sequence[Webhook], rules: Sequence[WebhookRule]
) -> None:
    """Webhooks and rules in one transaction."""
    with _transaction(conn):
        conn.executemany(q.INSERT_WEBHOOK, [SQLITE.encode(h) for h in hooks])
        conn.executemany(q.INSERT_RULE, [SQLITE.encode(r) for r in rules])


def insert_backlog(
    conn: sqlite3.Connection, hooks: Sequence[Webhook], events: int, chunk: int = 20_000
) -> float:
    """`events` Invoice update events, each with a pending notification (due now) for every
    one of `hooks`, numbered per webhook as add_events numbers them; return the seconds taken."""
    start = time.perf_counter()
    sequences: Counter[UUID] = Counter()
    for first in range(0, events, chunk):
        now = utcnow()
        batch = [
            _event(hooks[0].group_key, first + i, now) for i in range(min(chunk, events - first))
        ]
        notes = []
        for event in batch:
            for hook in hooks:
                sequences[hook.webhook_id] += 1
                notes.append(q.notification_row(pending(event, hook, sequences[hook.webhook_id])))
        with _transaction(conn):
            conn.executemany(q.INSERT_EVENT, [q.event_row(e) for e in batch])
            conn.executemany(q.INSERT_NOTIFICATION, notes)
    with _transaction(conn):
        sql = "UPDATE webhooks SET last_sequence = ? WHERE webhook_id = ?"
        conn.executemany(sql, [(n, str(w)) for w, n in sequences.items()])
    return time.perf_counter() - start


def _event(group_key: UUID, index: int, now: datetime) -> Event:
    record = {"id": str(index), "total": index}
    return Event(row_id(), group_key, "Invoice", EventType.UPDATE, (record,), now)


def pending(
    event: Event, hook: Webhook, sequence: int = 0, new_id: Callable[[], UUID] = row_id
) -> Notification:
    """`hook`'s pending notification of `event`, due when the event was created."""
    return Notification(
        notification_id=new_id(),
        group_key=event.group_key,
        webhook_id=hook.webhook_id,
        event_id=event.event_id,
        table_key=event.table_key,
        event_type=event.event_type,
        records=event.records,
        sequence=sequence,
        triggered_at=event.created,
        state=NotificationState.PENDING,
        next_attempt_at=event.created,
        created=event.created,
        timestamp=event.created,
    )


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
