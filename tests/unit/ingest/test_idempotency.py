"""The ``_event_id`` contract: taken from a column, or derived stably from the content."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_instasent.ingest import IngestSchemaError, derive_event_id, prepare
from airflow_provider_instasent.ingest.idempotency import EventIdDeriver
from tests.support.ingest_helpers import ORDER


def ids(specs, data, **kw):
    return [item["_event_id"] for r in prepare(specs, "events", data, event_type=ORDER, **kw)
            for item in orjson.loads(r.body)]


def frame():
    return pd.DataFrame({"_user_id": ["u1", "u2"], "order_id": ["o1", "o2"], "amount": [10.0, 2.5],
                         "_event_date": pd.to_datetime(["2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z"])})


def test_golden_ids_never_change():
    """Pinned: a change here means re-runs after an upgrade would duplicate events."""
    golden = derive_event_id(ORDER, "u1", {"order_id": "o1", "amount": 10}, event_date="2024-01-01T10:00:00.000Z")
    assert golden == "d1-ee7489690b2d331a721446717b4067cb"
    assert derive_event_id("page_view", "u1", {"url": "https://x"}) == "d1-073868582986079cec820546d65dcdd4"


def test_canonical_form_is_documented():
    canonical = EventIdDeriver().canonical(
        "page_view", {"_user_id": pa.array(["u1"])}, {"url": pa.array(["https://x"]), "n": pa.array([10])})
    assert canonical[0].as_py() == "d1-9:page_view\x1f_user_id=2:u1\x1fp.n=19:4621819117588971520\x1fp.url=9:https://x"


def test_same_event_same_id_whatever_the_source(specs, tmp_path):
    df = frame()
    from_pandas = ids(specs, df)
    from_arrow = ids(specs, pa.Table.from_pandas(df, preserve_index=False))
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "x.parquet")
    from_parquet = ids(specs, str(tmp_path / "x.parquet"))
    reordered = ids(specs, df[["amount", "_event_date", "order_id", "_user_id"]])
    as_ints = df.assign(amount=[10, 2.5])  # 10 and 10.0 are the same number
    as_text_dates = df.assign(_event_date=["2024-01-01T11:00:00+01:00", "2024-01-02T10:00:00.000Z"])
    assert from_pandas == from_arrow == from_parquet == reordered == ids(specs, as_ints) \
        == ids(specs, as_text_dates)
    assert from_pandas[0] == derive_event_id(ORDER, "u1", {"order_id": "o1", "amount": 10.0},
                                             event_date="2024-01-01T10:00:00.000Z")
    assert len(set(from_pandas)) == 2


def test_an_empty_column_does_not_change_ids(specs):
    df = frame()
    assert ids(specs, df) == ids(specs, df.assign(currency=None)) == ids(specs, df.assign(currency=[None, None]))
    changed = ids(specs, df.assign(currency=["EUR", None]))
    assert changed[0] != ids(specs, df)[0] and changed[1] == ids(specs, df)[1]


@pytest.mark.parametrize("change", [
    {"amount": [10.01, 2.5]}, {"order_id": ["O1", "o2"]}, {"_user_id": ["u9", "u2"]},
    {"_event_date": pd.to_datetime(["2024-01-01T10:00:00.001Z", "2024-01-02T10:00:00.000Z"])},
])
def test_any_content_change_makes_a_new_id(specs, change):
    assert ids(specs, frame())[0] != ids(specs, frame().assign(**change))[0]


def test_event_type_is_always_part_of_the_id():
    top = {"_user_id": pa.array(["u"])}
    deriver = EventIdDeriver(["_user_id"])
    assert deriver.derive("a", top, {}).to_pylist() != deriver.derive("b", top, {}).to_pylist()


def test_event_id_fields_business_key(specs):
    df = frame()
    by_order = ids(specs, df, event_id_fields=["order_id"])
    # a corrected amount or date keeps the id: the API drops the re-send as a duplicate
    fixed = df.assign(amount=[11.0, 2.5], _event_date=pd.to_datetime(["2024-01-05T00:00:00Z", "2024-01-02T10:00:00Z"]))
    assert by_order == ids(specs, fixed, event_id_fields=["_event_parameters.order_id"])
    with pytest.raises(IngestSchemaError, match="event_id_fields names 'sku'"):
        ids(specs, df, event_id_fields=["sku"])


def test_an_event_id_column_is_used_as_is(specs):
    df = frame().assign(_event_id=["A", "B"])
    assert ids(specs, df) == ["A", "B"]


def test_canonical_form_is_injective_on_tricky_values():
    d = EventIdDeriver()
    top = {"_user_id": pa.array(["a", "a"])}
    params = {"x": pa.array(["1\x1fp.y=1:2", "1"]), "y": pa.array([None, "2"])}
    out = d.derive("t", top, params).to_pylist()
    assert out[0] != out[1]
    lists = {"items": pa.array([["a,b"], ["a", "b"]])}
    assert len(set(d.derive("t", top, lists).to_pylist())) == 2


def test_derivation_is_deterministic_at_scale():
    n = 20_000
    top = {"_user_id": pa.array([f"u{i % 100}" for i in range(n)])}
    params = {"amount": pa.array(np.arange(n) / 4)}
    first = EventIdDeriver().derive("t", top, params).to_pylist()
    assert first == EventIdDeriver().derive("t", top, params).to_pylist()
    assert len(set(first)) == n and all(len(x) == 35 for x in first)


def test_first_row_wins_across_batches_and_ignores_plain_duplicates(specs):
    """A later row with an earlier row's ``_event_id`` and another payload collides (naming the
    row that keeps the id), in the same batch or a later one; the same payload is a plain
    duplicate; a null parameter and an absent column are the same payload."""
    from airflow_provider_instasent.ingest.idempotency import FirstRowWins
    from airflow_provider_instasent.ingest.validate import Validator

    validator = Validator(specs, "events", event_type=ORDER)
    check = FirstRowWins(EventIdDeriver())

    def batch(rows):
        return validator(pa.Table.from_pylist(rows))

    base = {"_user_id": "u1", "order_id": "O-1", "amount": 1.0}
    first = batch([{**base, "_event_id": "a", "currency": None}, {**base, "_event_id": "b", "currency": None},
                   {**base, "_event_id": "a", "amount": 2.0, "currency": None}])
    assert check(first, 0) == 1
    rows, fields, reasons = first.errors.records()
    assert rows.tolist() == [2] and fields == ["_event_id"] and reasons[0].startswith("row 0 has this _event_id")
    second = batch([{**base, "_event_id": "a"}, {**base, "_event_id": "b", "amount": 3.0}])  # no currency column
    assert check(second, 3) == 1
    rows, _, reasons = second.errors.records()
    assert rows.tolist() == [1] and reasons[0].startswith("row 1 has this _event_id")


def test_ids_derived_from_the_whole_payload_are_not_checked(specs):
    from airflow_provider_instasent.ingest.idempotency import FirstRowWins
    from airflow_provider_instasent.ingest.validate import Validator

    validated = Validator(specs, "events", event_type=ORDER)(pa.Table.from_pylist(
        [{"_user_id": "u1", "order_id": "O-1", "amount": 1.0}] * 2))
    check = FirstRowWins(EventIdDeriver())
    assert check(validated, 0) == 0 and check.index.nbytes == 0
    by_order = FirstRowWins(EventIdDeriver(["order_id"]))  # a business key: the payload may differ
    validated = Validator(specs, "events", event_type=ORDER)(pa.Table.from_pylist(
        [{"_user_id": "u1", "order_id": "O-1", "amount": 1.0}, {"_user_id": "u1", "order_id": "O-1", "amount": 2.0}]))
    assert by_order(validated, 0) == 1


def test_the_id_index_finds_every_key_and_merges_without_sorting_again():
    """``_SortedRuns``, fed batch by batch as ``FirstRowWins`` feeds it: every key added is found
    with its payload and row, absent keys are not, the runs stay sorted, and a merge peaks at
    about 40 bytes per key held (35 here; sorting the concatenation peaked at 68 here, 75 on
    4M ids: with millions of event ids that was the ingest's largest allocation)."""
    import tracemalloc

    from airflow_provider_instasent.ingest.idempotency import _SortedRuns

    n, batch = 160_000, 10_000  # the last merge makes a run of 130,000 keys
    keys = np.random.default_rng(5).integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
    index = _SortedRuns()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for s in range(0, n, batch):
            k = keys[s:s + batch]
            found, _, _ = index.lookup(k)
            index.add(k[~found], k[~found] ^ 7, np.arange(s, s + len(k))[~found])
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert index.nbytes == 24 * n
    assert peak < 48 * n, f"{peak / n:.0f} bytes per key at the peak"
    assert all((np.diff(run_keys) > 0).all() for run_keys, _, _ in index.runs)
    found, payload, row = index.lookup(keys)
    assert found.all() and (payload == keys ^ 7).all() and (row == np.arange(n)).all()
    absent = np.setdiff1d(np.random.default_rng(6).integers(-(2**63), 2**63 - 1, 1000, dtype=np.int64), keys)
    assert not index.lookup(absent)[0].any()


def _feed(index, keys, batch):
    """Feed ``keys`` batch by batch as ``FirstRowWins`` does; returns each batch's lookup."""
    answers = []
    for s in range(0, len(keys), batch):
        k = np.unique(keys[s:s + batch])
        found, payload, row = index.lookup(k)
        answers.append((k, found, payload, row))
        index.add(k[~found], k[~found] ^ 7, np.flatnonzero(~found) + s)
    return answers


def test_the_id_index_spilled_to_files_answers_as_in_memory(tmp_path):
    """With a tiny memory bound the index writes its runs to files and merges them there; every
    lookup answers as the in-memory index does (random keys with repeats, and keys near the
    runs' block edges), the spilled runs stay few, and memory holds a small part of the index."""
    from airflow_provider_instasent.ingest.idempotency import _BLOCK, _SortedRuns

    rng = np.random.default_rng(11)
    n = 120_000
    keys = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64)
    keys[rng.integers(0, n, n // 5)] = keys[rng.integers(0, n, n // 5)]  # ids seen before
    keys[-2_000:] = keys[rng.integers(0, n - 2_000, 2_000)] + rng.integers(-1, 2, 2_000)  # neighbours
    memory, spilled = _SortedRuns(), _SortedRuns(memory_keys=3_000, directory=str(tmp_path))
    try:
        for (_, *expected), (_, *answer) in zip(_feed(memory, keys, 2_500), _feed(spilled, keys, 2_500)):
            assert all((a == e).all() for a, e in zip(answer, expected))
        assert len(spilled) == len(memory) and len(spilled.spilled) <= 8
        assert sum(run.n for run in spilled.spilled) > 25 * _BLOCK
        assert spilled.nbytes < memory.nbytes / 4
        everything = np.unique(np.concatenate([keys, rng.integers(-(2**63), 2**63 - 1, 5_000, dtype=np.int64)]))
        assert all((a == e).all() for a, e in zip(spilled.lookup(everything), memory.lookup(everything)))
        assert len(list(tmp_path.iterdir())) == 1
    finally:
        spilled.close()
    assert not list(tmp_path.iterdir())


def test_first_row_wins_removes_its_files_when_closed(specs, tmp_path):
    """Past its memory bound the check's index spills to a directory under ``directory``; the
    collision is still found (naming the kept row), and ``close`` removes the directory."""
    from airflow_provider_instasent.ingest.idempotency import FirstRowWins
    from airflow_provider_instasent.ingest.validate import Validator

    validator = Validator(specs, "events", event_type=ORDER)
    check = FirstRowWins(EventIdDeriver(), memory_keys=10, directory=str(tmp_path))
    rows = [{"_user_id": "u1", "order_id": f"O-{i}", "amount": 1.0, "_event_id": f"e{i}"} for i in range(50)]
    assert check(validator(pa.Table.from_pylist(rows[:30])), 0) == 0
    assert check.index.spilled and len(list(tmp_path.iterdir())) == 1
    again = validator(pa.Table.from_pylist([{**rows[3], "amount": 2.0}, rows[40]]))
    assert check(again, 30) == 1 and again.errors.records()[2][0].startswith("row 3 has this _event_id")
    check.close()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("preflight", [True, False])
def test_an_ingest_that_fails_removes_the_spilled_index(specs, fake_client, tmp_path, monkeypatch, preflight):
    """An ingest stopped by a collision (``on_invalid="fail"``) after its ``_event_id`` index
    spilled to ``spool_dir`` leaves nothing there, with or without the preflight."""
    from functools import partial

    from airflow_provider_instasent.ingest import RejectedRowsError, engine, write_events
    from airflow_provider_instasent.ingest.idempotency import FirstRowWins
    from tests.support.ingest_helpers import orders

    made: list[FirstRowWins] = []

    def small(*args, **kwargs):
        made.append(partial(FirstRowWins, memory_keys=20)(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(engine, "FirstRowWins", small)
    df = orders(300)
    df["_event_id"] = [f"e{i}" for i in range(300)]
    df.loc[250, "_event_id"] = "e10"
    with pytest.raises(RejectedRowsError, match="row 10 has this _event_id"):
        write_events(fake_client, df, event_type=ORDER, specs=specs, batch_rows=100, preflight=preflight,
                     spool_dir=str(tmp_path))
    assert made and all(check.index.path is not None for check in made)
    assert not list(tmp_path.iterdir())
