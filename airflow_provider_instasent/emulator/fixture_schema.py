"""The shape of a fixture document as msgspec types, and errors that name the path of the bad field.

``msgspec.convert(document, FixtureDocument)`` checks the keys, their types and the allowed values
(data types, scopes, segment and token types) in one pass; this module turns its error into
one line that starts with the path (``projects[0].attributes[2].dataType: ...``). What the types
cannot say (a uid defined twice, references to projects, datasources and attributes, what a
datasource token or a dynamic segment needs) stays in ``fixture``.

Fields the emulator reads with ``str(...)`` or ``bool(...)`` (names, labels, flags) are ``Any``,
as they had no check before: a fixture that loaded keeps loading. Keys not listed are allowed,
except at the top level and in a project, where they were always errors. msgspec rather than
jsonschema: the same checks, and it imports in a fraction of the time (the emulator starts fast).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from typing import Annotated, Any, Literal

import msgspec

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
OptInt = int | None
_ALL = Literal["all", "*"]


def _one_of(values: Iterable[str]) -> Any:
    return Literal[tuple(sorted(values))]  # a Literal built at run time, from the fixture's constants


def _struct(name: str, required: dict[str, Any], optional: dict[str, Any], *, closed: bool = False) -> Any:
    fields: list[Any] = [*required.items(), *((key, kind, None) for key, kind in optional.items())]
    return msgspec.defstruct(name, fields, forbid_unknown_fields=closed)


@cache
def document_type() -> Any:
    """The msgspec type of a whole fixture document (built once)."""
    from .fixture import ALL_SCOPES, ATTRIBUTE_TYPES, GATED_SCOPES, PARAMETER_TYPES

    datasource = _struct("Datasource", {"uid": NonEmpty}, {"id": OptInt, "priority": OptInt})
    attribute = _struct(
        "Attribute",
        {"uid": NonEmpty},
        {"dataType": _one_of(ATTRIBUTE_TYPES), "multivalue": OptInt, "maxLength": OptInt},
    )
    parameter = _struct(
        "Parameter",
        {"parameter": NonEmpty},
        {"dataType": _one_of(PARAMETER_TYPES), "maxLength": OptInt, "multiValue": OptInt},
    )
    event_type = _struct("EventType", {"uid": NonEmpty}, {"parameters": list[parameter] | None})  # type: ignore[valid-type]
    segment = _struct("Segment", {"uid": NonEmpty}, {"type": Literal["static", "dynamic"]})
    entries = list[dict[str, Any]] | None
    seed = dict[str, list[Any]] | None
    project = _struct(
        "Project",
        {"uid": NonEmpty, "datasources": Annotated[list[datasource], msgspec.Meta(min_length=1)]},  # type: ignore[valid-type]
        {
            "id": OptInt,
            "mergingAttributes": list[NonEmpty],
            "attributes": list[attribute] | None,  # type: ignore[valid-type]
            "eventTypes": list[event_type] | None,  # type: ignore[valid-type]
            "segments": list[segment] | None,  # type: ignore[valid-type]
            "campaigns": entries,
            "automations": entries,
            "smsSenders": entries,
            "contacts": seed,
            "events": seed,
            **dict.fromkeys(("name", "description", "locale", "timezone", "acceptUnknownAttributes"), Any),
        },
        closed=True,
    )
    token = _struct(
        "Token",
        {"token": NonEmpty},
        {
            "type": Literal["product", "datasource"],
            "scopes": _ALL | list[_one_of([*ALL_SCOPES, "*"])],  # type: ignore[misc]
            "projects": _ALL | list[NonEmpty],
        },
    )
    plan = _struct("Plan", {}, {"allowedScopes": list[_one_of(GATED_SCOPES)]})  # type: ignore[misc]
    organization = _struct("Organization", {}, {"plan": plan | None})
    return _struct(
        "FixtureDocument",
        {"projects": Annotated[list[project], msgspec.Meta(min_length=1)]},  # type: ignore[valid-type]
        {"organization": organization | None, "tokens": list[token] | None},  # type: ignore[valid-type]
        closed=True,
    )


# --- errors ----------------------------------------------------------------------------------------
def _enum_rules() -> list[tuple[re.Pattern[str], str]]:
    from .fixture import ATTRIBUTE_TYPES, PARAMETER_TYPES

    return [
        (re.compile(r"\.scopes(\[\d+\])?$"), "unknown scope {value}"),
        (re.compile(r"allowedScopes\[\d+\]$"), "{value} is not a plan-gated scope"),
        (re.compile(r"attributes\[\d+\]\.dataType$"), f"{{value}} not in {sorted(ATTRIBUTE_TYPES)}"),
        (re.compile(r"parameters\[\d+\]\.dataType$"), f"{{value}} not in {sorted(PARAMETER_TYPES)}"),
        (re.compile(r"segments\[\d+\]\.type$"), "{value} is neither 'static' nor 'dynamic'"),
        (re.compile(r"tokens\[\d+\]\.type$"), "{value} is neither 'product' nor 'datasource'"),
        (re.compile(r"\.projects(\[\d+\])?$"), "expected 'all' or a list of project uids, got {value}"),
    ]


def describe(error: msgspec.ValidationError) -> str:
    """One line: the path of the bad field, then what is wrong with it."""
    message, sep, where = str(error).rpartition(" - at `")
    if not sep:
        message, where = str(error), "$`"
    path = where.rstrip("`").removeprefix("$").removeprefix(".") or "fixture"
    if message.startswith("Expected `array` of length >= 1"):
        what = "project" if path == "projects" else "datasource"
        return f"{path}: at least one {what} is required"
    if match := re.fullmatch(r"Object contains unknown field `(.+)`", message):
        return f"{path}: unknown keys [{match[1]!r}]"
    if match := re.fullmatch(r"Object missing required field `(.+)`", message):
        return f"{path}: missing required key {match[1]!r}"
    if message.startswith("Expected `str` of length >= 1"):
        return f"{path}: expected a non-empty string"
    if match := re.fullmatch(r"Invalid enum value (.+)", message):
        for pattern, text in _enum_rules():
            if pattern.search(path):
                return f"{path}: {text.format(value=match[1])}"
    return f"{path}: {message.replace('`', '')}"


def first_error(document: Any) -> str | None:
    """What is wrong with the shape of ``document`` (msgspec stops at the first problem), or ``None``."""
    try:
        msgspec.convert(document, document_type())
    except msgspec.ValidationError as exc:
        return describe(exc)
    return None
