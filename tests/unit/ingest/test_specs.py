"""Specs → JSON Schema (exportable), and the fast path agrees with ``jsonschema``."""

from __future__ import annotations

import jsonschema
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_instasent.ingest import IngestSchemaError, ProjectSpecs
from airflow_provider_instasent.ingest.specs import FieldSpec, normalise_type
from airflow_provider_instasent.ingest.validate import Validator
from tests.support.ingest_helpers import ORDER


def test_field_specs_from_api_shapes():
    attr = FieldSpec.from_attribute({"uid": "_client_tags", "dataType": "string", "multivalue": 50, "readOnly": False})
    assert (attr.multi, attr.read_only, attr.data_type) == (50, False, "string")
    assert FieldSpec.from_attribute({"uid": "x", "dataType": "date", "multivalue": 1, "readonly": True}).read_only
    param = FieldSpec.from_parameter({"parameter": "items", "dataType": "string", "multiValue": 10,
                                      "maxLength": None, "required": False})
    assert (param.name, param.multi, param.max_length, param.required) == ("items", 10, None, False)
    assert normalise_type("boolean") == "bool" and normalise_type("weird") == "any"


def test_event_json_schema(specs):
    schema = specs.json_schema("events", ORDER)
    assert schema["$schema"].endswith("2020-12/schema")
    params = schema["properties"]["_event_parameters"]
    assert params["required"] == ["order_id", "amount"] and params["additionalProperties"] is False
    assert params["properties"]["items"]["anyOf"][0] == {
        "type": "array", "maxItems": 10, "items": {"type": "string"}, "description": "dataType string"}
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = specs.validator("events", ORDER)
    good = {"_user_id": "u", "_event_id": "e", "_event_type": ORDER, "_event_date": "2024-01-01T10:00:00.000Z",
            "_event_parameters": {"order_id": "o", "amount": 1.5, "items": ["a"]}}
    assert list(validator.iter_errors(good)) == []
    bad = {**good, "_event_parameters": {"order_id": "x" * 65, "colour": "red"}}
    messages = sorted(e.message for e in validator.iter_errors(bad))
    assert any("'amount' is a required property" in m for m in messages)
    assert any("colour" in m for m in messages)


def test_contact_json_schema(specs):
    schema = specs.json_schema("contacts")
    assert schema["required"] == ["_user_id"]
    assert "_date_updated" not in schema["properties"]  # read-only: not writable
    validator = specs.validator("contacts")
    assert not list(validator.iter_errors({"_user_id": "u", "_accepts_marketing_sms": "1", "birthday": "2000-01-01"}))
    assert list(validator.iter_errors({"_user_id": "u", "_accepts_marketing_sms": True}))
    with pytest.raises(IngestSchemaError):
        specs.json_schema("events")


def test_specs_load_from_the_api_once(fake_client):
    calls = []

    class Client:
        def get_stream_attribute_specs(self, datasource=None):
            calls.append("attrs")
            return [{"uid": "_user_id", "dataType": "string"}]

        def get_stream_event_specs(self, datasource=None):
            calls.append("events")
            return [{"uid": ORDER}, {"uid": "page_view"}]

        def get_stream_event_parameter_specs(self, event_type, datasource=None):
            calls.append(event_type)
            return [{"parameter": "url", "dataType": "string", "required": True}]

    specs = ProjectSpecs.load(Client())  # type: ignore[arg-type]
    specs.event_type("page_view")
    specs.event_type("page_view")
    assert calls == ["attrs", "events", "page_view"]
    with pytest.raises(IngestSchemaError, match="unknown event type 'nope'"):
        specs.event_type("nope")


# -- differential: the vectorised validator and jsonschema accept exactly the same rows ----------
ids = st.one_of(st.none(), st.just(""), st.text(alphabet="ab -_é1", min_size=1, max_size=5).filter(str.strip))
strings = st.one_of(st.none(), st.text(alphabet="xyé€", max_size=5))
orders = st.one_of(st.none(), st.text(alphabet="oé", max_size=66))
amounts = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32))
lists = st.one_of(st.none(), st.lists(st.one_of(st.text(alphabet="s", max_size=2), st.none()), max_size=12))
rows = st.lists(st.tuples(ids, orders, amounts, strings, lists), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows)
def test_fast_path_agrees_with_jsonschema(specs, data):
    table = pa.table({
        "_user_id": pa.array([r[0] for r in data], pa.string()),
        "order_id": pa.array([r[1] for r in data], pa.string()),
        "amount": pa.array([r[2] for r in data], pa.float64()),
        "currency": pa.array([r[3] for r in data], pa.string()),
        "items": pa.array([r[4] for r in data], pa.list_(pa.string())),
    })
    fast = Validator(specs, "events", event_type=ORDER)(table).valid.tolist()
    validator = specs.validator("events", ORDER)
    for ok, (user, order, amount, currency, items) in zip(fast, data):
        params = {k: v for k, v in (("order_id", order), ("amount", amount), ("currency", currency),
                                    ("items", items)) if v is not None}
        item = {"_event_id": "e", "_event_type": ORDER, "_event_parameters": params}
        if user is not None:
            item["_user_id"] = user
        reference = not list(validator.iter_errors(item))
        assert ok == reference, (item, ok)
