"""InstasentIngestOperator and InstasentDeleteContactsOperator via ``op.execute(context={})``."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import emulator_state
from tests.support import FakeTI
from tests.support.ingest_helpers import ORDER, contacts, orders

pytestmark = pytest.mark.integration
pytest.importorskip("airflow")  # the operators: skipped in the analyst install (no Airflow)


@pytest.fixture
def sqlite_conn(tmp_path, monkeypatch):
    db = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    return db


def test_ingest_parquet_glob(instasent_conn, tmp_path):
    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    for i, part in enumerate((contacts(30).iloc[:15], contacts(30).iloc[15:])):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), tmp_path / f"c{i}.parquet")
    op = InstasentIngestOperator(task_id="load", kind="contacts", path=str(tmp_path / "*.parquet"))
    result = op.execute(context={})
    assert result["rows"] == result["accepted"] == 30 and result["status"] == "ok"
    assert "rejects" not in result and json.dumps(result)  # XCom-safe: counts only
    assert emulator_state(instasent_conn)["contacts"]["dsapi"] == 30


def test_ingest_from_sql_with_rejects_table(instasent_conn, sqlite_conn):
    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    InstasentIngestOperator(task_id="c", kind="contacts", python_callable=lambda: contacts(10)).execute({})
    with sqlite3.connect(sqlite_conn) as conn:
        conn.execute("CREATE TABLE orders (customer TEXT, order_id TEXT, amount REAL, ts TEXT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                         [(f"user-{i % 10}", f"o{i}", None if i == 7 else i * 1.0, "2024-05-01T10:00:00Z")
                          for i in range(150)])
    op = InstasentIngestOperator(
        task_id="events", kind="events", event_type=ORDER, sql="SELECT * FROM orders WHERE amount IS NULL OR amount >= {{ params.min }}",
        sql_conn_id="warehouse", columns={"customer": "_user_id", "ts": "_event_date"}, on_invalid="dead_letter",
        rejects_table="ingest_rejects", rejects_conn_id="warehouse", batch_rows=40,
    )
    op.render_template_fields({"params": {"min": 0}})
    ti = FakeTI()
    result = op.execute(context={"ti": ti, "run_id": "manual__1"})
    assert (result["accepted"], result["rejected"]) == (149, 1)
    assert emulator_state(instasent_conn)["events"] == 149
    with sqlite3.connect(sqlite_conn) as conn:
        stored = conn.execute("SELECT source_row, _user_id, field, stage, run_id FROM ingest_rejects").fetchall()
    assert stored == [(7, "user-7", "_event_parameters.amount", "local", "manual__1")]


def test_ingest_failure_pushes_counts_and_raises(instasent_conn):
    from airflow_provider_instasent._airflow_compat import AirflowFailException
    from airflow_provider_instasent.ingest import RejectedRowsError
    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    bad = orders(5).assign(amount=None)
    op = InstasentIngestOperator(task_id="e", kind="events", event_type=ORDER, python_callable=lambda: bad)
    ti = FakeTI()
    # the same input would be rejected again: fail the task without retrying it
    with pytest.raises(AirflowFailException) as info:
        op.execute(context={"ti": ti})
    assert isinstance(info.value.__cause__, RejectedRowsError)
    assert ti.xcom["ingest_report"]["rejected"] == 5


def test_ingest_dry_run_and_callable_args(instasent_conn):
    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    op = InstasentIngestOperator(task_id="e", kind="contacts", python_callable=contacts, op_args=[7],
                                 op_kwargs={"prefix": "dry-"}, dry_run=True)
    result = op.execute(context={})
    assert result["dry_run"] and result["accepted"] == 7
    assert emulator_state(instasent_conn)["contacts"]["dsapi"] == 0


def test_ingest_operator_arguments_are_checked_at_parse_time():
    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    assert {"path", "sql", "event_type", "rejects_path", "columns"} <= set(InstasentIngestOperator.template_fields)
    with pytest.raises(ValueError, match="exactly one source"):
        InstasentIngestOperator(task_id="x", kind="events", path="a.parquet", sql="select 1", sql_conn_id="c")
    with pytest.raises(ValueError, match="kind"):
        InstasentIngestOperator(task_id="x", kind="users", path="a.parquet")
    with pytest.raises(ValueError, match="on_invalid"):
        InstasentIngestOperator(task_id="x", kind="events", path="a.parquet", on_invalid="ignore")
    with pytest.raises(TypeError):
        InstasentIngestOperator("x", "events")  # type: ignore[misc]


def test_delete_contacts_from_list_file_and_sql(instasent_conn, tmp_path, sqlite_conn):
    from airflow_provider_instasent.ingest import IngestError
    from airflow_provider_instasent.operators.ingest import (
        InstasentDeleteContactsOperator,
        InstasentIngestOperator,
    )

    InstasentIngestOperator(task_id="c", kind="contacts", python_callable=lambda: contacts(40)).execute({})
    result = InstasentDeleteContactsOperator(task_id="d", user_ids=["user-0", "user-1", "nobody"]).execute({})
    assert (result["requested"], result["deleted"], result["missing"]) == (3, 2, 1)
    (tmp_path / "ids.txt").write_text("user-2\nuser-3\n\n# comment\n")
    result = InstasentDeleteContactsOperator(task_id="d", path=str(tmp_path / "ids.txt")).execute({})
    assert result["deleted"] == 2
    pd.DataFrame({"_user_id": ["user-4", "user-5"]}).to_csv(tmp_path / "ids.csv", index=False)
    assert InstasentDeleteContactsOperator(task_id="d", path=str(tmp_path / "ids.csv")).execute({})["deleted"] == 2
    pq.write_table(pa.table({"uid": ["user-6"]}), tmp_path / "ids.parquet")
    op = InstasentDeleteContactsOperator(task_id="d", path=str(tmp_path / "ids.parquet"), column="uid")
    assert op.execute({})["deleted"] == 1
    with sqlite3.connect(sqlite_conn) as conn:
        conn.execute("CREATE TABLE gone (uid TEXT)")
        conn.executemany("INSERT INTO gone VALUES (?)", [(f"user-{i}",) for i in range(7, 20)])
    result = InstasentDeleteContactsOperator(task_id="d", sql="SELECT uid FROM gone", sql_conn_id="warehouse",
                                             max_in_flight=4).execute({})
    assert result["deleted"] == 13
    assert emulator_state(instasent_conn)["contacts"]["dsapi"] == 40 - 2 - 2 - 2 - 1 - 13
    dry = InstasentDeleteContactsOperator(task_id="d", user_ids="user-20, user-21", dry_run=True).execute({})
    assert dry["requested"] == 2 and dry["deleted"] == 0
    with pytest.raises(IngestError, match="did not exist"):
        InstasentDeleteContactsOperator(task_id="d", user_ids=["user-0"], missing_ok=False).execute({})
    with pytest.raises(ValueError, match="exactly one"):
        InstasentDeleteContactsOperator(task_id="d")
