"""Vectorised validation and coercion: every error of every row, with row, field and reason."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from airflow_provider_instasent.ingest import IngestSchemaError
from airflow_provider_instasent.ingest.coerce import CoerceOptions
from airflow_provider_instasent.ingest.validate import WINDOW_MS, Validator
from tests.support.ingest_helpers import ORDER

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def errors_of(validated) -> list[tuple[int, str, str]]:
    rows, fields, reasons = validated.errors.records()
    return list(zip(rows.tolist(), fields, reasons))


def events(specs, table, **kw):
    opts = CoerceOptions(now_ms=lambda: NOW_MS, **kw)
    return Validator(specs, "events", event_type=ORDER, options=opts)(table)


def column(validated, name, group=0):
    g = validated.groups[group]
    if name in g.top:
        return g.top[name].to_pylist()
    return g.params[name].to_pylist()


def test_every_error_of_a_row_is_reported(specs):
    table = pa.table({
        "_user_id": ["u1", None, "u3"],
        "order_id": ["o1", "x" * 70, None],
        "amount": [1.0, float("inf"), None],
        "currency": ["EUR", "EURO", "USD"],
    })
    v = events(specs, table)
    errs = errors_of(v)
    assert (1, "_user_id", "required (missing or empty)") in errs
    assert (1, "_event_parameters.order_id", "longer than maxLength 64 (70 characters)") in errs
    assert (1, "_event_parameters.amount", "not a finite number (inf)") in errs
    assert (1, "_event_parameters.currency", "longer than maxLength 3 (4 characters)") in errs
    assert (2, "_event_parameters.order_id", "required parameter is missing") in errs
    assert (2, "_event_parameters.amount", "required parameter is missing") in errs
    assert not [e for e in errs if e[0] == 0]
    assert v.valid.tolist() == [True, False, False]
    # rows come out ordered
    assert [e[0] for e in errs] == sorted(e[0] for e in errs)


def test_timestamps_become_utc_iso_with_milliseconds(specs):
    madrid = pd.Series(pd.to_datetime(["2024-07-01 12:00:00.123456"])).dt.tz_localize("Europe/Madrid")
    table = pa.table({
        "_user_id": ["u1"], "order_id": ["o"], "amount": [1],
        "_event_date": pa.array(madrid),
    })
    assert column(events(specs, table), "_event_date") == ["2024-07-01T10:00:00.123Z"]


def test_naive_timestamps_are_an_error_unless_a_zone_is_assumed(specs):
    table = pa.table({"_user_id": ["u1"], "order_id": ["o"], "amount": [1],
                      "_event_date": pa.array([dt.datetime(2024, 1, 1, 10, 0)])})
    with pytest.raises(IngestSchemaError, match=r"naive timestamps.*assume_timezone"):
        events(specs, table)
    v = events(specs, table, assume_timezone="America/New_York")
    assert column(v, "_event_date") == ["2024-01-01T15:00:00.000Z"]


def test_date_time_strings_need_an_offset(specs):
    table = pa.table({"_user_id": ["a", "b", "c", "d", "e"], "order_id": ["o"] * 5, "amount": [1] * 5,
                      "_event_date": ["2024-01-01T10:00:00Z", "2024-01-01T10:00:00.5+02:00",
                                      "2024-01-01 10:00:00", "yesterday", "2024-02-30T10:00:00Z"]})
    v = events(specs, table)
    assert column(v, "_event_date")[:2] == ["2024-01-01T10:00:00.000Z", "2024-01-01T08:00:00.500Z"]
    bad = {r for r, f, _ in errors_of(v) if f == "_event_date"}
    assert bad == {2, 3, 4}
    assert "with a time zone" in errors_of(v)[0][2]
    v2 = events(specs, table, assume_timezone="UTC")
    assert column(v2, "_event_date")[2] == "2024-01-01T10:00:00.000Z"


def test_automation_window(specs):
    dates = [NOW, NOW - dt.timedelta(minutes=59), NOW + dt.timedelta(minutes=61), NOW - dt.timedelta(days=3), None]
    table = pa.table({"_user_id": list("abcde"), "order_id": ["o"] * 5, "amount": [1] * 5,
                      "_event_date": pa.array(dates, pa.timestamp("us", "UTC"))})
    v = events(specs, table)
    assert v.groups[0].in_window.tolist() == [True, True, False, False, True]  # no date: "now"
    assert WINDOW_MS == 3_600_000


def test_numbers_from_ints_decimals_and_numeric_strings(specs):
    from decimal import Decimal

    for values, expected in (
        (pa.array([1, 2, None], pa.int32()), [1, 2, None]),
        (pa.array([Decimal("1.50"), Decimal("2.25"), None]), [1.5, 2.25, None]),
        (pa.array(["1.5", " 2 ", None]), [1.5, 2.0, None]),
        (pa.array([1.0, float("nan"), None]), [1.0, None, None]),
    ):
        table = pa.table({"_user_id": ["a", "b", "c"], "order_id": ["o"] * 3, "amount": values})
        v = events(specs, table)
        assert column(v, "amount") == expected, values
    table = pa.table({"_user_id": ["a", "b"], "order_id": ["o"] * 2, "amount": ["12,5", "abc"]})
    assert [e[2] for e in errors_of(events(specs, table)) if "amount" in e[1]] == [
        "not a number: '12,5'", "not a number: 'abc'"]


def test_strings_from_integers_and_integral_floats(specs):
    table = pa.table({"_user_id": pa.array([1.0, 2.0, None]), "order_id": pa.array([10, 20, 30]),
                      "amount": [1, 2, 3]})
    v = events(specs, table)
    assert column(v, "_user_id") == ["1", "2", None]
    assert column(v, "order_id") == ["10", "20", "30"]


def test_multi_value_lists_scalars_and_limits(specs):
    table = pa.table({
        "_user_id": ["a", "b", "c", "d"], "order_id": ["o"] * 4, "amount": [1] * 4,
        "items": pa.array([["x", "y"], None, [f"s{i}" for i in range(12)], ["ok", None]]),
    })
    v = events(specs, table)
    assert column(v, "items")[:2] == [["x", "y"], None]
    errs = [e for e in errors_of(v) if e[1] == "_event_parameters.items"]
    assert errs == [(2, "_event_parameters.items", "more than 10 values (12)"),
                    (3, "_event_parameters.items", "null value inside a multi-valued list")]
    scalar = pa.table({"_user_id": ["a"], "order_id": ["o"], "amount": [1], "items": ["one"]})
    assert column(events(specs, scalar), "items") == [["one"]]


def test_list_for_a_single_valued_field_is_a_schema_error(specs):
    table = pa.table({"_user_id": ["a"], "order_id": pa.array([["o"]]), "amount": [1]})
    with pytest.raises(IngestSchemaError, match="holds lists"):
        events(specs, table)


def test_unknown_columns_and_event_types_name_them(specs):
    table = pa.table({"_user_id": ["a"], "order_id": ["o"], "amount": [1], "colour": ["red"], "size": [1]})
    with pytest.raises(IngestSchemaError, match=r"unknown columns.*colour, size.*Known parameters"):
        events(specs, table)
    ok = Validator(specs, "events", event_type=ORDER, options=CoerceOptions(unknown_columns="ignore"))(table)
    assert set(ok.groups[0].params) == {"order_id", "amount"}
    with pytest.raises(IngestSchemaError, match=r"unknown event type 'purchase'.*ecommerce_order_create, page_view"):
        Validator(specs, "events", event_type="purchase")
    mixed = pa.table({"_user_id": ["a", "b"], "_event_type": [ORDER, "signup"], "order_id": ["o", None]})
    with pytest.raises(IngestSchemaError, match="unknown event types: signup"):
        Validator(specs, "events")(mixed)


def test_mixed_event_types_in_one_frame(specs):
    table = pa.table({
        "_user_id": ["a", "b", "c", "d"],
        "_event_type": [ORDER, "page_view", ORDER, None],
        "order_id": ["o1", None, "o3", None],
        "amount": [1.0, None, 2.0, None],
        "url": [None, "https://x", "https://y", None],
    })
    v = Validator(specs, "events")(table)
    assert {g.event_type: g.rows.tolist() for g in v.groups} == {ORDER: [0, 2], "page_view": [1]}
    errs = errors_of(v)
    assert (2, "_event_parameters.url", "not a parameter of event type 'ecommerce_order_create'") in errs
    assert (3, "_event_type", "required (missing)") in errs
    assert v.valid.tolist() == [True, True, False, False]


def test_event_parameters_struct_column_and_json_text(specs):
    struct = pa.table({"_user_id": ["a", "b"],
                       "_event_parameters": pa.array([{"order_id": "o1", "amount": 5}, {"order_id": "o2"}])})
    v = events(specs, struct)
    assert column(v, "order_id") == ["o1", "o2"]
    assert errors_of(v) == [(1, "_event_parameters.amount", "required parameter is missing")]
    text = pa.table({"_user_id": ["a"], "_event_parameters": ['{"order_id": "o1", "amount": 2.5}']})
    assert column(events(specs, text), "amount") == [2.5]
    both = pa.table({"_user_id": ["a"], "order_id": ["x"], "_event_parameters": pa.array([{"order_id": "o1"}])})
    with pytest.raises(IngestSchemaError, match="given twice"):
        events(specs, both)


def test_user_data_is_validated_as_contact_attributes(specs):
    table = pa.table({"_user_id": ["a", "b"], "order_id": ["o", "o"], "amount": [1, 1],
                      "_user_data": pa.array([{"plan": "pro", "_email": "a@x.io", "_user_id": "a"},
                                              {"plan": "free", "_email": "nope", "_user_id": "zz"}])})
    v = events(specs, table)
    assert errors_of(v) == [(1, "_user_data._email", "not an email address: 'nope'"),
                            (1, "_user_data._user_id", "must equal the event's _user_id")]


def test_contacts_coercions(specs):
    frame = pd.DataFrame({
        "_user_id": ["a", "b", "c"],
        "birthday": pd.to_datetime(["1990-05-17", None, "2001-01-31"]),
        "_accepts_marketing_sms": [True, False, None],
        "_client_tags": [["x", "y"], [], None],
        "_phone_mobile": ["+34 600-000-000", "0034600000000", "12"],
        "loyalty_points": pd.array([1, None, 3], dtype="Int64"),
    })
    v = Validator(specs, "contacts")(pa.Table.from_pandas(frame, preserve_index=False))
    top = v.groups[0].top
    assert top["birthday"].to_pylist() == ["1990-05-17", None, "2001-01-31"]
    assert top["_accepts_marketing_sms"].to_pylist() == ["1", "0", None]
    assert top["_client_tags"].to_pylist() == [["x", "y"], [], None]
    assert top["loyalty_points"].to_pylist() == [1, None, 3]
    assert errors_of(v) == [(2, "_phone_mobile", "not a phone number (6 to 15 digits, optional leading +): '12'")]


@pytest.mark.parametrize(("values", "expected", "bad"), [
    (["1", "0", "true", "No", "maybe", None], ["1", "0", "1", "0", None, None], [4]),
    ([1, 0, 2, None], ["1", "0", None, None], [2]),
])
def test_booleans(specs, values, expected, bad):
    table = pa.table({"_user_id": [f"u{i}" for i in range(len(values))], "_accepts_marketing_sms": values})
    v = Validator(specs, "contacts")(table)
    assert v.groups[0].top["_accepts_marketing_sms"].to_pylist() == expected
    assert [r for r, _, _ in errors_of(v)] == bad


def test_dates_reject_impossible_days(specs):
    table = pa.table({"_user_id": ["a", "b", "c"], "birthday": ["2024-02-29", "2023-02-29", "29/02/2024"]})
    v = Validator(specs, "contacts")(table)
    assert [(r, m) for r, _, m in errors_of(v)] == [
        (1, "not a date (YYYY-MM-DD): '2023-02-29'"), (2, "not a date (YYYY-MM-DD): '29/02/2024'")]


def test_contacts_schema_errors(specs):
    with pytest.raises(IngestSchemaError, match="read-only attributes cannot be written: _date_updated"):
        Validator(specs, "contacts")(pa.table({"_user_id": ["a"], "_date_updated": ["x"]}))
    with pytest.raises(IngestSchemaError, match="need a '_user_id' column"):
        Validator(specs, "contacts")(pa.table({"plan": ["a"]}))
    with pytest.raises(IngestSchemaError, match="cannot be sent as 'number'"):
        Validator(specs, "contacts")(pa.table({"_user_id": ["a"], "loyalty_points": [True]}))


def test_ids_empty_blank_and_too_long(specs):
    table = pa.table({"_user_id": ["ok", "", "  ", "x" * 256]})
    v = Validator(specs, "contacts")(table)
    assert errors_of(v) == [(1, "_user_id", "required (missing or empty)"),
                            (2, "_user_id", "required (missing or empty)"),
                            (3, "_user_id", "longer than maxLength 255 (256 characters)")]


def test_dictionary_and_large_types_are_decoded(specs):
    table = pa.table({"_user_id": pa.array(["a", "b"]).dictionary_encode(),
                      "plan": pa.array(["pro", None], pa.large_string())})
    v = Validator(specs, "contacts")(table)
    assert v.groups[0].top["_user_id"].to_pylist() == ["a", "b"]


def test_validation_is_vectorised_on_large_batches(specs):
    n = 50_000
    table = pa.table({"_user_id": [f"u{i}" for i in range(n)], "order_id": ["o"] * n,
                      "amount": np.arange(n, dtype=float)})
    v = events(specs, table)
    assert v.valid.all() and len(v.errors) == 0


def test_non_finite_floats_for_a_string_field(specs):
    table = pa.table({"_user_id": pa.array([1.0, float("inf"), 2.5])})
    v = Validator(specs, "contacts")(table)
    assert v.groups[0].top["_user_id"].to_pylist()[0::2] == ["1", "2.5"]
    assert errors_of(v) == [(1, "_user_id", "not a finite number (inf)")]


def test_user_data_user_id_with_large_strings(specs):
    table = pa.table({"_user_id": pa.array(["a", "b"], pa.large_string()), "order_id": ["o", "o"], "amount": [1, 1],
                      "_user_data": pa.array([{"_user_id": "a"}, {"_user_id": "x"}],
                                             pa.struct([("_user_id", pa.string())]))})
    assert [r for r, _, _ in errors_of(events(specs, table))] == [1]


def test_a_required_parameter_absent_from_the_input_is_one_error(specs):
    """20,000 rows without an ``amount`` column: one schema error naming it, not 20,000 rejects."""
    table = pa.table({"_user_id": [f"u{i}" for i in range(20_000)], "order_id": ["o"] * 20_000})
    with pytest.raises(IngestSchemaError, match=r"requires the parameter\(s\) 'amount'.*columns=") as info:
        events(specs, table)
    assert "order_id" not in str(info.value).split("requires")[1].split(",")[0]
    # a column that is present but null in some rows is still a per-row reject
    table = pa.table({"_user_id": ["a", "b"], "order_id": ["o1", "o2"], "amount": [1.0, None]})
    assert errors_of(events(specs, table)) == [(1, "_event_parameters.amount", "required parameter is missing")]
