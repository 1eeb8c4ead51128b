"""The SMS operators via ``op.execute(context)``: the ledger through task retries, the bulk form from
a SQL warehouse, and quiet hours as a deferral on a date-time trigger (a fake clock)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from tests.integration.sms.conftest import sms_to
from tests.support import FakeTI

pytestmark = pytest.mark.integration
pytest.importorskip("airflow")  # the operators: skipped in the analyst install (no Airflow)


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE shipments (order_id TEXT, phone TEXT, first_name TEXT, tz TEXT)")
        conn.executemany("INSERT INTO shipments VALUES (?, ?, ?, ?)", [
            ("o1", "600000001", "Ada", "Europe/Madrid"), ("o2", "600000002", "Bob", "America/New_York"),
            ("o3", "600000003", "Cy", "Europe/Madrid")])
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    return db


def test_one_sms_with_a_ledger_is_sent_once_across_task_retries(instasent_conn, client, recipients, tmp_path):
    from airflow_provider_instasent.operators.sms import InstasentSendSmsOperator

    ledger = str(tmp_path / "ledger.duckdb")
    op = InstasentSendSmsOperator(task_id="notify", phone="600000001", default_region="ES", text="Shipped!",
                                  ledger_path=ledger, idempotency_key="order-o1-shipped")
    first = op.execute(context={})
    assert first["sent"] is True and first["recipient"] == "+34600000001"
    retry = op.execute(context={})  # a task retry: the ledger says it went out
    assert retry["sent"] is False and retry["outcome"] == "skipped" and retry["sms_id"] == first["sms_id"]
    assert len(sms_to(client, recipients["u1"])) == 1


def test_one_sms_by_user_id_without_a_ledger_keeps_the_duplicate_check(instasent_conn, client, recipients):
    from airflow_provider_instasent.operators.sms import InstasentSendSmsOperator

    op = InstasentSendSmsOperator(task_id="notify", user_id="u2", text="Hello")
    assert op.execute(context={})["sent"] is True
    assert op.execute(context={})["sent"] is False
    assert len(sms_to(client, recipients["u2"])) == 1


def test_bulk_from_a_warehouse_query_writes_outcomes_next_to_it(instasent_conn, client, recipients, warehouse):
    from airflow_provider_instasent.operators.sms import InstasentSendBulkSmsOperator

    op = InstasentSendBulkSmsOperator(
        task_id="shipped", sql="SELECT * FROM shipments ORDER BY order_id", sql_conn_id="warehouse",
        text="Hi {first_name}, order {order_id} has shipped.", key_column="order_id", default_region="ES")
    ti = FakeTI()
    result = op.execute(context={"ti": ti})
    assert (result["sent"], result["rows"]) == (3, 3) and json.dumps(result)  # counts only
    assert ti.xcom["sms_report"]["sent"] == 3
    assert [t["text"] for t in sms_to(client, recipients["u2"])] == ["Hi Bob, order o2 has shipped."]
    with sqlite3.connect(warehouse) as conn:  # the ledger and the outcomes live in the source's database
        assert conn.execute("SELECT COUNT(*) FROM instasent_sms_ledger WHERE status = 'sent'").fetchone() == (3,)
        assert conn.execute("SELECT COUNT(*) FROM instasent_sms_outcomes").fetchone() == (3,)
    assert op.execute(context={"ti": ti})["skipped"] == 3


def test_max_recipients_fails_the_task_without_retries(instasent_conn, client, recipients, warehouse):
    from airflow_provider_instasent._airflow_compat import AirflowFailException
    from airflow_provider_instasent.operators.sms import InstasentSendBulkSmsOperator

    op = InstasentSendBulkSmsOperator(task_id="shipped", sql="SELECT * FROM shipments", sql_conn_id="warehouse",
                                      text="x {order_id}", key_column="order_id", default_region="ES",
                                      max_recipients="2")
    with pytest.raises(AirflowFailException, match="max_recipients=2"):
        op.execute(context={"ti": FakeTI()})
    assert all(sms_to(client, p) == [] for p in recipients.values())


class SteppingClock:
    """A fake clock: each call returns the next moment (the last one repeats)."""

    def __init__(self, *moments: dt.datetime) -> None:
        self.moments = list(moments)

    def __call__(self) -> dt.datetime:
        return self.moments.pop(0) if len(self.moments) > 1 else self.moments[0]


def test_quiet_hours_defer_on_a_date_time_trigger_then_send(instasent_conn, client, recipients, warehouse, tmp_path):
    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 3.0
        from airflow.exceptions import TaskDeferred  # type: ignore[no-redef]

    from airflow_provider_instasent.operators.sms import InstasentSendBulkSmsOperator

    madrid_noon = dt.datetime(2026, 11, 28, 11, 0, tzinfo=dt.UTC)  # 12:00 Madrid, 06:00 New York
    ny_nine = dt.datetime(2026, 11, 28, 14, 0, tzinfo=dt.UTC)
    clock = SteppingClock(madrid_noon, madrid_noon, madrid_noon, ny_nine)  # one reading per row
    ledger = tmp_path / "ledger.duckdb"
    op = InstasentSendBulkSmsOperator(
        task_id="shipped", sql="SELECT * FROM shipments ORDER BY order_id", sql_conn_id="warehouse",
        ledger_path=str(ledger), text="Order {order_id} shipped", key_column="order_id", default_region="ES",
        send_window=("09:00", "21:00"), timezone_column="tz", clock=clock)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context={"ti": FakeTI()})
    assert deferred.value.trigger.moment == ny_nine and deferred.value.method_name == "execute_complete"
    assert sms_to(client, recipients["u2"]) == [] and len(sms_to(client, recipients["u1"])) == 1
    result = op.execute_complete(context={"ti": FakeTI()}, event={"status": "success"})
    assert (result["skipped"], result["sent"], result["held"]) == (2, 1, 0)
    assert len(sms_to(client, recipients["u2"])) == 1


def test_quiet_hours_skip_policy_leaves_held_rows_to_the_next_run(instasent_conn, client, recipients, warehouse,
                                                                  tmp_path):
    from airflow_provider_instasent.operators.sms import InstasentSendBulkSmsOperator

    op = InstasentSendBulkSmsOperator(
        task_id="shipped", sql="SELECT * FROM shipments", sql_conn_id="warehouse", ledger_path=str(tmp_path / "l.db"),
        text="x {order_id}", key_column="order_id", default_region="ES", send_window=("09:00", "21:00"),
        timezone_column="tz", outside_window="skip", clock=lambda: dt.datetime(2026, 11, 28, 2, 0, tzinfo=dt.UTC))
    result = op.execute(context={"ti": FakeTI()})
    assert (result["held"], result["sent"]) == (3, 0) and result["next_window_at"] == "2026-11-28T08:00:00Z"
