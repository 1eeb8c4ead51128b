"""What is retried and what never is, observed on the wire (the client's request counter and the
emulator's store), not only in the retry policy's unit tests.

* An SMS send is not idempotent: after an ambiguous failure (a 5xx, a connection lost before
  or after the server acted, a read timeout) it is never retried, so a message is never sent
  twice. It is retried only when the API certainly did not act (a 429, a refused connection).
* 4xx answers are never retried; 429, 5xx and lost connections are, for idempotent calls.
"""

from __future__ import annotations

import socket
import time

import pytest

from airflow_provider_instasent.client import endpoints as ep
from airflow_provider_instasent.client.errors import (
    AuthenticationError,
    BadRequestError,
    InstasentConnectionError,
    InstasentError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    ValidationError,
)

from .conftest import READONLY_TOKEN, make_client
from .helpers import stored_event_ids

pytestmark = pytest.mark.integration


def sms_count(emulator) -> int:
    with emulator.store.lock:
        return len(emulator.store.projects["demo"].sms)


def recipient(client) -> str:
    client.push_contacts([{"_user_id": "sms-1", "_phone_mobile": "+34600000001"}])
    return str(client.get_audience_contact_by_user("sms-1")["id"])


def attempts(client, before: dict) -> int:
    return client.stats.snapshot()["requests"] - before["requests"]


@pytest.mark.parametrize(("fault", "error", "sent"), [
    ("500", ServerError, 0), ("502", ServerError, 0), ("503", ServerError, 0),
    ("drop_before", InstasentConnectionError, 0),  # the client cannot know the server did nothing
    ("drop_after", InstasentConnectionError, 1),  # the server sent it; the answer was lost
    ("timeout", InstasentConnectionError, 1),  # the server sent it after the client gave up
])
def test_an_sms_is_never_retried_after_an_ambiguous_failure(fault, error, sent, emulator):
    with make_client(emulator.base_url, max_retries=5, timeout=(2.0, 0.3)) as client:
        audience_id = recipient(client)
        if fault == "timeout":
            emulator.set_faults(latency_ms=700)
        else:
            emulator.set_faults(fault_rate=1.0, fault_kinds=[fault])
        before = client.stats.snapshot()
        with pytest.raises(error) as info:
            client.send_direct_sms(audience_id, "Your order has shipped")
        assert attempts(client, before) == 1 and info.value.attempts == 1
    emulator.set_faults(fault_rate=0.0, latency_ms=0)
    time.sleep(0.8 if fault == "timeout" else 0)  # the late request lands now
    assert sms_count(emulator) == sent


def test_an_sms_is_retried_after_a_429(emulator):
    with make_client(emulator.base_url, max_retries=3, pace=False) as client:
        audience_id = recipient(client)
        emulator.set_faults(rate_limit=60)  # one request per second per endpoint class
        client.get_project()  # spends the bucket of the "default" class, which the send uses too
        before = client.stats.snapshot()
        sms = client.send_direct_sms(audience_id, "Your order has shipped")
        assert attempts(client, before) == 2 and client.stats.snapshot()["statuses"].get(429) == 1
    assert sms["status"] == "sent" and sms_count(emulator) == 1


def test_an_sms_is_retried_when_the_connection_was_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with make_client(f"http://127.0.0.1:{port}", max_retries=2) as client, \
            pytest.raises(InstasentConnectionError) as info:
        client.send_direct_sms("000000000000000000000001", "hi")
    assert info.value.attempts == 3  # nothing reached a server: safe to try again


@pytest.mark.parametrize(("name", "error"), [
    ("400 malformed body", BadRequestError), ("401 bad token", AuthenticationError),
    ("403 missing scope", PermissionDeniedError), ("404 unknown contact", NotFoundError),
    ("422 rejected body", ValidationError),
])
def test_4xx_answers_are_never_retried(name, error, emulator):
    calls = {
        "400 malformed body": lambda c: c.call(ep.PUSH_CONTACTS, body=b'{"not": "an array"}'),
        "401 bad token": lambda c: make_client(emulator.base_url, token="nope", max_retries=5).get_project(),
        "403 missing scope": lambda c: make_client(emulator.base_url, token=READONLY_TOKEN, max_retries=5)
        .push_contacts([{"_user_id": "x"}]),
        "404 unknown contact": lambda c: c.get_contact("nobody"),
        "422 rejected body": lambda c: c.call(ep.PUSH_EVENTS, json=[{"_user_id": "x"}]),
    }
    with make_client(emulator.base_url, max_retries=5) as client, pytest.raises(error) as info:
        calls[name](client)
    assert info.value.attempts == 1


def test_a_422_push_is_data_not_an_error_and_is_not_retried(emulator):
    with make_client(emulator.base_url, max_retries=5) as client:
        before = client.stats.snapshot()
        result = client.push_contacts([{"_user_id": "x", "plan": 5}])
        assert result.status == 422 and result.errors and attempts(client, before) == 1


@pytest.mark.usefixtures("quiet_retries")
@pytest.mark.parametrize("fault", ["500", "502", "503", "drop_before", "drop_after"])
def test_idempotent_calls_are_retried_after_5xx_and_lost_connections(fault, emulator):
    event = {"_user_id": "r1", "_event_id": "ev-1", "_event_type": "page_view", "_event_parameters": {"url": "/"}}
    with make_client(emulator.base_url, max_retries=3) as client:
        client.push_contacts([{"_user_id": "r1"}])
        emulator.set_faults(fault_rate=1.0, fault_kinds=[fault])
        before = client.stats.snapshot()
        with pytest.raises(InstasentError) as info:
            client.push_events([event])
        assert info.value.attempts == 4 and attempts(client, before) == 4
        emulator.set_faults(fault_rate=0.0)
        assert client.push_events([event]).ok
    assert stored_event_ids(emulator) == {"ev-1": 1}  # drop_after applied it four times: stored once
