"""The process the kill-and-resume test SIGKILLs: ingest contacts, then events, from Parquet.

Usage: ``python -m tests.integration.reliability.ingest_worker BASE_URL CONTACTS.parquet EVENTS.parquet OUT_DIR``

Writes the rejects to ``OUT_DIR/{contacts,events}_rejects.parquet`` and, when it completes,
the two reports (counts only) to ``OUT_DIR/reports.json``. Prints one line per phase.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    base_url, contacts, events, out = argv
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    from airflow_provider_instasent import InstasentClient
    from airflow_provider_instasent.ingest import write_contacts, write_events

    with InstasentClient(token="demo-admin-token", project="demo", base_url=base_url, backoff_base=0.01,
                         backoff_max=0.2) as client:
        print("contacts: start", flush=True)
        c = write_contacts(client, contacts, on_invalid="dead_letter", batch_rows=500, max_in_flight=2,
                           rejects_path=str(out_dir / "contacts_rejects.parquet"), progress_interval=0)
        print("events: start", flush=True)
        e = write_events(client, events, on_invalid="dead_letter", batch_rows=1_000, max_in_flight=2,
                         rejects_path=str(out_dir / "events_rejects.parquet"), progress_interval=0)
    (out_dir / "reports.json").write_text(json.dumps({"contacts": c.to_dict(), "events": e.to_dict()}))
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
