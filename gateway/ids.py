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

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"UUID('{self._text}')"

    def __reduce__(self) -> tuple[type[UUID], tuple[str]]:
        return UUID, (self._text,)


def from_text(text: str) -> UUID:
    """The id in `text`; canonical text (as str(UUID) writes it) gives a TextId."""
    if len(text) != 36 or not text[8] == text[13] == text[18] == text[23] == "-":
        return UUID(text)  # not written by us: let uuid.UUID judge it
    ident = object.__new__(TextId)
    object.__setattr__(ident, "int", int(text.replace("-", ""), 16))
    object.__setattr__(ident, "is_safe", SafeUUID.unknown)
    object.__setattr__(ident, "_text", text.lower())
    return ident


def new_id() -> UUID:
    """A new time-ordered (v7) id."""
    return from_text(str(uuid7()))
