"""Where rows come from: every input becomes a stream of Arrow record batches.

Supported inputs (:func:`open_source`):

* a pandas ``DataFrame`` (converted slice by slice), a pyarrow ``Table`` or ``RecordBatch``;
* a pyarrow ``RecordBatchReader`` (read once);
* a Parquet file, a glob (``orders/*.parquet``), a directory (every ``*.parquet`` below it,
  in sorted order), a list of those, or an Airflow ``ObjectStoragePath`` to any of them
  (``s3://``, ``gs://``, ``file://``...). Files are read record batch by record batch, never
  whole;
* :class:`SqlSource`: a query on any Airflow common-sql connection, streamed with a
  server-side cursor on PostgreSQL (psycopg2 or psycopg 3 named cursor) and ``fetchmany``
  elsewhere;
* an iterable of any of the above frames/batches, or a callable returning any input.

Rows are numbered in read order from 0 (across files and batches): that is the ``source_row``
of the rejects. Nothing holds more than one batch (``batch_rows`` rows) of a source at a
time, except a DataFrame or Table you passed in yourself.
"""

from __future__ import annotations

import glob as globmod
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import IngestSchemaError

log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 10_000


@runtime_checkable
class Source(Protocol):
    """A stream of record batches. ``reopenable``: ``batches()`` may be called again and
    yields the same rows (needed for a preflight pass without spooling)."""

    @property
    def name(self) -> str: ...

    @property
    def total_rows(self) -> int | None: ...

    @property
    def reopenable(self) -> bool: ...

    def batches(self) -> Iterator[pa.RecordBatch]: ...


# ---------------------------------------------------------------------------------------------
# in-memory
# ---------------------------------------------------------------------------------------------
def _missing(v: Any) -> bool:
    import pandas as pd

    return v is None or v is pd.NaT or (isinstance(v, float) and v != v)


def _list_column(values: list[Any]) -> pa.Array:
    lists = [None if _missing(v) else list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v] for v in values]
    try:
        return pa.array(lists)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed element types: text, element by element
        return pa.array([None if xs is None else [None if _missing(x) else str(x) for x in xs] for xs in lists],
                        pa.list_(pa.string()))


