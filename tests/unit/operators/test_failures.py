"""Which ingest failures a task retry could fix, and which fail the task at once."""

from __future__ import annotations

import pytest

from airflow_provider_instasent._airflow_compat import AirflowFailException
from airflow_provider_instasent.client.errors import error_for_status
from airflow_provider_instasent.ingest.errors import (
    AutomationsGuardError,
    IngestSchemaError,
    RejectedRowsError,
    RequestFailedError,
)
from airflow_provider_instasent.operators.base import fail_fast_if_final as _fail_fast_if_final


@pytest.mark.parametrize(
    "exc",
    [
        IngestSchemaError("unknown column 'colour'"),
        RejectedRowsError("12 of 100 rows rejected"),
        AutomationsGuardError("3 events inside the ±1h window"),
        error_for_status(403, "POST", "/x", {"message": "Token lacks scope PROJECT_DATASOURCE_WRITE"}),
        error_for_status(401, "POST", "/x", {"message": "bad token"}),
        error_for_status(404, "POST", "/x", {"message": "unknown datasource"}),
    ],
)
def test_final_errors_fail_without_retry(exc):
    with pytest.raises(AirflowFailException) as info:
        _fail_fast_if_final(exc)
    assert type(exc).__name__ in str(info.value)
    assert info.value.__cause__ is exc


@pytest.mark.parametrize(
    "exc",
    [
        RequestFailedError("no answer after retries"),
        error_for_status(503, "POST", "/x", {"message": "down"}),
        error_for_status(429, "POST", "/x", {"message": "You exceeded the rate limit"}),
    ],
)
def test_transient_errors_stay_retryable(exc):
    if isinstance(exc, RequestFailedError):
        exc.__cause__ = error_for_status(503, "POST", "/x", {"message": "down"})
    _fail_fast_if_final(exc)  # returns: the operator re-raises the original, Airflow retries


def test_a_push_refused_with_403_is_final():
    exc = RequestFailedError("a push request of 100 items failed after the client's retries")
    exc.__cause__ = error_for_status(403, "POST", "/x", {"message": "Token lacks scope PROJECT_DATASOURCE_WRITE"})
    with pytest.raises(AirflowFailException):
        _fail_fast_if_final(exc)
