"""Exceptions of the stateful sync. Each is an `ingest.errors.IngestError`; ``report``
is the `engine.SyncReport` so far."""

from __future__ import annotations

from ..ingest.errors import IngestError


class SyncError(IngestError):
    """A sync run stopped (the ingest engine's own errors also carry ``sync_report``)."""


class SyncGuardrailError(SyncError):
    """A guardrail (``min_rows``, ``max_removals``, ``max_change_ratio``) refused the run before
    anything was sent. ``limit`` names the guardrail, ``measured`` is the value that broke it."""

    def __init__(self, message: str, report: object = None, *, limit: str = "", measured: float = 0) -> None:
        super().__init__(message, report)
        self.limit = limit
        self.measured = measured


class SyncLockedError(SyncError):
    """Another run of the same ``sync_id`` holds the lock: this run refused to start."""
