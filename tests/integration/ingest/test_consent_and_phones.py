"""Consent fields are written on purpose only, nulls never clear them by default, and phone
numbers go out in E.164 (issue 16): the ingest engine and the stateful sync, against the emulator."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_provider_instasent.dataframe import write_contacts
from airflow_provider_instasent.ingest import IngestSchemaError
from airflow_provider_instasent.sync import sync_contacts
from tests.conftest import emulator_state

pytestmark = pytest.mark.integration


def stored(client, user_id: str) -> dict:
    contact = client.get_contact(user_id)
    return contact.get("contactData", contact)


def subscribed(client, user_id: str):
    aid = client.get_audience_contact_by_user(user_id)["id"]
    return client.get_audience_contact(aid)["attributesData"].get("_is_subscribed_sms")


@pytest.fixture
def opted_out(client) -> str:
    """u1 subscribed on purpose, then opted out through the API (the audience action)."""
    report = write_contacts(client, pd.DataFrame({"_user_id": ["u1"], "_phone_mobile": ["+34600000001"],
                                                  "_is_subscribed_sms": [True]}),
                            consent_fields=["_is_subscribed_sms"])
    assert report.accepted == 1 and subscribed(client, "u1") in (True, 1, "1")
    aid = client.get_audience_contact_by_user("u1")["id"]
    client.audience_action("sms-unsubscribe", aid, reason="STOP", sync=True)
    assert subscribed(client, "u1") in (False, 0, "0")
    return "u1"


def test_an_unmapped_consent_column_is_refused_and_nothing_is_sent(client, emu, opted_out):
    warehouse = pd.DataFrame({"_user_id": ["u1", "u2"], "_first_name": ["Ada", "Bob"],
                              "_is_subscribed_sms": [True, True]})  # a stale default in the warehouse
    before = emulator_state(emu)["contacts"]["dsapi"]
    with pytest.raises(IngestSchemaError, match=r"_is_subscribed_sms would write consent.*nothing was sent"):
        write_contacts(client, warehouse)
    assert emulator_state(emu)["contacts"]["dsapi"] == before  # u2 was not created either
    assert subscribed(client, "u1") in (False, 0, "0")


def test_an_ingest_without_the_consent_column_leaves_the_opt_out(client, opted_out):
    assert write_contacts(client, pd.DataFrame({"_user_id": ["u1"], "_first_name": ["Ada"]})).accepted == 1
    assert subscribed(client, "u1") in (False, 0, "0") and stored(client, "u1")["_first_name"] == "Ada"


def test_a_null_consent_value_leaves_the_stored_one_even_with_nulls_null(client, opted_out):
    df = pd.DataFrame({"_user_id": ["u1"], "_first_name": [None], "_is_subscribed_sms": [None]})
    write_contacts(client, df, nulls="null", consent_fields=["_is_subscribed_sms"])
    assert subscribed(client, "u1") in (False, 0, "0")  # consent: "leave" by default
    assert stored(client, "u1").get("_first_name") is None  # other fields follow nulls="null"
    write_contacts(client, df, consent_fields=["_is_subscribed_sms"], null_policy={"_is_subscribed_sms": "clear"})
    assert stored(client, "u1").get("_is_subscribed_sms") is None  # cleared only when asked per field


def test_null_policy_per_field_clears_one_field_and_leaves_another(client):
    write_contacts(client, pd.DataFrame({"_user_id": ["u9"], "_first_name": ["Ann"], "_last_name": ["Lee"]}))
    write_contacts(client, pd.DataFrame({"_user_id": ["u9"], "_first_name": [None], "_last_name": [None]}),
                   null_policy={"_first_name": "clear"})
    data = stored(client, "u9")
    assert data.get("_first_name") is None and data["_last_name"] == "Lee"


def test_a_sync_never_resubscribes_an_opted_out_contact(client, opted_out, tmp_path):
    state = str(tmp_path / "state.duckdb")
    model = pd.DataFrame({"_user_id": ["u1", "u2"], "_first_name": ["Ada", "Bob"]})
    assert sync_contacts(client, model, sync_id="crm", state=state).accepted == 2
    model.loc[0, "_first_name"] = "Ada L."
    assert sync_contacts(client, model, sync_id="crm", state=state).accepted == 1
    assert subscribed(client, "u1") in (False, 0, "0")
    with pytest.raises(IngestSchemaError, match="_is_subscribed_sms"):
        sync_contacts(client, model.assign(_is_subscribed_sms=True), sync_id="crm", state=state)
    assert subscribed(client, "u1") in (False, 0, "0")


def test_phones_in_e164_with_a_default_region_and_rejects_with_reasons(client):
    df = pd.DataFrame({"_user_id": ["p1", "p2", "p3", "p4", "p5"],
                       "_phone_mobile": ["600 00 00 01", "0034 600000002", "+44 7700 900123", "910000000",
                                         "12345"]})
    report = write_contacts(client, df, phones="e164", default_region="ES", on_invalid="skip")
    assert (report.accepted, report.rejected) == (2, 3)
    assert stored(client, "p1")["_phone_mobile"] == "+34600000001"
    assert stored(client, "p2")["_phone_mobile"] == "+34600000002"
    reasons = dict(zip(report.rejects["_user_id"], report.rejects["reason"]))
    assert "not a valid phone number" in reasons["p3"]
    assert "not a mobile number (fixed line)" in reasons["p4"]
    assert "not a valid phone number" in reasons["p5"] or "not a phone number" in reasons["p5"]


def test_phones_without_a_region_are_not_guessed(client):
    report = write_contacts(client, pd.DataFrame({"_user_id": ["q1"], "_phone_mobile": ["600000001"]}),
                            phones="e164", on_invalid="skip")
    assert report.rejected == 1 and "no country code" in report.rejects["reason"][0]
