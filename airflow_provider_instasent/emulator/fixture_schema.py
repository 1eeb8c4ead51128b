"""The JSON Schema of a fixture document, and errors that name the path of the bad field.

The schema checks the shape of the document: which keys exist, their types, the allowed
values (data types, scopes, segment and token types), and the keys a kind of entry needs.
What a schema cannot say (a uid defined twice, a token naming an unknown project or
datasource, a merging attribute that is not an attribute) stays in :mod:`.fixture`.

Fields the emulator reads with ``str(...)`` or ``bool(...)`` (names, labels, flags) have no
type here, as they had none before: a fixture that loaded keeps loading. ``x-message`` is this
module's own keyword: the message to give instead of jsonschema's when that part fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

NON_EMPTY = {"type": "string", "minLength": 1}
OPTIONAL_INT = {"type": ["integer", "null"]}


def _list_of(items: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": ["array", "null"], "items": items, **extra}


def _entry(required: Iterable[str], **properties: Any) -> dict[str, Any]:
    """An object with non-empty string ``required`` keys and the given typed ``properties``."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**dict.fromkeys(required, NON_EMPTY), **properties},
    }


def _enum(values: Iterable[str], message: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"enum": sorted(values)}
    if message:
        schema["x-message"] = message
    return schema


def _if_type(
    schema: Mapping[str, Any], kind: Mapping[str, Any], then: Mapping[str, Any], otherwise: Mapping[str, Any]
) -> dict[str, Any]:
    """``schema``, plus ``then`` for entries with a ``type`` matching ``kind``, else ``otherwise``."""
    is_kind = {"required": ["type"], "properties": {"type": kind}}
    return {**schema, "if": is_kind, "then": then, "else": otherwise}


def _build() -> dict[str, Any]:
    from .fixture import ALL_SCOPES, ATTRIBUTE_TYPES, GATED_SCOPES, PARAMETER_TYPES

    everything = [{"enum": ["all", "*"]}, {"const": ["*"]}]
    no_root = "a dynamic segment needs a filter root"
    # a segment is dynamic unless its type says otherwise (an unknown type is the enum's error)
    is_not_dynamic = {"not": {"const": "dynamic"}}
    segment = _if_type(_entry(["uid"], type=_enum(["static", "dynamic"])), is_not_dynamic, {}, {
        "required": ["root"], "x-message": no_root,
        "properties": {"root": {"type": "object", "x-message": no_root}},
    })
    token = _if_type(
        _entry(["token"], type=_enum(["product", "datasource"])),
        {"const": "datasource"},
        _entry(["project", "datasource"]),
        {"properties": {
            "scopes": {"anyOf": [*everything, {"type": "array", "items": _enum(ALL_SCOPES, "unknown scope {!r}")}]},
            "projects": {"anyOf": [*everything, {"type": "array", "items": NON_EMPTY}]},
        }},
    )
    project = _entry(
        ["uid"],
        id=OPTIONAL_INT,
        mergingAttributes={"type": "array", "items": NON_EMPTY},
        datasources={
            "type": "array",
            "minItems": 1,
            "x-message-minItems": "at least one datasource is required",
            "items": _entry(["uid"], id=OPTIONAL_INT, priority=OPTIONAL_INT),
        },
        attributes=_list_of(
            _entry(["uid"], dataType=_enum(ATTRIBUTE_TYPES), multivalue=OPTIONAL_INT, maxLength=OPTIONAL_INT)
        ),
        eventTypes=_list_of(
            _entry(
                ["uid"],
                parameters=_list_of(
                    _entry(
                        ["parameter"],
                        dataType=_enum(PARAMETER_TYPES),
                        maxLength=OPTIONAL_INT,
                        multiValue=OPTIONAL_INT,
                    )
                ),
            )
        ),
        segments=_list_of(segment),
        campaigns=_list_of({"type": "object"}),
        automations=_list_of({"type": "object"}),
        smsSenders=_list_of({"type": "object"}),
        contacts={"type": ["object", "null"], "additionalProperties": {"type": "array"}},
        events={"type": ["object", "null"], "additionalProperties": {"type": "array"}},
        # read with str()/bool(), as before: any value will do
        name={}, description={}, locale={}, timezone={}, acceptUnknownAttributes={},
    )
    project["additionalProperties"] = False
    plan = {"type": ["object", "null"], "properties": {
        "allowedScopes": {"type": "array", "items": _enum(GATED_SCOPES, "{!r} is not a plan-gated scope")},
    }}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Instasent emulator fixture",
        "type": "object",
        "additionalProperties": False,
        "required": ["projects"],
        "x-message-required": "at least one project is required (the key 'projects')",
        "properties": {
            "organization": {"type": ["object", "null"], "properties": {"plan": plan}},
            "projects": {
                "type": "array",
                "minItems": 1,
                "x-message-minItems": "at least one project is required",
                "items": project,
            },
            "tokens": _list_of(token),
        },
    }


# --- errors ----------------------------------------------------------------------------------------
_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer"}


def path_of(error: ValidationError) -> str:
    """``projects[0].datasources[1].uid``: where in the document ``error`` is."""
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "fixture"


def describe(error: ValidationError) -> str:
    """One line: the path of the bad field, then what is wrong with it."""
    where = path_of(error)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    keyword = error.validator
    custom = schema.get(f"x-message-{keyword}") or schema.get("x-message")
    if custom:
        return f"{where}: {custom.format(error.instance)}"
    if keyword == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"{where}: unknown keys {unknown} (expected {allowed})"
    if keyword == "required":
        missing = [key for key in schema.get("required", []) if key not in error.instance]
        return f"{where}: missing required key {missing[0]!r}" if missing else f"{where}: {error.message}"
    if keyword == "type":
        types = schema.get("type")
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in ([types] if isinstance(types, str) else types or []))
        return f"{where}: expected {wanted}, got {error.instance!r}"
    if keyword == "minLength":
        return f"{where}: expected a non-empty string, got {error.instance!r}"
    if keyword == "enum":
        return f"{where}: {error.instance!r} not in {schema.get('enum')}"
    return f"{where}: {error.message}"


@cache
def validator() -> Draft202012Validator:
    """The fixture schema's validator (built once)."""
    schema = _build()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def first_error(document: Any) -> str | None:
    """The message of the most relevant schema violation in ``document``, or ``None``."""
    error = best_match(validator().iter_errors(document))
    return None if error is None else describe(error)
