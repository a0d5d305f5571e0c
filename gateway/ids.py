"""Ids that keep their text: new time-ordered ones for events and notifications, and those read
back from the SQLite store.

A notification's ids are turned into text several times on the way in and out (the row, the
body, the headers, the record of the attempt), and uuid.UUID formats itself afresh, in Python,
every time; a TextId formats once.
"""

from __future__ import annotations

from uuid import UUID, SafeUUID

# Events and notifications get UUIDv7 ids: time-ordered, so each insert lands at the end of the
# primary-key indexes instead of on a random page (bench.store_ops --random-ids: 100 us per
# event with v4 ids, 50 us with v7). uuid_utils makes them, and their text, in Rust.
from uuid_utils import uuid7


class TextId(UUID):
    """A uuid.UUID that keeps its canonical text. Equality, hashing and ordering are
    uuid.UUID's own; copies and pickles are plain UUIDs."""

    __slots__ = ("_text",)
    _text: str
    # uuid.UUID's own `is_safe` slot, answered by the class: a TextId never knows it.
    is_safe = SafeUUID.unknown  # type: ignore[misc]

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"UUID('{self._text}')"

    def __reduce__(self) -> tuple[type[UUID], tuple[str]]:
        return UUID, (self._text,)


# A TextId is built by setting its two slots through their descriptors: uuid.UUID refuses
# attribute assignment, and object.__setattr__ looks the slot up afresh on every call. Ids are
# made and read back by the hundred per request; this halves the cost of each (timeit).
_new = object.__new__
_set_int = UUID.__dict__["int"].__set__
_set_text = TextId.__dict__["_text"].__set__


def _text_id(value: int, text: str) -> UUID:
    ident = _new(TextId)
    _set_int(ident, value)
    _set_text(ident, text)
    return ident


def from_text(text: str) -> UUID:
    """The id in `text`; canonical text (as str(UUID) writes it) gives a TextId."""
    if len(text) != 36 or text[8:24:5] != "----":  # the hyphens at 8, 13, 18 and 23
        return UUID(text)  # not written by us: let uuid.UUID judge it
    ident = _new(TextId)  # _text_id, written out: twice per claimed notification
    _set_int(ident, int(text.replace("-", ""), 16))
    _set_text(ident, text.lower())
    return ident


def new_id() -> UUID:
    """A new time-ordered (v7) id."""
    made = uuid7()
    return _text_id(made.int, str(made))
