"""Ids that keep their text (new ones, and those read back from the SQLite store) behave as
the uuid.UUID they stand for."""

from __future__ import annotations

import copy
import pickle
import uuid

import pytest

from gateway.ids import TextId, new_id
from gateway.ids import from_text as _uuid
from gateway.store import codec
from gateway.store.codec import shared_uuid


def test_a_stored_id_equals_hashes_orders_and_prints_as_its_uuid() -> None:
    original, other = uuid.uuid4(), uuid.uuid4()
    read = _uuid(str(original))
    assert isinstance(read, TextId)
    assert read == original and hash(read) == hash(original) and {original: 1}[read] == 1
    assert (read < other) == (original < other) and read != other
    assert str(read) == str(original) and repr(read) == repr(original)
    assert read.hex == original.hex and read.version == 4 and read.bytes == original.bytes
    assert read.is_safe is original.is_safe is uuid.SafeUUID.unknown


def test_copies_and_pickles_of_a_stored_id_are_plain_uuids() -> None:
    original = uuid.uuid4()
    for again in (
        copy.copy(_uuid(str(original))),
        pickle.loads(pickle.dumps(_uuid(str(original)))),
    ):
        assert type(again) is uuid.UUID and again == original


def test_other_spellings_are_read_as_uuid_reads_them() -> None:
    original = uuid.uuid4()
    assert str(_uuid(str(original).upper())) == str(original)
    for spelling in (original.hex, "{" + str(original) + "}", "urn:uuid:" + str(original)):
        read = _uuid(spelling)
        assert type(read) is uuid.UUID and read == original
    for wrong in ("not-a-uuid-at-all-but-36-characters", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"):
        with pytest.raises(ValueError):
            _uuid(wrong)


def test_a_shared_id_is_one_object_per_text_until_the_cache_starts_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(codec.SHARED_IDS, "size", 2)
    codec.SHARED_IDS.clear()
    one, two, three = (str(uuid.uuid4()) for _ in range(3))
    first = shared_uuid(one)
    assert shared_uuid(one) is first and first == uuid.UUID(one)
    assert shared_uuid(two) is not first
    shared_uuid(three)  # the cache was full: it starts over
    assert shared_uuid(one) == first and shared_uuid(one) is not first


def test_new_ids_are_time_ordered_v7_and_keep_their_text() -> None:
    first, second = new_id(), new_id()
    assert isinstance(first, TextId) and first.version == 7
    assert str(first) == str(uuid.UUID(int=first.int)) and first != second
