"""Where texts are cut: statusMessage (lifecycle.shorten) and history messages
(wire_values.truncate).

Each limit is checked on both sides of its boundary: a rule that is one character off passes
any test that only uses texts far longer or far shorter than the limit.
"""

from __future__ import annotations

import pytest

from gateway import lifecycle, wire_values


@pytest.mark.parametrize("length", [0, 1, 99, 100])
def test_a_status_message_of_at_most_100_characters_is_kept_whole(length: int) -> None:
    text = "m" * length
    assert lifecycle.shorten(text) == text


@pytest.mark.parametrize("length", [101, 102, 500])
def test_a_longer_status_message_is_cut_to_exactly_100_ending_in_an_ellipsis(length: int) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    short = lifecycle.shorten(text)
    assert len(short) == 100
    assert short == text[:99] + "…"


def test_shorten_takes_another_limit() -> None:
    assert lifecycle.shorten("abcdef", 6) == "abcdef"
    assert lifecycle.shorten("abcdefg", 6) == "abcde…"
    assert lifecycle.MESSAGE_LIMIT == 100  # statusMessage is at most 100 characters (contract §2)


@pytest.mark.parametrize("length", [0, 1, 9, 10])
def test_a_history_message_within_the_limit_is_kept_whole(length: int) -> None:
    text = "r" * length
    assert wire_values.truncate(text, 10) == text


@pytest.mark.parametrize(("length", "dropped"), [(11, 1), (12, 2), (1000, 990)])
def test_a_longer_history_message_keeps_the_limit_and_says_how_much_was_cut(
    length: int, dropped: int
) -> None:
    text = "".join(str(i % 10) for i in range(length))
    assert wire_values.truncate(text, 10) == text[:10] + f"…[truncated {dropped} characters]"


def test_nothing_to_truncate_stays_nothing() -> None:
    assert wire_values.truncate(None, 10) is None


def test_a_text_already_cut_at_the_limit_is_not_cut_again() -> None:
    once = wire_values.truncate("x" * 50, 10)
    assert once == "x" * 10 + "…[truncated 40 characters]"
    assert wire_values.truncate(once, 10) == once


@pytest.mark.parametrize(
    "text",
    [
        "x" * 9 + "…[truncated 40 characters]",  # the mark, but before the limit
        "x" * 10 + "…[truncated 40 characters] and more",  # more after the mark
        "x" * 10 + "…[truncated forty characters]",
    ],
)
def test_a_text_that_only_looks_cut_is_cut(text: str) -> None:
    assert wire_values.truncate(text, 10) == text[:10] + f"…[truncated {len(text) - 10} characters]"


@pytest.mark.parametrize(("kept_at", "shown_at"), [(20, 10), (11, 10), (1000, 1)])
def test_a_text_cut_at_a_larger_limit_counts_what_the_original_lost(
    kept_at: int, shown_at: int
) -> None:
    original = "".join(str(i % 10) for i in range(2000))
    kept = wire_values.truncate(original, kept_at)
    assert wire_values.truncate(kept, shown_at) == wire_values.truncate(original, shown_at)
    assert wire_values.truncate(kept, shown_at) == (
        original[:shown_at] + f"…[truncated {2000 - shown_at} characters]"
    )
