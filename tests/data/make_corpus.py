"""Write the bad-input corpus: small CSV, JSON and Parquet files plus ``corpus.json``.

Run once, commit the output (``python tests/data/make_corpus.py``); it is deterministic. Each
case names its file(s), how to read them, the ingest call, and the expected outcome, worked
out by hand from the API's rules (not by running the loader):

* ``error``: the run raises this class, with these words in the message (a problem of the
  whole column or input: it names the column or value and says why);
* ``rejects``: ``{"row", "field", "reason"}`` for every rejected row (``reason`` is a substring
  of the loader's message); every other row is accepted;
* ``stored``: ids (``_user_id`` for contacts, ``_event_id`` for events) that must be stored,
  with a subset of their stored values; ``absent``: ids that must not be stored;
* ``report``: report counts that must hold (``{"event_id_collisions": 1}``).

Formats: ``csv`` and ``json`` (records) are read with pandas, ``parquet`` goes to the loader as
a path, and ``frame`` is a DataFrame of Python objects (``{"columns": [...], "data": [[...]]}``,
built by ``tests/integration/reliability/test_bad_input.py::load``) whose tagged values
``{"$bytes": base64}``, ``{"$datetime": iso}`` and ``{"$date": iso}`` become ``bytes``,
``datetime`` and ``date`` objects; text is written ASCII-escaped, so a lone surrogate survives.

An expected value ``{"$repeat": [text, n]}`` stands for ``text * n`` (keeps this file small).

Events cases use the contacts ``u1`` ... ``u9``, which the test creates first.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
OUT = HERE / "corpus"
ORDER = "ecommerce_order_create"
PAGE_VIEW = "page_view"
D = "2024-03-01T10:00:00Z"
D_OUT = "2024-03-01T10:00:00.000Z"

CASES: list[dict[str, Any]] = []


def case(**spec: Any) -> None:
    spec.setdefault("options", {})
    spec.setdefault("read", {})
    expect = spec.setdefault("expect", {})
    expect.setdefault("rejects", [])
    expect.setdefault("stored", {})
    expect.setdefault("absent", [])
    CASES.append(spec)


def reject(row: int, field: str, reason: str) -> dict[str, Any]:
    return {"row": row, "field": field, "reason": reason}


def write_csv(name: str, text: str, encoding: str = "utf-8") -> str:
    (OUT / name).write_bytes(text.encode(encoding))
    return f"corpus/{name}"


def write_json(name: str, records: list[dict[str, Any]]) -> str:
    (OUT / name).write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return f"corpus/{name}"


def write_parquet(name: str, table: pa.Table) -> str:
    pq.write_table(table, OUT / name, compression="zstd")
    return f"corpus/{name}"


def tag(value: Any) -> Any:
    """A Python object in the JSON of a ``frame`` file."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, list):
        return [tag(v) for v in value]
    return value


def write_frame(name: str, columns: list[str], rows: list[list[Any]]) -> str:
    data = {"columns": columns, "data": [[tag(v) for v in row] for row in rows]}
    (OUT / name).write_text(json.dumps(data, ensure_ascii=True, indent=1) + "\n", encoding="ascii")
    return f"corpus/{name}"


def order(i: str, user: str = "u1", **extra: Any) -> dict[str, Any]:
    row = {"_user_id": user, "_event_id": i, "_event_date": D, "order_id": f"O-{i}", "amount": 10.5}
    row.update(extra)
    return row


