"""No event lost in silence (issue 14), against the emulator with writes queued as the real API
queues them (``--queue-delay-ms`` > 0): contacts then events store every event; events whose
contact does not exist, or whose contact row was rejected, are rejects row by row; the counts
add up; ``verify=True`` reads back through public endpoints only.
"""

from __future__ import annotations

import pandas as pd
import pytest
import requests

from airflow_provider_instasent.ingest import write_contacts, write_events
from tests.conftest import emulator_state
from tests.support.ingest_helpers import ORDER

pytestmark = pytest.mark.integration

QUEUE_MS = 300


@pytest.fixture
def queued(emu):
    requests.post(f"{emu}/_emulator/queue", json={"delay_ms": QUEUE_MS}, timeout=10).raise_for_status()
    return emu


def stored(url: str) -> dict:
    """What the emulator holds once its queue has applied every write (test-side only)."""
    requests.post(f"{url}/_emulator/queue/flush", timeout=10).raise_for_status()
    return emulator_state(url)


def shop(n_customers: int = 60) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """Customers (three with one bad value each) and their orders, plus guest orders with no
    contact at all: the shape of the file the issue's new user loaded."""
    ids = [f"cust-{i}" for i in range(n_customers)]
    customers = pd.DataFrame({
        "_user_id": ids,
        "_email": [f"c{i}@shop.example" for i in range(n_customers)],
        "birthday": ["1990-01-01"] * n_customers,
    })
    bad = {"cust-3": "_email", "cust-10": "birthday", "cust-20": "_email"}
    customers.loc[3, "_email"] = "not-an-email"
    customers.loc[10, "birthday"] = "1990-02-30"
    customers.loc[20, "_email"] = "also bad"
    users = [ids[i % n_customers] for i in range(4 * n_customers)] + ["guest-1", "guest-2", "guest-1"]
    orders = pd.DataFrame({
        "_user_id": users,
        "_event_id": [f"ord-{i}" for i in range(len(users))],
        "_event_date": ["2024-05-01T10:00:00Z"] * len(users),
        "order_id": [f"O{i}" for i in range(len(users))],
        "amount": [10.0 + i for i in range(len(users))],
    })
    return customers, orders, bad


def test_contacts_then_events_with_a_queue_store_every_event_and_report_the_rest(queued, client):
    customers, orders, bad = shop()
    contacts = write_contacts(client, customers, sync=True, on_invalid="skip")
    assert (contacts.accepted, contacts.rejected) == (57, 3)
    # events follow at once: the contacts were applied before their responses (sync=True)
    events = write_events(client, orders, event_type=ORDER, on_invalid="skip", contacts_from=contacts)
    users = orders["_user_id"].tolist()
    of_bad = [i for i, u in enumerate(users) if u in bad]
    guests = [i for i, u in enumerate(users) if u.startswith("guest-")]
    assert events.rows == len(orders) == events.accepted + events.rejected + events.skipped
    assert (events.rejected, events.missing_contacts, events.skipped) == (len(of_bad) + len(guests),) * 2 + (0,)
    by_row = dict(zip(events.rejects["source_row"], events.rejects["reason"]))
    assert sorted(by_row) == sorted(of_bad + guests)
    for row in of_bad:
        field = bad[users[row]]
        assert f"contact {users[row]!r} was rejected earlier in this run or chain ({field}:" in by_row[row]
    for row in guests:
        assert by_row[row] == f"contact {users[row]!r} does not exist in datasource 'dsapi'"
    # the written contacts were known: only the guests were looked up (one search, then one GET each)
    assert events.contact_check_calls == 1 + 2
    assert stored(queued)["events"] == events.accepted  # every accepted event is stored


def test_without_sync_the_queued_contacts_are_not_vouched_for_so_their_events_are_rejects(queued, client):
    customers, orders, _ = shop(10)
    write_contacts(client, customers, on_invalid="skip")  # queued, not applied yet
    events = write_events(client, orders, event_type=ORDER, on_invalid="skip")
    assert events.accepted == 0 and events.rejected == events.rows == len(orders)
    assert events.rejects["reason"].str.contains("does not exist in datasource").all()
    assert stored(queued)["events"] == 0  # nothing was lost in silence: nothing was claimed either


def test_check_off_counts_unverified_events_and_verify_finds_the_lost_ones(queued, client):
    customers, orders, _ = shop(10)
    write_contacts(client, customers, sync=True, on_invalid="skip")
    report = write_events(client, orders, event_type=ORDER, check_contacts=False, verify=True, verify_wait_s=1.5)
    assert report.accepted == len(orders) and report.unverified == len(orders)
    lost = [i for i, u in enumerate(orders["_user_id"]) if u in ("cust-3", "cust-10", "cust-20", "guest-1", "guest-2")]
    assert (report.verified, report.not_stored) == (len(orders) - len(lost), len(lost))
    missing = report.rejects[report.rejects["stage"] == "verify"]
    assert sorted(missing["source_row"]) == lost
    assert stored(queued)["events"] == report.verified
    assert report.verify_calls >= 1


def test_verify_waits_for_queued_writes(queued, client):
    customers, _, _ = shop(10)
    report = write_contacts(client, customers, on_invalid="skip", verify=True)  # queued: read back once applied
    assert (report.accepted, report.verified, report.not_stored) == (9, 9, 0)  # cust-3 has a bad email


def test_drop_value_keeps_the_customer_and_their_orders(queued, client):
    customers, orders, bad = shop(30)
    contacts = write_contacts(client, customers, sync=True, invalid_values="drop_value")
    assert (contacts.accepted, contacts.rejected, contacts.values_dropped) == (30, 0, 3)
    dropped = contacts.rejects
    assert set(dropped["stage"]) == {"dropped"} and dict(zip(dropped["_user_id"], dropped["field"])) == bad
    assert client.get_contact("cust-3")["contactData"].get("_email") is None  # the bad value was left out
    assert client.get_contact("cust-3")["contactData"]["birthday"] == "1990-01-01"  # the rest was kept
    events = write_events(client, orders, event_type=ORDER, on_invalid="skip", contacts_from=contacts)
    assert events.rejected == 3  # the guests' orders only
    assert stored(queued)["events"] == events.accepted == len(orders) - 3


def test_a_chain_passes_the_contact_rejects_as_a_parquet_file(queued, client, tmp_path):
    customers, orders, bad = shop(10)
    rejects = tmp_path / "contacts_rejects.parquet"
    write_contacts(client, customers, sync=True, on_invalid="dead_letter", rejects_path=str(rejects))
    events = write_events(client, orders, event_type=ORDER, on_invalid="skip", contacts_from=str(rejects))
    reasons = events.rejects.set_index("source_row")["reason"]
    of_bad = [i for i, u in enumerate(orders["_user_id"]) if u in bad]
    assert all("was rejected earlier in this run or chain" in reasons[i] for i in of_bad)
    assert stored(queued)["events"] == events.accepted


def test_create_missing_contacts_sends_user_data_for_contacts_that_do_not_exist(queued, client):
    customers, orders, bad = shop(10)
    contacts = write_contacts(client, customers, sync=True, on_invalid="skip")
    events = write_events(client, orders, event_type=ORDER, on_invalid="skip", contacts_from=contacts,
                          create_missing_contacts=True)
    of_bad = [i for i, u in enumerate(orders["_user_id"]) if u in bad]
    assert (events.contacts_created, events.rejected) == (2, len(of_bad))  # the guests; cust-3 stays a reject
    assert stored(queued)["events"] == events.accepted == len(orders) - len(of_bad)
    assert client.get_contact("guest-1")["contactData"]["_user_id"] == "guest-1"
