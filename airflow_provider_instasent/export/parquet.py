"""Write RecordBatches to a Parquet file, one row group per batch, streaming.

``path`` is a local path (``str`` or :class:`pathlib.Path`), a URL string (``s3://...``,
``gs://...``, ``file://...``: opened as an Airflow ``ObjectStoragePath``), or an
``ObjectStoragePath`` / any object with ``open("wb")``. A local file is written to a
temporary name next to it and renamed when complete, so a reader never sees a partial
file; on object storage a failed export aborts the upload (or removes the partial object).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..client.errors import InstasentConfigError

log = logging.getLogger(__name__)


@dataclass
class ParquetWriteResult:
    path: str
    rows: int
    row_groups: int
    bytes: int | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "row_groups": self.row_groups, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


def _is_url(text: str) -> bool:
    head, sep, _ = text.partition("://")
    return bool(sep) and head.isidentifier() and len(head) > 1


def resolve_path(path: Any, conn_id: str | None = None) -> Any:
    """A local :class:`Path`, or an ``ObjectStoragePath`` for URLs (imported lazily)."""
    if isinstance(path, Path):
        return path
    if isinstance(path, str):
        if not path:
            raise InstasentConfigError("path must not be empty")
        if _is_url(path) and not path.startswith("file://"):
            from airflow.sdk import ObjectStoragePath

            return ObjectStoragePath(path, conn_id=conn_id) if conn_id else ObjectStoragePath(path)
        if path.startswith("file://"):
            return Path(path[len("file://"):])
        return Path(path)
    if hasattr(path, "open"):
        return path
    raise InstasentConfigError(f"path must be a str, a Path or an ObjectStoragePath; got {type(path).__name__}")


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    path: Any,
    schema: pa.Schema,
    *,
    compression: str = "zstd",
    conn_id: str | None = None,
    logger: Any = None,
    **writer_options: Any,
) -> ParquetWriteResult:
    """Stream ``batches`` (all with ``schema``) to ``path``; each batch becomes one row group."""
    logger = logger or log
    try:
        return _write(batches, resolve_path(path, conn_id), schema, compression, logger, writer_options)
    finally:
        close = getattr(batches, "close", None)  # stop the fetch thread at once on failure
        if callable(close):
            with contextlib.suppress(Exception):
                close()


def _write(batches: Iterable[pa.RecordBatch], target: Any, schema: pa.Schema, compression: str, logger: Any,
           writer_options: dict[str, Any]) -> ParquetWriteResult:
    started = time.monotonic()
    rows = groups = 0
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with pq.ParquetWriter(str(tmp), schema, compression=compression, **writer_options) as writer:
                for batch in batches:
                    if batch.num_rows:
                        writer.write_batch(batch, row_group_size=batch.num_rows)
                        rows += batch.num_rows
                        groups += 1
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        size: int | None = target.stat().st_size
    else:
        with contextlib.suppress(Exception):
            target.parent.mkdir(parents=True, exist_ok=True)
        fh = target.open("wb")
        done = False
        try:
            with pq.ParquetWriter(fh, schema, compression=compression, **writer_options) as writer:
                for batch in batches:
                    if batch.num_rows:
                        writer.write_batch(batch, row_group_size=batch.num_rows)
                        rows += batch.num_rows
                        groups += 1
            done = True
        finally:
            if done:
                fh.close()
            else:  # never publish a partial object: abort the upload, or remove what was written
                discard = getattr(fh, "discard", None)
                with contextlib.suppress(Exception):
                    discard() if callable(discard) else fh.close()
                with contextlib.suppress(Exception):
                    if target.exists():
                        target.unlink()
        size = None
        with contextlib.suppress(Exception):
            size = int(target.stat().st_size)
    seconds = time.monotonic() - started
    logger.info("wrote %d rows in %d row group(s) to %s in %.1fs", rows, groups, target, seconds)
    return ParquetWriteResult(str(target), rows, groups, size, seconds)
