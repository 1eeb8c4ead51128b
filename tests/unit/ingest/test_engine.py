"""The engine with a fake client: policies, accounting, rejects, the automations guard."""

from __future__ import annotations

import logging
import threading
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_instasent.ingest import (
    AutomationsGuardError,
    IngestReport,
    IngestSchemaError,
    RejectedRowsError,
    RequestFailedError,
    write_contacts,
    write_events,
)
from airflow_provider_instasent.ingest.report import REJECT_COLUMNS, RejectsSink
from tests.support import file_object_storage_path
from tests.support.ingest_helpers import ORDER, FakeClient, contacts, orders


def balanced(report: IngestReport) -> bool:
    return report.rows == report.accepted + report.rejected + report.unknown + report.skipped


def with_bad_rows(n: int, bad: set[int]) -> pd.DataFrame:
    df = orders(n)
    df.loc[sorted(bad), "amount"] = None
    return df


def test_happy_path_counts(specs, fake_client):
    report = write_events(fake_client, orders(250), event_type=ORDER, specs=specs)
    assert (report.rows, report.sent, report.accepted, report.rejected, report.skipped) == (250, 250, 250, 0, 0)
    assert report.requests == 3 and report.status == "ok" and report.would_fire_automations == 0
    assert len(fake_client.items) == 250
    assert list(report.rejects.columns) == list(REJECT_COLUMNS) and report.rejects.empty
    d = report.to_dict()
    assert d["accepted"] == 250 and "rejects" not in d and isinstance(d["rows_per_s"], float)


def test_fail_stops_before_sending_the_bad_batch(specs, fake_client):
    df = with_bad_rows(300, {150})
    with pytest.raises(RejectedRowsError, match=r"row 150 _event_parameters.amount: required") as exc:
        write_events(fake_client, df, event_type=ORDER, specs=specs, batch_rows=100)
    report = exc.value.report
    assert report.status == "failed" and balanced(report)
    # the first batch (rows 0-99) was sent; the second was read, not sent; the third never read
    assert (report.rows, report.accepted, report.rejected, report.skipped) == (200, 100, 1, 99)
    assert report.rejects.to_dict("records") == [{
        "source_row": 150, "_user_id": "user-0", "field": "_event_parameters.amount",
        "reason": "required parameter is missing", "stage": "local"}]


def test_fail_with_preflight_sends_nothing(specs, fake_client):
    with pytest.raises(RejectedRowsError, match="nothing was sent"):
        write_events(fake_client, with_bad_rows(300, {250}), event_type=ORDER, specs=specs, batch_rows=100,
                     preflight=True)
    assert fake_client.calls == []


def test_skip_and_rejects_parquet(specs, fake_client, tmp_path):
    path = tmp_path / "out" / "rejects.parquet"
    df = with_bad_rows(120, {3, 77})
    df.loc[77, "currency"] = "EURO"
    report = write_events(fake_client, df, event_type=ORDER, specs=specs, on_invalid="skip", rejects_path=str(path))
    assert (report.accepted, report.rejected, report.rejected_local) == (118, 2, 2) and balanced(report)
    written = pq.read_table(path).to_pandas()
    assert written.to_dict("records") == report.rejects.to_dict("records")
    assert sorted(written[["source_row", "field"]].values.tolist()) == [
        [3, "_event_parameters.amount"], [77, "_event_parameters.amount"], [77, "_event_parameters.currency"]]
    assert report.reject_entries == 3 and report.to_dict()["rejects_path"] == str(path)


def test_an_empty_rejects_file_is_still_written(specs, fake_client, tmp_path):
    path = tmp_path / "rejects.parquet"
    write_events(fake_client, orders(5), event_type=ORDER, specs=specs, on_invalid="dead_letter", rejects_path=path)
    assert pq.read_table(path).num_rows == 0 and pq.read_schema(path).names == list(REJECT_COLUMNS)


def test_dead_letter_needs_a_destination(specs, fake_client):
    with pytest.raises(IngestSchemaError, match="dead_letter"):
        write_events(fake_client, orders(5), event_type=ORDER, specs=specs, on_invalid="dead_letter")


def test_api_rejects_are_mapped_back_to_source_rows(specs):
    client = FakeClient(reject=lambda item: {"_event_parameters.amount": ["too big"]}
                        if item["_event_parameters"]["amount"] > 90 else None)
    df = orders(400)
    report = write_events(client, df, event_type=ORDER, specs=specs, on_invalid="skip", max_in_flight=4)
    expected = sorted(df.index[df.amount > 90].tolist())
    assert sorted(report.rejects.source_row.tolist()) == expected
    assert set(report.rejects.stage) == {"api"} and set(report.rejects.reason) == {"too big"}
    assert report.rejected_api == len(expected) and report.accepted == 400 - len(expected) and balanced(report)
    users = dict(zip(report.rejects.source_row, report.rejects._user_id))
    assert all(users[r] == df._user_id[r] for r in expected)


