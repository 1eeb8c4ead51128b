"""Assets, metrics, OpenLineage and deferral of the Instasent operators (docs/airflow.md), with the
emulator over loopback and ``op.execute()`` (these run on Airflow 3.0 too; the whole-DAG runs are in
tests/system/test_asset_example_dags.py)."""

from __future__ import annotations

import datetime
import json
import sys

import pyarrow.parquet as pq
import pytest
import requests

from tests.conftest import PROJECT, emulator_state
from tests.support.ingest_helpers import contacts

pytestmark = pytest.mark.integration
pytest.importorskip("airflow")  # the operators: skipped in the analyst install (no Airflow)


def _context(run_id: str = "manual__assets") -> dict:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"run_id": run_id, "outlet_events": OutletEventAccessors()}


# -- assets ------------------------------------------------------------------------------------
def test_the_instasent_scheme_is_normalised_and_checked_by_airflow():
    from airflow.sdk import Asset

    from airflow_provider_instasent.get_provider_info import get_provider_info

    handlers = {s: u["handler"] for u in get_provider_info()["asset-uris"] for s in u["schemes"]}
    assert handlers == {"instasent": "airflow_provider_instasent.operators.assets.sanitize_uri"}
    # Airflow runs the provider's handler on every Asset of the scheme
    assert Asset("INSTASENT://demo/segment/vip_static/").uri == "instasent://demo/segment/vip_static"
    assert Asset("instasent://demo/datasource/crm/events#x").uri == "instasent://demo/datasource/crm/events"
    for bad in ("instasent://demo/segments/vip", "instasent://demo/datasource/crm", "instasent:///audience",
                "instasent://demo/audience?x=1"):
        with pytest.raises(ValueError, match="instasent URI"):
            Asset(bad)


def test_the_asset_factory_and_its_openlineage_name_agree():
    pytest.importorskip("airflow.providers.openlineage")
    from airflow_provider_instasent.operators.assets import convert_asset_to_openlineage, create_asset

    asset = create_asset(project="demo", resource="datasource", uid="crm", kind="contacts")
    assert asset.uri == "instasent://demo/datasource/crm/contacts"
    dataset = convert_asset_to_openlineage(asset, None)
    assert (dataset.namespace, dataset.name) == ("instasent://demo", "datasource/crm/contacts")


def test_default_outlets_and_inlets_only_when_the_names_are_known_at_parse_time(tmp_path):
    from airflow.sdk import Asset

    from airflow_provider_instasent.operators.export import InstasentToParquetOperator, InstasentToSqlOperator
    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator
    from airflow_provider_instasent.operators.sync import InstasentSyncOperator

    ingest = InstasentIngestOperator(task_id="i", kind="events", path="x.parquet", project="demo", datasource="shop")
    assert [a.uri for a in ingest.outlets] == ["instasent://demo/datasource/shop/events"]
    sync = InstasentSyncOperator(task_id="s", kind="contacts", sync_id="crm", sql="SELECT 1", sql_conn_id="w",
                                 project="demo", datasource="crm")
    assert [a.uri for a in sync.outlets] == ["instasent://demo/datasource/crm/contacts"]
    # the project or datasource only in the connection (or templated): the DAG declares its assets
    assert not InstasentIngestOperator(task_id="j", kind="contacts", path="x.parquet").outlets
    assert not InstasentIngestOperator(task_id="k", kind="contacts", path="x", project="{{ var.value.p }}",
                                       datasource="crm").outlets
    mine = Asset("instasent://demo/datasource/crm/contacts")
    assert InstasentIngestOperator(task_id="l", kind="contacts", path="x", project="demo", datasource="shop",
                                   outlets=[mine]).outlets == [mine]
    export = InstasentToParquetOperator(task_id="e", source="segment", segment="vip_static", project="demo",
                                        path=str(tmp_path / "vip.parquet"))
    assert [a.uri for a in export.inlets] == ["instasent://demo/segment/vip_static"]
    assert [a.uri for a in export.outlets] == [f"file://{tmp_path}/vip.parquet"]
    to_sql = InstasentToSqlOperator(task_id="a", project="demo", sql_conn_id="w", table="t")
    assert [a.uri for a in to_sql.inlets] == ["instasent://demo/audience"] and not to_sql.outlets


