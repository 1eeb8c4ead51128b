"""Encoding (null policy, item shape) and chunking by count, bytes and distinct users."""

from __future__ import annotations

import orjson
import pyarrow as pa
import pytest

from airflow_provider_instasent.ingest import prepare
from airflow_provider_instasent.ingest.encode import Chunker, Encoder, rows_to_dicts
from airflow_provider_instasent.ingest.validate import Validator
from tests.support.ingest_helpers import ORDER


def items_of(specs, kind, table, **kw):
    validator = Validator(specs, kind, event_type=ORDER if kind == "events" else None)
    return Encoder(kind, **kw)(validator(table))


def test_event_item_shape_and_key_order(specs):
    table = pa.table({"_user_id": ["u1"], "_event_id": ["e1"], "order_id": ["o1"], "amount": [9.5],
                      "_event_date": ["2024-01-01T10:00:00Z"], "items": pa.array([["a", "b"]])})
    enc = items_of(specs, "events", table)
    assert orjson.dumps(enc.items[0]) == (
        b'{"_user_id":"u1","_event_id":"e1","_event_type":"ecommerce_order_create",'
        b'"_event_date":"2024-01-01T10:00:00.000Z","_event_parameters":{"order_id":"o1","amount":9.5,'
        b'"items":["a","b"]}}')


def test_nulls_omitted_or_sent_as_null(specs):
    table = pa.table({"_user_id": ["a", "b"], "plan": ["pro", None], "loyalty_points": [None, 2.0]})
    omit = items_of(specs, "contacts", table).items
    assert omit == [{"_user_id": "a", "plan": "pro"}, {"_user_id": "b", "loyalty_points": 2.0}]
    explicit = items_of(specs, "contacts", table, nulls="null").items
    assert explicit == [{"_user_id": "a", "plan": "pro", "loyalty_points": None},
                        {"_user_id": "b", "plan": None, "loyalty_points": 2.0}]
    with pytest.raises(ValueError, match="nulls"):
        Encoder("contacts", nulls="drop")  # type: ignore[arg-type]


def test_null_event_date_is_always_omitted(specs):
    table = pa.table({"_user_id": ["a", "b"], "order_id": ["o", "p"], "amount": [1, 2],
                      "currency": [None, "EUR"], "_event_date": ["2024-01-01T00:00:00Z", None]})
    for nulls in ("omit", "null"):
        enc = items_of(specs, "events", table, nulls=nulls)
        assert "_event_date" not in enc.items[1]
    assert items_of(specs, "events", table, nulls="null").items[0]["_event_parameters"]["currency"] is None


def test_invalid_rows_are_not_encoded_and_rows_map_back(specs):
    table = pa.table({"_user_id": ["a", None, "c", "d"], "plan": ["x", "y", "z", "w"]})
    enc = items_of(specs, "contacts", table)
    assert enc.rows.tolist() == [0, 2, 3]
    assert enc.user_ids == ["a", "c", "d"]


def test_mixed_types_keep_source_order(specs):
    table = pa.table({"_user_id": ["a", "b", "c"], "_event_type": ["page_view", ORDER, "page_view"],
                      "url": ["u1", None, "u3"], "order_id": [None, "o", None], "amount": [None, 1.0, None]})
    enc = Encoder("events")(Validator(specs, "events")(table))
    assert enc.rows.tolist() == [0, 1, 2]
    assert [i["_event_type"] for i in enc.items] == ["page_view", ORDER, "page_view"]
    assert enc.items[1]["_event_parameters"] == {"order_id": "o", "amount": 1.0}


def test_rows_to_dicts():
    arrays = [pa.array([1, None]), pa.array(["x", "y"])]
    assert rows_to_dicts(["a", "b"], arrays, "omit") == [{"a": 1, "b": "x"}, {"b": "y"}]
    assert rows_to_dicts(["a", "b"], arrays, "null") == [{"a": 1, "b": "x"}, {"a": None, "b": "y"}]
    assert rows_to_dicts([], [], "omit") == []


