"""The picture of a webhook's last 24 hours: its attempts by UTC hour (delivered and failed,
stacked bars) and how long its receiver took to answer (the hour's mean, a line), drawn on
the server as an SVG image of ours (/portal/webhooks/{id}/activity.svg, shown with <img>).

No script draws it and nothing in it is styled inline: colours are SVG presentation
attributes, which the portal's Content-Security-Policy (style-src 'self') does not govern.
The counts come from store.delivery_activity (delivered: the history's successful rows;
failed: the attempt log); answer times are recorded from the gateway's version with
migration 0014 (SQLite) / 0013 (PostgreSQL) on, and an hour with none shows no point.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.common import context
from gateway.models import Webhook
from gateway.portal.web import TEMPLATES, PortalEndpoint, page, portal_session
from gateway.portal.webhooks import owned_webhook
from gateway.store.base import HourOfDeliveries

HOURS = 24
SLOT = 26  # px per hour
LEFT, TOP = 44, 28  # the plot's corner
BARS_HEIGHT, GAP, LINE_HEIGHT = 120, 28, 60
WIDTH = LEFT + HOURS * SLOT + 56
HEIGHT = TOP + BARS_HEIGHT + GAP + LINE_HEIGHT + 30
LINE_TOP = TOP + BARS_HEIGHT + GAP


@dataclass(frozen=True)
class Day:
    """A webhook's last 24 hours, one slot per UTC hour (oldest first; empty hours too)."""

    hours: list[HourOfDeliveries]

    @property
    def delivered(self) -> int:
        """Attempts delivered in the day."""
        return sum(h.delivered for h in self.hours)

    @property
    def failed(self) -> int:
        """Attempts failed in the day."""
        return sum(h.failed for h in self.hours)

    @property
    def slowest_ms(self) -> float | None:
        """The longest answer time of the day (None: none recorded)."""
        times = [h.max_ms for h in self.hours if h.max_ms is not None]
        return max(times) if times else None


async def last_day(request: Request, hook: Webhook) -> Day:
    """The webhook's attempts in the 24 UTC hours up to the current one."""
    now = context(request).clock().astimezone(UTC)
    first = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    tried = await context(request).store.delivery_activity(hook.group_key, hook.webhook_id, first)
    found = {h.hour: h for h in tried}
    slots = [first + timedelta(hours=i) for i in range(HOURS)]
    return Day([found.get(at) or HourOfDeliveries(at, 0, 0, None, None) for at in slots])


def drawing(day: Day) -> dict[str, Any]:
    """What activity.svg draws: each hour's bars and latency point, in pixels."""
    most = max((h.delivered + h.failed for h in day.hours), default=0) or 1
    slowest = day.slowest_ms or 0.0
    scale_ms = max((h.mean_ms or 0.0 for h in day.hours), default=0.0) or 1.0
    bottom, line_bottom = TOP + BARS_HEIGHT, LINE_TOP + LINE_HEIGHT
    bars, points = [], []
    for i, hour in enumerate(day.hours):
        x = LEFT + i * SLOT
        ok_h = round(BARS_HEIGHT * hour.delivered / most, 1)
        bad_h = round(BARS_HEIGHT * hour.failed / most, 1)
        bars.append({"hour": hour, "x": x + 4, "width": SLOT - 8,
                     "ok_y": round(bottom - ok_h, 1), "ok_h": ok_h,
                     "bad_y": round(bottom - ok_h - bad_h, 1), "bad_h": bad_h,
                     "label": f"{hour.hour:%H}:00" if i % 6 == 0 else ""})  # fmt: skip
        if hour.mean_ms is not None:
            y = round(line_bottom - LINE_HEIGHT * hour.mean_ms / scale_ms, 1)
            points.append({"x": x + SLOT / 2, "y": y, "hour": hour})
    return {
        "width": WIDTH, "height": HEIGHT, "left": LEFT, "top": TOP, "bottom": bottom,
        "right": LEFT + HOURS * SLOT, "line_top": LINE_TOP, "line_bottom": line_bottom,
        "most": most, "scale_ms": round(scale_ms, 1), "slowest_ms": slowest, "bars": bars,
        "points": points, "polyline": " ".join(f"{p['x']},{p['y']}" for p in points),
    }  # fmt: skip


@page
async def picture(request: Request) -> Response:
    """The webhook's last 24 hours as an SVG image."""
    session = portal_session(request)
    hook = await owned_webhook(request, session)
    day = await last_day(request, hook)
    response: Response = TEMPLATES.TemplateResponse(
        request, "activity.svg", {"hook": hook, "day": day, "draw": drawing(day)},
        media_type="image/svg+xml",
    )  # fmt: skip
    return response


PAGES: dict[str, dict[str, PortalEndpoint]] = {
    "/webhooks/{webhookId}/activity.svg": {"GET": picture},
}
