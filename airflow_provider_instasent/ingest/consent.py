"""Consent and subscription fields are written on purpose only, and their nulls never clear them.

``_accepts_marketing_*`` and ``_is_subscribed_*`` record what a person agreed to. A warehouse
column that happens to carry one of those names (a default of ``true``, a stale copy) would
re-subscribe people who opted out, so a run writes one only when the caller lists it in
``consent_fields``; any other such column is refused before anything is sent.

The null policy per field (``null_policy={"column": "leave" | "clear"}``): ``"leave"`` omits
a null (the stored value stays), ``"clear"`` sends it (the stored value is cleared). A field
without an entry follows ``nulls=``, except the consent fields, which default to ``"leave"``
whatever ``nulls`` says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from .errors import IngestSchemaError

CONSENT_PREFIXES = ("_accepts_marketing_", "_is_subscribed_")
NullChoice = Literal["leave", "clear"]


def is_consent_field(name: str) -> bool:
    return name.startswith(CONSENT_PREFIXES)


def check_options(consent_fields: Sequence[str] | None, null_policy: Mapping[str, str] | None) -> None:
    """The options themselves: only consent fields in ``consent_fields``, only leave/clear in ``null_policy``."""
    if isinstance(consent_fields, str):
        raise IngestSchemaError(f"consent_fields must be a list of field names, not the string {consent_fields!r}")
    other = [f for f in consent_fields or () if not is_consent_field(f)]
    if other:
        raise IngestSchemaError(f"consent_fields lists {', '.join(other)}: only _accepts_marketing_* and "
                                "_is_subscribed_* fields go there")
    bad = {k: v for k, v in (null_policy or {}).items() if v not in ("leave", "clear")}
    if bad:
        raise IngestSchemaError(f"null_policy values must be 'leave' or 'clear'; got {bad}")


def check_columns(names: Iterable[str], consent_fields: Sequence[str] | None) -> None:
    """Refuse a consent or subscription column the caller did not list in ``consent_fields``."""
    allowed = set(consent_fields or ())
    refused = [n for n in names if is_consent_field(n) and n not in allowed]
    if refused:
        raise IngestSchemaError(
            f"column(s) {', '.join(refused)} would write consent or subscription fields, which this run does not "
            f"map: nothing was sent. If the source really holds each person's consent, pass "
            f"consent_fields={refused!r}; otherwise drop the column (columns={{{refused[0]!r}: None}}). A "
            "subscription written by accident re-subscribes people who opted out.")


def kept_nulls(names: Iterable[str], nulls: str, null_policy: Mapping[str, str] | None) -> frozenset[str]:
    """The fields whose nulls are sent (cleared), by ``null_policy``, the consent default and ``nulls``."""
    policy = dict(null_policy or {})
    out = set()
    for name in names:
        choice = policy.get(name)
        if choice is None:
            choice = "leave" if is_consent_field(name) else ("clear" if nulls == "null" else "leave")
        if choice == "clear":
            out.add(name)
    return frozenset(out)


__all__ = ["CONSENT_PREFIXES", "check_columns", "check_options", "is_consent_field", "kept_nulls"]
