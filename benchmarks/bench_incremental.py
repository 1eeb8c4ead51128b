"""incremental: 200,000 contacts exported once, then 1% updated and exported incrementally.

An emulator of its own (its own process, no latency, no rate limit), its clock set to a fixed
date, is loaded with the audience (``data.audience_contacts``, through ``write_contacts``).
A week later (the emulator's clock), a first incremental export into a DuckDB file reads
everything (no watermark yet): the **baseline**, measured in the same run. Then, each run, one
day later, 1% of the contacts (a different 1% each time) are updated and an incremental export
(``IncrementalSql``: ``range-date-relative`` on the server, exact filter, merge, watermark in the
same transaction) reads what changed. Reported: the pages and rows each read, and its time; at
the end, the incremental table is compared row for row with a fresh full export of the same
audience (``replace`` into another table): ``EXCEPT ALL`` both ways must be empty.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time

from bench_export import DuckHook
from common import DATA_DIR, Config, EmulatorProcess, Section, fmt_int, fmt_pct, make_client, median, verdict

NAME = "incremental"
TITLE = "Incremental export: 1% of 200,000 contacts updated, pages read vs a full export"
#: the incremental run may read at most this share of a full run's pages ("a few percent")
TARGET_SHARE = 0.05
T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def run(cfg: Config) -> Section:
    from data import audience_contacts

    from airflow_provider_instasent.export import Export
    from airflow_provider_instasent.export.incremental import IncrementalSql, fingerprint
    from airflow_provider_instasent.ingest import write_contacts
    from airflow_provider_instasent.io.sql import write_sql

    sec = Section(NAME, TITLE)
    n = 20_000 if cfg.quick else 200_000
    runs = cfg.n_runs(3, quick=1)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = str(DATA_DIR / "bench-incremental.duckdb")
    for suffix in ("", ".wal"):
        with contextlib.suppress(FileNotFoundError):
            (DATA_DIR / f"bench-incremental.duckdb{suffix}").unlink()
    hook = DuckHook(path)
    fp = fingerprint("audience")

    with EmulatorProcess() as emu, make_client(emu.url) as client:
        emu.admin("POST", "clock", {"now": T0.isoformat()})
        table = audience_contacts(n)
        cfg.log(f"loading {n:,} contacts into the emulator (write_contacts) ...")
        write_contacts(client, table, on_invalid="skip", progress_interval=0)
        loaded = emu.state()["audience_contacts"]
        users = [u for u in table.column("_user_id").to_pylist() if u]

        def incremental() -> tuple[Export, float]:
            inc = IncrementalSql(hook, "audience", fingerprint=fp)
            export = Export(client, "audience", since=inc.since(), track_start=True, progress_interval=0)
            started = time.perf_counter()
            inc.write(export)
            return export, time.perf_counter() - started

        emu.admin("POST", "clock", {"advance_s": 7 * 86400})
        cfg.log(f"incremental: first (full) run over {loaded:,} contacts ...")
        full, full_s = incremental()
        step = 100  # 1%
        pages: list[int] = []
        rows_read: list[int] = []
        rows: list[int] = []
        seconds: list[float] = []
        for r in range(runs):
            emu.admin("POST", "clock", {"advance_s": 86400})
            changed = users[r::step]
            for i in range(0, len(changed), 100):
                client.push_contacts([{"_user_id": u, "plan": f"changed-{r}"} for u in changed[i:i + 100]],
                                     sync=True)
            emu.admin("POST", "clock", {"advance_s": 2 * 3600})  # beyond the next run's one-hour lookback
            export, secs = incremental()
            pages.append(export.stats.pages)
            rows_read.append(export.stats.rows_read)
            rows.append(export.stats.rows)
            seconds.append(secs)
            cfg.log(f"incremental run {r + 1}: {len(changed):,} updated, {export.stats.rows_read:,} rows read in "
                    f"{export.stats.pages} pages, {secs:.2f} s")

        cfg.log("a fresh full export, to compare with ...")
        fresh = Export(client, "audience", progress_interval=0)
        started = time.perf_counter()
        write_sql(fresh.batches(), hook, "audience_fresh", fresh.schema)
        fresh_s = time.perf_counter() - started
        total = emu.state()["audience_contacts"]  # more than loaded when an update created a contact

    import duckdb

    with duckdb.connect(path, read_only=True) as con:
        counts = con.execute("SELECT (SELECT count(*) FROM audience), (SELECT count(*) FROM audience_fresh)").fetchone()
        only_inc = con.execute("SELECT count(*) FROM (SELECT * FROM audience EXCEPT ALL SELECT * FROM audience_fresh)"
                               ).fetchone()[0]
        only_fresh = con.execute("SELECT count(*) FROM (SELECT * FROM audience_fresh EXCEPT ALL SELECT * FROM audience)"
                                 ).fetchone()[0]
    identical = counts[0] == counts[1] == total and only_inc == only_fresh == 0

    full_pages = full.stats.pages
    share = median(pages) / full_pages
    label = f"{runs} x 1% of {loaded:,} contacts"
    sec.row("full export (the first run): pages read", fmt_int(full_pages), f"{fmt_int(full.stats.rows)} rows",
            "", "reference", "INFO", f"1 x {loaded:,} contacts")
    sec.row("incremental, 1% updated: pages read", fmt_int(median(pages)), f"full run: {fmt_int(full_pages)} pages",
            fmt_pct(share), f"<= {fmt_pct(TARGET_SHARE)} of a full run", verdict(share <= TARGET_SHARE), label)
    sec.row("incremental, 1% updated: rows read / written", f"{fmt_int(median(rows_read))} / {fmt_int(median(rows))}",
            f"updated per run: {fmt_int(len(users[0::step]))}", "", "report", "INFO", label)
    sec.row("incremental, 1% updated: seconds", f"{median(seconds):.2f} s",
            f"full run: {full_s:.1f} s; fresh full export: {fresh_s:.1f} s", f"{median(seconds) / full_s:.3f}x",
            "report", "INFO", label)
    sec.row("incremental table vs a fresh full export", "identical" if identical else "DIFFERENT",
            f"rows {counts[0]:,} vs {counts[1]:,}; EXCEPT ALL: {only_inc} / {only_fresh}", "", "row for row",
            "PASS" if identical else "MISS", "1")
    sec.notes += [
        f"The emulator's clock: loaded at {T0:%Y-%m-%d}, first export 7 days later, then one day between runs; "
        "the updates are made 2 hours before each run (outside the next run's one-hour lookback).",
        "Incremental runs: pages " + ", ".join(map(str, pages)) + "; rows read " + ", ".join(map(str, rows_read))
        + "; seconds " + ", ".join(f"{s:.2f}" for s in seconds) + ".",
        f"{total - loaded} of the updated user ids belong to sample rows refused at load (invalid on purpose): "
        "the update created those contacts, and the incremental runs read them as changes.",
        "The server-side filter is whole days (`range-date-relative`, `lowerOffset: -2` here: the day since the "
        "last run, the lookback and the margin): from the second run on, the server also returns the previous "
        "run's changes (rows read = 2% of the audience), and the exact filter drops them (rows written = 1%).",
    ]
    return sec