def test_ingest_puts_its_counts_on_the_asset_event(instasent_conn):
    from airflow.sdk import Asset

    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    frame = contacts(30).astype({"loyalty_points": object})
    frame.loc[3, "loyalty_points"] = "lots"  # one local reject
    warehouse = Asset("warehouse://crm/contacts_pushed")
    op = InstasentIngestOperator(task_id="push", kind="contacts", python_callable=lambda: frame, project=PROJECT,
                                 datasource="dsapi", on_invalid="skip",
                                 outlets=[Asset(f"instasent://{PROJECT}/datasource/dsapi/contacts"), warehouse])
    context = _context()
    result = op.execute(context)
    for asset in op.outlets:
        extra = context["outlet_events"][asset].extra
        assert extra == {"kind": "contacts", "rows": 30, "accepted": 29, "rejects": 1, "dry_run": False,
                         "run_id": "manual__assets"}
        assert json.dumps(extra)  # counts only: storable in the metadata DB
    assert result["accepted"] == 29 == emulator_state(instasent_conn)["contacts"]["dsapi"]


def _seed(client, n: int = 20) -> None:
    users = [{"_user_id": f"vip-{i}", "plan": "pro"} for i in range(1, 4)]
    users += [{"_user_id": f"seed-{i}", "plan": "free"} for i in range(n - 3)]
    for start in range(0, n, 100):
        assert client.push_contacts(users[start:start + 100], sync=True).ok


def test_export_puts_its_counts_on_the_asset_event(instasent_conn, client, tmp_path):
    _seed(client)
    from airflow_provider_instasent.operators.export import InstasentToParquetOperator

    op = InstasentToParquetOperator(task_id="x", source="audience", project=PROJECT, path=str(tmp_path / "a.parquet"))
    context = _context("scheduled__1")
    result = op.execute(context)
    (outlet,) = op.outlets
    extra = context["outlet_events"][outlet].extra
    assert extra["rows"] == result["rows"] == pq.read_metadata(tmp_path / "a.parquet").num_rows == 20
    assert extra["source"] == "audience" and extra["run_id"] == "scheduled__1"


