"""Run the benchmarks of airflow-provider-instasent and write ``benchmarks/results.md``.

    python benchmarks/run.py                     # everything (about 8-10 minutes on 2 cores)
    python benchmarks/run.py --quick             # small sizes: a smoke test (about 1 minute)
    python benchmarks/run.py --only validate,export --runs 3
    python benchmarks/run.py --quick --only validate --out /tmp/results.md
    python benchmarks/run.py --update-docs       # also copy the table into docs/performance.md

``./dev bench ARGS`` is the same. Each benchmark measures its baseline in the same run; see
docs/performance.md for what each one measures and how to read the figures.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from common import Config, Row, Section, close_shared, load_average, machine_info  # noqa: E402

#: name -> module, in the order they run and are reported.
BENCHMARKS = {
    "validate": "bench_validate",
    "ingest_e2e": "bench_ingest_e2e",
    "ingest_limit": "bench_ingest_limit",
    "memory": "bench_memory",
    "export": "bench_export",
    "peers": "bench_peers",
    "emulator": "bench_emulator",
    "emulator_writes": "bench_emulator_writes",
    "sync": "bench_sync",
    "incremental": "bench_incremental",
    "growth": "bench_growth",
    "no_event_lost": "bench_no_event_lost",
}

DOCS = BENCH_DIR.parent / "docs" / "performance.md"
DOCS_START = "<!-- benchmark table: start (written by benchmarks/run.py --update-docs) -->"
DOCS_END = "<!-- benchmark table: end -->"

COLUMNS = ("Benchmark", "Metric", "Result (median)", "Baseline (same run)", "Ratio", "Target", "Status", "Runs")


def _cells(row: Row) -> list[str]:
    return [row.bench, row.metric, row.result, row.baseline, row.ratio, row.target, row.status, row.runs]


def markdown_table(rows: list[Row]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(esc(c) for c in _cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def text_table(rows: list[Row]) -> str:
    cols = (0, 1, 2, 4, 5, 6)  # the baseline text is long: see results.md
    table = [[COLUMNS[i] for i in cols]] + [[_cells(r)[i] for i in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    out = []
    for n, line in enumerate(table):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def update_docs(path: Path, rows: list[Row], info: dict[str, str], seconds: float) -> None:
    """Replace the table between the markers of docs/performance.md with this run's."""
    text = path.read_text()
    if DOCS_START not in text or DOCS_END not in text:
        print(f"--update-docs: no table markers in {path}", file=sys.stderr)
        return
    head, rest = text.split(DOCS_START, 1)
    _, tail = rest.split(DOCS_END, 1)
    block = (f"{DOCS_START}\n\nMeasured on {info['date']}: {info['cpu']}, {info['cores']}, {info['ram']}, "
             f"Python {info['python']}, pyarrow {info['pyarrow']}, pandas {info['pandas']}, duckdb {info['duckdb']}; "
             f"the full run took {seconds / 60:.1f} minutes.\n\n{markdown_table(rows)}\n\n{DOCS_END}")
    path.write_text(head + block + tail)
    print(f"updated the table in {path}", file=sys.stderr)


def write_results(path: Path, sections: list[Section], cfg: Config, argv: list[str], info: dict[str, str],
                  load_start: str, load_end: str, seconds: float) -> None:
    rows = [r for s in sections for r in s.rows]
    command = "python benchmarks/run.py" + ("" if not argv else " " + shlex.join(argv))
    counts = {k: sum(1 for r in rows if r.status == k) for k in ("PASS", "MISS", "FAIL", "SKIP")}
    parts = [
        "# Benchmark results",
        "",
        f"Written by `{command}` (`./dev bench` runs `python benchmarks/run.py`) on {info['date']}; "
        f"the whole run took {seconds:.0f} s. Targets from issues 7 and 19; how to run and read these: "
        "[docs/performance.md](../docs/performance.md).",
        "",
    ]
    if cfg.quick:
        parts += ["> **Quick mode**: small sizes for a smoke test. These figures are not comparable to the "
                  "targets; run without `--quick` for real numbers.", ""]
    parts += [
        f"**{counts['PASS']} PASS, {counts['MISS']} MISS**"
        + (f", {counts['FAIL']} FAIL (the benchmark itself failed)" if counts["FAIL"] else "")
        + (f", {counts['SKIP']} SKIP" if counts["SKIP"] else "") + ".",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in info.items()],
        f"| load average (1/5/15 min) at start | {load_start} |",
        f"| load average at end | {load_end} |",
        "",
        "The machine is shared with other engineers' test runs: expect noise. Every figure is the median of "
        "the runs shown in the Runs column; CPU-bound single-core figures use CPU time (see each section).",
        "",
        "## Summary",
        "",
        markdown_table(rows),
        "",
    ]
    for sec in sections:
        parts += [f"## {sec.name}: {sec.title}", "", f"Took {sec.seconds:.0f} s.", ""]
        parts += [f"- {n}" for n in sec.notes]
        if sec.notes:
            parts.append("")
        for block in sec.details:
            parts += [block, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts).rstrip() + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and one or two runs (smoke test)")
    p.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    p.add_argument("--runs", type=int, default=None, help="runs per measurement (default: per benchmark)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results.md", help="results file (default: %(default)s)")
    p.add_argument("--update-docs", action="store_true",
                   help="also copy the summary table into docs/performance.md (full runs of every benchmark only)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = p.parse_args(argv)
    if args.list:
        for name, module in BENCHMARKS.items():
            doc = (importlib.import_module(module).__doc__ or "").strip().splitlines()[0]
            print(f"{name:12s} {doc}")
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    cfg = Config(quick=args.quick, runs=args.runs, out=args.out)

    started = time.perf_counter()
    info = machine_info()
    load_start = load_average()
    print(f"benchmarks: {', '.join(names)}{' (quick)' if cfg.quick else ''}; {info['cpu']}, {info['cores']}, "
          f"load {load_start}", file=sys.stderr, flush=True)
    sections: list[Section] = []
    try:
        sections = run_all(names, cfg)
    finally:
        close_shared()
    seconds = time.perf_counter() - started
    write_results(cfg.out, sections, cfg, argv, info, load_start, load_average(), seconds)
    rows = [r for s in sections for r in s.rows]
    if args.update_docs:
        if cfg.quick or set(names) != set(BENCHMARKS):
            print("--update-docs ignored: it needs a full run of every benchmark", file=sys.stderr)
        else:
            update_docs(DOCS, rows, info, seconds)
    print()
    print(text_table(rows))
    print(f"\n{len(rows)} rows in {seconds:.0f} s; written to {cfg.out}")
    return 1 if any(r.status == "FAIL" for r in rows) else 0


def run_all(names: list[str], cfg: Config) -> list[Section]:
    sections: list[Section] = []
    for name in names:
        t0 = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            sec = importlib.import_module(BENCHMARKS[name]).run(cfg)
        except Exception as exc:  # report it and go on with the other benchmarks
            traceback.print_exc()
            sec = Section(name, "failed")
            sec.row("(benchmark failed)", f"{type(exc).__name__}", status="FAIL")
            sec.details.append("```\n" + traceback.format_exc().strip() + "\n```")
        sec.seconds = time.perf_counter() - t0
        sections.append(sec)
        print(f"   {name} done in {sec.seconds:.0f} s", file=sys.stderr, flush=True)
    return sections


if __name__ == "__main__":
    raise SystemExit(main())
