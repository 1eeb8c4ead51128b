"""Exceptions of the ingest engine.

Every error raised after the run started carries the ``IngestReport`` of what
happened so far (``exc.report``): counts, and the rejects that were already written.
"""

from __future__ import annotations

from typing import Any

from ..client.errors import InstasentConfigError, InstasentError


class IngestError(InstasentError):
    """A bulk ingest run stopped. ``report`` holds the counts up to that point (an
    ``IngestReport``, or a ``DeleteReport`` for deletes)."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


class IngestSchemaError(IngestError, InstasentConfigError):
    """The input cannot be mapped to the datasource: unknown columns or event types, a column of
    a type that cannot be coerced, naive timestamps without ``assume_timezone``, bad options.

    Raised before the offending batch is sent (for the first batch: before anything is sent).
    """


class RejectedRowsError(IngestError):
    """Rows were rejected and the policy says stop: ``on_invalid="fail"``, or the share of
    rejected rows passed ``max_rejected_ratio``. The rejects are written before this is raised."""


class AutomationsGuardError(IngestError):
    """``automations="refuse"`` and events would fall inside the ±1 hour automation window."""


class SourceReadError(IngestError):
    """The input could not be read past some row (a corrupt or truncated Parquet file, a lost
    database connection). ``report`` says what was done before; the cause is ``__cause__``."""


class RequestFailedError(IngestError):
    """A push request got no usable answer after the client's retries (a 400, a 5xx or a lost
    connection). The rows of that request are reported as rejected at stage ``"api"``; the
    client's error is ``__cause__``."""
