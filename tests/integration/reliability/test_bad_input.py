"""The bad-input corpus (``tests/data/``, written by ``tests/data/make_corpus.py``).

Every case of ``tests/data/corpus.json`` is loaded the way a user would (Parquet paths go to
the loader as they are; CSV and JSON through pandas) and ingested twice:

* with ``on_invalid="fail"`` (the default): the error names the first bad row, its field and
  the reason;
* with ``on_invalid="skip"``: exactly the expected rows are rejected, each with its field and
  reason, and the valid rows around them arrive with the expected values.

A case whose trouble is the whole column (an unknown column, a naive timestamp column) must
raise the expected error naming it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airflow_provider_instasent.ingest import IngestError, RejectedRowsError, write_contacts, write_events

from .conftest import make_client
from .helpers import rejects_by_row, stored_contacts

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "data"
CASES: list[dict[str, Any]] = json.loads((DATA / "corpus.json").read_text(encoding="utf-8"))["cases"]
SEED_USERS = [f"u{i}" for i in range(1, 10)]


def untag(value: Any) -> Any:
    """A value of a ``frame`` file as the Python object it stands for (see make_corpus.py)."""
    if isinstance(value, list):
        return [untag(v) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        (key, text), = value.items()
        if key == "$bytes":
            return base64.b64decode(text)
        if key == "$datetime":
            return dt.datetime.fromisoformat(text)
        if key == "$date":
            return dt.date.fromisoformat(text)
    return value


def load(case: dict[str, Any]) -> Any:
    files = [DATA / f for f in case["files"]]
    if case["format"] == "parquet":
        return str(files[0]) if len(files) == 1 else [str(f) for f in files]
    frames = []
    for path in files:
        if case["format"] == "frame":
            spec = json.loads(path.read_text(encoding="ascii"))
            rows = [[untag(v) for v in row] for row in spec["data"]]
            frames.append(pd.DataFrame(rows, columns=spec["columns"], dtype=object))
        elif case["format"] == "csv":
            frames.append(pd.read_csv(path, dtype=case["read"].get("dtype"),
                                      encoding=case["read"].get("encoding", "utf-8")))
        else:
            frames.append(pd.DataFrame(json.loads(path.read_text(encoding="utf-8"))))
    return frames[0] if len(frames) == 1 else frames


def expected_value(value: Any) -> Any:
    if isinstance(value, dict) and "$repeat" in value:
        text, n = value["$repeat"]
        return text * n
    return value


def stored_events(emulator) -> dict[str, dict[str, Any]]:
    with emulator.store.lock:
        return {e.event_id: {**e.params, "_event_date": e.date_iso, "_user_id": e.user_id}
                for e in emulator.store.projects["demo"].events.values()}


def check_stored(emulator, case: dict[str, Any]) -> None:
    stored = stored_contacts(emulator) if case["kind"] == "contacts" else stored_events(emulator)
    for key, values in case["expect"]["stored"].items():
        assert key in stored, f"{key} was not stored"
        for name, value in values.items():
            assert stored[key].get(name) == expected_value(value), (key, name)
    for key in case["expect"]["absent"]:
        assert key not in stored, f"{key} was stored"


def seed(emulator, client, case: dict[str, Any]) -> None:
    emulator.reset()
    if case["kind"] == "events":
        write_contacts(client, pd.DataFrame({"_user_id": SEED_USERS}))


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in CASES])
def test_corpus_case(case, emulator):
    expect = case["expect"]
    write = write_contacts if case["kind"] == "contacts" else write_events
    row_level = [r for r in expect["rejects"] if r["field"]]
    with make_client(emulator.base_url) as client:
        if row_level and not expect.get("error"):
            # on_invalid="fail": the message names the first bad row, its field and the reason
            seed(emulator, client, case)
            with pytest.raises(RejectedRowsError) as failed:
                write(client, load(case), **case["options"])
            first = min(r["row"] for r in row_level)
            message = str(failed.value)
            assert any(f"row {first} {r['field']}: " in message and r["reason"] in message
                       for r in row_level if r["row"] == first), message

        seed(emulator, client, case)
        if expect.get("error"):
            with pytest.raises(IngestError) as raised:
                write(client, load(case), on_invalid="skip", **case["options"])
            error = raised.value
            assert type(error).__name__ == expect["error"]["type"]
            for word in expect["error"]["contains"]:
                assert word in str(error), (word, str(error))
            report = error.report
        else:
            report = write(client, load(case), on_invalid="skip", **case["options"])
            assert report.status == "ok"

    assert report.rows == expect["rows"]
    assert report.accepted + report.rejected + report.unknown + report.skipped == report.rows
    got = rejects_by_row(report.rejects)
    wanted: dict[int, list[dict[str, Any]]] = {}
    for r in expect["rejects"]:
        wanted.setdefault(r["row"], []).append(r)
    assert sorted(got) == sorted(wanted), f"rejected rows {sorted(got)}, expected {sorted(wanted)}"
    for row, reasons in wanted.items():
        for r in reasons:
            assert any(f == r["field"] and r["reason"] in m for f, m, _ in got[row]), (row, r, got[row])
    if not expect.get("error"):
        assert report.rejected == len(wanted) and report.skipped == 0
    for name, value in expect.get("report", {}).items():
        assert getattr(report, name) == value, (name, getattr(report, name))
    check_stored(emulator, case)


def test_the_corpus_is_small_and_complete():
    """Every file is under 50 KB and used by a case; every case's files exist."""
    used = {f for c in CASES for f in c["files"]}
    on_disk = {f"corpus/{p.name}" for p in (DATA / "corpus").iterdir()}
    assert used == on_disk
    assert all((DATA / f).stat().st_size < 50_000 for f in on_disk)
    assert len({c["id"] for c in CASES}) == len(CASES)


