"""An export never commits a partial or doubled result (issue 18, case 2), against a hostile
scroll on loopback: an early empty page, a page without a cursor, a page served twice, a cursor
that never moves."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import pytest

from airflow_provider_instasent import InstasentClient
from airflow_provider_instasent.client.errors import InstasentProtocolError
from airflow_provider_instasent.export import Export
from airflow_provider_instasent.export.completeness import IncompleteExportError
from airflow_provider_instasent.io.parquet import write_parquet
from airflow_provider_instasent.io.sql import write_sql
from tests.support.export_fakes import SPECS, contact
from tests.support.hostile_server import HostileServer

JSON = {"Content-Type": "application/json"}


def page(ids: range, cursor: str | None, total: int) -> bytes:
    return json.dumps({"entities": [contact(i) for i in ids],
                       "metadata": {"cursor": cursor, "totalHits": total}}).encode()


def scroll_server(pages: Any) -> HostileServer:
    """Answers the audience scroll with ``pages(n)`` for the n-th call (0-based)."""
    calls = [0]

    def handler(method: str, path: str, body: bytes):
        n = calls[0]
        calls[0] += 1
        return 200, JSON, pages(n)
    return HostileServer(handler)


CASES = {
    "an empty page ends it early": lambda n: page(range(100), "c1", 200) if n == 0 else page(range(0), None, 200),
    "a page without a cursor": lambda n: page(range(100), None, 1000),
    "a page served twice": lambda n: page(range(100), "c1" if n < 2 else None, 200) if n < 2 else page(range(0), None, 200),
    "a cursor that never moves": lambda n: page(range(n * 100, n * 100 + 100), "same", 1000),
}


@pytest.mark.parametrize("case", list(CASES))
def test_nothing_is_committed_from_an_incomplete_scroll(case, tmp_path):
    db = tmp_path / "w.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE audience (audience_id TEXT)")
        conn.execute("INSERT INTO audience VALUES ('previous')")
    target = tmp_path / "audience.parquet"
    target.write_bytes(b"previous")
    started = time.monotonic()
    with scroll_server(CASES[case]) as server, \
            InstasentClient(token="t0ken", project="demo", base_url=server.base_url, max_retries=0) as client:
        for disposition in ("replace", "merge"):
            export = Export(client, specs=SPECS, batch_size=50)
            with sqlite3.connect(db) as conn, pytest.raises(IncompleteExportError, match="nothing committed"):
                write_sql(export.batches(), conn, "audience", export.schema, write_disposition=disposition,
                          key=export.key)
        export = Export(client, specs=SPECS, batch_size=50)
        with pytest.raises(IncompleteExportError):
            write_parquet(export.batches(), target, export.schema)
    assert time.monotonic() - started < 30  # the runaway scroll is stopped, not followed forever
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT audience_id FROM audience").fetchall() == [("previous",)]
    assert target.read_bytes() == b"previous"


def test_a_shrinking_total_within_the_tolerance_is_accepted(tmp_path):
    """total_tolerance: 190 of 200 announced rows is fine at 10%, refused at the default 0."""
    def pages(n: int) -> bytes:
        return page(range(100), "c1", 200) if n == 0 else page(range(100, 190), None, 200)

    with scroll_server(pages) as server, \
            InstasentClient(token="t0ken", project="demo", base_url=server.base_url, max_retries=0) as client:
        assert Export(client, specs=SPECS, total_tolerance=0.1).table().num_rows == 190
    with scroll_server(pages) as server, \
            InstasentClient(token="t0ken", project="demo", base_url=server.base_url, max_retries=0) as client, \
            pytest.raises(IncompleteExportError, match="expected 200 rows"):
        Export(client, specs=SPECS).table()


@pytest.mark.parametrize(("body", "shown"), [(b"<html><body>502 Bad Gateway</body></html>", "502 Bad Gateway"),
                                             (b"[1, 2, 3]", "JSON list"),
                                             (b'{"entities": [], "metadata": "oops"}', "metadata is not a JSON object")])
def test_a_scroll_page_that_is_not_a_page_names_the_endpoint_and_what_came(body, shown):
    """Not ``AttributeError: 'str' object has no attribute 'get'``: a protocol error saying where and what."""
    with HostileServer(lambda method, path, _: (200, {"Content-Type": "text/html"}, body)) as server, \
            InstasentClient(token="t0ken", project="demo", base_url=server.base_url, max_retries=0) as client:
        for run in (lambda: Export(client, specs=SPECS).table(), lambda: list(client.scroll_audience())):
            with pytest.raises(InstasentProtocolError) as raised:
                run()
            message = str(raised.value)
            assert "POST /project/{project}/audience/scroll: answered 200" in message, message
            assert shown in message and "nothing of it is read" in message, message