def _requests(chunker, n, users=None, size=10):
    items = [{"k": "v" * size, "i": i} for i in range(n)]
    users = users or [f"u{i}" for i in range(n)]
    return list(chunker.add(items, list(range(n)), users)) + list(chunker.flush())


def test_chunks_by_count():
    reqs = _requests(Chunker(max_items=100), 250)
    assert [r.n_items for r in reqs] == [100, 100, 50]
    assert [r.rows[0] for r in reqs] == [0, 100, 200]
    for r in reqs:
        assert [i["i"] for i in orjson.loads(r.body)] == r.rows


def test_chunks_carry_over_between_batches():
    chunker = Chunker(max_items=10)
    first = list(chunker.add([{"i": i} for i in range(7)], list(range(7)), ["u"] * 7))
    second = list(chunker.add([{"i": i} for i in range(7, 14)], list(range(7, 14)), ["u"] * 7))
    rest = list(chunker.flush())
    assert first == [] and [r.rows for r in second + rest] == [list(range(10)), list(range(10, 14))]


def test_chunks_by_bytes_and_oversize_items():
    chunker = Chunker(max_items=100, max_bytes=1000)
    reqs = _requests(chunker, 40, size=100)  # ~115 bytes per item
    assert all(len(r.body) <= 1000 for r in reqs)
    assert sum(r.n_items for r in reqs) == 40 and len(reqs) == 5
    assert [row for r in reqs for row in r.rows] == list(range(40))
    assert chunker.take_oversize() == []
    big = Chunker(max_items=100, max_bytes=200)
    reqs = list(big.add([{"k": "x" * 10}, {"k": "x" * 500}, {"k": "y"}], [0, 1, 2], ["a", "b", "c"]))
    reqs += list(big.flush())
    assert [r.rows for r in reqs] == [[0, 2]]
    over = big.take_oversize()
    assert [(o.row, o.user_id) for o in over] == [(1, "b")] and over[0].size > 200


def test_contacts_never_repeat_a_user_in_one_request():
    users = ["a", "b", "a", "c", "b", "b"]
    reqs = _requests(Chunker(max_items=100, distinct_users=True), 6, users=users)
    assert [r.user_ids for r in reqs] == [["a", "b"], ["a", "c", "b"], ["b"]]
    assert [r.rows for r in reqs] == [[0, 1], [2, 3, 4], [5]]


def test_distinct_users_across_the_carried_over_chunk():
    chunker = Chunker(max_items=100, distinct_users=True)
    assert list(chunker.add([{}], [0], ["a"])) == []
    reqs = list(chunker.add([{}, {}], [1, 2], ["b", "a"])) + list(chunker.flush())
    assert [r.user_ids for r in reqs] == [["a", "b"], ["a"]]


def test_chunker_rejects_bad_limits():
    with pytest.raises(ValueError, match="max_items"):
        Chunker(max_items=101)


def test_prepare_yields_valid_request_bodies(specs):
    table = pa.table({"_user_id": [f"u{i}" for i in range(230)], "order_id": ["o"] * 230, "amount": [1.5] * 230})
    reqs = list(prepare(specs, "events", table, event_type=ORDER, batch_rows=64))
    assert [r.n_items for r in reqs] == [100, 100, 30]
    assert reqs[1].rows[0] == 100
    item = orjson.loads(reqs[0].body)[0]
    assert item["_event_id"].startswith("d1-") and item["_event_type"] == ORDER


def test_generated_builder_handles_any_parameter_name():
    from airflow_provider_instasent.ingest.encode import _event_builder

    build = _event_builder(("it's", 'a"b', "x\\ny"), True)
    out = build("t", ["u"], ["e"], ["d"], [1], [2], [3])
    assert out == [{"_user_id": "u", "_event_id": "e", "_event_type": "t", "_event_date": "d",
                    "_event_parameters": {"it's": 1, 'a"b': 2, "x\\ny": 3}}]
    assert _event_builder((), False)("t", ["u"], ["e"], None) == [
        {"_user_id": "u", "_event_id": "e", "_event_type": "t", "_event_parameters": {}}]


