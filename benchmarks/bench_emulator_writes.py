"""emulator_writes: the emulator's CPU per stored contact and event, as its store grows.

Each measurement runs in a fresh child process that builds the emulator's ``App`` the way the
CLI does (``tune_gc_for_the_store`` where the code has it) and feeds it 100-item push bodies
through ``App.handle`` (routing, auth, validation, the store, the response JSON; no sockets,
so the figure is the emulator's own work, not the kernel's). It reports the process CPU time
per item (``time.process_time``: another job on the machine cannot inflate it much) for:

* contacts: CRM-like contacts (names, email, phone, plan, points, birthday), each new;
* events: ``ecommerce_order_create`` events of 10,000 known users, at a fresh store, after
  ``--grow`` events are stored, and again after a reset of that store.

Whether the cost is flat as the store grows (and after a reset) is judged on the *user* CPU
time (``getrusage``): the system time of the same page faults varied tenfold between children
of one run on this host (0.03 to 0.29 s for the 100,000 events after 1M stored), which is the
kernel's work, not the store's; both are shown.

Baseline, same run: the same child run on the emulator code of ``BASELINE_REF`` (the commit
before issue 19), extracted with ``git archive`` into a temporary directory.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, Config, Section, child_output, current_rss, fmt_rate, fmt_ratio, median, run_child

NAME = "emulator_writes"
TITLE = "Emulator write cost (CPU per stored item, in-process, by store size)"
BASELINE_REF = os.environ.get("INSTASENT_BENCH_EMULATOR_BASELINE", "b9a778d")
CONTACT_TARGET = 3.0  # x faster than the baseline
EVENT_TARGET = 2.0
FLAT = 0.15  # "flat": at most 15% dearer per event at the grown store, and after reset
H = {"authorization": "Bearer demo-admin-token"}
CONTACTS = "/v1/project/demo/datasource/dsapi/stream/contacts"
EVENTS = "/v1/project/demo/datasource/dsapi/stream/events"
USERS = 10_000


# -- the child ----------------------------------------------------------------------------------
def _event_bodies(start: int, n: int) -> list[bytes]:
    import orjson

    out = []
    for b in range(start, start + n, 100):
        out.append(orjson.dumps([
            {"_user_id": f"bench-{(b + j) % USERS}", "_event_id": f"ev-{b + j}",
             "_event_type": "ecommerce_order_create", "_event_date": "2025-03-01T10:00:00.000Z",
             "_event_parameters": {"order_id": f"o-{b + j}", "amount": 19.9 + j, "currency": "EUR",
                                   "items": ["sku-1", "sku-2"]}}
            for j in range(min(100, start + n - b))
        ]))
    return out


def _contact_bodies(n: int) -> list[bytes]:
    import orjson
    from data import audience_contacts

    rows = [{k: v for k, v in r.items() if v is not None} for r in audience_contacts(n).to_pylist()]
    return [orjson.dumps(rows[i:i + 100]) for i in range(0, len(rows), 100)]


def _feed(app: Any, path: str, bodies: list[bytes]) -> tuple[float, float]:
    """CPU seconds to handle ``bodies``, user + system and user alone (every answer must be a
    202 or a 422 of invalid rows)."""
    import resource

    u0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    c0 = time.process_time()
    for body in bodies:
        status = app.handle("POST", path, H, body).status
        if status not in (202, 422):
            raise RuntimeError(f"the emulator answered {status}")
    return time.process_time() - c0, resource.getrusage(resource.RUSAGE_SELF).ru_utime - u0


def child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--what", choices=("contacts", "events"), required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--grow", type=int, default=0)
    args = p.parse_args(argv)
    from airflow_provider_instasent.emulator import store as store_mod
    from airflow_provider_instasent.emulator.app import App
    from airflow_provider_instasent.emulator.fixture import load_fixture

    tune = getattr(store_mod, "tune_gc_for_the_store", None)
    if tune is not None:
        tune()
    app = App(store_mod.Store(load_fixture()))
    out: dict[str, Any] = {"tuned_gc": tune is not None}
    if args.what == "contacts":
        bodies = _contact_bodies(args.n)
        out["us_per_item"] = _feed(app, CONTACTS, bodies)[0] / args.n * 1e6
        out["stored"] = app.store.state()["contacts"].get("dsapi", 0)
    else:
        import orjson

        def seed() -> None:
            for i in range(0, USERS, 100):
                app.handle("POST", CONTACTS, H, orjson.dumps([{"_user_id": f"bench-{j}"} for j in range(i, i + 100)]))

        seed()
        total, user = _feed(app, EVENTS, _event_bodies(0, args.n))
        out["us_fresh"], out["us_fresh_user"] = total / args.n * 1e6, user / args.n * 1e6
        if args.grow:
            done = args.n
            while done < args.grow:  # in slices, so the bodies never all exist at once
                step = min(250_000, args.grow - done)
                _feed(app, EVENTS, _event_bodies(done, step))
                done += step
            out["grown_to"] = app.store.state()["events"]
            total, user = _feed(app, EVENTS, _event_bodies(done, args.n))
            out["us_grown"], out["us_grown_user"] = total / args.n * 1e6, user / args.n * 1e6
            out["rss_grown"] = current_rss()
            gc.disable()  # what survives the reset by reference counting alone, before any collection
            app.reset()
            out["events_alive_after_reset"] = sum(1 for o in gc.get_objects() if type(o).__name__ == "Event")
            out["rss_after_reset"] = current_rss()
            gc.enable()
            seed()
            total, user = _feed(app, EVENTS, _event_bodies(0, args.n))
            out["us_after_reset"], out["us_after_reset_user"] = total / args.n * 1e6, user / args.n * 1e6
    child_output(out)


# -- the harness --------------------------------------------------------------------------------
def _baseline_tree() -> Path | None:
    """The package of ``BASELINE_REF``, extracted into a temporary directory (None: no git)."""
    tmp = Path(tempfile.mkdtemp(prefix="instasent-bench-base-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE_REF, "airflow_provider_instasent"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError):
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    return tmp


def _run(code: Path | None, *args: str) -> dict[str, Any]:
    env = {"PYTHONPATH": str(code)} if code is not None else {"PYTHONPATH": str(ROOT)}
    return run_child([str(Path(__file__)), "--child", *args], env=env).data


def run(cfg: Config) -> Section:
    sec = Section(NAME, TITLE)
    runs = cfg.n_runs(3, quick=1)
    n_contacts = 5_000 if cfg.quick else 30_000
    n_events = 20_000 if cfg.quick else 100_000
    grow = 200_000 if cfg.quick else 1_000_000
    base = _baseline_tree()
    try:
        res: dict[str, dict[str, list[Any]]] = {"new": {}, "base": {}}
        for label, code in (("new", None), ("base", base)):
            if label == "base" and code is None:
                continue
            for _ in range(runs):
                cfg.log(f"emulator_writes ({label}): {n_contacts:,} contacts, {n_events:,} events (store grown to "
                        f"{grow:,})")
                c = _run(code, "--what", "contacts", "--n", str(n_contacts))
                e = _run(code, "--what", "events", "--n", str(n_events), "--grow", str(grow))
                for key, value in {**c, **e}.items():
                    res[label].setdefault(key if key != "us_per_item" else "us_contact", []).append(value)
    finally:
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)

    def med(label: str, key: str) -> float:
        return median([float(v) for v in res[label].get(key, [])])

    runs_txt = f"{runs} x (fresh child per figure)"
    have_base = bool(res["base"])
    for what, key, target, n in (("contact", "us_contact", CONTACT_TARGET, n_contacts),
                                 ("event", "us_fresh", EVENT_TARGET, n_events)):
        new, old = med("new", key), med("base", key) if have_base else float("nan")
        ratio = old / new if have_base else float("nan")
        sec.row(f"CPU per {what} written (fresh store)", f"{new:.1f} us ({fmt_rate(1e6 / new, '/s')})",
                f"{BASELINE_REF}: {old:.1f} us" if have_base else "baseline not available (no git)",
                fmt_ratio(ratio) if have_base else "", f">= {target:g}x faster",
                "SKIP" if not have_base else ("PASS" if ratio >= target else "MISS"), f"{runs_txt}; {n:,} items",
                value=new)
    # flatness: user CPU time (the module doc says why), user + system time beside it
    fresh, grown, after = med("new", "us_fresh_user"), med("new", "us_grown_user"), med("new", "us_after_reset_user")
    grown_to = int(med("new", "grown_to"))
    growth = grown / fresh - 1
    with_sys = f"user + system: {med('new', 'us_grown'):.1f} us vs {med('new', 'us_fresh'):.1f} us"
    base_user = (f"{BASELINE_REF}: {med('base', 'us_grown_user'):.1f} us vs {med('base', 'us_fresh_user'):.1f} us"
                 if have_base and res["base"].get("us_grown_user") else
                 f"{BASELINE_REF} (user + system): {med('base', 'us_grown'):.1f} us vs {med('base', 'us_fresh'):.1f} us"
                 if have_base else "")
    sec.row(f"user CPU per event at {grown_to:,} stored vs fresh", f"{grown:.1f} us vs {fresh:.1f} us",
            "; ".join(x for x in (with_sys, base_user) if x), f"{growth:+.0%}", f"flat (<= {FLAT:+.0%})",
            "PASS" if growth <= FLAT else "MISS", runs_txt, value=growth)
    reset_growth = after / fresh - 1
    alive = int(med("new", "events_alive_after_reset"))
    sec.row("user CPU per event after a reset of that store", f"{after:.1f} us; {alive:,} old events alive",
            (f"{BASELINE_REF} (user + system): {med('base', 'us_after_reset'):.1f} us; "
             f"{int(med('base', 'events_alive_after_reset')):,} old events alive" if have_base else ""),
            f"{reset_growth:+.0%}", "flat, nothing kept", "PASS" if reset_growth <= FLAT and alive == 0 else "MISS",
            runs_txt, value=reset_growth)
    rss = med("new", "rss_grown")
    sec.row(f"RSS holding {grown_to:,} events", f"{rss / 1e6:,.0f} MB ({rss / max(grown_to, 1):,.0f} B/event)",
            f"{BASELINE_REF}: {med('base', 'rss_grown') / 1e6:,.0f} MB" if have_base else "", "", "report", "INFO",
            runs_txt, value=rss)
    sec.notes += [
        "CPU time of the child process (`time.process_time`) over `App.handle` calls: routing, auth, JSON "
        "parsing, validation, the store and the response body, without sockets. The baseline is the same "
        f"child on the emulator code of commit `{BASELINE_REF}` (extracted with `git archive`), in the same "
        "run; set `INSTASENT_BENCH_EMULATOR_BASELINE` to compare with another commit.",
        "Per-run figures (new): " + "; ".join(f"{k}: " + ", ".join(f"{float(v):.1f}" for v in vals)
                                              for k, vals in res["new"].items() if k.startswith("us_")),
        "Per-run figures (baseline): " + ("; ".join(f"{k}: " + ", ".join(f"{float(v):.1f}" for v in vals)
                                                   for k, vals in res["base"].items() if k.startswith("us_"))
                                          if have_base else "none"),
    ]
    return sec


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        child_main(sys.argv[2:])