def build() -> None:
    OUT.mkdir(exist_ok=True)

    # -- wrong types, per value ----------------------------------------------------------------
    case(id="contacts_wrong_types", kind="contacts", format="csv", read={"dtype": "str"},
         options={"consent_fields": ["_accepts_marketing_sms"]},  # a consent column is written on purpose only
         files=[write_csv("contacts_wrong_types.csv",
                          "_user_id,loyalty_points,birthday,_accepts_marketing_sms,_email\n"
                          "wt-0, 12.5 ,1990-01-31,yes,a@example.com\n"
                          "wt-1,abc,1990-01-31,no,b@example.com\n"
                          "wt-2,7,1990-13-45,1,c@example.com\n"
                          "wt-3,1e3,2001-02-03,maybe,d@example.com\n"
                          "wt-4,,,,not-an-email\n"
                          "wt-5,-0.5,2024-02-29,FALSE,e@example.com\n")],
         why="numbers, dates, booleans and emails given as text: bad values reject their row only",
         expect={"rows": 6,
                 "rejects": [reject(1, "loyalty_points", "not a number: 'abc'"),
                             reject(2, "birthday", "not a date (YYYY-MM-DD): '1990-13-45'"),
                             reject(3, "_accepts_marketing_sms", "not a boolean (1/0/true/false): 'maybe'"),
                             reject(4, "_email", "not an email address: 'not-an-email'")],
                 "stored": {"wt-0": {"loyalty_points": 12.5, "birthday": "1990-01-31",
                                     "_accepts_marketing_sms": True},
                            "wt-5": {"loyalty_points": -0.5, "birthday": "2024-02-29",
                                     "_accepts_marketing_sms": False}},
                 "absent": ["wt-1", "wt-2", "wt-3", "wt-4"]})

    case(id="events_wrong_types", kind="events", format="json", options={"event_type": ORDER},
         files=[write_json("events_wrong_types.json", [
             order("wt-0", amount=12.5, order_id=123),
             order("wt-1", amount="7.25"),
             order("wt-2", amount="twelve"),
             order("wt-3", amount=True),
             order("wt-4", amount=[1, 2]),
         ])],
         why="a JSON column mixing numbers, numeric text, words, booleans and lists",
         expect={"rows": 5,
                 "rejects": [reject(2, "_event_parameters.amount", "not a number: 'twelve'"),
                             reject(3, "_event_parameters.amount", "not a number: 'true'"),
                             reject(4, "_event_parameters.amount", "a list where one value is expected")],
                 "stored": {"wt-0": {"order_id": "123", "amount": 12.5}, "wt-1": {"amount": 7.25}},
                 "absent": ["wt-2", "wt-3", "wt-4"]})

    case(id="contacts_bool_column_for_a_number", kind="contacts", format="parquet",
         files=[write_parquet("contacts_bool_column_for_a_number.parquet",
                              pa.table({"_user_id": ["b-0", "b-1"], "loyalty_points": [True, False]}))],
         why="a whole column of a type that can never be a number: a schema error naming the column",
         expect={"rows": 2, "error": {"type": "IngestSchemaError",
                                      "contains": ["loyalty_points", "bool", "number"]},
                 "absent": ["b-0", "b-1"]})

    # -- missing required parameters -----------------------------------------------------------
    case(id="events_missing_required", kind="events", format="json", options={"event_type": ORDER},
         files=[write_json("events_missing_required.json", [
             order("mr-0"),
             {k: v for k, v in order("mr-1").items() if k != "amount"},
             {k: v for k, v in order("mr-2", user="u2").items() if k != "order_id"},
             order("mr-3", user="u2", order_id=None, amount=None),
             order("mr-4", user="u3", amount=0),
             {"_event_id": "mr-5", "order_id": "O-mr-5", "amount": 1},
         ])],
         why="required parameters absent or null, and an event without _user_id",
         expect={"rows": 6,
                 "rejects": [reject(1, "_event_parameters.amount", "required parameter is missing"),
                             reject(2, "_event_parameters.order_id", "required parameter is missing"),
                             reject(3, "_event_parameters.order_id", "required parameter is missing"),
                             reject(3, "_event_parameters.amount", "required parameter is missing"),
                             reject(5, "_user_id", "required (missing or empty)")],
                 "stored": {"mr-0": {"order_id": "O-mr-0", "amount": 10.5}, "mr-4": {"amount": 0}},
                 "absent": ["mr-1", "mr-2", "mr-3", "mr-5"]})

    # -- strings over maxLength ----------------------------------------------------------------
    case(id="events_max_length", kind="events", format="parquet", options={"event_type": ORDER},
         files=[write_parquet("events_max_length.parquet", pa.table({
             "_user_id": ["u1", "u1", "u1", "u1", "u" * 256, "u2"],
             "_event_id": ["ml-0", "ml-1", "ml-2", "ml-3", "ml-4", "e" * 256],
             "_event_date": [D] * 6,
             "order_id": ["O" * 64, "O" * 65, "ok", "ok", "ok", "ok"],
             "amount": [1.0] * 6,
             "currency": ["EUR", "EUR", "EURO", "€€€", "EUR", "EUR"],
         }))],
         why="maxLength counts characters (not bytes); ids are limited to 255",
         expect={"rows": 6,
                 "rejects": [reject(1, "_event_parameters.order_id", "longer than maxLength 64 (65 characters)"),
                             reject(2, "_event_parameters.currency", "longer than maxLength 3 (4 characters)"),
                             reject(4, "_user_id", "longer than maxLength 255 (256 characters)"),
                             reject(5, "_event_id", "longer than maxLength 255 (256 characters)")],
                 "stored": {"ml-0": {"order_id": "O" * 64}, "ml-3": {"currency": "€€€"}},
                 "absent": ["ml-1", "ml-2", "ml-4"]})

    case(id="huge_strings", kind="contacts", format="parquet",
         files=[write_parquet("huge_strings.parquet", pa.table({
             "_user_id": ["hs-0", "hs-1", "hs-2"],
             "plan": ["x" * 2_000_000, "y" * 500_000, "pro"],
         }))],
         why="a 2 MB value cannot fit a 1 MiB request: its row is rejected locally, the rest is sent",
         expect={"rows": 3,
                 "rejects": [reject(0, "plan", "more than max_request_bytes=1048576")],
                 "stored": {"hs-1": {"plan": {"$repeat": ["y", 500_000]}}, "hs-2": {"plan": "pro"}},
                 "absent": ["hs-0"]})

    case(id="events_huge_url", kind="events", format="json", options={"event_type": PAGE_VIEW},
         files=[write_json("events_huge_url.json", [
             {"_user_id": "u1", "_event_id": "hu-0", "_event_date": D, "url": "https://x.example/" + "a" * 2030},
             {"_user_id": "u1", "_event_id": "hu-1", "_event_date": D, "url": "https://x.example/" + "a" * 2031},
         ])],
         why="url has maxLength 2048: 2048 characters pass, 2049 do not",
         expect={"rows": 2,
                 "rejects": [reject(1, "_event_parameters.url", "longer than maxLength 2048 (2049 characters)")],
                 "stored": {"hu-0": {}}, "absent": ["hu-1"]})

    # -- multi-value fields --------------------------------------------------------------------
    case(id="contacts_multivalue", kind="contacts", format="parquet",
         files=[write_parquet("contacts_multivalue.parquet", pa.table({
             "_user_id": ["mv-0", "mv-1", "mv-2", "mv-3", "mv-4"],
             "_client_tags": pa.array([[f"t{i}" for i in range(50)], [f"t{i}" for i in range(51)], ["a", None],
                                       ["a", "b"], None], pa.list_(pa.string())),
         }))],
         why="_client_tags takes at most 50 values and no null element",
         expect={"rows": 5,
                 "rejects": [reject(1, "_client_tags", "more than 50 values (51)"),
                             reject(2, "_client_tags", "null value inside a multi-valued list")],
                 "stored": {"mv-0": {"_client_tags": [f"t{i}" for i in range(50)]},
                            "mv-3": {"_client_tags": ["a", "b"]}, "mv-4": {}},
                 "absent": ["mv-1", "mv-2"]})

    case(id="contacts_multivalue_mixed_json", kind="contacts", format="json",
         files=[write_json("contacts_multivalue_mixed.json", [
             {"_user_id": "mm-0", "_client_tags": ["a", "b"]},
             {"_user_id": "mm-1", "_client_tags": "solo"},
             {"_user_id": "mm-2", "_client_tags": [f"t{i}" for i in range(51)]},
             {"_user_id": "mm-3", "_client_tags": ["y", None]},
         ])],
         why="a pandas object column mixing lists and scalars (docs: a scalar becomes a one-element list)",
         expect={"rows": 4,
                 "rejects": [reject(2, "_client_tags", "more than 50 values (51)"),
                             reject(3, "_client_tags", "null value inside a multi-valued list")],
                 "stored": {"mm-0": {"_client_tags": ["a", "b"]}, "mm-1": {"_client_tags": ["solo"]}},
                 "absent": ["mm-2", "mm-3"]})

    case(id="events_multivalue", kind="events", format="json", options={"event_type": ORDER},
         files=[write_json("events_multivalue.json", [
             order("it-0", items=[f"SKU-{i}" for i in range(10)]),
             order("it-1", items=[f"SKU-{i}" for i in range(11)]),
             order("it-2", items=[]),
         ])],
         why="items takes at most 10 values",
         expect={"rows": 3, "rejects": [reject(1, "_event_parameters.items", "more than 10 values (11)")],
                 "stored": {"it-0": {"items": [f"SKU-{i}" for i in range(10)]}}, "absent": ["it-1"]})

    # -- NaN, NaT, None ------------------------------------------------------------------------
    ts = pa.timestamp("ms", "UTC")
    when = dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC)
    case(id="events_nan_nat_none", kind="events", format="parquet", options={"event_type": ORDER},
         files=[write_parquet("events_nan_nat_none.parquet", pa.table({
             "_user_id": pa.array(["u1", "u1", "u2", None, "u3", "u3"], pa.string()),
             "_event_id": pa.array(["nn-0", "nn-1", "nn-2", "nn-3", None, "nn-5"], pa.string()),
             "_event_date": pa.array([when, None, when, when, when, when], ts),
             "order_id": pa.array(["O0", "O1", "O2", "O3", "O4", None], pa.string()),
             "amount": pa.array([1.0, 2.0, float("nan"), 3.0, 4.0, 5.0], pa.float64()),
             "currency": pa.array(["EUR", None, "EUR", "EUR", "EUR", "EUR"], pa.string()),
         }))],
         why="NaN in a required number is missing; NaT _event_date means now; null ids and required "
             "parameters reject the row; a null optional parameter is left out",
         expect={"rows": 6,
                 "rejects": [reject(2, "_event_parameters.amount", "required parameter is missing"),
                             reject(3, "_user_id", "required (missing or empty)"),
                             reject(4, "_event_id", "required (missing or empty)"),
                             reject(5, "_event_parameters.order_id", "required parameter is missing")],
                 "stored": {"nn-0": {"amount": 1.0, "currency": "EUR", "_event_date": D_OUT},
                            "nn-1": {"amount": 2.0, "currency": None}},
                 "absent": ["nn-2", "nn-3", "nn-5"]})

    case(id="contacts_float_user_ids", kind="contacts", format="csv",
         files=[write_csv("contacts_float_user_ids.csv", "_user_id,plan\n1,free\n2.0,pro\n,basic\n2.5,pro\n")],
         why="ids read as floats by pandas: integral ones become '1', '2'; NaN is a missing id",
         expect={"rows": 4, "rejects": [reject(2, "_user_id", "required (missing or empty)")],
                 "stored": {"1": {"plan": "free"}, "2": {"plan": "pro"}, "2.5": {"plan": "pro"}}})

    # -- dates ----------------------------------------------------------------------------------
    dates_csv = write_csv("events_dates.csv", "_user_id,_event_id,_event_date,url\n" + "".join(
        f"u1,dt-{i},{d},/p{i}\n" for i, d in enumerate([
            "2024-03-01T10:00:00Z", "2024-03-01T10:00:00+02:00", "2024-03-01 10:00:00.123456-05:00",
            "2024-03-01T10:00:00", "2024-02-30T10:00:00Z", "yesterday", "2024-03-01", "",
            "2024-03-01T25:00:00Z"])))
    no_tz = "not an ISO 8601 date-time with a time zone"
    case(id="events_dates", kind="events", format="csv", read={"dtype": "str"}, options={"event_type": PAGE_VIEW},
         files=[dates_csv],
         why="offsets are converted to UTC; naive, impossible and non-dates reject the row; an empty date means now",
         expect={"rows": 9,
                 "rejects": [reject(3, "_event_date", no_tz), reject(4, "_event_date", no_tz),
                             reject(5, "_event_date", no_tz), reject(6, "_event_date", no_tz),
                             reject(8, "_event_date", no_tz)],
                 "stored": {"dt-0": {"_event_date": D_OUT}, "dt-1": {"_event_date": "2024-03-01T08:00:00.000Z"},
                            "dt-2": {"_event_date": "2024-03-01T15:00:00.123Z"}, "dt-7": {}},
                 "absent": ["dt-3", "dt-4", "dt-5", "dt-6", "dt-8"]})
    case(id="events_dates_assume_timezone", kind="events", format="csv", read={"dtype": "str"},
         options={"event_type": PAGE_VIEW, "assume_timezone": "Europe/Madrid"}, files=[dates_csv],
         why="with assume_timezone, naive date-times and plain dates are read in that zone",
         expect={"rows": 9,
                 "rejects": [reject(4, "_event_date", "not an ISO 8601 date-time"),
                             reject(5, "_event_date", "not an ISO 8601 date-time"),
                             reject(8, "_event_date", "not an ISO 8601 date-time")],
                 "stored": {"dt-3": {"_event_date": "2024-03-01T09:00:00.000Z"},
                            "dt-6": {"_event_date": "2024-02-29T23:00:00.000Z"},
                            "dt-1": {"_event_date": "2024-03-01T08:00:00.000Z"}},
                 "absent": ["dt-4", "dt-5", "dt-8"]})

    naive = pa.table({"_user_id": ["u1", "u2"], "_event_id": ["nv-0", "nv-1"],
                      "_event_date": pa.array([dt.datetime(2024, 3, 1, 10), dt.datetime(2024, 3, 2, 10)],
                                              pa.timestamp("us")),
                      "url": ["/a", "/b"]})
    naive_file = write_parquet("events_naive_timestamps.parquet", naive)
    case(id="events_naive_timestamps", kind="events", format="parquet", options={"event_type": PAGE_VIEW},
         files=[naive_file],
         why="a timestamp column without a time zone is ambiguous: a schema error naming the column and the fix",
         expect={"rows": 2, "error": {"type": "IngestSchemaError",
                                      "contains": ["_event_date", "naive", "assume_timezone"]},
                 "absent": ["nv-0", "nv-1"]})
    case(id="events_naive_timestamps_assume_utc", kind="events", format="parquet",
         options={"event_type": PAGE_VIEW, "assume_timezone": "UTC"}, files=[naive_file],
         why="the same file with assume_timezone='UTC'",
         expect={"rows": 2, "stored": {"nv-0": {"_event_date": D_OUT},
                                       "nv-1": {"_event_date": "2024-03-02T10:00:00.000Z"}}})

    far = ["2500-01-01T00:00:00Z", "1600-06-15T12:00:00Z", "1000-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
           "1970-01-01T00:00:00Z", "2262-04-12T00:00:00Z"]
    far_out = ["2500-01-01T00:00:00.000Z", "1600-06-15T12:00:00.000Z", "1000-01-01T00:00:00.000Z",
               "9999-12-31T23:59:59.000Z", "1970-01-01T00:00:00.000Z", "2262-04-12T00:00:00.000Z"]
    case(id="events_far_dates_text", kind="events", format="json", options={"event_type": PAGE_VIEW},
         files=[write_json("events_far_dates.json", [
             {"_user_id": "u1", "_event_id": f"fd-{i}", "_event_date": d, "url": "/"} for i, d in enumerate(far)])],
         why="far-past and far-future dates are valid ISO 8601: stored with their real date, outside the "
             "automation window",
         expect={"rows": 6, "stored": {f"fd-{i}": {"_event_date": d} for i, d in enumerate(far_out)}})
    case(id="events_far_dates_timestamps", kind="events", format="parquet", options={"event_type": PAGE_VIEW},
         files=[write_parquet("events_far_dates.parquet", pa.table({
             "_user_id": ["u1"] * 5, "_event_id": [f"ft-{i}" for i in range(5)],
             "_event_date": pa.array([dt.datetime(2500, 1, 1, tzinfo=dt.UTC),
                                      dt.datetime(1600, 6, 15, 12, tzinfo=dt.UTC),
                                      dt.datetime(1000, 1, 1, tzinfo=dt.UTC),
                                      dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
                                      dt.datetime(1970, 1, 1, tzinfo=dt.UTC)], ts),
             "url": ["/"] * 5}))],
         why="the same far dates as a timestamp column: stored with their real date",
         expect={"rows": 5, "stored": {f"ft-{i}": {"_event_date": d} for i, d in
                                       enumerate(far_out[:5])}})

    # -- unknown event types and columns ---------------------------------------------------------
    case(id="events_unknown_type", kind="events", format="csv", read={"dtype": "str"},
         files=[write_csv("events_unknown_type.csv",
                          "_user_id,_event_id,_event_type,_event_date,url\n"
                          f"u1,ut-0,page_view,{D},/a\nu1,ut-1,page_veiw,{D},/b\n")],
         why="an event type the datasource does not define: a schema error naming it and the known types",
         expect={"rows": 2, "error": {"type": "IngestSchemaError",
                                      "contains": ["page_veiw", "ecommerce_order_create", "page_view"]},
                 "absent": ["ut-0", "ut-1"]})
    unknown_csv = write_csv("contacts_unknown_columns.csv", "_user_id,plan,colour\nuc-0,pro,red\nuc-1,free,blue\n")
    case(id="contacts_unknown_columns", kind="contacts", format="csv", files=[unknown_csv],
         why="a column that is not an attribute: a schema error naming it and listing the known ones",
         expect={"rows": 2, "error": {"type": "IngestSchemaError", "contains": ["colour", "Known attributes"]},
                 "absent": ["uc-0", "uc-1"]})
    case(id="contacts_unknown_columns_ignored", kind="contacts", format="csv", files=[unknown_csv],
         options={"unknown_columns": "ignore"}, why="unknown_columns='ignore' drops the column",
         expect={"rows": 2, "stored": {"uc-0": {"plan": "pro", "colour": None}, "uc-1": {"plan": "free"}}})
    case(id="events_unknown_parameter", kind="events", format="json", options={"event_type": ORDER},
         files=[write_json("events_unknown_parameter.json", [order("up-0", coupon="X")])],
         why="a parameter the event type does not define: a schema error naming it",
         expect={"rows": 1, "error": {"type": "IngestSchemaError", "contains": ["coupon", "order_id"]},
                 "absent": ["up-0"]})

    # -- duplicates in one batch ---------------------------------------------------------------
    case(id="contacts_duplicate_user_ids", kind="contacts", format="csv", read={"dtype": "str"},
         files=[write_csv("contacts_duplicate_user_ids.csv",
                          "_user_id,plan,loyalty_points\ndup-1,free,1\ndup-2,pro,\ndup-1,,2\ndup-1,pro,\n")],
         why="the same _user_id three times in one batch: the later row wins, attribute by attribute",
         expect={"rows": 4, "stored": {"dup-1": {"plan": "pro", "loyalty_points": 2.0},
                                       "dup-2": {"plan": "pro", "loyalty_points": None}}})
    case(id="events_duplicate_event_ids", kind="events", format="json", options={"event_type": ORDER},
         files=[write_json("events_duplicate_event_ids.json", [
             order("de-0", amount=1.0), order("de-0", amount=2.0), order("de-1", amount=3.0)])],
         why="the same _event_id with another payload: the first row keeps the id, the later one is a "
             "collision, rejected naming the row that keeps it (the API would drop it)",
         expect={"rows": 3,
                 "rejects": [reject(1, "_event_id", "row 0 has this _event_id with a different payload")],
                 "stored": {"de-0": {"amount": 1.0}, "de-1": {"amount": 3.0}},
                 "report": {"event_id_collisions": 1}})
    case(id="events_duplicate_event_ids_same_payload", kind="events", format="json", options={"event_type": ORDER},
         files=[write_json("events_duplicate_event_ids_same_payload.json", [
             order("ds-0", amount=1.0), order("ds-1", amount=2.0), order("ds-0", amount=1.0)])],
         why="the same _event_id with the same payload is a plain duplicate: both rows are accepted, the API "
             "stores the event once",
         expect={"rows": 3, "stored": {"ds-0": {"amount": 1.0}, "ds-1": {"amount": 2.0}},
                 "report": {"event_id_collisions": 0}})

    # -- empty inputs ----------------------------------------------------------------------------
    case(id="contacts_empty_csv", kind="contacts", format="csv", read={"dtype": "str"},
         files=[write_csv("contacts_empty.csv", "_user_id,plan\n")], why="a header and no rows",
         expect={"rows": 0})
    case(id="events_empty_parquet", kind="events", format="parquet", options={"event_type": PAGE_VIEW},
         files=[write_parquet("events_empty.parquet", pa.table({
             "_user_id": pa.array([], pa.string()), "_event_id": pa.array([], pa.string()),
             "url": pa.array([], pa.string())}))],
         why="a Parquet file with a schema and no rows", expect={"rows": 0})
    case(id="contacts_empty_json", kind="contacts", format="json",
         files=[write_json("contacts_empty.json", [])],
         why="an empty JSON array has no columns at all: the error says what is missing",
         expect={"rows": 0, "error": {"type": "IngestSchemaError", "contains": ["_user_id", "column"]}})

    # -- Parquet files with different schemas ------------------------------------------------
    schema_a = write_parquet("events_schema_a.parquet", pa.table({
        "_user_id": ["u1", "u2"], "_event_id": ["sa-0", "sa-1"], "_event_date": [D, D],
        "order_id": ["A-1", "A-2"], "amount": [1.5, 2.5]}))
    schema_b = write_parquet("events_schema_b.parquet", pa.table({
        "_user_id": ["u3", "u4"], "_event_id": ["sb-0", "sb-1"],
        "_event_date": pa.array([when, when], ts),
        "order_id": pa.array([1001, 1002], pa.int64()), "amount": ["12.50", "bad"],
        "currency": ["EUR", "USD"]}))
    schema_c = write_parquet("events_schema_c.parquet", pa.table({
        "_user_id": ["u5"], "_event_id": ["sc-0"], "_event_date": [D], "order_id": ["C-1"], "amount": [1.0],
        "coupon": ["SUMMER"]}))
    case(id="events_parquet_schema_drift", kind="events", format="parquet", options={"event_type": ORDER},
         files=[schema_a, schema_b],
         why="the second file has other column types (int ids, numbers as text, a timestamp date) and an "
             "extra optional column: each file is coerced on its own; rows are numbered across files",
         expect={"rows": 4, "rejects": [reject(3, "_event_parameters.amount", "not a number: 'bad'")],
                 "stored": {"sa-0": {"amount": 1.5}, "sb-0": {"order_id": "1001", "amount": 12.5,
                                                              "_event_date": D_OUT}},
                 "absent": ["sb-1"]})
    case(id="events_parquet_unknown_column_in_second_file", kind="events", format="parquet",
         options={"event_type": ORDER}, files=[schema_a, schema_c],
         why="the second file brings an unknown column: the run stops naming it; the second file's rows "
             "are not sent (the first file's are sent, or skipped if still queued)",
         expect={"rows": 3, "error": {"type": "IngestSchemaError", "contains": ["coupon"]},
                 "absent": ["sc-0"]})

    # -- text encodings ------------------------------------------------------------------------
    case(id="contacts_latin1_csv", kind="contacts", format="csv", read={"dtype": "str", "encoding": "latin-1"},
         files=[write_csv("contacts_latin1.csv", "_user_id,_first_name\nl1-0,Lucía\nl1-1,Begoña\nl1-2,Zoë\n",
                          encoding="latin-1")],
         why="a latin-1 file read with its encoding: names arrive intact",
         expect={"rows": 3, "stored": {"l1-0": {"_first_name": "Lucía"}, "l1-1": {"_first_name": "Begoña"},
                                       "l1-2": {"_first_name": "Zoë"}}})
    case(id="contacts_non_utf8_bytes", kind="contacts", format="parquet",
         files=[write_parquet("contacts_non_utf8.parquet", pa.table({
             "_user_id": ["nu-0", "nu-1", "nu-2", "nu-3"],
             "_first_name": pa.array([b"Ada", "Lucía".encode("latin-1"), b"\xff\xfe", "Zoë".encode()],
                                     pa.binary())}))],
         why="a binary column with some values that are not UTF-8: those rows are rejected, the others "
             "decoded (docs: a value that cannot be coerced is a reject of its row)",
         expect={"rows": 4,
                 "rejects": [reject(1, "_first_name", "UTF-8"), reject(2, "_first_name", "UTF-8")],
                 "stored": {"nu-0": {"_first_name": "Ada"}, "nu-3": {"_first_name": "Zoë"}},
                 "absent": ["nu-1", "nu-2"]})

    # -- Python objects in object columns (issue 18) ----------------------------------------------
    madrid = dt.timezone(dt.timedelta(hours=2))
    case(id="contacts_object_values", kind="contacts", format="frame",
         files=[write_frame("contacts_object_values.json", ["_user_id", "plan", "_client_tags", "birthday"], [
             ["ov-0", "pro", ["a", "b"], "1990-01-31"],
             [7.0, b"bytes", "solo", dt.date(1990, 2, 1)],
             ["7", None, None, "1990-02-02"],
             ["ov-3", {"x": 1}, None, None],
             ["ov-4", ["a", "b"], None, None],
             ["ov-5", dt.datetime(2024, 3, 1, 12, 0, tzinfo=madrid), None, None],
             ["ov-6", b"\xff\xfe", None, None],
             ["ov-7", True, None, None],
             ["ov-8", 7.5, None, None],
             ["ov-9", "ok", ["x", {"y": 1}], None],
         ])],
         why="an object column mixing text, numbers, bytes, dates, mappings and lists: each value is coerced "
             "by one rule (docs/ingest.md, Coercions), never stored as a Python repr; _user_id 7.0 is the "
             "contact '7'; what has no text form rejects its row",
         expect={"rows": 10,
                 "rejects": [reject(3, "plan", "a mapping where a value is expected: {'x': 1}"),
                             reject(4, "plan", "a list where one value is expected"),
                             reject(6, "plan", "not UTF-8 text: b'\\xff\\xfe'"),
                             reject(9, "_client_tags", "a nested list or mapping inside a list")],
                 "stored": {"ov-0": {"plan": "pro", "_client_tags": ["a", "b"], "birthday": "1990-01-31"},
                            "7": {"plan": "bytes", "_client_tags": ["solo"], "birthday": "1990-02-02"},
                            "ov-5": {"plan": "2024-03-01T10:00:00.000Z"}, "ov-7": {"plan": "true"},
                            "ov-8": {"plan": "7.5"}},
                 "absent": ["7.0", "ov-3", "ov-4", "ov-6", "ov-9"]})
    case(id="contacts_lone_surrogate", kind="contacts", format="frame",
         files=[write_frame("contacts_lone_surrogate.json", ["_user_id", "_first_name"],
                            [[f"ls-{i}", "Ana\udce9" if i == 3 else f"Name {i}"] for i in range(6)])],
         why="one undecodable value (a lone surrogate, from a file decoded with surrogateescape) is one reject; "
             "the rows after it are sent",
         expect={"rows": 6,
                 "rejects": [reject(3, "_first_name", "not valid Unicode text: a lone surrogate '\\udce9'")],
                 "stored": {"ls-2": {"_first_name": "Name 2"}, "ls-4": {"_first_name": "Name 4"},
                            "ls-5": {"_first_name": "Name 5"}},
                 "absent": ["ls-3"]})
    case(id="contacts_duplicate_column_names", kind="contacts", format="frame",
         files=[write_frame("contacts_duplicate_column_names.json", ["_user_id", "plan", "plan"],
                            [["dc-0", "pro", "free"]])],
         why="a column name given twice: which one to send is unknowable, so the run stops naming it",
         expect={"rows": 0, "error": {"type": "IngestSchemaError", "contains": ["duplicate column names", "'plan'"]},
                 "absent": ["dc-0"]})

    # -- phone numbers ---------------------------------------------------------------------------
    phones = ["+34 600 000 001", "0034600000002", "(600) 000-003", "600.000.004", "+34-600-000-005",
              "+1 (415) 555-0100", "+44 20 7946 0958", "abc", "123", "+1234567890123456", "600 000 00x",
              "++34600000000"]
    case(id="contacts_phone_formats", kind="contacts", format="csv", read={"dtype": "str"},
         files=[write_csv("contacts_phone_formats.csv",
                          "_user_id,_phone_mobile\n" + "".join(f"ph-{i},{p}\n" for i, p in enumerate(phones)))],
         why="6 to 15 digits with an optional + or 00, separators ignored; the value is sent as given",
         expect={"rows": 12,
                 "rejects": [reject(i, "_phone_mobile", "not a phone number") for i in range(7, 12)],
                 "stored": {f"ph-{i}": {"_phone_mobile": p} for i, p in enumerate(phones[:7])},
                 "absent": [f"ph-{i}" for i in range(7, 12)]})

    (HERE / "corpus.json").write_text(json.dumps({"cases": CASES}, ensure_ascii=False, indent=1) + "\n",
                                      encoding="utf-8")


if __name__ == "__main__":
    build()
    sizes = {p.name: p.stat().st_size for p in sorted(OUT.iterdir())}
    print(f"{len(CASES)} cases, {len(sizes)} files, largest {max(sizes.values())} bytes")
