"""How values are written for partners and readers, with nothing heavier than the standard
library: delivery bodies (gateway.payloads, in every worker process) and the API's answers
(gateway.wire, which builds on pydantic) share them, so a worker process starts without
importing the API's models.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime


@functools.lru_cache(maxsize=1024)
def timestamp(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a Z, as the ADS API writes dates.

    Cached: every notification's body carries its event's time, and the events of one publish
    share it.
    """
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def truncate(text: str | None, limit: int) -> str | None:
    """At most `limit` characters, marked with how many were cut.

    History keeps request and response messages cut (the sender cuts them) and cuts again when
    it shows them, in case the limit has been lowered since: a text that ends in our mark and
    is cut again says how many characters the original lost, not how many the kept text lost.
    """
    if text is None or len(text) <= limit:
        return text
    cut = _CUT_MARK.search(text)
    if cut is not None and cut.start() >= limit:
        if cut.start() == limit:
            return text  # already cut at this limit
        dropped = cut.start() - limit + int(cut.group(1))
        return text[:limit] + f"…[truncated {dropped} characters]"
    return text[:limit] + f"…[truncated {len(text) - limit} characters]"


# How `truncate` marks a cut text, after its first `limit` characters.
_CUT_MARK = re.compile(r"…\[truncated ([0-9]+) characters\]\Z")
