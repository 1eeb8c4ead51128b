"""Shared by the SMS tests: contacts with mobile phones on the emulator, and ledger readers."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from airflow_provider_instasent.sms import LEDGER_TABLE, OUTCOMES_TABLE

#: the seeded recipients: user id → phone as the warehouse writes it (a Spanish mobile, local form)
PHONES = {f"u{i}": f"6000000{i:02d}" for i in range(1, 7)}


@pytest.fixture
def recipients(client: Any) -> dict[str, str]:
    """Six contacts with mobile phones; returns user id → E.164."""
    result = client.push_contacts([{"_user_id": u, "_first_name": f"Name{u}", "_phone_mobile": "+34" + p}
                                   for u, p in PHONES.items()], sync=True)
    assert result.ok, result.errors
    return {u: "+34" + p for u, p in PHONES.items()}


def ledger_rows(path: Any, table: str = LEDGER_TABLE) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        order = "idempotency_key" if table == LEDGER_TABLE else "run_id, source_row"
        return conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


def outcomes(path: Any, run_id: str) -> list[tuple[int, str]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(f"SELECT source_row, outcome FROM {OUTCOMES_TABLE} WHERE run_id = ? ORDER BY source_row",
                            [run_id]).fetchall()


def sms_to(client: Any, phone: str) -> list[dict[str, Any]]:
    return list(client.list_sms_for_audience(phone))
