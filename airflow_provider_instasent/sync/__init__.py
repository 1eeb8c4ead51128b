"""Stateful sync: send only what changed, remember every row's outcome, refuse dangerous runs.

::

    from airflow_provider_instasent.sync import sync_contacts

    report = sync_contacts(client, df, sync_id="crm_contacts", state="sync_state.duckdb",
                           min_rows=1000, max_removals=0.05)
    print(report)   # sync crm_contacts (contacts): 1000000 rows; 200 added, 1800 changed, ...

See docs/sync.md (the state model, the guarantees, the tables) and docs/adr/0007-sync-state.md.
No Airflow import.
"""

from __future__ import annotations

from .engine import SyncReport, row_hash, sync_contacts, sync_events
from .errors import SyncError, SyncGuardrailError, SyncLockedError
from .store import CHANGELOG_TABLE, LOCKS_TABLE, RUNS_TABLE, STATE_TABLE, TABLES

__all__ = [
    "CHANGELOG_TABLE",
    "LOCKS_TABLE",
    "RUNS_TABLE",
    "STATE_TABLE",
    "TABLES",
    "SyncError",
    "SyncGuardrailError",
    "SyncLockedError",
    "SyncReport",
    "row_hash",
    "sync_contacts",
    "sync_events",
]
