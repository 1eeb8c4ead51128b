"""no_event_lost: what "no event lost in silence" costs (issue 14).

The emulator runs in its own process with ``--latency-ms 10`` and writes queued 200 ms
(``POST /_emulator/queue``), as the real API queues writes made without ``?_sync``. It measures:

* **contacts with ``sync=True``** against the same contacts without it (each push applied
  before its response instead of queued): wall time, medians of the runs;
* **events with the contact check** against ``check_contacts=False``, for the two ways a run
  vouches for contacts: the check asks the API about every user (no ``contacts_from``), or the
  contacts run of the same process is passed as ``contacts_from`` (its users are known: no
  call). The API calls the check made are counted from the report (``contact_check_calls``).

Each run resets the emulator, writes ``USERS`` contacts with ``sync=True``, then the events.
"""

from __future__ import annotations

import time
from typing import Any

from common import EVENT_TYPE, Config, EmulatorProcess, Section, fmt_int, fmt_ratio, make_client, median

NAME = "no_event_lost"
TITLE = "No event lost in silence: sync=True and the contact check (latency 10 ms, writes queued 200 ms)"
LATENCY_MS = 10
QUEUE_MS = 200
USERS = 5_000


def _contacts(users: int) -> Any:
    import pyarrow as pa
    from data import user_ids

    ids = user_ids(users)
    return pa.table({"_user_id": ids, "plan": ["pro" if i % 2 else "free" for i in range(users)]})


def _timed(call: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = call()
    return time.perf_counter() - t0, out


def _run(emu: EmulatorProcess, contacts: Any, events: Any) -> dict[str, Any]:
    from airflow_provider_instasent.ingest import write_contacts, write_events

    out: dict[str, Any] = {}
    with make_client(emu.url) as client:
        emu.reset()
        out["contacts_queued"], _ = _timed(lambda: write_contacts(client, contacts, progress_interval=0))
        emu.admin("POST", "queue/flush")
        emu.reset()
        out["contacts_sync"], written = _timed(lambda: write_contacts(client, contacts, sync=True,
                                                                      progress_interval=0))
        kw = {"event_type": EVENT_TYPE, "on_invalid": "skip", "progress_interval": 0}
        out["events_unchecked"], r0 = _timed(lambda: write_events(client, events, check_contacts=False, **kw))
        emu.admin("POST", "queue/flush")
        out["events_checked_api"], r1 = _timed(lambda: write_events(client, events, **kw))
        emu.admin("POST", "queue/flush")
        out["events_checked_known"], r2 = _timed(lambda: write_events(client, events, contacts_from=written, **kw))
        emu.admin("POST", "queue/flush")
    out["calls_api"], out["calls_known"] = r1.contact_check_calls, r2.contact_check_calls
    out["requests"] = r0.requests
    out["accepted"] = (r0.accepted, r1.accepted, r2.accepted)
    return out


def run(cfg: Config) -> Section:
    from data import orders_table

    sec = Section(NAME, TITLE)
    rows = 10_000 if cfg.quick else 50_000
    runs = cfg.n_runs(3, quick=1)
    contacts = _contacts(USERS)
    events = orders_table(rows, USERS)
    cfg.log(f"no_event_lost: {USERS:,} contacts and {rows:,} events x {runs} runs")
    results = []
    with EmulatorProcess(latency_ms=LATENCY_MS) as emu:
        emu.admin("POST", "queue", {"delay_ms": QUEUE_MS})
        for i in range(runs):
            results.append(_run(emu, contacts, events))
            cfg.log(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in results[-1].items()
                                               if isinstance(v, float)))

    def m(key: str) -> float:
        return median([r[key] for r in results])

    runs_txt = f"{runs} x"
    sec.row("contacts: sync=True vs queued", f"{m('contacts_sync'):.2f} s", f"{m('contacts_queued'):.2f} s",
            fmt_ratio(m("contacts_sync") / m("contacts_queued")), "report", "INFO", f"{runs_txt} {USERS:,} contacts",
            value=m("contacts_sync") / m("contacts_queued"))
    sec.row("events: check via the API vs check off", f"{m('events_checked_api'):.2f} s",
            f"{m('events_unchecked'):.2f} s", fmt_ratio(m("events_checked_api") / m("events_unchecked")), "report",
            "INFO", f"{runs_txt} {rows:,} events", value=m("events_checked_api") / m("events_unchecked"))
    sec.row("events: check with contacts_from vs check off", f"{m('events_checked_known'):.2f} s",
            f"{m('events_unchecked'):.2f} s", fmt_ratio(m("events_checked_known") / m("events_unchecked")),
            "report", "INFO", f"{runs_txt} {rows:,} events",
            value=m("events_checked_known") / m("events_unchecked"))
    sec.row("contact check calls (API / contacts_from)", f"{fmt_int(results[0]['calls_api'])} / "
            f"{fmt_int(results[0]['calls_known'])}", f"{fmt_int(results[0]['requests'])} push requests", "",
            "<= users/50 + missing users", "INFO", f"{USERS:,} users", value=float(results[0]["calls_api"]))
    sec.notes += [
        f"Emulator: `--latency-ms {LATENCY_MS}`, writes without `_sync` queued {QUEUE_MS} ms. {USERS:,} users, "
        f"{rows:,} `{EVENT_TYPE}` events (0.4% invalid on purpose). Engine defaults otherwise.",
        "The check asks one audience search per 50 users it does not know, then one "
        "`GET …/stream/contacts/{userId}` per user the search did not settle (here: the invalid-row users only).",
        "Accepted events per run (check off / API check / contacts_from): "
        + "; ".join(str(r["accepted"]) for r in results) + ".",
    ]
    return sec
