"""An Airflow task retry in ``dag.test()``: the ingest task fails part-way through its first
try (the source breaks, or a burst of lost responses outlasts ``max_retries=0``) and succeeds
on the retry. The emulator then holds exactly what one clean run stores: the rows sent by the
failed try are not duplicated. The run's XComs and rendered fields never hold the token.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import ADMIN_TOKEN, emulator_state

from . import dataset
from .helpers import set_faults

pytestmark = [pytest.mark.integration, pytest.mark.airflow, pytest.mark.slow]


def read_parquet(path: str):
    return pq.read_table(path)


def flaky_events(path: str, marker: str, mode: str, url: str):
    """Batches of the events file; the first try breaks after four batches, the retry does not."""
    first_try = not os.path.exists(marker)
    if first_try:
        Path(marker).write_text("first try started")
    else:
        set_faults(url, fault_rate=0.0)  # the burst is over by the time Airflow retries

    def batches():
        for i, batch in enumerate(pq.ParquetFile(path).iter_batches(batch_size=1_000)):
            if first_try and i == 4:
                if mode == "source_error":
                    raise ConnectionError("the warehouse connection was lost (first try only)")
                # every response is lost from now on, after the server applied the request
                set_faults(url, fault_rate=1.0, fault_kinds=["drop_after"])
            yield batch

    return batches()


def build_dag(mode: str, directory: Path, url: str):
    from airflow.sdk import DAG

    from airflow_provider_instasent.operators.ingest import InstasentIngestOperator

    with DAG(dag_id=f"reliability_retry_{mode}", schedule=None, start_date=dt.datetime(2024, 1, 1),
             catchup=False, tags=["instasent"], default_args={"retry_delay": dt.timedelta(0)}) as dag:
        contacts = InstasentIngestOperator(
            task_id="load_contacts", kind="contacts", python_callable=read_parquet,
            op_kwargs={"path": str(directory / "contacts.parquet")}, on_invalid="skip", retries=1,
            rejects_path=str(directory / "rejects-{{ ti.task_id }}.parquet"))
        events = InstasentIngestOperator(
            task_id="load_events", kind="events", python_callable=flaky_events,
            op_kwargs={"path": str(directory / "events.parquet"), "marker": str(directory / "marker"),
                       "mode": mode, "url": url},
            on_invalid="skip", batch_rows=1_000, max_in_flight=2, retries=1,
            # the burst of lost responses must hit the pushes, not the contact check's reads (which
            # would stop the try before sending, its rows skipped: tested in test_no_event_lost)
            check_contacts=mode != "lost_responses",
            rejects_path=str(directory / "rejects-{{ ti.task_id }}-try{{ ti.try_number }}.parquet"))
        contacts >> events
    return dag


def all_values(session, model, run_id: str) -> list[str]:
    rows = session.query(model).filter(model.run_id == run_id).all()
    return [json.dumps(getattr(r, "value", None) or getattr(r, "rendered_fields", None), default=str)
            for r in rows]


@pytest.mark.usefixtures("airflow_db")
@pytest.mark.parametrize("mode", ["source_error", "lost_responses"])
def test_task_retry_after_a_mid_run_failure_stores_each_event_once(mode, emu, tmp_path, monkeypatch):
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.sdk import DagRunState
    from airflow.utils.session import create_session

    from tests.support.dag_utils import sync_dag_to_db

    ds = dataset.build(1_000, 10_000, seed=31)
    pq.write_table(ds.contacts, tmp_path / "contacts.parquet")
    pq.write_table(ds.events, tmp_path / "events.parquet")
    max_retries = 0 if mode == "lost_responses" else 5
    monkeypatch.setenv("AIRFLOW_CONN_INSTASENT_DEFAULT", json.dumps({
        "conn_type": "instasent", "host": emu, "password": ADMIN_TOKEN,
        "extra": {"project": "demo", "datasource": "dsapi", "max_retries": max_retries}}))

    dag = build_dag(mode, tmp_path, emu)
    sync_dag_to_db(dag)
    run = dag.test()
    set_faults(emu, fault_rate=0.0)
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == DagRunState.SUCCESS, {k: v.state for k, v in tis.items()}
    assert tis["load_events"].try_number == 2  # it failed once, then Airflow retried it
    assert (tmp_path / "marker").exists()
    first_try = pq.read_table(tmp_path / "rejects-load_events-try1.parquet").to_pandas()
    if mode == "lost_responses":  # the lost request's rows were reported, not silently dropped
        assert (first_try["stage"] == "unknown").any()  # they may have been stored

    counts = emulator_state(emu)
    assert counts["contacts"]["dsapi"] == len(ds.valid_user_ids)
    assert counts["events"] == len(ds.stored_event_ids)  # the same as one clean run
    result = tis["load_events"].xcom_pull(task_ids="load_events")
    if mode == "lost_responses":  # check off: events of users without a contact are accepted, unverified
        assert result["rows"] == 10_000 and result["accepted"] == len(ds.valid_event_rows) == result["unverified"]
        assert result["rejected"] == len(ds.bad_events) and result["status"] == "ok"
    else:
        assert result["rows"] == 10_000 and result["accepted"] == len(ds.accepted_event_rows)
        assert result["rejected"] == len(ds.event_rejects) and result["status"] == "ok"

    # nothing Airflow stored for this run carries the token
    with create_session() as session:
        stored = all_values(session, XComModel, run.run_id) + all_values(session, RenderedTaskInstanceFields,
                                                                          run.run_id)
    assert stored and not [v for v in stored if ADMIN_TOKEN in v]
