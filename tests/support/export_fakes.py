"""Fakes and helpers shared by the export tests (imported as a plain module)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson

from airflow_provider_instasent.client.models import RawScrollPage, ScrollPage

SPECS: list[dict[str, Any]] = [
    {"uid": "_user_id", "dataType": "string", "multivalue": 1},
    {"uid": "_full_name", "dataType": "string"},
    {"uid": "_email", "dataType": "email"},
    {"uid": "_phone_mobile", "dataType": "phone"},
    {"uid": "_client_tags", "dataType": "string", "multivalue": 50},
    {"uid": "_date_updated", "dataType": "datetime", "readonly": True},
    {"uid": "_is_subscribed_sms", "dataType": "bool"},
    {"uid": "plan", "dataType": "string", "custom": True},
    {"uid": "loyalty_points", "dataType": "number", "custom": True},
    {"uid": "birthday", "dataType": "date", "custom": True},
    {"uid": "_datasources", "dataType": "string", "multivalue": 10, "readonly": True},
    {"uid": "_ds_contact_ids", "dataType": "string", "multivalue": 10, "readonly": True},
]


def contact(i: int, version: str = "v1", **attrs: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "_user_id": f"user-{i}",
        "_full_name": f"User {i}",
        "_email": f"user{i}@example.com",
        "_phone_mobile": f"+3460000{i:04d}",
        "_client_tags": ["a", f"t{i % 3}"] if i % 2 else None,
        "_date_updated": "2024-05-01T10:00:00.000Z",
        "_is_subscribed_sms": i % 2 == 0,
        "plan": version,
        "loyalty_points": i * 1.5,
        "birthday": "1990-02-03",
        "_datasources": ["dsapi"],
        "_ds_contact_ids": [f"dsapi:user-{i}"],
    }
    data.update(attrs)
    return {"id": f"aud-{i:06d}", "createdAt": "2024-01-01T00:00:00.000Z",
            "updatedAt": "2024-05-01T10:00:00.000Z", "attributesData": data,
            "audienceIds": [f"aud-{i:06d}"], "dsIds": [3001], "dsContactIds": [i]}


def event(i: int) -> dict[str, Any]:
    return {"id": f"ev-{i}", "_event_id": f"evt-{i}", "_event_type": "page_view",
            "_event_date": "2024-03-01T12:00:00.000Z", "_event_parameters": {"url": f"/p/{i}", "b": 1},
            "_user_id": f"user-{i % 7}", "audienceId": f"aud-{i % 7:06d}", "datasource": "dsapi",
            "receivedAt": "2024-03-01T12:00:01.000Z"}


class FakeClient:
    """Stands in for InstasentClient: scroll iterators over generated pages.

    ``fail_after`` raises on that page; ``page_delay`` sleeps before each page; ``fetched``
    counts the pages produced (to check read-ahead stays bounded).
    """

    def __init__(self, n: int = 250, *, version: str = "v1", specs: list[dict[str, Any]] | None = None,
                 fail_after: int | None = None, page_delay: float = 0.0, start: int = 0,
                 make: Any = None) -> None:
        self.n = n
        self.version = version
        self.specs = SPECS if specs is None else specs
        self.fail_after = fail_after
        self.page_delay = page_delay
        self.start = start
        self.make = make
        self.fetched = 0
        self.calls: list[tuple[str, Any]] = []
        self.closed = threading.Event()

    def get_attribute_specs(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self.specs]

    def token_scopes(self) -> list[str]:
        return ["PROJECT_AUDIENCE_LIST", "PROJECT_AUDIENCE_DATA_FULL"]

    def _pages(self, make: Any, page_size: int) -> Iterator[ScrollPage]:
        try:
            ids = list(range(self.start, self.start + self.n))
            for page_no, offset in enumerate(range(0, len(ids), page_size)):
                if self.fail_after is not None and page_no >= self.fail_after:
                    raise RuntimeError("scroll failed")
                if self.page_delay:
                    time.sleep(self.page_delay)
                chunk = [make(i) for i in ids[offset: offset + page_size]]
                self.fetched += 1
                more = offset + page_size < len(ids)
                yield ScrollPage(chunk, f"cur-{page_no}" if more else None, self.n)
            if not ids:
                yield ScrollPage([], None, 0)
        finally:
            self.closed.set()

    scroll_modes = frozenset({"pages"})

    def scroll(self, kind: str, *, mode: str = "pages", root: Any = None, segment: str | None = None,
               parameter: str | None = None, page_size: int = 100) -> Iterator[Any]:
        """What InstasentClient.scroll gives, for the modes in ``scroll_modes``."""
        assert mode in self.scroll_modes, mode
        suffix = "raw_pages" if mode == "raw" else "pages"
        method = getattr(self, f"scroll_{kind}_{suffix}")
        if kind == "segment":
            return method(segment, parameter=parameter, root=root, page_size=page_size)
        return method(root, page_size=page_size)

    def scroll_audience_pages(self, root: Any = None, *, page_size: int = 100) -> Iterator[ScrollPage]:
        self.calls.append(("audience", root))
        return self._pages(self.make or (lambda i: contact(i, self.version)), page_size)

    def scroll_segment_pages(self, segment_uid: str, *, parameter: str | None = None, root: Any = None,
                             page_size: int = 100) -> Iterator[ScrollPage]:
        self.calls.append(("segment", (segment_uid, parameter, root)))
        return self._pages(self.make or (lambda i: contact(i, self.version)), page_size)

    def scroll_events_pages(self, root: Any = None, *, page_size: int = 100) -> Iterator[ScrollPage]:
        self.calls.append(("events", root))
        return self._pages(self.make or event, page_size)


class FakeRawClient(FakeClient):
    """A FakeClient that also gives raw pages (JSON bodies), as InstasentClient does."""

    scroll_modes = frozenset({"pages", "raw"})

    def _raw(self, pages: Iterator[ScrollPage]) -> Iterator[RawScrollPage]:
        try:
            for p in pages:
                body = orjson.dumps({"entities": p.entities, "metadata": {"cursor": p.cursor, "totalHits": p.total_hits}})
                yield RawScrollPage(body, p.cursor, p.total_hits, bool(p.entities))
        finally:
            pages.close()  # type: ignore[attr-defined]

    def scroll_audience_raw_pages(self, root: Any = None, *, page_size: int = 100) -> Iterator[RawScrollPage]:
        return self._raw(self.scroll_audience_pages(root, page_size=page_size))

    def scroll_segment_raw_pages(self, segment_uid: str, *, parameter: str | None = None, root: Any = None,
                                 page_size: int = 100) -> Iterator[RawScrollPage]:
        return self._raw(self.scroll_segment_pages(segment_uid, parameter=parameter, root=root, page_size=page_size))

    def scroll_events_raw_pages(self, root: Any = None, *, page_size: int = 100) -> Iterator[RawScrollPage]:
        return self._raw(self.scroll_events_pages(root, page_size=page_size))


def sql_hook(conn_id: str) -> Any:
    from airflow_provider_instasent._airflow_compat import BaseHook

    return BaseHook.get_connection(conn_id).get_hook()


def fetch(conn_id: str, sql: str) -> list[tuple[Any, ...]]:
    return fetch_rows(sql_hook(conn_id), sql)


def fetch_rows(hook: Any, sql: str) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` on a fresh connection of ``hook`` (anything with ``get_conn``), closed after."""
    conn = hook.get_conn()
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        conn.close()


def tables(conn_id: str) -> list[str]:
    dialect = conn_id.split("_")[-1]
    if dialect == "postgres":
        rows = fetch(conn_id, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    elif dialect == "duckdb":
        rows = fetch(conn_id, "SELECT table_name FROM information_schema.tables")
    else:
        rows = fetch(conn_id, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return [r[0] for r in rows]