def test_on_invalid_fail_stops_at_a_row_over_max_request_bytes(emulator):
    df = pd.DataFrame({"_user_id": ["a", "b", "c"], "plan": ["x" * 2_000_000, "ok", "ok"]})
    with make_client(emulator.base_url) as client, pytest.raises(RejectedRowsError, match="row 0"):
        write_contacts(client, df)
    assert stored_contacts(emulator) == {}


def test_emulator_renders_years_below_1000_with_four_digits(emulator):
    import datetime as dt

    import pyarrow as pa

    table = pa.table({"_user_id": ["u1"], "_event_id": ["y1"], "url": ["/"],
                      "_event_date": pa.array([dt.datetime(1, 1, 1, tzinfo=dt.UTC)], pa.timestamp("ms", "UTC"))})
    with make_client(emulator.base_url) as client:
        write_contacts(client, pd.DataFrame({"_user_id": ["u1"]}))
        write_events(client, table, event_type="page_view")
        assert [e["_event_date"] for e in client.scroll_events()] == ["0001-01-01T00:00:00.000Z"]


def test_event_id_collisions_keep_the_first_row_with_16_requests_in_flight(emulator):
    """5,000 ids, each given twice with different amounts, the second copy in the next request
    (in flight beside the first): every id keeps its first row's payload, and each later row is
    a reported collision naming the row that kept the id (issue 18 case 8)."""
    n, block = 5_000, 100
    rows = []
    for start in range(0, n, block):
        rows += [order(f"c-{i}", user=f"u{i % 9 + 1}", amount=1.0) for i in range(start, start + block)]
        rows += [order(f"c-{i}", user=f"u{i % 9 + 1}", amount=2.0) for i in range(start, start + block)]
    with make_client(emulator.base_url) as client:
        seed(emulator, client, {"kind": "events"})
        report = write_events(client, pd.DataFrame(rows), event_type="ecommerce_order_create", on_invalid="skip",
                              max_in_flight=16)
    assert (report.accepted, report.rejected, report.event_id_collisions) == (n, n, n)
    stored = stored_events(emulator)
    assert len(stored) == n and {e["amount"] for e in stored.values()} == {1.0}
    got = rejects_by_row(report.rejects)
    assert got[block] == [("_event_id", "row 0 has this _event_id with a different payload; the first row keeps "
                                        "the id, so this one is not sent (the API would drop it)", "local")]


def order(event_id: str, *, user: str, amount: float) -> dict[str, Any]:
    return {"_user_id": user, "_event_id": event_id, "_event_date": "2024-03-01T10:00:00Z", "order_id": "O-1",
            "amount": amount}
