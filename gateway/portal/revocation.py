"""Ending portal sessions before their time, in every process sharing the store.

A portal session lives in a signed cookie (gateway.portal.tokens) that the browser keeps until
it ends, so ending one early is a row in the store that every page checks:

- signing out ends that session: a replayed cookie is refused as an ended one;
- `DELETE /api/v1/PortalSessions` or `gateway portal-revoke` ends every session of a group and
  every link of it not yet opened, issued until then; links made afterwards open as usual.

A revocation is kept until none of the sessions it ends could still be open, then
housekeeping forgets it. Issue times come from each process's clock: across machines, a link
made within their clocks' difference of a revocation may fall on either side of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from gateway.portal.tokens import MAX_SESSION_SECONDS, Grant, Session
from gateway.store import Store

# How long a session of a link made now could last: its end is fixed when the link is made.
LONGEST = timedelta(seconds=MAX_SESSION_SECONDS)


async def sign_out(store: Store, session: Session) -> None:
    """End this session (its link opened it, and no other)."""
    await store.revoke_portal(session.link_id, session.expires_at, session.expires_at)


async def end_group(store: Store, group_key: UUID, now: datetime) -> None:
    """End every session of this group and every link of it issued before `now`."""
    await store.revoke_portal(group_key, now, now + LONGEST)


async def revoked(store: Store, issued: Grant | Session) -> bool:
    """Whether this link, or the session it opened, has been ended."""
    before = await store.portal_revoked_before(issued.link_id, issued.group_key)
    return before is not None and issued.issued_at < before
