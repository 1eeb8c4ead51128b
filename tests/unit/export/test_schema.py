"""The spec-derived Arrow schema, identifiers and DDL."""

from __future__ import annotations

import pyarrow as pa
import pytest

from airflow_provider_instasent.client.errors import InstasentConfigError
from airflow_provider_instasent.export.schema import TIMESTAMP, audience_schema, events_schema
from airflow_provider_instasent.io.sql import TableName, dialect_named, quote_identifier
from tests.support.export_fakes import SPECS


def test_audience_schema_maps_spec_types():
    specs = [
        {"uid": "s", "dataType": "string"}, {"uid": "t", "dataType": "text"}, {"uid": "e", "dataType": "email"},
        {"uid": "p", "dataType": "phone"}, {"uid": "n", "dataType": "number"}, {"uid": "i", "dataType": "integer"},
        {"uid": "d", "dataType": "date"}, {"uid": "b", "dataType": "bool"}, {"uid": "dt", "dataType": "datetime"},
        {"uid": "m", "dataType": "string", "multivalue": 50}, {"uid": "mn", "dataType": "number", "multivalue": 3},
        {"uid": "one", "dataType": "string", "multivalue": 1}, {"uid": "x", "dataType": "something-new"},
        {"uid": "payload", "dataType": "payload"},
    ]
    schema = audience_schema(specs).arrow
    types = {f.name: f.type for f in schema}
    assert types["audience_id"] == pa.string()
    assert types["created_at"] == TIMESTAMP and types["updated_at"] == TIMESTAMP
    assert types["s"] == types["t"] == types["e"] == types["p"] == types["x"] == types["payload"] == pa.string()
    assert types["n"] == pa.float64()
    assert types["i"] == pa.int64()
    assert types["d"] == pa.date32()
    assert types["b"] == pa.bool_()
    assert types["dt"] == pa.timestamp("ms", tz="UTC")
    assert types["m"] == pa.list_(pa.string())
    assert types["mn"] == pa.list_(pa.float64())
    assert types["one"] == pa.string()
    # source tracking always present, always list<string>, last
    assert schema.names[-2:] == ["_datasources", "_ds_contact_ids"]
    assert types["_datasources"] == types["_ds_contact_ids"] == pa.list_(pa.string())
    assert schema.field("n").metadata[b"instasent.dataType"] == b"number"


def test_schema_is_stable_and_keeps_source_tracking():
    a = audience_schema(SPECS).arrow
    b = audience_schema(list(SPECS)).arrow
    assert a.equals(b, check_metadata=True)
    assert a.names[:3] == ["audience_id", "created_at", "updated_at"]
    assert a.names.count("_datasources") == 1


def test_attributes_restrict_columns_and_unknown_is_refused():
    schema = audience_schema(SPECS, ["plan", "_email"]).arrow
    assert schema.names == ["audience_id", "created_at", "updated_at", "plan", "_email", "_datasources",
                            "_ds_contact_ids"]
    with pytest.raises(InstasentConfigError, match="nope"):
        audience_schema(SPECS, ["plan", "nope"])


def test_disabled_specs_skipped_and_collisions_renamed():
    specs = [{"uid": "audience_id", "dataType": "string"}, {"uid": "Plan", "dataType": "string"},
             {"uid": "plan", "dataType": "number"}, {"uid": "gone", "dataType": "string", "enabled": False},
             {"uid": "plan", "dataType": "date"}]  # duplicate uid: first wins
    schema = audience_schema(specs)
    names = schema.names
    assert "gone" not in names
    assert "attr_audience_id" in names and names.count("audience_id") == 1
    assert "Plan" in names and "attr_plan" in names  # case-insensitive collision
    col = next(c for c in schema.columns if c.name == "attr_plan")
    assert col.key == "plan" and col.type == pa.float64()


def test_events_schema():
    schema = events_schema()
    assert schema.key == "_event_id"
    assert schema.names == ["_event_id", "_event_type", "_event_date", "_user_id", "audience_id", "datasource",
                            "received_at", "_event_parameters"]
    assert schema.arrow.field("_event_date").type == TIMESTAMP
    assert schema.arrow.field("_event_parameters").type == pa.string()


@pytest.mark.parametrize("name", ["contacts", "_x1", "analytics.contacts", "A" * 63])
def test_table_names_accepted(name):
    parsed = TableName.parse(name)
    assert str(parsed) == name


@pytest.mark.parametrize("name", [
    "t; DROP TABLE users", 'contacts"; DROP TABLE x; --', "a.b.c", "1abc", "", "con tacts", "t--x",
    "x'y", "a" * 64, "t/*x*/", "schema.", ".t", "ta\x00ble", "tab\nle",
])
def test_malicious_table_names_refused(name):
    with pytest.raises(InstasentConfigError, match="invalid table name"):
        TableName.parse(name)


def test_quote_identifier_escapes_quotes():
    assert quote_identifier('we"ird; DROP TABLE x; --') == '"we""ird; DROP TABLE x; --"'
    assert quote_identifier("a`b", "`") == "`a``b`"
    with pytest.raises(InstasentConfigError):
        quote_identifier("a\x00b")
    with pytest.raises(InstasentConfigError):
        quote_identifier("")


def test_create_table_sql_per_dialect():
    schema = audience_schema(SPECS).arrow
    table = TableName.parse("analytics.contacts")
    def create_table_sql(table, schema, dialect):
        return dialect_named(dialect).create_table_sql(table, schema)

    pg = create_table_sql(table, schema, "postgres")
    assert pg.startswith('CREATE TABLE "analytics"."contacts"')
    assert '"_client_tags" TEXT[]' in pg and '"created_at" TIMESTAMPTZ' in pg
    assert '"loyalty_points" DOUBLE PRECISION' in pg and '"birthday" DATE' in pg
    assert '"_is_subscribed_sms" BOOLEAN' in pg
    duck = create_table_sql(table, schema, "duckdb")
    assert '"_client_tags" VARCHAR[]' in duck and '"loyalty_points" DOUBLE' in duck
    lite = create_table_sql(table, schema, "sqlite")
    assert '"_client_tags" TEXT' in lite and '"_is_subscribed_sms" INTEGER' in lite and '"birthday" TEXT' in lite
    my = create_table_sql(table, schema, "mysql")
    assert my.startswith("CREATE TABLE `analytics`.`contacts`")
