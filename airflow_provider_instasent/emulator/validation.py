"""Validation of ingest items against the attribute and event-parameter specs.

Every function returns *all* the problems of an item (a field name mapped to its reasons),
never only the first one. Field names of event parameters are ``_event_parameters.<name>``
and those of an embedded contact ``_user_data.<key>``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from .fixture import AttributeSpec, ProjectConfig

Errors = dict[str, list[str]]

MAX_ID_LENGTH = 255
_MISSING: Any = object()
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PHONE_RE = re.compile(r"^\+?\d{6,15}$")
_PHONE_PUNCTUATION = " -().\t/"
EVENT_KEYS = frozenset(
    {"_user_id", "_event_id", "_event_type", "_event_date", "_event_parameters", "_user_data"}
)
BOOL_REASON = 'expected a boolean: "1", "0", "true", "false", true, false, 1, 0 or null'
# A number sent as text, the way Instasent's own integrations send every value ("120", "49.90"):
# an optional sign, digits with an optional decimal part, an optional exponent; no spaces,
# no thousands separators, no decimal comma, no "NaN"/"Infinity".
_NUMERIC_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_BOOL_STRINGS = {"1": True, "0": False, "true": True, "false": False}


# --- normalisation (also used by merging and phone/email search) ---------------------------
def normalize_phone(value: str) -> str:
    """Strip spaces, dashes, dots and parentheses; a leading ``00`` becomes ``+``."""
    s = value.strip()
    if not (s.isdigit() or (s[:1] == "+" and s[1:].isdigit())):  # else nothing to strip
        for ch in _PHONE_PUNCTUATION:  # str.translate with a table is slower (a lookup per character)
            if ch in s:
                s = s.replace(ch, "")
    if s.startswith("00"):
        s = "+" + s[2:]
    return s


def phone_key(value: Any) -> str:
    """Comparable form of a phone number: normalised, without the leading ``+``."""
    return normalize_phone(str(value)).lstrip("+")


def normalize_email(value: Any) -> str:
    return str(value).strip().lower()


@functools.lru_cache(maxsize=4096)
def iso_ms(ts: float) -> str:
    """``2024-01-01T10:00:00.000Z`` for a Unix timestamp."""
    dt = datetime.fromtimestamp(ts, UTC)
    return f"{dt.year:04d}-{dt:%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def _canonical_utc(value: Any) -> bool:
    """Whether ``value`` reads ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (``iso_ms``'s form), by its shape."""
    return (
        type(value) is str
        and len(value) == 24
        and value[23] == "Z"
        and value[19] == "."
        and value[10] == "T"
        and value[20:23].isdigit()
    )


def parse_datetime(value: Any, *, require_tz: bool) -> float | None:
    """Unix timestamp of an ISO 8601 datetime string, or ``None`` if it is not one."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:
        if require_tz:
            return None
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _add(errors: Errors, name: str, reason: str) -> None:
    errors.setdefault(name, []).append(reason)


def _check_into(
    out: dict[str, Any],
    key: str,
    value: Any,
    errors: Errors,
    name: str,
    data_type: str,
    max_length: int | None,
    multivalue: int,
) -> None:
    """``out[key]`` = the checked ``value``, or its reasons under ``errors[name]``."""
    if multivalue <= 1:  # the hot path of a load (one call per value): a plain string or number
        vt = type(value)
        if (vt is str and data_type in _STRINGY and (max_length is None or len(value) <= max_length)) or (
            data_type == "number" and (vt is int or (vt is float and math.isfinite(value)))
        ):
            out[key] = value
            return
    nv, reasons = check_multi(data_type, value, max_length, multivalue)
    if reasons:
        errors.setdefault(name, []).extend(reasons)
    else:
        out[key] = nv


# --- scalar values ---------------------------------------------------------------------------
def check_scalar(data_type: str, value: Any, max_length: int | None) -> tuple[Any, str | None]:
    """``(normalised value, None)`` or ``(None, reason)`` for one non-null value."""
    if isinstance(value, (dict, list)):
        return None, "expected a single value, got " + (
            "an object" if isinstance(value, dict) else "an array"
        )
    if data_type in ("string", "text", "payload"):
        if not isinstance(value, str):
            return None, "expected a string"
        if max_length is not None and len(value) > max_length:
            return None, f"longer than {max_length} characters"
        return value, None
    if data_type == "number":
        if isinstance(value, str):
            return _number_from_text(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None, "expected a number"
        if isinstance(value, float) and not math.isfinite(value):
            return None, "expected a finite number"
        return value, None
    if data_type == "bool":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, int) and value in (0, 1):
            return bool(value), None
        if isinstance(value, str):
            flag = _BOOL_STRINGS.get(value.lower())
            if flag is not None:
                return flag, None
        return None, BOOL_REASON
    if data_type == "date":
        if not isinstance(value, str) or not _DATE_RE.match(value):
            return None, "expected a date YYYY-MM-DD"
        try:
            date.fromisoformat(value)
        except ValueError:
            return None, "expected a date YYYY-MM-DD"
        return value, None
    if data_type == "datetime":
        if parse_datetime(value, require_tz=False) is None:
            return None, "expected an ISO 8601 datetime"
        return value, None
    if data_type == "email":
        if not isinstance(value, str) or not _EMAIL_RE.match(value.strip()) or len(value) > MAX_ID_LENGTH:
            return None, "invalid email address"
        return value.strip(), None
    if data_type == "phone":
        if not isinstance(value, str) or not _PHONE_RE.match(normalize_phone(value)):
            return None, "invalid phone number"
        return value.strip(), None
    return value, None


def _number_from_text(value: str) -> tuple[Any, str | None]:
    """``"120"`` -> ``120``, ``"49.90"`` -> ``49.9``; anything else is not a number."""
    if not _NUMERIC_RE.match(value):
        return None, "expected a number"
    if "." not in value and "e" not in value and "E" not in value:
        return int(value), None
    f = float(value)
    if not math.isfinite(f):
        return None, "expected a finite number"
    return f, None


_STRINGY = frozenset({"string", "text", "payload"})


def check_multi(data_type: str, value: Any, max_length: int | None, multi: int) -> tuple[Any, list[str]]:
    """Validate a value against a (possibly multi-valued) spec; ``multi > 1`` takes an array.

    A single non-null scalar for a multi-valued field is read as a one-value array (n8n's
    free-text field sends one string; see docs/emulator.md, "Value forms").
    """
    if multi <= 1:  # fast paths for the common scalar cases
        vt = type(value)
        if vt is str and data_type in _STRINGY and (max_length is None or len(value) <= max_length):
            return value, []
        if data_type == "number" and (vt is int or (vt is float and math.isfinite(value))):
            return value, []
    if multi > 1:
        if isinstance(value, dict):
            return None, [f"expected an array of at most {multi} values, got an object"]
        if not isinstance(value, list):
            value = [value]
        if (data_type in _STRINGY and len(value) <= multi
                and all(type(v) is str and (max_length is None or len(v) <= max_length) for v in value)):
            return list(value), []  # the common case: an array of plain strings
        reasons: list[str] = []
        if len(value) > multi:
            reasons.append(f"more than {multi} values ({len(value)})")
        out: list[Any] = []
        for i, v in enumerate(value):
            if v is None:
                reasons.append(f"value {i}: null is not allowed inside an array")
                continue
            nv, reason = check_scalar(data_type, v, max_length)
            if reason:
                reasons.append(f"value {i}: {reason}")
            else:
                out.append(nv)
        return (None, reasons) if reasons else (out, [])
    nv, reason = check_scalar(data_type, value, max_length)
    return (None, [reason]) if reason else (nv, [])


def check_id(value: Any) -> tuple[str | None, str | None]:
    """``_user_id`` / ``_event_id``: required, non-empty string (numbers are stringified), <= 255."""
    if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and not value[0].isspace() and value.strip():
        return value, None
    if value is _MISSING or value is None:
        return None, "required"
    if isinstance(value, bool):
        return None, "expected a non-empty string"
    if isinstance(value, int):
        value = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None, "expected a non-empty string"
        value = str(int(value)) if value.is_integer() else repr(value)
    if not isinstance(value, str):
        return None, "expected a non-empty string"
    if not value.strip():
        return None, "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return None, f"longer than {MAX_ID_LENGTH} characters"
    return value, None


# --- items -------------------------------------------------------------------------------------
def check_attributes(
    item: dict[str, Any], project: ProjectConfig, errors: Errors, prefix: str = ""
) -> dict[str, Any]:
    """Validate every key but ``_user_id`` of a contact; return the normalised changes."""
    specs = project.attributes
    clean: dict[str, Any] = {}
    for key, value in item.items():
        if key == "_user_id":
            continue
        spec: AttributeSpec | None = specs.get(key)
        name = prefix + key
        if spec is None:
            if project.accept_unknown_attributes and not key.startswith("_"):
                if isinstance(value, dict):
                    _add(errors, name, "expected a single value, got an object")
                else:
                    clean[key] = value
            else:
                _add(errors, name, "unknown attribute")
            continue
        if spec.readonly:
            _add(errors, name, "read-only attribute")
            continue
        if value is None:
            clean[key] = None
            continue
        _check_into(clean, key, value, errors, name, spec.data_type, spec.max_length, spec.multivalue)
    return clean


@dataclass(slots=True)  # treated as immutable; not frozen because frozen __init__ is slow
class ContactItem:
    """``changes``: the contact's attributes as sent, ``_user_id`` first (null: unset); the
    store takes the dict over as the new contact's data. ``nulls``: whether any change is null
    (known while validating; a scan of the values would cost a write 2-3%)."""

    user_id: str
    changes: dict[str, Any]
    nulls: bool


def validate_contact(item: Any, project: ProjectConfig) -> tuple[ContactItem | None, Errors]:
    errors: Errors = {}
    if not isinstance(item, dict):
        return None, {"item": ["expected an object"]}
    user_id, reason = check_id(item.get("_user_id", _MISSING))
    if reason:
        _add(errors, "_user_id", reason)
    changes = check_attributes(item, project, errors)
    if errors or user_id is None:
        return None, errors
    return ContactItem(user_id, {"_user_id": user_id, **changes}, None in changes.values()), errors


@dataclass(slots=True)  # treated as immutable; not frozen because frozen __init__ is slow
class EventItem:
    user_id: str
    event_id: str
    event_type: str
    date: float
    date_iso: str
    parameters: dict[str, Any]
    user_data: ContactItem | None


def validate_event(
    item: Any, project: ProjectConfig, received_at: float, received_iso: str | None = None
) -> tuple[EventItem | None, Errors]:
    errors: Errors = {}
    if not isinstance(item, dict):
        return None, {"item": ["expected an object"]}
    if not EVENT_KEYS.issuperset(item):
        for key in item:
            if key not in EVENT_KEYS:
                _add(errors, key, "unknown event field")
    user_id, reason = check_id(item.get("_user_id", _MISSING))
    if reason:
        _add(errors, "_user_id", reason)
    event_id, reason = check_id(item.get("_event_id", _MISSING))
    if reason:
        _add(errors, "_event_id", reason)

    event_type = item.get("_event_type", _MISSING)
    spec = None
    if event_type is _MISSING or event_type is None:
        _add(errors, "_event_type", "required")
    elif not isinstance(event_type, str):
        _add(errors, "_event_type", "expected a string")
    else:
        spec = project.event_types.get(event_type)
        if spec is None:
            _add(errors, "_event_type", f"unknown event type '{event_type}'")

    raw_date = item.get("_event_date")
    date_iso = received_iso
    if raw_date is None:
        ts = received_at
    else:
        # Already in the form the API prints (``2024-01-01T10:00:00.000Z``, what the package and
        # most clients send): keep the string instead of formatting the timestamp back.
        date_iso = raw_date if _canonical_utc(raw_date) else None
        parsed = parse_datetime(raw_date, require_tz=True)
        if parsed is None:
            _add(errors, "_event_date", "expected an ISO 8601 datetime with a timezone (Z or +HH:MM)")
            ts = received_at
        else:
            ts = parsed

    params_raw = item.get("_event_parameters", {})
    params: dict[str, Any] = {}
    if params_raw is None:
        params_raw = {}
    if not isinstance(params_raw, dict):
        _add(errors, "_event_parameters", "expected an object")
    elif spec is not None:
        pmap = spec.param_map
        for name, value in params_raw.items():
            p = pmap.get(name)
            field_name = "_event_parameters." + name
            if p is None:
                _add(errors, field_name, "unknown parameter")
                continue
            if value is None:
                if p.required:
                    _add(errors, field_name, "required")
                continue
            _check_into(params, name, value, errors, field_name, p.data_type, p.max_length, p.multi_value)
        for p in spec.parameters:
            if p.required and p.parameter not in params_raw:
                _add(errors, "_event_parameters." + p.parameter, "required")

    user_changes: dict[str, Any] | None = None
    raw_user = item.get("_user_data")
    if raw_user is not None:
        if not isinstance(raw_user, dict):
            _add(errors, "_user_data", "expected an object")
        else:
            if "_user_id" in raw_user:
                inner, reason = check_id(raw_user["_user_id"])
                if reason or inner != user_id:
                    _add(errors, "_user_data._user_id", "must equal the event's _user_id")
            user_changes = check_attributes(raw_user, project, errors, prefix="_user_data.")

    if errors or user_id is None or event_id is None or spec is None:
        return None, errors
    user_data = None
    if user_changes is not None:
        user_data = ContactItem(user_id, {"_user_id": user_id, **user_changes}, None in user_changes.values())
    return EventItem(user_id, event_id, spec.uid, ts, date_iso or iso_ms(ts), params, user_data), errors


def error_text(errors: Errors) -> str:
    """``"<field>: <reason>; <field2>: <reason2>"``."""
    return "; ".join(f"{name}: {reason}" for name, reasons in errors.items() for reason in reasons)


# --- the compiled validator (the hot path of a load) --------------------------------------------
_FAIL: Any = object()  # what a field checker answers for a value with errors
_NO_LIMIT = 1 << 62
_from_iso = datetime.fromisoformat
Checker = Callable[[Any], Any]


def field_checker(data_type: str, max_length: int | None, multi: int, null: Any = None) -> Checker:
    """``check(value)``: the value ``_check_into`` would store, ``null`` for null, or ``_FAIL``.

    The common forms of a load (a plain string, a finite number, an email, a phone, a date, an
    array of strings) are checked inline; every other value goes to ``check_multi``.
    """
    limit = _NO_LIMIT if max_length is None else max_length

    def general(value: Any) -> Any:
        if value is None:
            return null
        nv, reasons = check_multi(data_type, value, max_length, multi)
        return _FAIL if reasons else nv

    if multi > 1:
        if data_type not in _STRINGY:
            return general

        def strings(value: Any) -> Any:
            if type(value) is list and len(value) <= multi:
                for v in value:
                    if type(v) is not str or len(v) > limit:
                        return general(value)
                return list(value)
            return general(value)

        return strings
    if data_type in _STRINGY:
        return lambda value: value if type(value) is str and len(value) <= limit else general(value)
    if data_type == "number":

        def number(value: Any) -> Any:
            vt = type(value)
            return value if vt is int or (vt is float and math.isfinite(value)) else general(value)

        return number
    if data_type == "email":

        def email(value: Any) -> Any:
            if type(value) is str and len(value) <= MAX_ID_LENGTH:
                stripped = value.strip()
                if _EMAIL_RE.match(stripped):
                    return stripped
            return general(value)

        return email
    if data_type == "phone":

        def phone(value: Any) -> Any:
            if type(value) is str and _PHONE_RE.match(normalize_phone(value)):
                return value.strip()
            return general(value)

        return phone
    if data_type == "date":

        def a_date(value: Any) -> Any:
            if type(value) is str and _DATE_RE.match(value):
                try:
                    date.fromisoformat(value)
                except ValueError:
                    return _FAIL
                return value
            return general(value)

        return a_date
    return general


def _reject(value: Any) -> Any:
    return _FAIL


_ABSENT: Any = object()  # what a parameter checker answers for null: not stored
_NO_ERRORS: Errors = {}  # the errors of every valid item of a push (read, never written)


def _as_is(value: Any) -> Any:
    return value


class Validator:
    """``validate_contact`` and ``validate_event`` for one project, with the specs compiled once.

    Each item first takes a fast path with a checker per field (``field_checker``); an item with
    an error of any kind goes to ``validate_contact`` / ``validate_event`` instead, so the errors
    and their wording are theirs, and a valid item comes out the same either way
    (``tests/integration/emulator/test_store_paths.py`` compares the two on every form).
    """

    def __init__(self, project: ProjectConfig) -> None:
        self.project = project
        self.accept_unknown = project.accept_unknown_attributes
        self.attributes: dict[str, Checker] = {
            key: _reject if spec.readonly else field_checker(spec.data_type, spec.max_length, spec.multivalue)
            for key, spec in project.attributes.items()
        }
        self.attributes["_user_id"] = _as_is  # checked by the caller, and first in the changes already
        # event type -> (uid, {parameter: checker}, required parameters)
        self.event_types: dict[str, tuple[str, dict[str, Checker], tuple[str, ...]]] = {
            uid: (
                spec.uid,
                {
                    p.parameter: field_checker(
                        p.data_type, p.max_length, p.multi_value, null=_FAIL if p.required else _ABSENT
                    )
                    for p in spec.parameters
                },
                tuple(p.parameter for p in spec.parameters if p.required),
            )
            for uid, spec in project.event_types.items()
        }

    def _attributes(self, item: dict[str, Any], user_id: str) -> ContactItem | None:
        """The contact of an item (its attributes, ``_user_id`` first) without errors, else None."""
        table = self.attributes
        clean: dict[str, Any] = {"_user_id": user_id}
        nulls = False
        for key, value in item.items():  # a loop: a comprehension costs a function call in 3.11
            check = table.get(key)
            if check is None:
                if self.accept_unknown and not key.startswith("_") and not isinstance(value, dict):
                    clean[key] = value
                    nulls = nulls or value is None
                    continue
                return None
            value = check(value)
            if value is _FAIL:
                return None
            if value is None:
                nulls = True
            clean[key] = value
        return ContactItem(user_id, clean, nulls)

    def contact(self, item: Any) -> tuple[ContactItem | None, Errors]:
        """What ``validate_contact(item, project)`` returns."""
        return self.contacts((item,))[0]

    def contacts(self, items: Iterable[Any]) -> list[tuple[ContactItem | None, Errors]]:
        """``contact`` of each item, in one loop (the push's)."""
        attributes, project = self._attributes, self.project
        out: list[tuple[ContactItem | None, Errors]] = []
        for item in items:
            if type(item) is dict:
                user_id = item.get("_user_id")
                if type(user_id) is str and 0 < len(user_id) <= MAX_ID_LENGTH and not user_id[0].isspace():
                    contact = attributes(item, user_id)
                    if contact is not None:
                        out.append((contact, _NO_ERRORS))
                        continue
            out.append(validate_contact(item, project))
        return out

    def event(self, item: Any, received_at: float, received_iso: str) -> tuple[EventItem | None, Errors]:
        """What ``validate_event(item, project, received_at, received_iso)`` returns."""
        return self.events((item,), received_at, received_iso)[0]

    def events(
        self, items: Iterable[Any], received_at: float, received_iso: str
    ) -> list[tuple[EventItem | None, Errors]]:
        """``event`` of each item, in one loop (the push's; a valid item's errors: one shared, empty)."""
        fast = self._event
        out: list[tuple[EventItem | None, Errors]] = []
        for item in items:
            found = fast(item, received_at, received_iso)
            out.append(
                (found, _NO_ERRORS) if found is not None
                else validate_event(item, self.project, received_at, received_iso)
            )
        return out

    def _event(self, item: Any, received_at: float, received_iso: str) -> EventItem | None:
        """The item of a valid event, else None."""
        if type(item) is not dict:
            return None
        user_id = item.get("_user_id")
        event_id = item.get("_event_id")
        if not (type(user_id) is str and 0 < len(user_id) <= MAX_ID_LENGTH and not user_id[0].isspace()):
            return None
        if not (type(event_id) is str and 0 < len(event_id) <= MAX_ID_LENGTH and not event_id[0].isspace()):
            return None
        event_type = item.get("_event_type")
        compiled = self.event_types.get(event_type) if type(event_type) is str else None
        if compiled is None:
            return None
        # No key outside EVENT_KEYS: the three above and the optional ones present are all of them
        # (counted: EVENT_KEYS.issuperset(item) makes an iterator, one more object for the collector).
        if len(item) != 3 + ("_event_date" in item) + ("_event_parameters" in item) + ("_user_data" in item):
            return None
        uid, table, required = compiled
        raw_date = item.get("_event_date")
        if raw_date is None:
            ts = received_at
            date_iso = received_iso
        elif _canonical_utc(raw_date):  # iso_ms's form, what the package and most clients send
            try:  # what parse_datetime does, without its checks
                ts = _from_iso(raw_date).timestamp()
            except ValueError:
                return None
            date_iso = raw_date
        else:
            parsed = parse_datetime(raw_date, require_tz=True)
            if parsed is None:
                return None
            ts = parsed
            date_iso = raw_date if _canonical_utc(raw_date) else iso_ms(ts)
        raw = item.get("_event_parameters")
        if raw is None:
            raw = {}
        elif type(raw) is not dict:
            return None
        params: dict[str, Any] = {}
        for name, value in raw.items():
            check = table.get(name)
            if check is None:  # an unknown parameter
                return None
            value = check(value)
            if value is _FAIL or value is _ABSENT:
                if value is _FAIL:
                    return None
                continue  # a null optional parameter is not stored
            params[name] = value
        for name in required:  # a loop: a keys view would be one more object for the collector
            if name not in raw:
                return None
        user_data: ContactItem | None = None
        raw_user = item.get("_user_data")
        if raw_user is not None:
            if type(raw_user) is not dict:
                return None
            inner = raw_user.get("_user_id", user_id)
            if inner is not user_id and inner != user_id:
                return None
            user_data = self._attributes(raw_user, user_id)
            if user_data is None:
                return None
        return EventItem(user_id, event_id, uid, ts, date_iso, params, user_data)
