"""The demo's summary (scripts/demo.py): aligned tables whatever the step names, exports in
words (no raw JSON), rejects shown with their reasons."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _demo():
    spec = importlib.util.spec_from_file_location("instasent_demo_script", ROOT / "scripts" / "demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_long_step_names_keep_the_columns_aligned():
    demo = _demo()
    long = "instasent_reverse_etl_contacts.crm_contacts_to_instasent_with_a_very_long_task_id"
    lines = demo.table(["ingest step", "rows", "accepted", "detail"],
                       [["a.b", 100000, 99600, ""], [long, 20000, 19894, "dry run: 3 would fire automations"]])
    ends = {line.index("rows") + len("rows") for line in lines[:1]}
    assert {lines[1].index("100,000") + len("100,000"), lines[2].index("20,000") + len("20,000")} == ends
    assert lines[2].startswith(long + "  ") and lines[2].endswith("dry run: 3 would fire automations")


def test_exports_are_described_in_words_not_json():
    demo = _demo()
    parquet = {"rows": 26654, "target": {"path": str(ROOT / ".work/demo/data/export/audience.parquet"),
                                         "row_groups": 3, "bytes": 2_100_000}}
    sql = {"rows": 26654, "target": {"conn_id": "instasent_warehouse", "table": "instasent_audience",
                                     "dialect": "duckdb", "write_disposition": "replace"}}
    assert demo._target(parquet) == ".work/demo/data/export/audience.parquet (3 row groups, 2.1 MB)"
    assert demo._target(sql) == "duckdb table instasent_audience (connection instasent_warehouse)"
    assert demo._other({"sms_id": 7, "sent": True, "target": {"x": 1}}) == "sms_id=7, sent=True"
