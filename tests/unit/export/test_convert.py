"""Entities -> Arrow: fast paths, safe coercions, and bad values as counted nulls."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pyarrow as pa
import pytest

from airflow_provider_instasent.export.convert import InvalidValues, entities_to_batch, to_array
from airflow_provider_instasent.export.schema import TIMESTAMP, audience_schema, events_schema
from tests.support.export_fakes import SPECS, contact, event

UTC = dt.UTC


def conv(values, t):
    invalid = InvalidValues()
    return to_array(values, t, "c", invalid).to_pylist(), invalid.as_dict().get("c", 0)


def test_fast_paths_keep_values():
    assert conv(["a", None, ""], pa.string()) == (["a", None, ""], 0)
    assert conv([1, 2.5, None], pa.float64()) == ([1.0, 2.5, None], 0)
    assert conv([True, False, None], pa.bool_()) == ([True, False, None], 0)
    assert conv(["2024-02-29", None], pa.date32()) == ([dt.date(2024, 2, 29), None], 0)
    assert conv(["2024-01-01T10:00:00.123Z", "2024-01-01T12:00:00+02:00"], TIMESTAMP) == (
        [dt.datetime(2024, 1, 1, 10, 0, 0, 123000, tzinfo=UTC), dt.datetime(2024, 1, 1, 10, 0, tzinfo=UTC)], 0)
    assert conv([["a", "b"], None, []], pa.list_(pa.string())) == ([["a", "b"], None, []], 0)


@pytest.mark.parametrize(("values", "t", "expected", "bad"), [
    # safe coercions
    ([1, 2.5, True, {"k": 1}, [1]], pa.string(), ["1", "2.5", "true", '{"k":1}', "[1]"], 0),
    (["12.5", " 3 ", "1,5", ""], pa.float64(), [12.5, 3.0, 1.5, None], 0),
    ([3.0, "7", 2**62], pa.int64(), [3, 7, 2**62], 0),
    (["1", "0", 1, 0, "true", "no"], pa.bool_(), [True, False, True, False, True, False], 0),
    (["2024-01-01T23:59:59Z", "2024-01-02"], pa.date32(), [dt.date(2024, 1, 1), dt.date(2024, 1, 2)], 0),
    (["2024-01-01 10:00:00", 1_700_000_000, 1_700_000_000_000, "2024-01-01T10:00:00.123456Z"], TIMESTAMP,
     [dt.datetime(2024, 1, 1, 10, tzinfo=UTC), dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
      dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), dt.datetime(2024, 1, 1, 10, 0, 0, 123000, tzinfo=UTC)], 0),
    (["solo", ["a"], None], pa.list_(pa.string()), [["solo"], ["a"], None], 0),
    ([[1, "2"], 3], pa.list_(pa.float64()), [[1.0, 2.0], [3.0]], 0),
    # values that do not fit: null + counted
    (["abc", 1.5, True], pa.float64(), [None, 1.5, None], 2),
    ([1.5, "x", 2**70, False], pa.int64(), [None, None, None, None], 4),
    (["maybe", 2, [True]], pa.bool_(), [None, None, None], 3),
    (["2024-02-31", "not a date", 5.5], pa.date32(), [None, None, dt.date(1970, 1, 1)], 2),
    (["yesterday", True, {"a": 1}], TIMESTAMP, [None, None, None], 3),
    ([["x", "not-a-date"]], pa.list_(pa.date32()), [[None, None]], 2),
])
def test_coercions_and_invalid_values(values, t, expected, bad):
    assert conv(values, t) == (expected, bad)


def test_invalid_values_are_logged_a_few_times(caplog):
    invalid = InvalidValues(log_first=2)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_instasent.export.convert"):
        to_array(["x"] * 10, pa.float64(), "points", invalid)
    assert invalid.as_dict() == {"points": 10} and invalid.total == 10
    messages = [r.getMessage() for r in caplog.records]
    assert sum("does not fit" in m for m in messages) == 2
    assert any("counted, not logged" in m for m in messages)


def test_entities_to_batch_audience_and_missing_attributes():
    schema = audience_schema(SPECS)
    entities = [contact(1), contact(2)]
    # privacy: a token without PII sees no _email/_phone_mobile; the columns stay, as nulls
    for e in entities:
        del e["attributesData"]["_email"]
        del e["attributesData"]["_phone_mobile"]
    entities.append({"id": "aud-x"})  # no attributesData at all
    invalid = InvalidValues()
    batch = entities_to_batch(entities, schema, invalid)
    assert batch.schema.equals(schema.arrow, check_metadata=True)
    rows = batch.to_pylist()
    assert rows[0]["audience_id"] == "aud-000001" and rows[0]["_user_id"] == "user-1"
    assert rows[0]["_email"] is None and rows[0]["_phone_mobile"] is None
    assert rows[0]["_client_tags"] == ["a", "t1"] and rows[1]["_client_tags"] is None
    assert rows[0]["_datasources"] == ["dsapi"] and rows[0]["_ds_contact_ids"] == ["dsapi:user-1"]
    assert rows[0]["created_at"] == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert rows[2] == {**dict.fromkeys(schema.names), "audience_id": "aud-x"}
    assert invalid.total == 0


def test_entities_to_batch_events_parameters_as_json():
    batch = entities_to_batch([event(1), {**event(2), "_event_parameters": None}], events_schema(), InvalidValues())
    rows = batch.to_pylist()
    assert json.loads(rows[0]["_event_parameters"]) == {"b": 1, "url": "/p/1"}
    assert rows[0]["_event_parameters"] == '{"b":1,"url":"/p/1"}'  # sorted keys: stable text
    assert rows[1]["_event_parameters"] is None
    assert rows[0]["audience_id"] == "aud-000001" and rows[0]["_event_date"].tzinfo is not None


def test_bad_row_does_not_break_the_batch():
    schema = audience_schema(SPECS)
    bad = contact(3, loyalty_points="lots", birthday="someday", _client_tags="solo", _is_subscribed_sms="1")
    invalid = InvalidValues()
    rows = entities_to_batch([contact(1), bad], schema, invalid).to_pylist()
    assert rows[1]["loyalty_points"] is None and rows[1]["birthday"] is None
    assert rows[1]["_client_tags"] == ["solo"] and rows[1]["_is_subscribed_sms"] is True
    assert rows[0]["loyalty_points"] == 1.5
    assert invalid.as_dict() == {"loyalty_points": 1, "birthday": 1}