# -- metrics -------------------------------------------------------------------------------------
class _Recorder:
    """Stands in for Airflow's ``Stats`` and records what was sent to it."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.timers: dict[str, float] = {}
        self.tags: list[dict] = []

    def incr(self, stat: str, count: int = 1, rate: float = 1, *, tags: dict | None = None) -> None:
        self.counters[stat] = self.counters.get(stat, 0) + count
        self.tags.append(tags or {})

    def timing(self, stat: str, dt: datetime.timedelta, *, tags: dict | None = None) -> None:
        self.timers[stat] = self.timers.get(stat, 0.0) + dt.total_seconds()


@pytest.fixture
def stats(monkeypatch):
    import airflow_provider_instasent._airflow_compat as compat

    recorder = _Recorder()
    monkeypatch.setattr(compat, "Stats", recorder)
    return recorder


def test_metrics_are_emitted_under_documented_names(instasent_conn, stats, tmp_path):
    from airflow_provider_instasent.operators.export import InstasentToParquetOperator
    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator
    from airflow_provider_instasent.operators.metrics import METRICS

    frame = contacts(250).astype({"loyalty_points": object})
    frame.loc[0, "loyalty_points"] = "x"
    InstasentIngestOperator(task_id="push", kind="contacts", python_callable=lambda: frame,
                            on_invalid="skip").execute(_context())
    assert stats.counters["instasent.ingest.rows"] == 250
    assert stats.counters["instasent.ingest.rows_accepted"] == 249
    assert stats.counters["instasent.ingest.rows_rejected"] == 1
    assert stats.counters["instasent.ingest.rows_sent"] == 249
    assert stats.counters["instasent.ingest.requests"] >= 4  # the specs, three pushes of at most 100
    assert "instasent.ingest.duration" in stats.timers and "instasent.ingest.rate_limit_wait" in stats.timers
    assert {"task_id": "push", "kind": "contacts"}.items() <= stats.tags[0].items()
    InstasentToParquetOperator(task_id="x", path=str(tmp_path / "a.parquet")).execute(_context())
    assert stats.counters["instasent.export.rows"] == 249  # the audience the ingest made
    for name in (*stats.counters, *stats.timers):  # every name is documented
        operation, measure = name.split(".")[1:]
        assert operation in ("ingest", "export") and measure in METRICS, name


def test_a_failing_stats_backend_never_fails_the_task(instasent_conn, monkeypatch):
    import airflow_provider_instasent._airflow_compat as compat
    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    class Broken:
        def __getattr__(self, name):
            raise OSError("statsd is down")

    monkeypatch.setattr(compat, "Stats", Broken())
    result = InstasentIngestOperator(task_id="p", kind="contacts", python_callable=lambda: contacts(5)).execute({})
    assert result["accepted"] == 5


# -- OpenLineage ---------------------------------------------------------------------------------
def test_openlineage_facets_of_an_ingest_from_sql(instasent_conn, tmp_path, monkeypatch):
    pytest.importorskip("airflow.providers.openlineage")
    import sqlite3

    from airflow.providers.openlineage.extractors.base import DefaultExtractor

    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    db = tmp_path / "w.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE crm (_user_id TEXT, plan TEXT)")
        con.executemany("INSERT INTO crm VALUES (?, ?)", [(f"u{i}", "pro") for i in range(12)])
    monkeypatch.setenv("AIRFLOW_CONN_W", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    op = InstasentIngestOperator(task_id="push", kind="contacts", sql="SELECT _user_id, plan FROM crm",
                                 sql_conn_id="w")
    assert op.get_openlineage_facets_on_complete(None) is None  # nothing ran yet: nothing to report
    op.execute(_context())
    lineage = DefaultExtractor(op).extract_on_complete(None)  # what the OpenLineage listener calls
    (output,) = lineage.outputs
    assert (output.namespace, output.name) == (f"instasent://{PROJECT}", "datasource/dsapi/contacts")
    assert output.outputFacets["outputStatistics"].rowCount == 12
    fields = {f.name: f.type for f in output.facets["schema"].fields}
    assert fields["plan"] == "string" and "_user_id" in fields and "loyalty_points" in fields
    (source,) = lineage.inputs
    assert (source.namespace, source.name) == ("sqlite://w", "crm")  # SQLite has no OpenLineage database info


def test_openlineage_facets_of_an_export_to_parquet(instasent_conn, client, tmp_path):
    pytest.importorskip("airflow.providers.openlineage")
    _seed(client)
    from airflow_provider_instasent.operators.export import InstasentToParquetOperator

    op = InstasentToParquetOperator(task_id="x", source="segment", segment="vip_static",
                                    path=str(tmp_path / "vip.parquet"))
    result = op.execute(_context())
    lineage = op.get_openlineage_facets_on_complete(None)
    (source,) = lineage.inputs
    (target,) = lineage.outputs
    assert (source.namespace, source.name) == (f"instasent://{PROJECT}", "segment/vip_static")
    assert (target.namespace, target.name) == ("file", str(tmp_path / "vip.parquet"))
    assert target.outputFacets["outputStatistics"].rowCount == result["rows"] == 3
    columns = [f.name for f in target.facets["schema"].fields]
    assert columns == pq.read_schema(tmp_path / "vip.parquet").names


def test_openlineage_facets_of_an_export_to_postgres(instasent_conn, postgres_url, monkeypatch):
    pytest.importorskip("airflow.providers.openlineage")
    from urllib.parse import urlsplit

    from airflow_provider_instasent.operators.export import InstasentToSqlOperator

    url = urlsplit(postgres_url)
    monkeypatch.setenv("AIRFLOW_CONN_PG", json.dumps({
        "conn_type": "postgres", "host": url.hostname, "port": url.port or 5432, "login": url.username or "postgres",
        "schema": url.path.lstrip("/")}))
    op = InstasentToSqlOperator(task_id="x", sql_conn_id="pg", table="public.lineage_audience")
    op.execute(_context())
    (target,) = op.get_openlineage_facets_on_complete(None).outputs
    assert target.namespace == f"postgres://{url.hostname}:{url.port or 5432}"
    assert target.name == f"{url.path.lstrip('/')}.public.lineage_audience"


def test_lineage_never_fails_a_task_and_is_absent_without_the_provider(instasent_conn, monkeypatch):
    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    op = InstasentIngestOperator(task_id="p", kind="contacts", python_callable=lambda: contacts(3))
    op.execute(_context())
    monkeypatch.setitem(sys.modules, "airflow_provider_instasent.operators.lineage", None)  # not installed
    assert op.get_openlineage_facets_on_complete(None) is None
    monkeypatch.delitem(sys.modules, "airflow_provider_instasent.operators.lineage")
    if "airflow.providers.openlineage" in sys.modules or _has_openlineage():
        import airflow_provider_instasent.operators.lineage as lineage

        monkeypatch.setattr(lineage, "operator_lineage", lambda op: 1 / 0)
        assert op.get_openlineage_facets_on_complete(None) is None


def _has_openlineage() -> bool:
    try:
        import airflow.providers.openlineage  # noqa: F401
    except ImportError:
        return False
    return True


# -- deferral --------------------------------------------------------------------------------------
def _rate_limit(url: str, per_minute: float | None) -> None:
    requests.post(f"{url}/_emulator/faults", json={"rate_limit": per_minute}, timeout=10).raise_for_status()


def test_a_long_rate_limit_wait_defers_and_the_run_resumes(instasent_conn, stats):
    from airflow.providers.standard.triggers.temporal import DateTimeTrigger

    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 3.0
        from airflow.exceptions import TaskDeferred

    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    _rate_limit(instasent_conn, 12)  # one request per 5 s per endpoint class: the second push must wait
    op = InstasentIngestOperator(task_id="push", kind="contacts", python_callable=lambda: contacts(150),
                                 deferrable=True, defer_after=1)
    context = _context()
    before = datetime.datetime.now(datetime.UTC)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, DateTimeTrigger) and deferred.value.method_name == "resume_after_wait"
    assert before + datetime.timedelta(seconds=1) < trigger.moment < before + datetime.timedelta(seconds=10)
    assert stats.counters["instasent.ingest.deferrals"] == 1
    assert emulator_state(instasent_conn)["contacts"]["dsapi"] < 150  # it stopped instead of sleeping
    _rate_limit(instasent_conn, None)  # the quota window has passed when the trigger fires
    result = op.resume_after_wait(context, event=None, **deferred.value.kwargs)
    assert result["accepted"] == 150 and result["status"] == "ok"
    assert emulator_state(instasent_conn)["contacts"]["dsapi"] == 150


def test_without_deferrable_the_client_sleeps_through_the_wait(instasent_conn):
    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    _rate_limit(instasent_conn, 120)  # short waits (0.5 s): slept, as before
    op = InstasentIngestOperator(task_id="push", kind="contacts", python_callable=lambda: contacts(150),
                                 max_in_flight=1)
    assert "long_wait" not in op.hook._client_kwargs
    assert op.execute(_context())["accepted"] == 150


def _defer_then_resume(url: str, op) -> dict:
    """Run ``op`` under a one-request-per-5-s budget: it must defer; lift the budget (the quota
    window passes) and resume from the deferral."""
    try:
        from airflow.sdk.exceptions import TaskDeferred
    except ImportError:  # Airflow 3.0
        from airflow.exceptions import TaskDeferred

    _rate_limit(url, 12)
    context = _context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    _rate_limit(url, None)
    return op.resume_after_wait(context, event=None, **deferred.value.kwargs)


def test_a_deferred_sync_resumes_from_its_state(instasent_conn, tmp_path):
    from airflow_provider_instasent.operators.sync import InstasentSyncOperator

    op = InstasentSyncOperator(task_id="sync", kind="contacts", sync_id="crm", python_callable=contacts,
                               op_args=[250], state_path=str(tmp_path / "state.duckdb"), deferrable=True,
                               defer_after=1)
    result = _defer_then_resume(instasent_conn, op)
    assert result["status"] == "ok" and result["rows"] == 250
    assert emulator_state(instasent_conn)["contacts"]["dsapi"] == 250
    again = InstasentSyncOperator(task_id="sync", kind="contacts", sync_id="crm", python_callable=contacts,
                                  op_args=[250], state_path=str(tmp_path / "state.duckdb")).execute(_context())
    assert again["unchanged"] == 250 and again["requests"] == 0  # the state recorded every accepted row


def test_a_deferred_export_starts_again_and_writes_everything(instasent_conn, client, tmp_path):
    from airflow_provider_instasent.operators.export import InstasentToParquetOperator

    _seed(client, 250)
    op = InstasentToParquetOperator(task_id="x", path=str(tmp_path / "a.parquet"), deferrable=True, defer_after=1)
    result = _defer_then_resume(instasent_conn, op)
    assert result["rows"] == 250 == pq.read_metadata(tmp_path / "a.parquet").num_rows
