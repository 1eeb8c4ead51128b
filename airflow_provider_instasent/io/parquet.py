"""Parquet files: discovery, reading, and the one atomic writer.

**Discovery** (``discover``) has one rule, for the loader, the shard planner and the
tests alike: a file is itself; a directory is what ``pyarrow.dataset`` discovers below it,
recursively, skipping every name that starts with ``.`` or ``_`` (``_SUCCESS``,
``_metadata``, ``_temporary/``, ``.crc`` files), as Spark and Hive write them; a glob
(``*``, ``?``, ``[...]``, and ``**/`` for any depth) keeps the files it matches under the same
rule; a list is the union of its entries, in order, without duplicates. Files come back
sorted, so every worker sees the same order.

**Writing** (``ParquetFileWriter``, ``write_parquet``): a local file is written under
a temporary name next to the target and renamed when complete; on object storage the same
(the move is a copy there). A reader never sees half a file, and a failed write leaves an older
file under the target name as it was. ``write_parquet(..., write_disposition="merge")`` upserts
on a key: the new rows replace the file's rows with the same key, in a new file published the
same way; ``metadata=`` adds key-value entries to the file (an incremental export keeps its
watermark there, so the two are published together).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .paths import Location, is_path_like, locate

__all__ = [
    "IGNORED_PREFIXES",
    "NoParquetFilesError",
    "ParquetFileWriter",
    "ParquetWriteResult",
    "discover",
    "open_parquet",
    "read_metadata",
    "write_parquet",
]

log = logging.getLogger(__name__)

#: Names (of files or of directories on the way to them) that discovery skips.
IGNORED_PREFIXES = (".", "_")
_GLOB_CHARS = re.compile(r"[*?\[]")


class NoParquetFilesError(FileNotFoundError):
    """A path, glob or directory that holds no Parquet file."""


def _visible_below(relative: str) -> bool:
    return not any(seg.startswith(IGNORED_PREFIXES) for seg in relative.split("/") if seg not in ("", "."))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Shell glob semantics: ``*``/``?`` stay inside one path segment, ``**/`` spans any depth."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _glob(loc: Location) -> list[Location]:
    match = _GLOB_CHARS.search(loc.path)
    assert match is not None
    base = loc.path[: match.start()].rsplit("/", 1)[0] if "/" in loc.path[: match.start()] else ""
    regex = _glob_regex(loc.path)
    try:
        infos = loc.fs.get_file_info(pafs.FileSelector(base or ".", recursive=True, allow_not_found=True))
    except (OSError, ValueError):
        return []
    return [loc.at(i.path) for i in infos
            if i.type == pafs.FileType.File and regex.match(i.path) and _visible_below(i.path[len(base):])]


def _directory(loc: Location) -> list[Location]:
    import pyarrow.dataset as ds  # on first use: it costs tens of MB of imports

    dataset = ds.dataset(loc.path, filesystem=loc.fs, format="parquet", ignore_prefixes=list(IGNORED_PREFIXES),
                         exclude_invalid_files=False)
    return [loc.at(f) for f in dataset.files]


def _one(entry: Any) -> list[Location]:
    loc = locate(entry)
    if _GLOB_CHARS.search(loc.path):
        found = _glob(loc)
    else:
        info = loc.info()
        if info.type == pafs.FileType.File:
            found = [loc]
        elif info.type == pafs.FileType.Directory:
            found = _directory(loc)
        else:
            raise NoParquetFilesError(f"no such file or directory: {loc}")
    if not found:
        raise NoParquetFilesError(f"no Parquet files at {loc}")
    return sorted(found, key=lambda f: f.path)


def discover(source: Any) -> list[Location]:
    """The Parquet files of ``source`` (see the module doc for the rule), sorted, deduplicated.

    Raises:
        NoParquetFilesError: an entry matches no file (a ``FileNotFoundError``).
    """
    entries: Sequence[Any] = [source] if is_path_like(source) else list(source)
    if not entries:
        raise NoParquetFilesError("no Parquet source given")
    seen: set[str] = set()
    files: list[Location] = []
    for entry in entries:
        for f in _one(entry):
            if f.uri not in seen:
                seen.add(f.uri)
                files.append(f)
    return files


def open_parquet(loc: Location) -> pq.ParquetFile:
    """A Parquet file opened for streaming: buffered reads, no pre-buffering of whole row groups."""
    return pq.ParquetFile(loc.open_input(), pre_buffer=False, buffer_size=1 << 20)


def read_metadata(path: Any) -> dict[bytes, bytes] | None:
    """The key-value metadata of the Parquet file at ``path`` (its footer only), or None when
    there is no file there."""
    loc = locate(path)
    if loc.info().type != pafs.FileType.File:
        return None
    return dict(open_parquet(loc).schema_arrow.metadata or {})


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
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


class ParquetFileWriter:
    """Writes one Parquet file that appears complete or not at all.

    Use as a context manager (``commit`` on success, ``abort`` on an exception), or
    call them yourself. ``path`` is anything ``locate`` takes. Each
    ``write`` becomes one row group.
    """

    def __init__(self, path: Any, schema: pa.Schema, *, compression: str = "zstd", **options: Any) -> None:
        self.target = locate(path)
        self.schema = schema
        self.rows = 0
        self.row_groups = 0
        self.target.make_parent()
        if self.target.local:
            self._remove_stale_temporaries()
        # A temporary name next to the target, moved into place when complete: atomic on a
        # local disk; on an object store a copy, so a failed write never touches (or deletes) an
        # older file under the target name.
        self._tmp = self.target.at(
            f"{self.target.parent.path.rstrip('/')}/.{self.target.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
        self._stream = self._tmp.open_output()
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self._stream, schema, compression=compression,
                                                                 **options)

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of this target left by a writer process that no longer runs (killed)."""
        parent = self.target.parent.path
        prefix = f".{self.target.name}."
        try:
            names = os.listdir(parent)
        except OSError:
            return
        for name in names:
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid = name[len(prefix):].split(".", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(parent, name))
                    log.warning("removed %s, left by a writer that did not finish", name)

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        if data.num_rows == 0:
            return
        assert self._writer is not None, "the writer is closed"
        if isinstance(data, pa.RecordBatch):
            self._writer.write_batch(data, row_group_size=data.num_rows)
        else:
            self._writer.write_table(data, row_group_size=data.num_rows)
        self.rows += data.num_rows
        self.row_groups += 1

    def commit(self) -> None:
        """Finish the file and publish it under its name."""
        if self._writer is None:
            return
        self._writer.close()
        self._writer = None
        self._stream.close()
        self._tmp.move_to(self.target)

    def abort(self) -> None:
        """Drop what was written: no file, or no object, is left under the target name."""
        if self._writer is None:
            return
        self._writer = None
        with contextlib.suppress(Exception):
            abort = getattr(self._stream, "abort", None)  # object stores: abort the upload
            abort() if callable(abort) else self._stream.close()
        with contextlib.suppress(Exception):
            self._stream.close()
        self._tmp.delete()

    def __enter__(self) -> ParquetFileWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _aligned(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with ``schema``'s columns: missing ones null (a column added since), types cast."""
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def write_parquet(
    batches: Iterable[pa.RecordBatch],
    path: Any,
    schema: pa.Schema,
    *,
    compression: str = "zstd",
    logger: Any = None,
    write_disposition: Literal["replace", "merge"] = "replace",
    key: str | None = None,
    metadata: dict[str, str] | None = None,
    **writer_options: Any,
) -> ParquetWriteResult:
    """Stream ``batches`` (all with ``schema``) to one file; each batch becomes one row group.

    ``path``: a local path, a URL or an ``ObjectStoragePath`` (see ``paths``).
    ``write_disposition="merge"``: the new rows replace the existing file's rows with the same
    ``key`` (an upsert); the new rows are held in memory (an incremental export's few), the
    old file is streamed row group by row group into the new one. ``metadata``: key-value
    entries added to the file's schema metadata.
    """
    logger = logger or log
    started = time.monotonic()
    if write_disposition not in ("replace", "merge"):
        raise ValueError(f"write_disposition must be 'replace' or 'merge'; got {write_disposition!r}")
    if write_disposition == "merge" and (not key or key not in schema.names):
        raise ValueError(f"merge needs a key column that is in the schema; got {key!r}")
    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
    try:
        old = locate(path) if write_disposition == "merge" else None
        if old is not None and old.info().type != pafs.FileType.File:
            old = None  # nothing to merge into: the first run writes the file
        if old is None:
            with ParquetFileWriter(path, schema, compression=compression, **writer_options) as writer:
                for batch in batches:
                    writer.write(batch)
        else:
            assert key is not None
            new = pa.Table.from_batches(list(batches), schema=schema)  # every batch before any write
            with ParquetFileWriter(path, schema, compression=compression, **writer_options) as writer:
                existing = open_parquet(old)
                replaced = new.column(key).unique()
                for i in range(existing.num_row_groups):
                    group = existing.read_row_group(i)
                    kept = group.filter(pc.invert(pc.fill_null(pc.is_in(group.column(key), replaced), False)))
                    writer.write(_aligned(kept, schema))
                writer.write(new)
    finally:
        close = getattr(batches, "close", None)  # stop a producer thread at once on failure
        if callable(close):
            with contextlib.suppress(Exception):
                close()
    seconds = time.monotonic() - started
    target = writer.target
    logger.info("wrote %d rows in %d row group(s) to %s in %.1fs", writer.rows, writer.row_groups, target, seconds)
    return ParquetWriteResult(str(target.path if target.local else target.uri), writer.rows, writer.row_groups,
                              target.size(), seconds)
