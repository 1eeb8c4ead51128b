"""Push-result parsing: both documented response shapes."""

from __future__ import annotations

import pytest

from airflow_provider_instasent.client.errors import InstasentProtocolError
from airflow_provider_instasent.client.models import PushResult


def test_shape_a_accepted_and_errors_by_position():
    body = {
        "success": True, "dryRun": False, "entitiesSuccess": 1, "entitiesFailures": 1,
        "accepted": [{"position": 0, "item": {"_user_id": "a"}}],
        "errors": [{"position": 1, "item": {"_user_id": "b"}, "error": "_email: invalid",
                    "errors": {"_email": ["invalid"], "plan": ["too long", "bad"]}}],
    }
    r = PushResult.from_body(202, body, 2)
    assert r.accepted == [0] and not r.ok
    err = r.errors[0]
    assert err.position == 1 and err.message == "_email: invalid"
    assert err.reasons() == [("_email", "invalid"), ("plan", "too long"), ("plan", "bad")]


def test_shape_b_entity_items():
    body = {"entity": {"successful": 1, "failed": 1, "items": [
        {"status": "success", "_user_id": "u1"},
        {"status": "error", "_user_id": "u2", "errors": {"_email": ["Invalid format"]}},
    ]}}
    r = PushResult.from_body(202, body, 2)
    assert r.accepted == [0]
    assert r.errors[0].position == 1 and r.errors[0].fields == {"_email": ["Invalid format"]}


def test_error_without_fields_gives_message_reason():
    r = PushResult.from_body(422, {"accepted": [], "errors": [{"position": 0, "error": "boom"}]}, 1)
    assert r.errors[0].reasons() == [("", "boom")]


@pytest.mark.parametrize("body", [None, b"<html>502</html>", "ok", {}, {"message": "queued"}, [1, 2]])
def test_an_unreadable_2xx_body_is_not_evidence_of_acceptance(body):
    with pytest.raises(InstasentProtocolError, match="not counted as accepted"):
        PushResult.from_body(202, body, 3)


@pytest.mark.parametrize(("body", "problem"), [
    ({"accepted": [{"position": 0}, {"position": 0}]}, "twice"),
    ({"accepted": [{"position": 0}], "errors": [{"position": 0, "error": "x"}]}, "twice"),
    ({"accepted": [{"position": 3}]}, "outside"),
    ({"accepted": [{"item": "a"}]}, "no position"),
    ({"accepted": [{"position": 0}], "entitiesSuccess": 3}, "entitiesSuccess is 3"),
])
def test_an_inconsistent_push_result_is_refused(body, problem):
    with pytest.raises(InstasentProtocolError, match=problem):
        PushResult.from_body(200, body, 3)


def test_counts_only_and_no_content():
    # the real API's counters, without the positions: every item a success is evidence enough
    assert PushResult.from_body(200, {"entitiesSuccess": 2, "entitiesFailures": 0}, 2).accepted == [0, 1]
    with pytest.raises(InstasentProtocolError):
        PushResult.from_body(200, {"entitiesSuccess": 1, "entitiesFailures": 1}, 2)
    assert PushResult.from_body(204, None, 1).accepted == [0]  # "No Content" is an explicit success


def test_errors_are_redacted_and_the_accepted_entries_kept_as_sent():
    token = "tok-secret-987654"
    accepted = [{"position": 0, "item": {"_user_id": "a"}}]
    body = {"accepted": accepted,
            "errors": [{"position": 1, "error": f"bad value {token}", "item": {"note": f"Bearer {token}"}}]}
    r = PushResult.from_body(202, body, 2, secrets=(token,))
    assert r.accepted == [0] and [e.position for e in r.errors] == [1]
    assert token not in repr(r.errors) and token not in repr(r.raw)
    assert r.raw["accepted"] is accepted  # not copied: the bulk of a large answer
