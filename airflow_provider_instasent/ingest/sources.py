"""Where rows come from: every input becomes a stream of Arrow record batches.

Supported inputs (``open_source``):

* a pandas ``DataFrame`` (converted slice by slice), a pyarrow ``Table`` or ``RecordBatch``;
* a pyarrow ``RecordBatchReader`` (read once);
* a Parquet file, a glob (``orders/*.parquet``), a directory, a list of those, a URL or an
  Airflow ``ObjectStoragePath`` to any of them, found by the one discovery rule of
  ``airflow_provider_instasent.io.parquet`` (names starting with ``.`` or ``_`` are
  skipped). Files are read record batch by record batch, never whole;
* ``SqlSource``: a query on a common-sql hook, a DB-API or a SQLAlchemy connection,
  streamed with a server-side cursor on PostgreSQL and ``fetchmany`` elsewhere;
* an iterable of any of the above frames/batches, or a callable returning any input.

Rows are numbered in read order from 0 (across files and batches): that is the ``source_row``
of the rejects. Nothing holds more than one batch (``batch_rows`` rows) of a source at a
time, except a DataFrame or Table you passed in yourself.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from ..client.errors import InstasentConfigError
from ..io.parquet import NoParquetFilesError, discover, open_parquet
from ..io.paths import is_path_like
from ..io.sql import database
from ..io.sql.reader import QueryReader
from .coerce import objects_column
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
def _pandas_batch(df: Any) -> pa.RecordBatch:
    """A DataFrame slice as a record batch; an object column Arrow cannot type (mixed values)
    becomes an objects column (``coerce.objects_column``), so each value is coerced by one
    rule and a value that has no text form is a reject of its row, not of the run."""
    names = [str(name) for name in df.columns]  # repeated names are refused by ColumnMapper
    arrays: list[pa.Array] = []
    for i in range(df.shape[1]):
        col = df.iloc[:, i]
        try:
            arr = pa.array(col, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            arr = objects_column(col.tolist())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arrays.append(arr)
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
class ParquetSource:
    """Parquet files read one record batch at a time (buffered reads, no pre-buffering).

    ``path``: a file, directory, glob, URL, ``ObjectStoragePath`` or a list of them, found
    by the one discovery rule of ``airflow_provider_instasent.io.parquet.discover``.
    ``columns``: read only these columns (None: all); ``drop``: never read these.
    """

    reopenable = True

    def __init__(self, path: Any, *, batch_rows: int = DEFAULT_BATCH_ROWS, columns: Sequence[str] | None = None,
                 drop: Iterable[str] = ()) -> None:
        try:
            self.files = discover(path)
        except (NoParquetFilesError, InstasentConfigError) as exc:
            raise IngestSchemaError(str(exc)) from None
        self.batch_rows = batch_rows
        self.columns = list(columns) if columns is not None else None
        self.drop = set(drop)
        self.name = str(path) if is_path_like(path) else f"{len(self.files)} Parquet files"
        self._total: int | None = None
        self._total_known = False

    @property
    def total_rows(self) -> int | None:
        if not self._total_known:
            self._total_known = True
            try:
                total = 0
                for f in self.files:
                    with open_parquet(f) as pf:
                        total += pf.metadata.num_rows
                self._total = total
            except Exception as exc:  # the footer could not be read: the total stays unknown
                log.debug("could not count rows of %s: %s", self.name, exc)
                self._total = None
        return self._total

    def batches(self) -> Iterator[pa.RecordBatch]:
        for f in self.files:
            try:
                with open_parquet(f) as pf:
                    if pf.metadata.num_rows == 0:
                        continue
                    cols: list[str] | None = None
                    if self.columns is not None or self.drop:
                        names = pf.schema_arrow.names
                        cols = [c for c in (self.columns or names) if c in names and c not in self.drop]
                    yield from pf.iter_batches(batch_size=self.batch_rows, columns=cols, use_threads=False)
            except (OSError, pa.ArrowException) as exc:  # name the file that cannot be read
                raise OSError(f"{f}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------------------------
class SqlSource:
    """A query, streamed: a server-side cursor on PostgreSQL, ``fetchmany`` elsewhere.

    ``db`` is a common-sql ``DbApiHook`` (the operator resolves ``sql_conn_id`` to one), a
    DB-API connection or a SQLAlchemy connection/engine (see ``airflow_provider_instasent.io.sql``).
    """

    reopenable = False

    def __init__(self, sql: str, db: Any = None, *, parameters: Any = None,
                 batch_rows: int | None = None) -> None:
        if not sql or not isinstance(sql, str):
            raise IngestSchemaError("sql must be a non-empty query string")
        if db is None or isinstance(db, str):
            raise IngestSchemaError(
                "a SQL source needs a database: a common-sql DbApiHook, a DB-API connection or a SQLAlchemy "
                "connection (in a DAG, the operator's sql_conn_id resolves to one)")
        try:
            self.db = database(db)
        except InstasentConfigError as exc:
            raise IngestSchemaError(str(exc)) from None
        self.sql = sql
        self.parameters = parameters
        self.batch_rows = batch_rows
        self.name = f"SQL on {self.db.name}"
        self.total_rows: int | None = None
        self._reader: QueryReader | None = None

    @property
    def server_side(self) -> bool:
        return self._reader is not None and self._reader.server_side

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows, ``batch_rows`` at a time (the engine's ``batch_rows`` unless given here)."""
        self._reader = QueryReader(self.db, self.sql, self.parameters,
                                   batch_rows=self.batch_rows or DEFAULT_BATCH_ROWS, mixed=objects_column)
        try:
            yield from self._reader.batches()
        except ValueError as exc:
            if "no result set" in str(exc):
                raise IngestSchemaError(str(exc)) from None
            raise


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
def open_source(data: Any, *, batch_rows: int = DEFAULT_BATCH_ROWS, drop: Iterable[str] = ()) -> Source:
    """Turn any supported input into a ``Source`` (see the module doc)."""
    if isinstance(data, SqlSource) and data.batch_rows is None:
        data.batch_rows = batch_rows
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
    if is_path_like(data):
        return ParquetSource(data, batch_rows=batch_rows, drop=drop)
    if isinstance(data, (list, tuple)) and data and all(is_path_like(p) for p in data):
        return ParquetSource(list(data), batch_rows=batch_rows, drop=drop)
    if callable(data):
        return open_source(data(), batch_rows=batch_rows, drop=drop)
    if isinstance(data, Iterable) and not isinstance(data, (bytes, Mapping)):
        return IterSource(data, batch_rows=batch_rows, name="iterable")
    raise IngestSchemaError(
        f"cannot read {type(data).__name__}: pass a pandas DataFrame, a pyarrow Table/RecordBatch/"
        f"RecordBatchReader, a Parquet path/glob/directory, a SqlSource, or a callable returning one"
    )


class ColumnMapper:
    """Applies ``columns={source: target}`` renames (``None`` target: drop the column); a
    name that appears twice in the input or after renaming is an ``IngestSchemaError``."""

    def __init__(self, columns: Mapping[str, str | None] | None) -> None:
        self.columns = dict(columns or {})
        self.drop = {k for k, v in self.columns.items() if v is None}

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        names = batch.schema.names
        if len(set(names)) != len(names):  # any source: a DataFrame, a Parquet file, a query
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise IngestSchemaError(f"duplicate column names in the input: {', '.join(map(repr, dupes))} (each "
                                    f"column must appear once: rename or drop the copies)")
        if not self.columns:
            return batch
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
