"""Every spec ``dataType`` is checked at ingest as it is exported.

For each ``dataType`` the guides, ``api-facts.md``, the emulator and the test fixtures mention,
and every spelling of :mod:`airflow_provider_instasent.datatypes`, a valid value goes through
the ingest :class:`Validator` (what the loader sends), then, as the API returns it, through the
export conversion into the column type of the export schema. Both ends must agree: integers are
int64 both ways, numbers float64, booleans ``bool``, dates ``date32``, date-times
``timestamp[ms, UTC]``, strings ``string``, and multi-valued fields lists of the same.
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from typing import Any

import pyarrow as pa
import pytest

from airflow_provider_instasent.datatypes import (
    FALSE_STRINGS,
    KINDS,
    SPELLINGS,
    TRUE_STRINGS,
    data_kind,
    multivalue_limit,
    parse_bool,
)
from airflow_provider_instasent.emulator.fixture import ATTRIBUTE_TYPES, PARAMETER_TYPES, RESERVED_ATTRIBUTES
from airflow_provider_instasent.export.convert import InvalidValues, to_array
from airflow_provider_instasent.export.schema import audience_schema
from airflow_provider_instasent.ingest.specs import FieldSpec, ProjectSpecs, normalise_type
from airflow_provider_instasent.ingest.validate import Validator
from tests.support.export_fakes import SPECS as EXPORT_SPECS
from tests.support.ingest_helpers import ATTRIBUTES as INGEST_ATTRIBUTES
from tests.support.ingest_helpers import EVENT_TYPES as INGEST_EVENT_TYPES

UTC = dt.UTC

#: ``dataType`` values named by the guides and api-facts.md (section 5: "seen" are date, bool,
#: text, payload, string; "e.g." number/int/float/email/phone) and the spellings the loader
#: accepted before the types were one table (ingest's ``_TYPE_MAP`` and export's ``DATA_TYPES``).
DOCUMENTED = ("date", "bool", "text", "payload", "string", "number", "int", "float", "email", "phone")
EARLIER_SPELLINGS = (
    "string", "text", "payload", "url", "uri", "keyword", "enum", "select", "str", "country", "language",
    "locale", "tag", "tags", "number", "float", "double", "decimal", "money", "amount", "numeric", "int",
    "integer", "long", "bigint", "bool", "boolean", "email", "phone", "mobile", "phone_mobile", "date",
    "datetime", "date-time", "date_time", "timestamp", "time",
)
#: Types no table knows: checked as "any" at ingest, exported as text.
UNKNOWN = ("something-new", "blob")


def _fixture_types() -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("dataType"), str):
                found.add(node["dataType"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    text = resources.files("airflow_provider_instasent.emulator").joinpath("default_fixture.json").read_text()
    walk(json.loads(text))
    walk(EXPORT_SPECS)
    walk(INGEST_ATTRIBUTES)
    walk(INGEST_EVENT_TYPES)
    found |= ATTRIBUTE_TYPES | PARAMETER_TYPES | {t for _, t, *_ in RESERVED_ATTRIBUTES}
    return found


ALL_TYPES = sorted(set(DOCUMENTED) | set(EARLIER_SPELLINGS) | set(KINDS) | set(UNKNOWN) | _fixture_types())

#: Per check kind: the export column type (independent of the module under test), a valid
#: input, and the value the export holds after the round trip.
EXPECTED: dict[str, tuple[pa.DataType, Any, Any]] = {
    "string": (pa.string(), "abc", "abc"),
    "any": (pa.string(), "abc", "abc"),
    "email": (pa.string(), "ana@example.com", "ana@example.com"),
    "phone": (pa.string(), "+34600000000", "+34600000000"),
    "number": (pa.float64(), 12.5, 12.5),
    "integer": (pa.int64(), 42, 42),
    "bool": (pa.bool_(), True, True),
    "date": (pa.date32(), "2024-03-01", dt.date(2024, 3, 1)),
    "datetime": (pa.timestamp("ms", tz="UTC"), "2024-03-01T08:00:00.123+00:00",
                 dt.datetime(2024, 3, 1, 8, 0, 0, 123000, tzinfo=UTC)),
}
#: The Arrow type the ingest path itself produces where it is the export's (numbers).
INGEST_ARROW = {"number": pa.float64(), "integer": pa.int64()}


def _ingest(data_type: str, value: Any, multivalue: int = 1) -> tuple[pa.Array, list[str]]:
    specs = ProjectSpecs.from_specs([
        {"uid": "_user_id", "dataType": "string", "multivalue": 1},
        {"uid": "f", "dataType": data_type, "multivalue": multivalue},
    ])
    out = Validator(specs, "contacts")(pa.table({"_user_id": ["u1"], "f": [value]}))
    _, _, reasons = out.errors.records()
    return out.groups[0].top["f"], reasons


def _export(data_type: str, json_value: Any, multivalue: int = 1) -> tuple[pa.DataType, Any, dict[str, int]]:
    schema = audience_schema([{"uid": "f", "dataType": data_type, "multivalue": multivalue}])
    column_type = schema.arrow.field("f").type
    invalid = InvalidValues()
    arr = to_array([json_value], column_type, "f", invalid)
    assert arr.type == column_type
    return column_type, arr.to_pylist()[0], invalid.as_dict()


def test_the_list_of_types_is_complete():
    assert {"time", "long", "money", "date-time", "mobile", "uri", "keyword", "enum"} <= set(ALL_TYPES)
    assert set(KINDS) == {s for names in SPELLINGS.values() for s in names}
    assert set(SPELLINGS) == set(EXPECTED)


@pytest.mark.parametrize("data_type", ALL_TYPES)
def test_ingest_and_export_agree(data_type):
    kind = normalise_type(data_type)
    assert kind == data_kind(data_type) == data_kind(f"  {data_type.upper()} ")
    expected_type, sample, expected = EXPECTED[kind]

    sent, reasons = _ingest(data_type, sample)
    assert reasons == [], f"{data_type} ({kind}): a valid {sample!r} is rejected at ingest"
    if kind in INGEST_ARROW:
        assert sent.type == INGEST_ARROW[kind]

    json_value = sent.to_pylist()[0]  # what the loader sends, as the API returns it
    column_type, exported, invalid = _export(data_type, json_value)
    assert column_type == expected_type, f"{data_type} ({kind}) is exported as {column_type}"
    assert invalid == {}
    assert exported == expected
    assert type(exported) is type(expected)


@pytest.mark.parametrize("data_type", ALL_TYPES)
def test_multivalued_fields_agree(data_type):
    kind = normalise_type(data_type)
    expected_type, sample, expected = EXPECTED[kind]
    sent, reasons = _ingest(data_type, [sample, sample], multivalue=3)
    assert reasons == []
    assert pa.types.is_list(sent.type) or pa.types.is_large_list(sent.type)
    if kind in INGEST_ARROW:
        assert sent.type.value_type == INGEST_ARROW[kind]
    column_type, exported, invalid = _export(data_type, sent.to_pylist()[0], multivalue=3)
    assert column_type == pa.list_(expected_type)
    assert invalid == {} and exported == [expected, expected]


def test_time_is_a_time_of_day_string():
    sent, reasons = _ingest("time", "14:30:00")
    assert reasons == [] and sent.to_pylist() == ["14:30:00"]
    assert _export("time", "14:30:00") == (pa.string(), "14:30:00", {})


@pytest.mark.parametrize(("spec", "limit"), [
    ({"multivalue": 50}, 50), ({"multiValue": 10}, 10), ({"multivalue": "3"}, 3), ({"multivalue": 3.0}, 3),
    ({"multivalue": 1}, 0), ({"multivalue": 0}, 0), ({"multivalue": True}, 0), ({"multivalue": None}, 0),
    ({"multivalue": "x"}, 0), ({"multivalue": float("inf")}, 0), ({"multivalue": float("nan")}, 0), ({}, 0),
    ({"multivalue": None, "multiValue": 4}, 4),
])
def test_multivalue_is_parsed_once_for_ingest_and_export(spec, limit):
    assert multivalue_limit(spec) == limit
    assert FieldSpec.from_attribute({"uid": "a", "dataType": "string", **spec}).multi == limit
    assert FieldSpec.from_parameter({"parameter": "p", "dataType": "string", **spec}).multi == limit
    column_type = audience_schema([{"uid": "a", "dataType": "string", **spec}]).arrow.field("a").type
    assert column_type == (pa.list_(pa.string()) if limit else pa.string())


@pytest.mark.parametrize("text", sorted(TRUE_STRINGS | FALSE_STRINGS))
def test_boolean_spellings_are_the_same_at_ingest_and_export(text):
    value = text in TRUE_STRINGS
    for variant in (text, text.upper(), f" {text} "):
        assert parse_bool(variant) is value
        sent, reasons = _ingest("bool", variant)
        assert reasons == [] and sent.to_pylist() == ["1" if value else "0"]
        assert _export("bool", variant) == (pa.bool_(), value, {})


@pytest.mark.parametrize("value", ["maybe", "2", "", "  ", "yess"])
def test_not_booleans(value):
    assert parse_bool(value) is None
    _, reasons = _ingest("bool", value)
    assert reasons and reasons[0].startswith("not a boolean")
    _, exported, invalid = _export("bool", value)
    assert exported is None
    assert invalid == ({} if not value.strip() else {"f": 1})  # blank is null in an export


def test_parse_bool_non_strings():
    assert [parse_bool(v) for v in (True, False, 1, 0, 1.0, 0.0)] == [True, False, True, False, True, False]
    assert [parse_bool(v) for v in (None, 2, -1, 0.5, float("nan"), [], b"1")] == [None] * 7
