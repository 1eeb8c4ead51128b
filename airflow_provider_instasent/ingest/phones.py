"""Phone numbers to E.164 with the ``phonenumbers`` library (Google's libphonenumber).

One job: a raw phone value → ``+<country><number>``, or a reason why not. A number is never
guessed: without an international prefix it needs a ``default_region`` (ISO 3166 alpha-2, such
as ``"ES"``); a number that does not parse, is not a valid number of its country, or cannot
receive an SMS (a fixed line, a toll-free or premium number) is refused with the reason.
``time_zones`` gives the IANA zones of a number's country/area for quiet hours (docs/sms.md).

Used by the ingest validation (``phones="e164"``, through ``coerce.Coercer.contact_point``) and
the SMS engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import phonenumbers
import pyarrow as pa
from phonenumbers import PhoneNumberType
from phonenumbers import timezone as pn_timezone

from .rowerrors import RowErrors

#: number types that can receive an SMS (the US/Canada plan does not tell mobile from fixed)
MOBILE_CAPABLE = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})

_TYPE_NAMES = {v: k.lower().replace("_", " ") for k, v in vars(PhoneNumberType).items()
               if k.isupper() and isinstance(v, int)}


def check_region(default_region: str | None) -> str | None:
    """``default_region`` upper-cased, or a ``ValueError`` naming the problem."""
    if default_region is None or default_region == "":
        return None
    region = str(default_region).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"default_region {default_region!r} is not an ISO 3166 alpha-2 region phonenumbers knows "
                         "(for example 'ES', 'GB', 'US')")
    return region


@lru_cache(maxsize=65536)
def to_e164(value: str, default_region: str | None = None, *, mobile: bool = True) -> tuple[str | None, str | None]:
    """``(e164, None)`` for a good number, ``(None, reason)`` otherwise.

    Args:
        value: the number as written (``"+34 600 000 001"``, ``"0034600000001"``, ``"600000001"``).
        default_region: the region of numbers written without an international prefix.
        mobile: refuse numbers that cannot receive an SMS.
    """
    text = str(value).strip()
    if text.startswith("00"):  # the international prefix most of the world dials
        text = "+" + text[2:]
    if not text:
        return None, "empty phone number"
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            return None, (f"no country code in {value!r}: write it as +<country code><number> or set default_region"
                          if default_region is None else f"unknown country code in {value!r}")
        return None, f"not a phone number: {value!r} ({exc._msg})"
    if not phonenumbers.is_valid_number(number):
        return None, f"not a valid phone number of its country: {value!r}"
    kind = phonenumbers.number_type(number)
    if mobile and kind not in MOBILE_CAPABLE:
        return None, f"not a mobile number ({_TYPE_NAMES.get(kind, 'unknown type')}): {value!r} cannot receive an SMS"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


def normalize(values: Sequence[Any], default_region: str | None = None, *, mobile: bool = True
              ) -> tuple[list[str | None], list[str | None]]:
    """E.164 numbers and reasons for ``values``, position by position (a null stays null, no reason)."""
    out: list[str | None] = []
    reasons: list[str | None] = []
    for v in values:
        if v is None or (isinstance(v, float) and v != v):
            out.append(None)
            reasons.append(None)
            continue
        e164, reason = to_e164(str(v), default_region, mobile=mobile)
        out.append(e164)
        reasons.append(reason)
    return out, reasons


def e164_column(arr: pa.Array, default_region: str | None, name: str, errors: RowErrors) -> pa.Array:
    """A text column of phone numbers in E.164 (the ingest's ``phones="e164"``): a number that
    cannot be made E.164, or cannot receive an SMS, becomes a row error with its reason."""
    numbers, reasons = normalize(arr.to_pylist(), default_region)
    bad = [i for i, r in enumerate(reasons) if r is not None]
    if bad:
        errors.add(bad, name, [str(reasons[i]) for i in bad])
    return pa.array(numbers, pa.string())


@lru_cache(maxsize=65536)
def time_zones(e164: str) -> tuple[str, ...]:
    """The IANA time zones of a number's country or area (empty when unknown)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = pn_timezone.time_zones_for_number(number)
    return tuple(z for z in zones if z != "Etc/Unknown")


__all__ = ["MOBILE_CAPABLE", "check_region", "e164_column", "normalize", "time_zones", "to_e164"]
