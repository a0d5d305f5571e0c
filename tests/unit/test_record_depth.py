"""How deep a record may nest: the door's depth check against an independent count, and the
limit it protects against the encoder's real one (so an orjson upgrade that moves it shows)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import payloads
from gateway.models import ContentType, HttpMethod
from tests.factories import make_notification, make_webhook

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=30,
)
RECORDS = st.dictionaries(st.text(), JSON, max_size=4)


def depth(value: Any) -> int:
    """Objects and arrays nested in `value`, itself included; 0 for a scalar."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def nested(levels: int) -> dict[str, Any]:
    """A record `levels` deep, nesting arrays and objects in turn."""
    value: Any = 1
    for level in range(levels - 1):
        value = [value] if level % 2 else {"n": value}
    return {"id": "1", "n": value}


@settings(max_examples=300, derandomize=True, database=None)
@given(record=RECORDS, limit=st.integers(min_value=1, max_value=6))
def test_the_check_agrees_with_a_plain_count(record: dict[str, Any], limit: int) -> None:
    assert payloads.nests_deeper(record, limit) == (depth(record) > limit)


@pytest.mark.parametrize("levels", [1, 2, 31, 32, 33])
def test_the_count_of_the_test_records(levels: int) -> None:
    record = nested(levels)
    assert depth(record) == levels
    assert payloads.nests_deeper(record, 32) == (levels > 32)


def test_a_record_at_the_largest_depth_renders_and_one_deeper_cannot() -> None:
    hook = make_webhook(callback_http_method=HttpMethod.POST, request_content_type=ContentType.FULL)
    deepest = nested(payloads.MAX_RECORD_DEPTH)
    assert not payloads.nests_deeper(deepest, payloads.MAX_RECORD_DEPTH)
    payloads.render(hook, make_notification(hook, records=(deepest,)))
    too_deep = nested(payloads.MAX_RECORD_DEPTH + 1)
    assert payloads.nests_deeper(too_deep, payloads.MAX_RECORD_DEPTH)
    with pytest.raises(orjson.JSONEncodeError, match="Recursion limit"):
        payloads.render(hook, make_notification(hook, records=(too_deep,)))