def _held_chunker(**kw):
    return Chunker(max_items=3, distinct_users=True, hold_back=True, **kw)


def test_hold_back_sends_a_busy_users_row_only_after_its_earlier_row_was_answered():
    chunker = _held_chunker()
    users = ["a", "b", "c", "a", "d", "e", "a", "f"]
    items = [{"_user_id": u, "n": i} for i, u in enumerate(users)]
    first = list(chunker.add(items, list(range(8)), users))
    # a's 2nd and 3rd rows are held; the other users fill requests without waiting for them
    assert [r.rows for r in first] == [[0, 1, 2], [4, 5, 7]]
    assert chunker.held == 2 and chunker.unsent == 2
    assert list(chunker.flush()) == []
    second = list(chunker.done(first[1]))  # answering a request without "a" releases nothing
    assert second == [] and chunker.held == 2
    assert list(chunker.done(first[0])) == [] and chunker.held == 1  # row 3 joins the open request
    third = list(chunker.flush())
    assert [r.rows for r in third] == [[3]]
    assert list(chunker.done(third[0])) == [] and [r.rows for r in chunker.flush()] == [[6]]
    assert chunker.held == 0 and chunker.unsent == 0


def test_hold_back_lets_the_next_row_go_when_the_earlier_one_was_too_large():
    chunker = Chunker(max_items=2, max_bytes=200, distinct_users=True, hold_back=True)
    big = {"_user_id": "a", "note": "x" * 300}
    out = list(chunker.add([big, {"_user_id": "a", "n": 1}, {"_user_id": "b"}], [0, 1, 2], ["a", "a", "b"]))
    out += list(chunker.flush())
    assert [o.row for o in chunker.take_oversize()] == [0]
    assert sorted(r for req in out for r in req.rows) == [1, 2] and chunker.unsent == 0


def test_hold_back_never_puts_a_user_twice_in_the_request_after_a_full_one():
    chunker = _held_chunker()
    users = ["a", "b", "c", "d", "d", "e", "f"]  # the second "d" comes after a request filled up
    out = list(chunker.add([{"_user_id": u} for u in users], list(range(7)), users))
    assert [r.user_ids for r in out] == [["a", "b", "c"], ["d", "e", "f"]]
    assert chunker.held == 1  # the second "d" waits for the first one's answer


@pytest.mark.parametrize("seed", range(20))
def test_hold_back_keeps_each_users_rows_in_order_whatever_the_answer_order(seed):
    """A model check: random users, requests answered in a random order. Every row is sent once;
    no request holds a user twice; a user's row is sent only after its earlier row's request
    was answered (so the API applies a user's rows in source order)."""
    import random

    rng = random.Random(seed)
    users = [f"u{rng.randrange(12)}" for _ in range(400)]
    chunker = Chunker(max_items=rng.choice([2, 5, 10]), distinct_users=True, hold_back=True)
    in_flight: list = []
    answered_rows: set[int] = set()
    sent: list[int] = []

    def take(requests):
        for r in requests:
            assert len(set(r.user_ids)) == len(r.user_ids)
            for row, user in zip(r.rows, r.user_ids):
                earlier = [k for k in range(row) if users[k] == user]
                assert all(k in answered_rows for k in earlier), (row, user)
            sent.extend(r.rows)
            in_flight.append(r)

    for start in range(0, len(users), 37):
        part = range(start, min(start + 37, len(users)))
        take(chunker.add([{"_user_id": users[i]} for i in part], list(part), [users[i] for i in part]))
        while in_flight and rng.random() < 0.6:
            done = in_flight.pop(rng.randrange(len(in_flight)))
            answered_rows.update(done.rows)
            take(chunker.done(done))
    while chunker.unsent or in_flight:
        take(chunker.flush())
        done = in_flight.pop(rng.randrange(len(in_flight)))
        answered_rows.update(done.rows)
        take(chunker.done(done))
    assert sorted(sent) == list(range(len(users)))
