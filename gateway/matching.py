"""Matching: which webhooks an event reaches, and with which of its records.

A webhook receives an event when one of its rules names the event's table and type; it receives
the records that any of those rules' filters accepts (all of them when a rule has no filter),
in the event's order, and nothing when none is accepted.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from gateway import filters
from gateway.models import Event, EventType, Recipient

if TYPE_CHECKING:  # the store publishes lifecycle notices with this module (gateway.notices)
    from gateway.store import Store

# A webhook and its rules' filters; None when one of its rules has no filter and so accepts
# every record.
Subscriber = tuple[Recipient, list[filters.Node] | None]
# An event, a webhook it reaches, and the records that webhook receives.
Match = tuple[Event, Recipient, Sequence[dict[str, Any]]]


@functools.lru_cache(maxsize=4096)
def _compiled(text: str | None) -> filters.Node | None:
    """Rule filters are parsed once and reused (they were validated when saved)."""
    return filters.parse_filter(text or "")


async def matches(store: Store, events: Sequence[Event]) -> list[Match]:
    """Each event with each webhook it reaches, in event order and, for one event, in the
    order of the webhooks' first rules. The rules are read once per table and event type."""
    lookups: dict[tuple[str, EventType], list[Subscriber]] = {}
    for event in events:
        key = (event.table_key, event.event_type)
        if key not in lookups:
            found = await store.matching_rules(event.group_key, key[0], key[1].value)
            lookups[key] = subscribers(found)
    return [
        (event, hook, records)
        for event in events
        for hook, records in select(lookups[event.table_key, event.event_type], event)
    ]


def subscribers(found: list[tuple[str | None, Recipient]]) -> list[Subscriber]:
    """Each webhook of these rules (their filters, with their webhooks) once, in the order of
    its first rule, with its rules' filters."""
    hooks: dict[UUID, Recipient] = {}
    nodes: dict[UUID, list[filters.Node | None]] = {}
    for text, hook in found:
        hooks.setdefault(hook.webhook_id, hook)
        nodes.setdefault(hook.webhook_id, []).append(_compiled(text))
    return [
        (hook, None if None in nodes[webhook_id] else [n for n in nodes[webhook_id] if n])
        for webhook_id, hook in hooks.items()
    ]


def select(
    subscribers: list[Subscriber], event: Event
) -> Iterator[tuple[Recipient, Sequence[dict[str, Any]]]]:
    """For each webhook, the event's records that any of its rules accept, in event order
    (all of them: the event's own tuple, which its notifications share)."""
    for hook, nodes in subscribers:
        records: Sequence[dict[str, Any]]
        if nodes is None:
            records = event.records
        else:
            records = [r for r in event.records if any(filters.evaluate(n, r) for n in nodes)]
        if records:
            yield hook, records
