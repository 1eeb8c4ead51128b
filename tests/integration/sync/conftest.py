"""Fixtures of the sync tests: a write-call counter on the emulator client, state targets."""

from __future__ import annotations

import threading
from typing import Any

import pytest


class WriteCounter:
    """Counts the client's write calls (pushes and deletes), as the API would see them."""

    def __init__(self, client: Any) -> None:
        self.pushes = 0
        self.deletes = 0
        self._lock = threading.Lock()
        push, delete = client.push, client.delete_contact

        def counted_push(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.pushes += 1
            return push(*args, **kwargs)

        def counted_delete(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.deletes += 1
            return delete(*args, **kwargs)

        client.push = counted_push
        client.delete_contact = counted_delete

    @property
    def total(self) -> int:
        return self.pushes + self.deletes

    def reset(self) -> None:
        self.pushes = self.deletes = 0


@pytest.fixture
def writes(client: Any) -> WriteCounter:
    return WriteCounter(client)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def state(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """A state target: a DuckDB file path, or a psycopg2 connection to a fresh PostgreSQL schema."""
    if request.param == "duckdb":
        yield str(tmp_path / "state.duckdb")
        return
    import uuid

    import psycopg2

    url = request.getfixturevalue("postgres_url")
    schema = f"sync_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA {schema}")
    conn = psycopg2.connect(url, options=f"-c search_path={schema}")
    try:
        yield conn
    finally:
        conn.close()
        admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