def test_api_rejects_with_fail_stop_the_run(specs):
    client = FakeClient(reject=lambda item: {"": ["no"]} if item["_event_parameters"]["order_id"] == "order-0-5"
                        else None)
    with pytest.raises(RejectedRowsError, match="the API rejected 1 row"):
        write_events(client, orders(2000), event_type=ORDER, specs=specs, max_in_flight=1, batch_rows=100)


def test_max_rejected_ratio(specs, fake_client, tmp_path):
    df = with_bad_rows(3000, set(range(0, 3000, 10)))  # 10 %
    report = write_events(fake_client, df, event_type=ORDER, specs=specs, on_invalid="skip", max_rejected_ratio=0.2)
    assert report.rejected == 300
    path = tmp_path / "r.parquet"
    # the first 1,000 rows (the run's first batch is cut there) are clean: checked after the rest
    tail_bad = with_bad_rows(3000, set(range(1000, 3000, 10)))
    with pytest.raises(RejectedRowsError, match=r"200 of 3000 rows rejected \(6.67%\).*5.00%.*r.parquet") as exc:
        write_events(FakeClient(), tail_bad, event_type=ORDER, specs=specs, on_invalid="skip",
                     max_rejected_ratio=0.05, rejects_path=path, batch_rows=5000)
    assert pq.read_table(path).num_rows == 200 and balanced(exc.value.report)
    # the same with bad rows from the start stops after the first 1,000 rows, batch_rows or not
    with pytest.raises(RejectedRowsError, match=r"100 of 1000 rows rejected \(10.00%\)") as exc:
        write_events(FakeClient(), df, event_type=ORDER, specs=specs, on_invalid="skip", max_rejected_ratio=0.05,
                     batch_rows=5000)
    assert exc.value.report.rows == 1000 and balanced(exc.value.report)
    # checked while running once 1000 rows were read: it stops early
    with pytest.raises(RejectedRowsError) as exc:
        write_events(FakeClient(), df, event_type=ORDER, specs=specs, on_invalid="skip", max_rejected_ratio=0.05,
                     batch_rows=500)
    assert exc.value.report.rows == 1000 and balanced(exc.value.report)


def test_a_failed_request_leaves_its_rows_unknown_and_stops(specs):
    """A request that may have reached the API: its rows may be stored, so they are neither
    rejected nor accepted but ``unknown``, with a reason of their own."""
    client = FakeClient(fail_on_call=2)
    with pytest.raises(RequestFailedError, match="re-running is safe") as exc:
        write_events(client, orders(1000), event_type=ORDER, specs=specs, max_in_flight=1)
    report = exc.value.report
    assert balanced(report) and (report.unknown, report.rejected) == (100, 0)
    assert set(report.rejects.stage) == {"unknown"}
    assert set(report.rejects.reason) == {"outcome unknown: the request failed after the client's retries and "
                                          "the API may have stored the row (boom)"}
    assert report.to_dict()["unknown"] == 100 and "100 unknown outcome" in report.summary()


def test_a_request_the_api_certainly_never_applied_rejects_its_rows(specs):
    """A 429 storm or a refused connection after every retry: nothing was stored, the rows are rejected."""
    from airflow_provider_instasent.client.errors import RateLimitError

    refused = RateLimitError(429, "POST", "push", "slow down", attempts=6)
    assert refused.may_have_acted is False
    with pytest.raises(RequestFailedError, match="stage 'api'") as exc:
        write_events(FakeClient(fail_on_call=1, failure=refused), orders(300), event_type=ORDER, specs=specs,
                     max_in_flight=1)
    report = exc.value.report
    assert balanced(report) and (report.unknown, report.rejected_api) == (0, 100)
    assert set(report.rejects.stage) == {"api"}


def test_automations_guard(specs):
    now = pd.Timestamp.now(tz="UTC")
    df = orders(50)
    df.loc[[10, 20], "_event_date"] = [now - pd.Timedelta(minutes=30), now + pd.Timedelta(minutes=30)]
    client = FakeClient()
    with pytest.raises(AutomationsGuardError, match=r"2 event.*nothing was sent") as exc:
        write_events(client, df, event_type=ORDER, specs=specs, automations="refuse")
    assert client.calls == [] and exc.value.report.skipped == 50 and balanced(exc.value.report)
    # dry run: reported, not refused
    dry = write_events(client, df, event_type=ORDER, specs=specs, automations="refuse", dry_run=True)
    assert dry.would_fire_automations == 2 and dry.dry_run
    report = write_events(FakeClient(), df, event_type=ORDER, specs=specs, automations="warn")
    assert report.would_fire_automations == 2
    # no _event_date at all means "now"
    undated = write_events(FakeClient(), orders(7).drop(columns="_event_date"), event_type=ORDER, specs=specs)
    assert undated.would_fire_automations == 7
    with pytest.raises(IngestSchemaError, match="preflight"):
        write_events(client, df, event_type=ORDER, specs=specs, automations="refuse", preflight=False)


