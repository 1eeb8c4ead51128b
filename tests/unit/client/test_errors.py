"""Error mapping: status → class, the API's message, hints, no token in the text."""

from __future__ import annotations

import pytest

from airflow_provider_instasent.client import errors as e


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, e.BadRequestError),
        (401, e.AuthenticationError),
        (403, e.PermissionDeniedError),
        (404, e.NotFoundError),
        (422, e.ValidationError),
        (429, e.RateLimitError),
        (500, e.ServerError),
        (503, e.ServerError),
        (409, e.InstasentHTTPError),
    ],
)
def test_status_maps_to_class(status, cls):
    err = e.error_for_status(status, "POST", "/project/{project}/x", {"message": "nope"}, path="/v1/project/p/x")
    assert type(err) is cls
    assert err.status == status and err.method == "POST"
    assert err.endpoint == "/project/{project}/x" and err.path == "/v1/project/p/x"
    assert err.api_message == "nope"
    assert "HTTP %d on POST /v1/project/p/x: nope" % status in str(err)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"message": "Body should be an array"}, "Body should be an array"),
        ({"error": "bad"}, "bad"),
        ({"error": {"message": "nested"}}, "nested"),
        ({"errors": [{"error": "a"}, "b"]}, "a; b"),
        ("plain text", "plain text"),
        (None, ""),
    ],
)
def test_api_message_forms(body, message):
    assert e.api_message(body) == message


def test_forbidden_names_scope_and_plan():
    err = e.error_for_status(403, "POST", "/x", {"message": "Token lacks scope", "missingScope": "PROJECT_AUDIENCE_LIST"})
    assert isinstance(err, e.PermissionDeniedError)
    assert err.missing_scope == "PROJECT_AUDIENCE_LIST"
    assert "grant the token the scope PROJECT_AUDIENCE_LIST" in str(err)
    assert "subscription plan" in str(err)
    err2 = e.error_for_status(403, "GET", "/x", {"message": "requires PROJECT_AUDIENCE_DATA_FULL"})
    assert err2.missing_scope == "PROJECT_AUDIENCE_DATA_FULL"
    assert "manual grant" in str(err2)


def test_token_is_redacted_from_messages():
    token = "secret-token-123456"
    err = e.error_for_status(401, "GET", "/", {"message": f"bad token {token} / Bearer {token}"}, secrets=(token,))
    assert token not in str(err) and token not in err.api_message


def test_rate_limit_error_exposes_retry_after():
    err = e.error_for_status(429, "POST", "/x", {"message": "You exceeded the rate limit"},
                             headers={"Retry-After": "3"})
    assert isinstance(err, e.RateLimitError) and err.retry_after == 3.0


def test_connection_error_text():
    err = e.InstasentConnectionError("GET", "/v1/x", "ReadTimeout", attempts=3)
    assert "GET /v1/x" in str(err) and "3 attempt" in str(err)
