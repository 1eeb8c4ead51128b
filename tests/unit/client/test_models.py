"""Push-result parsing: both documented response shapes."""

from __future__ import annotations

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


def test_unknown_2xx_body_counts_all_accepted():
    assert PushResult.from_body(202, None, 3).accepted == [0, 1, 2]