def test_refuse_spools_one_shot_sources(specs, tmp_path):
    table = pa.Table.from_pandas(orders(500), preserve_index=False)
    client = FakeClient()
    report = write_events(client, table.to_reader(max_chunksize=64), event_type=ORDER, specs=specs,
                          automations="refuse", spool_dir=str(tmp_path))
    assert report.accepted == 500 and len(client.items) == 500
    assert list(tmp_path.iterdir()) == []  # the spool is removed


def test_contacts_later_row_wins_and_is_never_in_flight_twice(specs):
    in_flight: dict[str, int] = {}
    overlap = []
    lock = threading.Lock()

    class Slow(FakeClient):
        def push(self, kind, body, **kw):
            import orjson

            users = [i["_user_id"] for i in orjson.loads(body)]
            with lock:
                for u in users:
                    if in_flight.get(u):
                        overlap.append(u)
                    in_flight[u] = in_flight.get(u, 0) + 1
            time.sleep(0.005)
            with lock:
                for u in users:
                    in_flight[u] -= 1
            return super().push(kind, body, **kw)

    df = pd.DataFrame({"_user_id": [f"u{i % 30}" for i in range(600)], "plan": [f"p{i}" for i in range(600)]})
    client = Slow()
    report = write_contacts(client, df, specs=specs, max_in_flight=8)
    assert report.accepted == 600 and overlap == []
    assert all(len({i["_user_id"] for i in call}) == len(call) for call in client.calls)
    last = {}
    for call in client.calls:  # calls are recorded in completion order
        for item in call:
            last[item["_user_id"]] = item["plan"]
    assert last["u0"] == "p570" and last["u29"] == "p599"


def test_few_users_many_rows_hold_back_stays_bounded(specs, monkeypatch):
    """Rows of fewer users than a request holds never fill one: past HOLD_LIMIT held rows the
    engine sends the open request instead of holding the whole input, and the last row wins."""
    from airflow_provider_instasent.ingest import encode, engine

    monkeypatch.setattr(engine, "HOLD_LIMIT", 200)
    most = 0
    original = encode.Chunker.add

    def add(self, *args, **kwargs):
        nonlocal most
        yield from original(self, *args, **kwargs)
        most = max(most, self.held)

    monkeypatch.setattr(encode.Chunker, "add", add)
    df = pd.DataFrame({"_user_id": [f"u{i % 5}" for i in range(3000)], "plan": [f"p{i}" for i in range(3000)]})
    client = FakeClient()
    report = write_contacts(client, df, specs=specs, batch_rows=500, max_in_flight=4)
    assert report.accepted == 3000 and report.skipped == 0
    assert most <= 200 + 500  # the limit plus one batch, not the 3,000 rows
    last = {}
    for call in client.calls:
        for item in call:
            last[item["_user_id"]] = item["plan"]
    assert last == {f"u{k}": f"p{2995 + k}" for k in range(5)}


def test_progress_is_logged(specs, fake_client, caplog):
    caplog.set_level(logging.INFO, logger="airflow_provider_instasent.ingest")
    write_events(fake_client, orders(100), event_type=ORDER, specs=specs, progress_interval=0.0001, batch_rows=10)
    progress = [r.getMessage() for r in caplog.records if "rows read" in r.getMessage()]
    assert progress and "100/100 (100.0%) rows read" in progress[-1]


def test_unknown_options_and_bad_values(specs, fake_client):
    with pytest.raises(IngestSchemaError, match=r"unknown option.*colour"):
        write_contacts(fake_client, contacts(3), specs=specs, colour="red")
    with pytest.raises(IngestSchemaError, match="on_invalid"):
        write_contacts(fake_client, contacts(3), specs=specs, on_invalid="ignore")
    with pytest.raises(IngestSchemaError, match="assume_timezone"):
        write_contacts(fake_client, contacts(3), specs=specs, assume_timezone="Mars/Olympus")
    with pytest.raises(IngestSchemaError, match="event_type applies to events only"):
        write_contacts(fake_client, contacts(3), specs=specs, event_type=ORDER)


def test_schema_error_mid_run_accounts_for_every_row(specs, fake_client):
    good = orders(100)
    bad = orders(100).assign(colour="red")
    with pytest.raises(IngestSchemaError, match="colour") as exc:
        write_events(fake_client, iter([good, bad]), event_type=ORDER, specs=specs)
    assert balanced(exc.value.report) and exc.value.report.accepted == 100


