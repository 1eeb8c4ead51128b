"""The bulk SMS engine against the emulator over HTTP, its ledger in a real DuckDB file (docs/sms.md)."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from airflow_provider_instasent.ingest.sources import SqlSource
from airflow_provider_instasent.sms import SmsGuardError, send_sms
from airflow_provider_instasent.sms.ledger import Ledger
from tests.integration.sms.conftest import PHONES, ledger_rows, outcomes, sms_to

pytestmark = pytest.mark.integration


def orders(users=("u1", "u2", "u3")) -> pd.DataFrame:
    return pd.DataFrame({
        "order_id": [f"o-{u}" for u in users],
        "phone": [PHONES[u] for u in users],  # local form: default_region makes them E.164
        "first_name": [f"Name{u}" for u in users],
        "carrier": ["UPS"] * len(users),
    })


TEMPLATE = "Hi {first_name}, order {order_id} shipped with {carrier}."


def test_bulk_sends_each_row_once_and_a_rerun_sends_nothing(client, recipients, tmp_path):
    state = tmp_path / "state.duckdb"
    first = send_sms(client, orders(), ledger=str(state), text=TEMPLATE, default_region="ES", key_column="order_id")
    assert (first.sent, first.rows, first.status) == (3, 3, "ok")
    texts = [s["text"] for s in sms_to(client, recipients["u1"])]
    assert texts == ["Hi Nameu1, order o-u1 shipped with UPS."]
    assert [r[4] for r in ledger_rows(state)] == ["sent"] * 3  # status column
    assert outcomes(state, first.run_id) == [(0, "sent"), (1, "sent"), (2, "sent")]

    again = send_sms(client, orders(("u1", "u2", "u3", "u4")), ledger=str(state), text=TEMPLATE,
                     default_region="ES", key_column="order_id")
    assert (again.skipped, again.sent) == (3, 1)
    assert all(len(sms_to(client, recipients[u])) == 1 for u in ("u1", "u2", "u3", "u4"))
    assert outcomes(state, again.run_id) == [(0, "skipped"), (1, "skipped"), (2, "skipped"), (3, "sent")]


def test_derived_keys_follow_recipient_text_and_scope(client, recipients, tmp_path):
    state = str(tmp_path / "state.duckdb")
    df = orders(("u1",))
    assert send_sms(client, df, ledger=state, text="Daily reminder", default_region="ES", scope="2026-11-27").sent == 1
    assert send_sms(client, df, ledger=state, text="Daily reminder", default_region="ES", scope="2026-11-27").skipped == 1
    assert send_sms(client, df, ledger=state, text="Daily reminder", default_region="ES", scope="2026-11-28").sent == 1
    assert len(sms_to(client, recipients["u1"])) == 2


def test_every_row_gets_one_outcome_with_its_reason(client, recipients, tmp_path):
    df = pd.DataFrame({
        "order_id": ["a", "b", "c", "d", "a", "e"],
        "phone": ["600000001", "910000000", "not a number", "+34600000002", "600000001", "600000099"],
    })
    report = send_sms(client, df, ledger=str(tmp_path / "s.duckdb"), text="Shipped", default_region="ES",
                      key_column="order_id")
    by_row = {o.source_row: (o.outcome, o.reason or "") for o in report.outcomes}
    assert by_row[0][0] == "sent" and by_row[3][0] == "sent"
    assert by_row[1][0] == "rejected" and "not a mobile number" in by_row[1][1]
    assert by_row[2][0] == "rejected" and "not a phone number" in by_row[2][1]
    assert by_row[4] == ("refused", "the same idempotency key as row 0 in this input")
    assert by_row[5][0] == "failed" and "404" in by_row[5][1]  # no audience contact has that phone
    assert report.rows == 6 == report.sent + report.rejected + report.refused + report.failed


def test_no_default_region_means_no_guess(client, recipients, tmp_path):
    report = send_sms(client, orders(("u1",)), ledger=str(tmp_path / "s.duckdb"), text="x")
    assert report.rejected == 1 and "no country code" in report.outcomes[0].reason
    assert sms_to(client, recipients["u1"]) == []


def test_max_recipients_refuses_before_the_first_send(client, recipients, tmp_path):
    state = tmp_path / "s.duckdb"
    with pytest.raises(SmsGuardError, match="max_recipients=2") as exc:
        send_sms(client, orders(), ledger=str(state), text="x", default_region="ES", max_recipients=2)
    assert exc.value.report.refused == 3 and exc.value.report.sent == 0
    assert all(sms_to(client, p) == [] for p in recipients.values())
    assert [o for _, o in outcomes(state, exc.value.report.run_id)] == ["refused"] * 3


def test_an_answer_lost_after_the_send_is_looked_up_not_resent(client, recipients, emu, tmp_path, monkeypatch):
    """The emulator stores the SMS and drops the connection before answering (``drop_after``)."""
    state = str(tmp_path / "s.duckdb")
    send = client.send_direct_sms

    def send_then_heal(*args, **kwargs):  # the fault hits the send only, not the lookup after it
        try:
            return send(*args, **kwargs)
        finally:
            requests.post(f"{emu}/_emulator/faults", json={"fault_rate": 0.0}, timeout=10).raise_for_status()

    monkeypatch.setattr(client, "send_direct_sms", send_then_heal)
    requests.post(f"{emu}/_emulator/faults", json={"fault_rate": 1.0, "fault_kinds": ["drop_after"]},
                  timeout=10).raise_for_status()
    report = send_sms(client, orders(("u1",)), ledger=state, text="Once", default_region="ES")
    assert report.sent == 1 and "found by lookup" in report.outcomes[0].reason and report.lookups == 1
    assert len(sms_to(client, recipients["u1"])) == 1
    assert send_sms(client, orders(("u1",)), ledger=state, text="Once", default_region="ES").skipped == 1
    assert len(sms_to(client, recipients["u1"])) == 1


def test_a_pending_attempt_is_looked_up_before_any_resend(client, recipients, tmp_path):
    """A run that crashed after writing ``pending``: sent if the API lists nothing, skipped if it does."""
    state = str(tmp_path / "s.duckdb")
    with Ledger.open(state, "crashed-run") as ledger:  # a crash before the request left
        ledger.pending("o-u1", recipients["u1"], "h", None, "crashed-run")
    client.send_direct_sms(recipients["u2"], "Hi Nameu2, order o-u2 shipped with UPS.")  # ...and one after
    with Ledger.open(state, "crashed-run") as ledger:
        ledger.pending("o-u2", recipients["u2"], "h", None, "crashed-run")
    report = send_sms(client, orders(("u1", "u2")), ledger=state, text=TEMPLATE, default_region="ES",
                      key_column="order_id")
    assert [o.outcome for o in report.outcomes] == ["sent", "skipped"] and report.lookups == 2
    assert "found as SMS" in report.outcomes[1].reason
    assert len(sms_to(client, recipients["u1"])) == 1 and len(sms_to(client, recipients["u2"])) == 1


def test_sources_sql_and_parquet(client, recipients, tmp_path):
    path = tmp_path / "orders.parquet"
    pq.write_table(pa.Table.from_pandas(orders(("u1", "u2")), preserve_index=False), path)
    state = str(tmp_path / "s.duckdb")
    assert send_sms(client, str(path), ledger=state, text=TEMPLATE, default_region="ES", key_column="order_id").sent == 2
    wh = duckdb.connect(str(tmp_path / "wh.duckdb"))
    wh.execute("CREATE TABLE orders AS SELECT * FROM read_parquet(?)", [str(path)])
    wh.execute("INSERT INTO orders VALUES ('o-u3', '600000003', 'Nameu3', 'DHL')")
    report = send_sms(client, SqlSource("SELECT * FROM orders ORDER BY order_id", wh), ledger=state, text=TEMPLATE,
                      default_region="ES", key_column="order_id")
    assert (report.skipped, report.sent) == (2, 1)
    wh.close()


def test_pacing_within_the_rate_limit(client, recipients, emu, tmp_path):
    requests.post(f"{emu}/_emulator/faults", json={"rate_limit": 240}, timeout=10).raise_for_status()  # 4/s
    users = tuple(PHONES)
    report = send_sms(client, orders(users), ledger=str(tmp_path / "s.duckdb"), text=TEMPLATE, default_region="ES",
                      key_column="order_id", max_per_second=20)
    assert report.sent == len(users) and report.failed == 0
    assert all(len(sms_to(client, recipients[u])) == 1 for u in users)


class FakeClock:
    def __init__(self, moment: dt.datetime) -> None:
        self.moment = moment

    def __call__(self) -> dt.datetime:
        return self.moment


def test_quiet_hours_in_each_recipients_local_time(client, recipients, tmp_path):
    state = str(tmp_path / "s.duckdb")
    df = orders(("u1", "u2")).assign(tz=["Europe/Madrid", "America/New_York"])
    clock = FakeClock(dt.datetime(2026, 11, 28, 10, 0, tzinfo=dt.UTC))  # 11:00 Madrid, 05:00 New York
    kw = {"ledger": state, "text": TEMPLATE, "default_region": "ES", "key_column": "order_id",
              "send_window": ("09:00", "21:00"), "timezone_column": "tz", "clock": clock}
    report = send_sms(client, df, **kw)
    assert [o.outcome for o in report.outcomes] == ["sent", "held"]
    assert report.next_window_at == "2026-11-28T14:00:00Z"  # 09:00 in New York
    assert sms_to(client, recipients["u2"]) == []
    clock.moment = dt.datetime(2026, 11, 28, 14, 0, tzinfo=dt.UTC)
    report = send_sms(client, df, **kw)
    assert [o.outcome for o in report.outcomes] == ["skipped", "sent"] and report.next_window_at is None


def test_quiet_hours_from_the_phones_country(client, recipients, tmp_path):
    """No time zone column: a Spanish mobile may be in Madrid or the Canaries; inside only when inside in both."""
    kw = {"ledger": str(tmp_path / "s.duckdb"), "text": "x", "default_region": "ES", "send_window": ("09:00", "21:00")}
    at_0830_canaries = FakeClock(dt.datetime(2026, 11, 28, 8, 30, tzinfo=dt.UTC))  # 09:30 Madrid, 08:30 Canaries
    report = send_sms(client, orders(("u1",)), clock=at_0830_canaries, **kw)
    assert report.held == 1 and report.next_window_at == "2026-11-28T09:00:00Z"
    assert "Atlantic/Canary" in report.outcomes[0].reason


@pytest.mark.postgres
def test_the_ledger_in_postgresql(client, recipients, postgres_url):
    """Any common-sql database holds the ledger: here a psycopg2 connection to a real PostgreSQL."""
    import psycopg2

    name = f"pg-{dt.datetime.now(dt.UTC).timestamp()}"
    df = orders(("u1", "u2")).assign(order_id=lambda d: name + d["order_id"])  # keys of this test only
    conn = psycopg2.connect(postgres_url)
    try:
        first = send_sms(client, df, ledger=conn, text=TEMPLATE, default_region="ES",
                         key_column="order_id", scope=name, ledger_name=name)
        again = send_sms(client, df, ledger=conn, text=TEMPLATE, default_region="ES",
                         key_column="order_id", scope=name, ledger_name=name)
        assert (first.sent, again.skipped) == (2, 2)
        with conn.cursor() as cur:
            cur.execute("SELECT outcome, COUNT(*) FROM instasent_sms_outcomes WHERE run_id IN (%s, %s) "
                        "GROUP BY outcome ORDER BY outcome", (first.run_id, again.run_id))
            assert cur.fetchall() == [("sent", 2), ("skipped", 2)]
            cur.execute("DELETE FROM instasent_sms_ledger WHERE idempotency_key LIKE %s", (name + "%",))
        conn.commit()
    finally:
        conn.close()
    assert len(sms_to(client, recipients["u1"])) == 1
