"""Raw pages (JSON bodies read by Arrow's JSON reader) convert exactly as decoded pages do.

:class:`BatchBuilder` converts decoded pages column by column with :func:`to_array` (the
reference here); raw pages are read by Arrow's JSON reader, and a page it cannot read exactly
is decoded and converted as a decoded page. Values and invalid counts must not depend on the
route, whatever mix of good and bad pages a chunk has.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_instasent.export import Export
from airflow_provider_instasent.export.convert import BatchBuilder, InvalidValues
from airflow_provider_instasent.export.schema import ExportSchema, audience_schema, events_schema
from tests.support.export_fakes import SPECS, FakeClient, FakeRawClient, contact

#: Every column type: text, number, integer, bool, date, datetime, and lists of each.
RAW_SPECS: list[dict[str, Any]] = [
    *SPECS,
    {"uid": "flag", "dataType": "bool"},
    {"uid": "seen", "dataType": "datetime"},
    {"uid": "visits", "dataType": "integer"},
    {"uid": "lists", "dataType": "text", "multivalue": 5},
    {"uid": "scores", "dataType": "number", "multivalue": 3},
    {"uid": "counts", "dataType": "integer", "multivalue": 3},
    {"uid": "flags", "dataType": "bool", "multivalue": 3},
    {"uid": "days", "dataType": "date", "multivalue": 3},
    {"uid": "times", "dataType": "datetime", "multivalue": 3},
]

SETTINGS = settings(max_examples=int(os.environ.get("EXPORT_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
SPECIAL = st.sampled_from([
    "", " ", "x", "true", "no", "1", "0", "12.5", " 3 ", "1,5", "2024-01-01", "2024-02-31", "20240101",
    "2024-01-01T10:00:00Z", "2024-01-01T10:00:00.123Z", "2024-01-01T10:00:00.123456Z",
    "2024-01-01 10:00:00", "2024-01-01T12:00:00+02:00", "2024-01-01T10:00",
])
NUMBER = st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([0, 1, 0.0, 1.0, -0.0, 1.5, 2**53 + 1, 1e300]))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT, SPECIAL)
ANY = st.one_of(SCALAR, st.lists(SCALAR, max_size=3), st.dictionaries(TEXT, SCALAR, max_size=2))

GOOD = {
    "string": st.one_of(st.none(), TEXT),
    "number": st.one_of(st.none(), st.integers(-1000, 1000), st.floats(allow_nan=False, allow_infinity=False)),
    "integer": st.one_of(st.none(), st.integers(-1000, 1000)),
    "bool": st.one_of(st.none(), st.booleans()),
    "date": st.one_of(st.none(), st.sampled_from(["2024-01-01", "1990-02-03", "2000-02-29"])),
    "datetime": st.one_of(st.none(), st.sampled_from(["2024-01-01T10:00:00Z", "2024-05-01T10:00:00.000Z",
                                                      "2024-01-01T12:00:00+02:00"])),
}


def good(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = {"email": "string", "phone": "string", "text": "string"}.get(spec["dataType"], spec["dataType"])
    base = GOOD[kind]
    if spec["uid"] in ("_datasources", "_ds_contact_ids") or int(spec.get("multivalue") or 1) > 1:
        return st.one_of(st.none(), st.lists(base, max_size=3))
    return base


def entity(specs: list[dict[str, Any]], bad: float) -> st.SearchStrategy[Any]:
    """Mostly well-typed contacts; with probability ``bad`` per value, anything JSON."""

    def value(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(strategy, ANY) if bad else strategy

    attrs = st.fixed_dictionaries({}, optional={s["uid"]: value(good(s)) for s in specs})
    contact_ = st.fixed_dictionaries(
        {"id": value(TEXT)},
        optional={"createdAt": value(GOOD["datetime"]), "updatedAt": value(GOOD["datetime"]),
                  "attributesData": st.one_of(attrs, st.none(), st.just([]), st.just("x")) if bad else attrs,
                  "dsIds": st.lists(st.integers(0, 10), max_size=2)})
    return st.one_of(contact_, st.none(), st.integers(-5, 5)) if bad else contact_


def pages(specs: list[dict[str, Any]]) -> st.SearchStrategy[list[list[Any]]]:
    page = st.one_of(st.lists(entity(specs, 0), max_size=6), st.lists(entity(specs, 0.2), max_size=6))
    return st.lists(page, min_size=1, max_size=4)


def body(entities: Any) -> bytes:
    return orjson.dumps({"entities": entities, "metadata": {"cursor": "c", "totalHits": 9}})


def converted(schema: ExportSchema, chunk: list[list[Any]], raw: bool) -> tuple[pa.RecordBatch, dict[str, int]]:
    invalid = InvalidValues()
    builder = BatchBuilder(schema, invalid)
    for page in chunk:
        if raw:
            builder.add_raw(body(page))
        else:
            builder.add(page)
    return builder.build(), invalid.as_dict()


def assert_same(got: tuple[pa.RecordBatch, dict[str, int]], want: tuple[pa.RecordBatch, dict[str, int]]) -> None:
    assert got[0].schema.equals(want[0].schema, check_metadata=True)
    assert got[0].to_pylist() == want[0].to_pylist()
    assert got[0].equals(want[0])
    assert got[1] == want[1]


@SETTINGS
@given(chunk=pages(RAW_SPECS))
def test_raw_pages_convert_like_decoded_pages(chunk):
    schema = audience_schema(RAW_SPECS)
    assert_same(converted(schema, chunk, raw=True), converted(schema, chunk, raw=False))


def test_raw_pages_need_a_schema_the_json_reader_reads():
    assert BatchBuilder(audience_schema(RAW_SPECS), InvalidValues()).reads_raw
    builder = BatchBuilder(events_schema(), InvalidValues())  # _event_parameters: JSON text of any object
    assert not builder.reads_raw
    with pytest.raises(ValueError, match="use add"):
        builder.add_raw(body([]))


@pytest.mark.parametrize("text", [
    # what the JSON reader refuses: the page is decoded
    b'{"entities":[{"id":"a","attributesData":{"loyalty_points":true}}]}',
    b'{"entities":[{"id":"a","attributesData":{"loyalty_points":"12.5"}}]}',
    b'{"entities":[{"id":"a","attributesData":{"_client_tags":"solo"}}]}',
    b'{"entities":[{"id":"a","attributesData":{"_client_tags":""}}]}',
    b'{"entities":[null,{"id":"a"},5,"x"]}',
    b'{"entities":[{"id":"a","attributesData":{"plan":"x","plan":"y"}}]}',
    b'{"entities":[{"id":"a","attributesData":"x"}, {"id":"b","attributesData":[1]}, {"id":"c","attributesData":null}]}',
    b'{"entities":[{"id":7,"createdAt":1700000000,"attributesData":{"birthday":19000}}]}',
    b'{"entities":{"id":"a"}}',
    b'{"entities":null,"metadata":{"cursor":null}}',
    b'{"metadata":{"cursor":null}}',
    b'{\n  "entities": [\n    {"id": "a",\n     "attributesData": {"plan": "pro\\nline", "extra": {"x": [1]}}}\n  ]\n}\n',
    b'{"entities":[{"id":"a","attributesData":{"loyalty_points":18446744073709551615}}]}',
    b'{"entities":[{"id":"\\u00e9\\ud83d\\ude00","attributesData":{"_full_name":"\\u0000"}}]}',
])
def test_raw_pages_that_are_decoded_convert_like_decoded_pages(text):
    schema = audience_schema(SPECS)
    good_page = body([contact(1), contact(2)])
    for pages_ in ([text], [good_page, text, good_page]):
        raw_invalid, ref_invalid = InvalidValues(), InvalidValues()
        raw, ref = BatchBuilder(schema, raw_invalid), BatchBuilder(schema, ref_invalid)
        for page in pages_:
            raw.add_raw(page)
            ref.add(orjson.loads(page).get("entities") or [])
        assert_same((raw.build(), raw_invalid.as_dict()), (ref.build(), ref_invalid.as_dict()))


def test_builder_counts_and_resets():
    schema = audience_schema(SPECS)
    builder = BatchBuilder(schema, InvalidValues())
    builder.add([contact(1), contact(2), "not an entity"])
    builder.add_raw(body([contact(3)]))
    builder.add([])
    assert (builder.rows, builder.pages) == (2, 3)  # rows: of the decoded pages; raw ones are parsed at build
    batch = builder.build()
    assert batch.column("audience_id").to_pylist() == ["aud-000001", "aud-000002", "aud-000003"]
    assert (builder.rows, builder.pages) == (0, 0)
    assert builder.build().num_rows == 0


@pytest.mark.parametrize("source", ["audience", "segment", "events"])
def test_engine_raw_and_decoded_pipelines_give_the_same_batches(source):
    kwargs: dict[str, Any] = {"segment": "seg"} if source == "segment" else {}
    make = (lambda i: contact(i, _client_tags="solo") if i % 97 == 0 else contact(i)) if source != "events" else None
    decoded = Export(FakeClient(n=1234, make=make), source, batch_size=500, page_size=50, **kwargs)
    raw_client = FakeRawClient(n=1234, make=make)
    raw = Export(raw_client, source, batch_size=500, page_size=50, **kwargs)
    want, got = list(decoded.batches()), list(raw.batches())
    assert [b.num_rows for b in got] == [500, 500, 234]
    assert pa.Table.from_batches(got).equals(pa.Table.from_batches(want))
    assert raw.stats.as_dict() | {"seconds": 0, "rows_per_second": 0} == (
        decoded.stats.as_dict() | {"seconds": 0, "rows_per_second": 0})
    assert raw_client.closed.is_set()


def test_raw_pipeline_read_ahead_is_bounded_and_stops_early():
    client = FakeRawClient(n=20_000)
    export = Export(client, batch_size=100, page_size=10, prefetch_pages=40)
    it = export.batches()
    for consumed in range(1, 6):
        next(it)
        # consumed pages + the queue (prefetch_pages) + one page blocked in put
        assert client.fetched <= consumed * 10 + 40 + 2
    it.close()
    assert client.closed.wait(5)  # the fetch thread stopped and closed the scroll
    assert client.fetched < 200


def test_raw_pipeline_raises_scroll_errors():
    with pytest.raises(RuntimeError, match="scroll failed"):
        list(Export(FakeRawClient(n=1000, fail_after=3), batch_size=50).batches())