def test_oversize_items_are_rejected_locally(specs, fake_client):
    df = contacts(10)
    df.loc[4, "plan"] = "x" * 5000
    report = write_contacts(fake_client, df, specs=specs, on_invalid="skip", max_request_bytes=2048)
    assert report.rejected_local == 1 and report.rejects.source_row.tolist() == [4]
    assert "more than max_request_bytes=2048" in report.rejects.reason[0] and balanced(report)
    assert report.rejects.field[0] == "plan" and "(plan is the largest value)" in report.rejects.reason[0]


def test_oversize_event_names_the_nested_parameter(specs, fake_client):
    from airflow_provider_instasent.ingest.encode import largest_field

    assert largest_field({"_user_id": "u", "_event_parameters": {"a": 1, "notes": "x" * 900}}) == (
        "_event_parameters.notes", 902)


def test_rejects_sink_truncates_memory_but_not_the_file(tmp_path):
    sink = RejectsSink(path=tmp_path / "r.parquet", max_in_memory=5, flush_rows=3)
    for i in range(4):
        sink.add([i * 3, i * 3 + 1, i * 3 + 2], ["u"] * 3, ["f"] * 3, ["r"] * 3, "local")
    sink.close()
    assert len(sink.dataframe()) == 5 and sink.truncated and sink.entries == 12
    assert pq.read_table(tmp_path / "r.parquet").num_rows == 12


def test_empty_inputs(specs, fake_client, tmp_path):
    report = write_events(fake_client, orders(0), event_type=ORDER, specs=specs)
    assert (report.rows, report.requests, report.status) == (0, 0, "ok")
    pq.write_table(pa.Table.from_pandas(orders(0), preserve_index=False), tmp_path / "empty.parquet")
    assert write_events(fake_client, str(tmp_path / "empty.parquet"), event_type=ORDER, specs=specs).rows == 0


def test_rejects_to_object_storage(specs, fake_client, tmp_path):
    pytest.importorskip("airflow.sdk")

    target = file_object_storage_path(f"file://{tmp_path}/rejects.parquet")
    report = write_contacts(fake_client, contacts(3).assign(birthday=["x", None, None]), specs=specs,
                            on_invalid="skip", rejects_path=target)
    assert report.rejected == 1
    assert pq.read_table(tmp_path / "rejects.parquet").column("field").to_pylist() == ["birthday"]


@pytest.mark.parametrize("automations", ["allow", "warn"])
def test_a_load_that_would_fire_automations_says_so_before_sending(specs, caplog, automations):
    now = pd.Timestamp.now(tz="UTC")
    df = orders(40)
    df.loc[[3, 5, 7], "_event_date"] = now
    warned_before_first_push: list[bool] = []

    class Watching(FakeClient):
        def push(self, *args, **kwargs):
            warned_before_first_push.append(any("fire automations" in r.getMessage() for r in caplog.records))
            return super().push(*args, **kwargs)

    caplog.set_level(logging.INFO, logger="airflow_provider_instasent")
    report = write_events(Watching(), df, event_type=ORDER, specs=specs, automations=automations, preflight=True)
    assert report.accepted == 40 and report.would_fire_automations == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "fire automations" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("3 event(s) have an _event_date within ±1 hour of now")
    assert warned_before_first_push and warned_before_first_push[0]


def test_a_long_wait_before_sending_skips_the_rows_and_stops_with_it(specs):
    """The client refused to sleep past ``long_wait``: nothing of that request was sent, so its
    rows are skipped (not rejected, not unknown) and the run stops with the ``LongWaitError``."""
    from airflow_provider_instasent.client.errors import LongWaitError

    wait = LongWaitError(3600, endpoint_class="ingest")
    with pytest.raises(LongWaitError) as exc:
        write_events(FakeClient(fail_on_call=2, failure=wait), orders(1000), event_type=ORDER, specs=specs,
                     max_in_flight=1)
    assert exc.value is wait


def test_a_long_wait_after_an_attempt_that_may_have_acted_leaves_the_rows_unknown(specs):
    from airflow_provider_instasent.client.errors import LongWaitError

    wait = LongWaitError(3600)
    wait.may_have_acted = True  # a 5xx came first, then a 429 with a long Retry-After
    with pytest.raises(RequestFailedError) as exc:
        write_events(FakeClient(fail_on_call=2, failure=wait), orders(1000), event_type=ORDER, specs=specs,
                     max_in_flight=1)
    report = exc.value.report
    assert exc.value.__cause__ is wait and balanced(report) and (report.unknown, report.rejected) == (100, 0)
