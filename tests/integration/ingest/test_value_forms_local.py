"""The loader's own validation takes the value forms the emulator takes (docs/emulator.md,
"Value forms": the forms Instasent's own integrations send) and stores the same value.

Each form goes twice to the emulator: as the official clients send it (raw, through
``push_contacts``/``push_events``) and through ``write_contacts``/``write_events``, which
validate and normalise it locally first. Both must be accepted and stored alike. Forms the
emulator refuses are local rejects, except the boolean words the loader also reads
(``TRUE_STRINGS``/``FALSE_STRINGS`` of ``datatypes``, sent as ``"1"``/``"0"``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from airflow_provider_instasent.ingest import write_contacts, write_events
from tests.support.ingest_helpers import ORDER

pytestmark = pytest.mark.integration


def stored(client: Any, user_id: str) -> dict:
    return dict(client.get_contact(user_id)["contactData"])


def both_ways(client: Any, field: str, value: Any) -> tuple[Any, Any]:
    """The value stored from the raw form and from the loader."""
    raw = client.push_contacts([{"_user_id": "raw", field: value}])
    assert raw.accepted == [0], raw
    report = write_contacts(client, pd.DataFrame({"_user_id": ["ours"], field: pd.Series([value], dtype=object)}))
    assert (report.accepted, report.rejected) == (1, 0), report.rejects
    return stored(client, "raw").get(field), stored(client, "ours").get(field)


@pytest.mark.parametrize("text", ["120", "49.90", "-3", "+7", "0.5", ".5", "1e3"])
def test_numeric_strings_for_a_number(emu, client, text):
    raw, ours = both_ways(client, "loyalty_points", text)
    assert raw == ours == float(text) and not isinstance(ours, str)


@pytest.mark.parametrize(("text", "value"), [("1", True), ("0", False), ("true", True), ("false", False),
                                             ("TRUE", True), ("False", False)])
def test_boolean_strings(emu, client, text, value):
    assert both_ways(client, "_email_verified", text) == (value, value)


def test_boolean_null_clears_in_both(emu, client):
    client.push_contacts([{"_user_id": "raw", "_email_verified": "1"}])
    write_contacts(client, pd.DataFrame({"_user_id": ["ours"], "_email_verified": ["1"]}))
    client.push_contacts([{"_user_id": "raw", "_email_verified": None}])
    write_contacts(client, pd.DataFrame({"_user_id": ["ours"], "_email_verified": [None]}), nulls="null")
    assert "_email_verified" not in stored(client, "raw") and "_email_verified" not in stored(client, "ours")


def test_a_single_value_for_a_multi_value_attribute_is_a_one_value_list(emu, client):
    assert both_ways(client, "_client_tags", "vip") == (["vip"], ["vip"])
    assert both_ways(client, "_client_tags", "a,b") == (["a,b"], ["a,b"])  # not split, in either
    assert both_ways(client, "_client_tags", ["a", "b"]) == (["a", "b"], ["a", "b"])


@pytest.mark.parametrize(("text", "reason"), [("1,5", "not a number"), ("12 points", "not a number"),
                                              ("NaN", "not a number"), ("", "not a number"),
                                              ("1e400", "not a finite number")])
def test_what_the_emulator_refuses_is_a_local_reject(emu, client, text, reason):
    assert client.push_contacts([{"_user_id": "raw", "loyalty_points": text}]).accepted == []
    report = write_contacts(client, pd.DataFrame({"_user_id": ["ours"], "loyalty_points": [text]}), on_invalid="skip")
    assert report.rejected_local == 1 and reason in report.rejects["reason"][0]


def test_boolean_words_the_loader_reads_are_sent_as_1_or_0(emu, client):
    """``yes``/``on``/``no`` are refused by the emulator as sent, read by the loader (one table:
    ``datatypes.TRUE_STRINGS``) and sent as ``"1"``/``"0"``."""
    assert client.push_contacts([{"_user_id": "raw", "_email_verified": "yes"}]).accepted == []
    report = write_contacts(client, pd.DataFrame({"_user_id": ["a", "b", "c"], "_email_verified": ["yes", "on", "no"]}))
    assert report.accepted == 3
    assert [stored(client, u)["_email_verified"] for u in "abc"] == [True, True, False]


def test_event_parameters_as_strings_in_both(emu, client):
    write_contacts(client, pd.DataFrame({"_user_id": ["u1"]}), sync=True)
    raw = client.push_events([{"_user_id": "u1", "_event_id": "raw-1", "_event_type": ORDER,
                               "_event_parameters": {"order_id": "A1", "amount": "49.90", "items": "sku-1"}}])
    assert raw.accepted == [0], raw
    report = write_events(client, pd.DataFrame({"_user_id": ["u1"], "_event_id": ["ours-1"], "order_id": ["A1"],
                                                "amount": ["49.90"], "items": ["sku-1"]}), event_type=ORDER)
    assert (report.accepted, report.rejected) == (1, 0)
    events = {e["_event_id"]: e["_event_parameters"] for e in client.search_events(None)}
    assert events["raw-1"] == events["ours-1"] == {"order_id": "A1", "amount": 49.9, "items": ["sku-1"]}
