"""Quiet hours (``sms/window.py``) and E.164 numbers (``ingest/phones.py``): pure functions, a fixed clock."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_provider_instasent.ingest.phones import time_zones, to_e164
from airflow_provider_instasent.sms.window import next_opening, parse_window

UTC = dt.UTC
DAY = parse_window(("09:00", "21:00"))
NIGHT = parse_window(("21:00", "02:00"))


def at(h: int, m: int = 0, day: int = 28, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, h, m, tzinfo=UTC)


def test_inside_and_outside_a_day_window():
    assert next_opening(at(12), ["UTC"], DAY) is None
    assert next_opening(at(9), ["UTC"], DAY) is None  # start included
    assert next_opening(at(21), ["UTC"], DAY) == at(9, day=29)  # end excluded: tomorrow
    assert next_opening(at(3), ["UTC"], DAY) == at(9)


def test_local_time_of_the_recipient():
    # 10:00 UTC is 05:00 in New York (EST): opens at 09:00 EST = 14:00 UTC
    assert next_opening(at(10), ["America/New_York"], DAY) == at(14)
    assert next_opening(at(10), ["Europe/Madrid"], DAY) is None


def test_every_zone_of_a_number_must_be_inside():
    # 08:30 UTC: 09:30 in Madrid, 08:30 in the Canaries: held until 09:00 Canaries = 09:00 UTC
    assert next_opening(at(8, 30), ["Europe/Madrid", "Atlantic/Canary"], DAY) == at(9)
    # 20:30 UTC: 21:30 Madrid (closed), 20:30 Canaries (open): held until both are open, 09:00 UTC
    assert next_opening(at(20, 30), ["Europe/Madrid", "Atlantic/Canary"], DAY) == at(9, day=29)


def test_a_window_over_midnight():
    assert next_opening(at(23), ["UTC"], NIGHT) is None
    assert next_opening(at(1), ["UTC"], NIGHT) is None
    assert next_opening(at(12), ["UTC"], NIGHT) == at(21)


def test_a_start_in_a_dst_gap_opens_at_the_first_minute_that_exists():
    # Madrid, 2026-03-29: 02:00 → 03:00. A 02:30 start that day opens at 03:00 local = 01:00 UTC
    window = parse_window(("02:30", "05:00"))
    assert next_opening(dt.datetime(2026, 3, 29, 0, 0, tzinfo=UTC), ["Europe/Madrid"], window) == \
        dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize("bad", [("09:00",), "09:00-21:00", ("9am", "9pm"), ("09:00", "09:00")])
def test_bad_windows_are_refused(bad):
    with pytest.raises(ValueError):
        parse_window(bad)


def test_naive_clock_is_refused():
    with pytest.raises(ValueError, match="aware"):
        next_opening(dt.datetime(2026, 1, 1, 12), ["UTC"], DAY)


@pytest.mark.parametrize(("raw", "region", "e164"), [
    ("+34 600 000 001", None, "+34600000001"),
    ("0034600000001", None, "+34600000001"),
    ("600-000-001", "ES", "+34600000001"),
    ("+1 (415) 555-2671", None, "+14155552671"),  # US numbers: fixed line or mobile, SMS-capable
])
def test_numbers_to_e164(raw, region, e164):
    assert to_e164(raw, region) == (e164, None)


@pytest.mark.parametrize(("raw", "region", "reason"), [
    ("600000001", None, "no country code"),
    ("+34 910 000 000", None, "not a mobile number (fixed line)"),
    ("+34 600", None, "not a valid phone number"),
    ("call me", "ES", "not a phone number"),
    ("", "ES", "empty phone number"),
])
def test_numbers_refused_with_a_reason(raw, region, reason):
    e164, why = to_e164(raw, region)
    assert e164 is None and reason in str(why)


def test_time_zones_of_a_number():
    assert time_zones("+34600000001") == ("Atlantic/Canary", "Europe/Madrid")
    assert time_zones("not a number") == ()
