"""The example DAG ``instasent_sms_order_shipped`` with real Airflow (``dag.test()``) on a DuckDB warehouse."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pytest

from tests.system.test_example_dags import _run, dagbag, runs_dags  # noqa: F401 (fixtures)

DAG_ID = "instasent_sms_order_shipped"


def _zone_inside_window() -> str:
    """A fixed-offset zone where it is now between 10:00 and 20:00 (the DAG's window is 09:00-21:00)."""
    now = dt.datetime.now(dt.UTC)
    for offset in range(-12, 15):
        if 10 <= (now + dt.timedelta(hours=offset)).hour < 20:
            return f"Etc/GMT{-offset:+d}" if offset else "UTC"  # Etc/GMT signs are inverted
    raise AssertionError("unreachable")


@runs_dags
@pytest.mark.integration
@pytest.mark.airflow
@pytest.mark.usefixtures("airflow_db")
def test_the_example_sends_each_shipped_order_once(dagbag, instasent_conn, client, tmp_path,  # noqa: F811
                                                    monkeypatch):
    customers = [("c1", "Ada", "600000001"), ("c2", "Bob", "+34 600 000 002"), ("c3", "Cy", "910000000")]
    assert client.push_contacts([{"_user_id": c, "_first_name": n, "_phone_mobile": f"+3460000000{i}"}
                                 for i, (c, n, _) in enumerate(customers[:2], 1)], sync=True).ok
    warehouse = tmp_path / "warehouse.duckdb"
    tz = _zone_inside_window()
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE TABLE customers (customer_id TEXT, first_name TEXT, phone TEXT, timezone TEXT)")
        con.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", [(*c, tz) for c in customers])
        con.execute("CREATE TABLE shipments (order_id TEXT, customer_id TEXT, carrier TEXT, shipped_at TIMESTAMP)")
        con.execute("INSERT INTO shipments VALUES ('1001', 'c1', 'UPS', now()), ('1002', 'c2', 'DHL', now()), "
                    "('1003', 'c3', 'UPS', now()), ('0999', 'c1', 'UPS', now() - INTERVAL 5 DAY)")
    monkeypatch.setenv("AIRFLOW_CONN_INSTASENT_WAREHOUSE", json.dumps({"conn_type": "duckdb", "host": str(warehouse)}))

    dagbag.dags[DAG_ID].get_task("order_shipped_sms").retries = 0  # a failure shows at once, not after a retry delay
    _run(dagbag, DAG_ID, {"max_recipients": 500})
    texts = {p: [s["text"] for s in client.list_sms_for_audience(p)] for p in ("+34600000001", "+34600000002")}
    assert texts == {"+34600000001": ["Hi Ada, your order 1001 has shipped with UPS."],
                     "+34600000002": ["Hi Bob, your order 1002 has shipped with DHL."]}
    with duckdb.connect(str(warehouse)) as con:
        assert con.execute("SELECT outcome, reason FROM instasent_sms_outcomes WHERE idempotency_key IS NULL"
                           ).fetchall()[0][0] == "rejected"  # c3's landline: rejected with its reason
        con.execute("INSERT INTO shipments VALUES ('1004', 'c1', 'SEUR', now())")

    _run(dagbag, DAG_ID, {"max_recipients": 500})  # the next run: only the new order is sent
    assert [s["text"] for s in client.list_sms_for_audience("+34600000001")] == [
        "Hi Ada, your order 1001 has shipped with UPS.", "Hi Ada, your order 1004 has shipped with SEUR."]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        ledger = con.execute("SELECT idempotency_key, status FROM instasent_sms_ledger ORDER BY 1").fetchall()
        runs = con.execute("SELECT run_id, outcome, COUNT(*) FROM instasent_sms_outcomes GROUP BY ALL "
                           "ORDER BY MIN(logged_at), outcome").fetchall()
    assert ledger == [("1001", "sent"), ("1002", "sent"), ("1004", "sent")]
    assert [(o, n) for _, o, n in runs] == [("rejected", 1), ("sent", 2), ("rejected", 1), ("sent", 1),
                                            ("skipped", 2)]
