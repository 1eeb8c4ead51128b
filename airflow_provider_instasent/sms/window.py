"""Quiet hours: whether a recipient's local time is inside ``send_window``, and when it opens.

``send_window=("09:00", "21:00")`` is a local wall-clock interval, start included, end
excluded, evaluated in each recipient's IANA time zone. A window whose start is after its end
runs over midnight (``("21:00", "02:00")``). A recipient with several possible zones (a
Spanish mobile may be in Madrid or the Canaries) is inside only when inside in every one of them,
and its window opens when it is open in all of them.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from functools import lru_cache

Window = tuple[dt.time, dt.time]


def parse_window(window: Sequence[str] | None) -> Window | None:
    """``("09:00", "21:00")`` as two ``time`` objects, or a ``ValueError``."""
    if window is None:
        return None
    if isinstance(window, str) or len(window) != 2:
        raise ValueError(f"send_window must be two 'HH:MM' times, like ('09:00', '21:00'); got {window!r}")
    try:
        start, end = (dt.time.fromisoformat(str(part).strip()) for part in window)
    except ValueError:
        raise ValueError(f"send_window must be two 'HH:MM' times, like ('09:00', '21:00'); got {window!r}") from None
    if start == end:
        raise ValueError("send_window start and end are equal: an empty window would hold every message")
    return start, end


@lru_cache(maxsize=1024)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """An IANA zone, or a ``ValueError`` naming it."""
    try:
        return zoneinfo.ZoneInfo(str(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _inside(local: dt.time, window: Window) -> bool:
    start, end = window
    return start <= local < end if start < end else (local >= start or local < end)


def _opens(now: dt.datetime, tz: zoneinfo.ZoneInfo, window: Window) -> dt.datetime:
    """``now`` if inside the window in ``tz``, else the next local start (as an aware UTC time)."""
    local = now.astimezone(tz)
    if _inside(local.time(), window):
        return now
    start = window[0]
    day = local.date() if local.time() < start else local.date() + dt.timedelta(days=1)
    opening = dt.datetime.combine(day, start, tzinfo=tz)
    # a start inside a DST gap does not exist that day: the first minute after it that does
    while opening.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != opening.replace(tzinfo=None):
        opening += dt.timedelta(minutes=1)
    return opening.astimezone(dt.UTC)


def next_opening(now: dt.datetime, zones: Sequence[str], window: Window) -> dt.datetime | None:
    """``None`` when ``now`` is inside the window in every zone; otherwise when it next opens in all."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    tzs = [zone(z) for z in zones]
    moment = now
    for _ in range(8):  # a few zones' windows converge in one or two steps
        later = max(_opens(moment, tz, window) for tz in tzs)
        if later == moment:
            return None if moment == now else moment
        moment = later
    return moment  # the zones' windows never all overlap: re-checked when the task resumes


__all__ = ["Window", "next_opening", "parse_window", "zone"]
