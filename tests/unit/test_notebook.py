"""Notebook ergonomics: reports render as HTML (``_repr_html_``), and ``dir()`` of the
dataframe module lists its lazily loaded functions (tab completion)."""

from __future__ import annotations

import pandas as pd

import airflow_provider_instasent.dataframe as dataframe
from airflow_provider_instasent.export import ExportStats
from airflow_provider_instasent.ingest import IngestReport
from airflow_provider_instasent.ingest.delete import DeleteReport


def test_ingest_report_html_has_counts_throughput_and_first_rejects():
    rejects = pd.DataFrame({
        "source_row": list(range(25)),
        "_user_id": [f"u{i}" for i in range(25)],
        "field": ["birthday"] * 25,
        "reason": ["not a date: '<b>x</b>'"] * 25,
        "stage": ["local"] * 25,
    })
    report = IngestReport("contacts", rows=1000, sent=975, accepted=975, rejected=25, rejected_local=25,
                          requests=4, elapsed_s=2.0, rejects=rejects, reject_entries=25, status="ok",
                          rejects_path="rejects.parquet")
    html = report._repr_html_()
    assert html.startswith("<div><strong>Instasent contacts ingest: ok</strong>")
    for text in ("<th style=\"text-align:left\">rows</th><td>1,000</td>", "<td>975</td>",
                 "25 (25 local, 0 api)", "<th style=\"text-align:left\">rows/s</th><td>500.0</td>",
                 "rejects.parquet", "rejects: the first 10 of 25"):
        assert text in html, text
    assert html.count("<td>birthday</td>") == 10  # only the first rows
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html  # values are escaped
    assert "automation window" not in html  # None counts are left out


def test_ingest_report_html_without_rejects_and_dry_run():
    html = IngestReport("events", rows=10, accepted=10, dry_run=True, would_fire_automations=2,
                        status="ok")._repr_html_()
    assert "DRY RUN Instasent events ingest: ok" in html
    assert "events inside the ±1h automation window</th><td>2</td>" in html
    assert "rejects:" not in html and "<thead>" not in html


def test_delete_report_html():
    report = DeleteReport(requested=50, deleted=45, missing=3, failed=2, elapsed_s=0.5,
                          failures=[("u1", "HTTP 500"), ("u2", "HTTP 500")])
    html = report._repr_html_()
    assert "Instasent contact delete" in html and "<td>45</td>" in html and "<td>100.0</td>" in html
    assert "failures: the first 2 of 2" in html and "<td>u2</td>" in html


def test_export_stats_html():
    stats = ExportStats(source="audience", rows=1200, pages=12, batches=3, total_hits=1200, seconds=3.0)
    stats.invalid.add("birthday", "not-a-date")
    html = stats._repr_html_()
    assert "Instasent audience export" in html and "<td>1,200</td>" in html and "<td>400.0</td>" in html
    assert "invalid values by column: the first 1 of 1" in html and "<td>birthday</td>" in html


def test_dir_of_the_dataframe_module_lists_its_functions():
    names = dir(dataframe)
    for name in ("write_contacts", "write_events", "read_audience", "read_segment", "read_events",
                 "read_audience_arrow", "IngestReport"):
        assert name in names
    assert names == sorted(names)
