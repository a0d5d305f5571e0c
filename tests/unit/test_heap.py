"""freeze_startup: what is alive at start-up leaves the collector's sight; later garbage is
still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway import heap


class Node:
    """A tracked object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def unfreeze() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("unfreeze")
def test_objects_alive_at_start_up_are_frozen_and_later_cycles_still_collected() -> None:
    kept = Node()
    heap.freeze_startup()
    assert gc.get_freeze_count() > 0
    assert not any(obj is kept for obj in gc.get_objects())  # out of every generation

    later = Node()
    later.other, cycle = later, weakref.ref(later)
    del later
    gc.collect()
    assert cycle() is None


@pytest.mark.usefixtures("unfreeze")
def test_later_cycles_are_collected_without_being_asked_for() -> None:
    heap.freeze_startup()
    assert gc.get_threshold() == heap.THRESHOLDS
    later = Node()
    later.other, cycle = later, weakref.ref(later)
    del later
    # Enough new tracked objects to set off the young generation's collection by itself, kept
    # alive until the check: a freed object takes its count back.
    made = [Node() for _ in range(2 * heap.THRESHOLDS[0])]
    assert cycle() is None
    del made