def _pandas_batch(df: Any) -> pa.RecordBatch:
    """A DataFrame slice as a record batch; object columns Arrow cannot type (mixed values)
    fall back to their ``str()`` form, so that each bad value is reported per row."""

    arrays: list[pa.Array] = []
    names: list[str] = []
    for name in df.columns:
        col = df[name]
        try:
            arr = pa.array(col, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            raw = col.tolist()
            present = [v for v in raw if not _missing(v)]
            if any(isinstance(v, (list, tuple, np.ndarray)) for v in present) and all(
                    isinstance(v, (list, tuple, np.ndarray, str)) for v in present):
                arr = _list_column(raw)  # a scalar becomes a one-element list, as for Arrow input
            else:
                arr = pa.array([None if _missing(v) else str(v) for v in raw], pa.string())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arrays.append(arr)
        names.append(str(name))
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise IngestSchemaError(f"duplicate column names: {', '.join(dupes)}")
    return pa.RecordBatch.from_arrays(arrays, names=names)


class PandasSource:
    reopenable = True

    def __init__(self, df: Any, *, batch_rows: int = DEFAULT_BATCH_ROWS, name: str = "DataFrame") -> None:
        self.df = df
        self.batch_rows = batch_rows
        self.name = name
        self.total_rows: int | None = len(df)

    def batches(self) -> Iterator[pa.RecordBatch]:
        n = len(self.df)
        if n == 0:
            yield _pandas_batch(self.df)
            return
        for start in range(0, n, self.batch_rows):
            yield _pandas_batch(self.df.iloc[start:start + self.batch_rows])


class ArrowSource:
    reopenable = True

    def __init__(self, data: pa.Table | pa.RecordBatch, *, batch_rows: int = DEFAULT_BATCH_ROWS,
                 name: str = "Arrow table") -> None:
        self.table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        self.batch_rows = batch_rows
        self.name = name
        self.total_rows: int | None = self.table.num_rows

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self.table.num_rows == 0:
            yield pa.RecordBatch.from_pylist([], schema=self.table.schema)
            return
        yield from self.table.to_batches(max_chunksize=self.batch_rows)


class IterSource:
    """A one-shot stream: a ``RecordBatchReader`` or an iterable of frames/tables/batches."""

    reopenable = False

    def __init__(self, data: Iterable[Any] | pa.RecordBatchReader, *, batch_rows: int = DEFAULT_BATCH_ROWS,
                 name: str = "stream", total_rows: int | None = None) -> None:
        self.data = data
        self.batch_rows = batch_rows
        self.name = name
        self.total_rows = total_rows
        self._used = False

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self._used:
            raise RuntimeError(f"{self.name} can be read only once")
        self._used = True
        for part in self.data:
            if isinstance(part, pa.RecordBatch):
                yield from _split(part, self.batch_rows)
            else:
                yield from open_source(part, batch_rows=self.batch_rows).batches()


def _split(batch: pa.RecordBatch, rows: int) -> Iterator[pa.RecordBatch]:
    if batch.num_rows <= rows:
        yield batch
        return
    for start in range(0, batch.num_rows, rows):
        yield batch.slice(start, rows)


# ---------------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------------
def _is_object_storage(value: Any) -> bool:
    return type(value).__module__.startswith(("airflow.sdk.io", "airflow.io", "upath"))


def resolve_parquet(path: Any, *, conn_id: str | None = None) -> list[Any]:
    """Expand a path, glob, directory (or a list of them) into a sorted list of files.

    Local paths come back as ``str``; object-storage paths as ``ObjectStoragePath``.
    A string with a scheme (``s3://...``) becomes an ``ObjectStoragePath`` (``conn_id``).
    """
    if isinstance(path, (list, tuple)):
        files: list[Any] = []
        for p in path:
            files.extend(resolve_parquet(p, conn_id=conn_id))
        return files
    if isinstance(path, str) and "://" in path and not path.startswith("file://"):
        from airflow.sdk import ObjectStoragePath

        path = ObjectStoragePath(path, conn_id=conn_id) if conn_id else ObjectStoragePath(path)
    if isinstance(path, str) and path.startswith("file://"):
        path = path[len("file://"):]
    if _is_object_storage(path):
        text = str(path)
        if any(ch in text.rsplit("/", 1)[-1] for ch in "*?["):
            found = sorted(path.parent.glob(path.name), key=str)
        elif path.is_dir():
            found = sorted((p for p in path.rglob("*.parquet") if p.is_file()), key=str)
        else:
            found = [path]
        if not found:
            raise IngestSchemaError(f"no Parquet files at {text}")
        return found
    text = os.fspath(path)
    if any(ch in text for ch in "*?["):
        found_local = sorted(f for f in globmod.glob(text, recursive=True) if os.path.isfile(f))
    elif os.path.isdir(text):
        found_local = sorted(str(p) for p in Path(text).rglob("*.parquet") if p.is_file())
    elif os.path.exists(text):
        found_local = [text]
    else:
        raise IngestSchemaError(f"no such file or directory: {text}")
    if not found_local:
        raise IngestSchemaError(f"no Parquet files at {text}")
    return found_local


class ParquetSource:
    """Parquet files read one record batch at a time (``pre_buffer`` off, buffered reads).

    ``columns``: read only these columns (None: all).
    """

    reopenable = True

    def __init__(self, path: Any, *, batch_rows: int = DEFAULT_BATCH_ROWS, conn_id: str | None = None,
                 columns: Sequence[str] | None = None, drop: Iterable[str] = ()) -> None:
        self.files = resolve_parquet(path, conn_id=conn_id)
        self.batch_rows = batch_rows
        self.columns = list(columns) if columns is not None else None
        self.drop = set(drop)
        self.name = str(path) if not isinstance(path, (list, tuple)) else f"{len(self.files)} Parquet files"
        self._total: int | None = None
        self._total_known = False

    @property
    def total_rows(self) -> int | None:
        if not self._total_known:
            self._total_known = True
            try:
                total = 0
                for f in self.files:
                    with self._open(f) as pf:
                        total += pf.metadata.num_rows
                self._total = total
            except Exception as exc:  # the footer could not be read: the total stays unknown
                log.debug("could not count rows of %s: %s", self.name, exc)
                self._total = None
        return self._total

    def _open(self, f: Any) -> pq.ParquetFile:
        if isinstance(f, str):
            return pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
        return pq.ParquetFile(f.open("rb"), pre_buffer=False, buffer_size=1 << 20)

    def batches(self) -> Iterator[pa.RecordBatch]:
        for f in self.files:
            with self._open(f) as pf:
                names = pf.schema_arrow.names
                cols = [c for c in (self.columns or names) if c in names and c not in self.drop]
                if self.columns is None and not self.drop:
                    cols = None  # type: ignore[assignment]
                if pf.metadata.num_rows == 0:
                    continue
                yield from pf.iter_batches(batch_size=self.batch_rows, columns=cols, use_threads=False)


# ---------------------------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------------------------
def _column(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def rows_to_batch(rows: Sequence[Sequence[Any]], names: Sequence[str]) -> pa.RecordBatch:
    """DB-API rows (tuples) as a record batch, typed per column by Arrow's inference."""
    if not rows:
        return pa.RecordBatch.from_arrays([pa.nulls(0) for _ in names], names=list(names))
    columns = list(zip(*rows))
    return pa.RecordBatch.from_arrays([_column(col) for col in columns], names=list(names))


class SqlSource:
    """A query on an Airflow common-sql connection, streamed.

    PostgreSQL (psycopg2 or psycopg 3) gets a *named* (server-side) cursor, so the server
    holds the result and the task fetches ``batch_rows`` rows at a time; other databases use
    ``fetchmany``. Pass ``hook`` to use an existing ``DbApiHook`` instead of ``conn_id``.
    """

    reopenable = False

    def __init__(self, sql: str, conn_id: str | None = None, *, parameters: Any = None,
                 batch_rows: int = DEFAULT_BATCH_ROWS, hook: Any = None) -> None:
        if not sql or not isinstance(sql, str):
            raise IngestSchemaError("sql must be a non-empty query string")
        if hook is None and not conn_id:
            raise IngestSchemaError("a SQL source needs sql_conn_id (or a hook)")
        self.sql = sql
        self.conn_id = conn_id
        self.parameters = parameters
        self.batch_rows = batch_rows
        self.hook = hook
        self.name = f"SQL on {conn_id or type(hook).__name__}"
        self.total_rows: int | None = None
        self.server_side = False

    def get_hook(self) -> Any:
        if self.hook is not None:
            return self.hook
        from .._airflow_compat import BaseHook

        return BaseHook.get_connection(str(self.conn_id)).get_hook()

    def batches(self) -> Iterator[pa.RecordBatch]:
        hook = self.get_hook()
        conn = hook.get_conn()
        module = type(conn).__module__
        cursor = None
        try:
            if module.startswith(("psycopg2", "psycopg")):
                cursor = conn.cursor(name=f"instasent_ingest_{uuid.uuid4().hex[:12]}")
                cursor.itersize = self.batch_rows
                self.server_side = True
            else:
                cursor = conn.cursor()
            if self.parameters is None:
                cursor.execute(self.sql)
            else:
                cursor.execute(self.sql, self.parameters)
            names: list[str] | None = None
            while True:
                rows = cursor.fetchmany(self.batch_rows)
                if names is None:
                    if cursor.description is None:
                        raise IngestSchemaError("the query returned no result set (is it a SELECT?)")
                    names = [str(d[0]) for d in cursor.description]
                if not rows:
                    break
                yield rows_to_batch(rows, names)
        finally:
            if cursor is not None:
                try:
                    cursor.close()
                except Exception:  # closing a failed server-side cursor can raise again
                    pass
            try:
                conn.rollback() if module.startswith(("psycopg2", "psycopg")) else None
            except Exception:
                pass
            conn.close()


# ---------------------------------------------------------------------------------------------
# spooling one-shot sources for a preflight pass
# ---------------------------------------------------------------------------------------------
class SpooledSource:
    """Wraps a one-shot source: the first pass writes each batch to a temporary Arrow IPC file
    (compressed, on local disk), later passes read them back. Memory stays one batch."""

    reopenable = True

    def __init__(self, inner: Source, *, directory: str | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.total_rows = inner.total_rows
        self._dir = tempfile.mkdtemp(prefix="instasent-spool-", dir=directory)
        self._files: list[str] | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        if self._files is not None:
            for path in self._files:
                with pa.memory_map(path) as source:
                    reader = pa.ipc.open_file(source)
                    for i in range(reader.num_record_batches):
                        yield reader.get_batch(i)
            return
        files: list[str] = []
        rows = 0
        options = pa.ipc.IpcWriteOptions(compression=_ipc_codec())
        for batch in self.inner.batches():
            path = os.path.join(self._dir, f"{len(files):08d}.arrow")
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, batch.schema, options=options) as writer:
                writer.write_batch(batch)
            files.append(path)
            rows += batch.num_rows
            yield batch
        self._files = files
        self.total_rows = rows

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def _ipc_codec() -> str | None:
    for codec in ("lz4", "zstd"):
        if pa.Codec.is_available(codec):
            return codec
    return None


# ---------------------------------------------------------------------------------------------
# factory and column mapping
# ---------------------------------------------------------------------------------------------
def open_source(data: Any, *, batch_rows: int = DEFAULT_BATCH_ROWS, conn_id: str | None = None,
                drop: Iterable[str] = ()) -> Source:
    """Turn any supported input into a :class:`Source` (see the module doc)."""
    if isinstance(data, (PandasSource, ArrowSource, IterSource, ParquetSource, SqlSource, SpooledSource)):
        return data
    if isinstance(data, Source) and not isinstance(data, (str, bytes, Path)):
        return data
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        return PandasSource(data, batch_rows=batch_rows)
    if isinstance(data, (pa.Table, pa.RecordBatch)):
        return ArrowSource(data, batch_rows=batch_rows)
    if isinstance(data, pa.RecordBatchReader):
        return IterSource(data, batch_rows=batch_rows, name="RecordBatchReader")
    if isinstance(data, (str, os.PathLike)) or _is_object_storage(data):
        return ParquetSource(data, batch_rows=batch_rows, conn_id=conn_id, drop=drop)
    if isinstance(data, (list, tuple)) and data and all(
            isinstance(p, (str, os.PathLike)) or _is_object_storage(p) for p in data):
        return ParquetSource(list(data), batch_rows=batch_rows, conn_id=conn_id, drop=drop)
    if callable(data):
        return open_source(data(), batch_rows=batch_rows, conn_id=conn_id, drop=drop)
    if isinstance(data, Iterable) and not isinstance(data, (bytes, Mapping)):
        return IterSource(data, batch_rows=batch_rows, name="iterable")
    raise IngestSchemaError(
        f"cannot read {type(data).__name__}: pass a pandas DataFrame, a pyarrow Table/RecordBatch/"
        f"RecordBatchReader, a Parquet path/glob/directory, a SqlSource, or a callable returning one"
    )


class ColumnMapper:
    """Applies ``columns={source: target}`` renames (``None`` target: drop the column)."""

    def __init__(self, columns: Mapping[str, str | None] | None) -> None:
        self.columns = dict(columns or {})
        self.drop = {k for k, v in self.columns.items() if v is None}

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self.columns:
            return batch
        names = batch.schema.names
        keep = [i for i, n in enumerate(names) if n not in self.drop]
        if len(keep) != len(names):
            batch = batch.select(keep)
            names = batch.schema.names
        renamed = [self.columns.get(n) or n for n in names]
        if len(set(renamed)) != len(renamed):
            dupes = sorted({n for n in renamed if renamed.count(n) > 1})
            raise IngestSchemaError(f"after renaming, these columns appear twice: {', '.join(dupes)}")
        if renamed != names:
            batch = batch.rename_columns(renamed)
        return batch


def source_from_callable(func: Callable[..., Any], *args: Any, batch_rows: int = DEFAULT_BATCH_ROWS,
                         **kwargs: Any) -> Source:
    """Call ``func(*args, **kwargs)`` and open what it returns."""
    return open_source(func(*args, **kwargs), batch_rows=batch_rows)
