"""Split a large source into independent shards for Airflow dynamic task mapping.

A *shard descriptor* is a small JSON-serialisable ``dict``: it fits in an XCom. A planning
task returns one set of operator arguments per descriptor and the ingest operator is mapped
over them (``InstasentIngestOperator.partial(python_callable=read_shard, ...)
.expand_kwargs(plan())``, see ``dags_examples/instasent_sharded_backfill.py``). Every descriptor
carries all a worker needs to read its slice, so shards are independent: any worker can run
any shard, in any order, any number of times. Re-running a shard is safe because the
Ingest API upserts contacts by ``_user_id`` and drops events whose ``_event_id`` it already
holds: give every event a stable ``_event_id`` (see ``event_id_prefix`` in ``read_shard``
when the source has none) and a retried or re-triggered shard never duplicates anything.

Two kinds of source:

* **Parquet** (``plan_parquet_shards``, ``read_shard``): whatever
  ``discover`` finds (one rule for the loader and the planner: a file, a
  directory without its ``.``/``_`` names, a glob, a list), local paths or URIs that
  ``pyarrow.fs`` opens (``s3://``, ``gs://``, ``hdfs://``, ``file://``). Row groups are the
  unit of work: a shard is a run of consecutive row groups, possibly across several small
  files, cut so that shards hold about the same number of rows. Reading a shard touches only
  its row groups, one batch at a time.
* **SQL** (``plan_key_ranges``, ``plan_sql_shards``, ``key_range_query``): ranges
  of an integer (or any ordered) key column, from given bounds, from a ``MIN/MAX/COUNT``
  query, or balanced on row counts by a quantile query. ``key_range_query`` renders a
  shard as ``SELECT ... WHERE key >= :lower AND key < :upper`` with bind parameters.

This module imports no Airflow code, so planning and reading can be unit-tested and reused
outside Airflow (a notebook, a script, another orchestrator).
"""

from __future__ import annotations

import math
import os
import posixpath
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from ..client.errors import InstasentConfigError
from .parquet import discover
from .paths import locate
from .sql.database import database
from .sql.dialects import Paramstyle, bind_marker
from .sql.identifiers import check_identifier, source_sql

__all__ = [
    "DEFAULT_MAX_SHARDS",
    "DEFAULT_TARGET_ROWS",
    "ShardDescriptor",
    "ShardError",
    "bounds_query",
    "key_range_query",
    "list_parquet_files",
    "plan_key_ranges",
    "plan_key_ranges_from_boundaries",
    "plan_parquet_shards",
    "plan_sql_shards",
    "quantile_query",
    "read_shard",
]

ShardDescriptor: TypeAlias = dict[str, Any]
"""A JSON-serialisable shard description (see the module docstring)."""


DESCRIPTOR_VERSION = 1
DEFAULT_TARGET_ROWS = 250_000
# Airflow's [core] max_map_length default: an upstream list longer than this fails the
# mapped task, so plans are capped here unless told otherwise.
DEFAULT_MAX_SHARDS = 1024



class ShardError(InstasentConfigError):
    """A source cannot be planned, or a descriptor cannot be read (e.g. the data changed)."""


# ----------------------------------------------------------------------------------------
# Parquet
# ----------------------------------------------------------------------------------------


def list_parquet_files(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Any) -> list[str]:
    """The files of ``source`` as strings, in the stable order of ``discover``.

    Local paths come back absolute (so every worker resolves them the same way), URLs keep
    their scheme. See ``parquet`` for the discovery rule.

    Raises:
        FileNotFoundError: an entry matches no file.
    """
    return [f.uri for f in discover(source)]


def _read_metadata(path: str) -> pq.FileMetaData:
    with locate(path).open_input() as fh:
        return pq.read_metadata(fh)


def _file_keys(files: Sequence[str]) -> list[str]:
    """Stable, short names for ``files``: paths relative to their common directory."""
    if len(files) == 1:
        return [posixpath.basename(files[0].replace("\\", "/"))]
    normalised = [f.replace("\\", "/") for f in files]
    try:
        common = posixpath.commonpath([posixpath.dirname(f) for f in normalised])
    except ValueError:  # mixed schemes / absolute and relative
        return normalised
    return [posixpath.relpath(f, common) if common else f for f in normalised]


def _cut_points(cumulative: Sequence[int], n: int) -> list[int]:
    """Indices (exclusive ends) splitting units into ``n`` runs with balanced totals.

    ``cumulative[j]`` is the total after unit ``j``. Each cut is placed at the unit boundary
    closest to its ideal share, keeping every run non-empty.
    """
    units = len(cumulative)
    total = cumulative[-1]
    cuts: list[int] = []
    prev = 0
    for k in range(1, n):
        ideal = total * k / n
        lo = prev + 1  # at least one unit in this run
        hi = units - (n - k)  # leave at least one unit for each remaining run
        best, best_diff = lo, math.inf
        for end in range(lo, hi + 1):
            diff = abs(cumulative[end - 1] - ideal)
            if diff < best_diff:
                best, best_diff = end, diff
            elif cumulative[end - 1] > ideal:
                break
        cuts.append(best)
        prev = best
    cuts.append(units)
    return cuts


def plan_parquet_shards(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    target_rows: int = DEFAULT_TARGET_ROWS,
    max_shards: int | None = DEFAULT_MAX_SHARDS,
    min_shards: int = 1,
    columns: Sequence[str] | None = None,
    name: str = "shard",
) -> list[ShardDescriptor]:
    """Split a Parquet dataset into shards of about ``target_rows`` rows each.

    Only the Parquet footers are read. The row groups of all files, in file order, are cut
    into ``ceil(total / target_rows)`` runs (at least ``min_shards``, at most ``max_shards``
    and the number of row groups) whose row counts are as even as row-group boundaries
    allow. A row group is never split, so write files with row groups well below the target
    (e.g. 10k–100k rows) to get even shards.

    Args:
        source: see ``list_parquet_files``.
        target_rows: wanted rows per shard.
        max_shards: cap on the number of shards (default 1024, Airflow's ``max_map_length``);
            ``None`` for no cap. When it binds, shards get bigger than ``target_rows``.
        min_shards: at least this many shards (when there are enough row groups), e.g. the
            number of workers, so that a small input still spreads.
        columns: columns to read (``None`` = all), recorded in every descriptor.
        name: prefix of each ``shard_id``.

    Returns:
        Descriptors ``{"v", "kind": "parquet", "shard_id", "index", "count", "rows",
        "parts": [{"path", "key", "row_group_start", "row_group_stop", "rows"}], "columns"}``,
        empty when the dataset has no rows.
    """
    if target_rows < 1:
        raise ShardError("target_rows must be >= 1")
    if max_shards is not None and max_shards < 1:
        raise ShardError("max_shards must be >= 1 (or None)")
    files = list_parquet_files(source)
    keys = _file_keys(files)
    units: list[tuple[int, int, int]] = []  # (file index, row group, rows)
    for fi, path in enumerate(files):
        try:
            meta = _read_metadata(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise ShardError(f"cannot read the Parquet footer of {path!r}: {exc}") from exc
        for rg in range(meta.num_row_groups):
            rows = meta.row_group(rg).num_rows
            if rows > 0:
                units.append((fi, rg, rows))
    if not units:
        return []
    cumulative: list[int] = []
    running = 0
    for _, _, rows in units:
        running += rows
        cumulative.append(running)
    total = running
    n = max(math.ceil(total / target_rows), min_shards)
    if max_shards is not None:
        n = min(n, max_shards)
    n = max(1, min(n, len(units)))
    cuts = _cut_points(cumulative, n)

    shards: list[ShardDescriptor] = []
    start = 0
    for index, stop in enumerate(cuts):
        parts: list[dict[str, Any]] = []
        for fi, rg, rows in units[start:stop]:
            if parts and parts[-1]["_fi"] == fi and parts[-1]["row_group_stop"] == rg:
                parts[-1]["row_group_stop"] = rg + 1
                parts[-1]["rows"] += rows
            else:
                parts.append({"_fi": fi, "path": files[fi], "key": keys[fi], "row_group_start": rg,
                              "row_group_stop": rg + 1, "rows": rows})
        for part in parts:
            del part["_fi"]
        shards.append({
            "v": DESCRIPTOR_VERSION,
            "kind": "parquet",
            "shard_id": f"{name}-{index:05d}",
            "index": index,
            "count": len(cuts),
            "rows": sum(p["rows"] for p in parts),
            "parts": parts,
            "columns": list(columns) if columns is not None else None,
        })
        start = stop
    return shards


def _check_descriptor(descriptor: Mapping[str, Any], kind: str) -> None:
    if not isinstance(descriptor, Mapping) or descriptor.get("kind") != kind:
        raise ShardError(f"not a {kind} shard descriptor: {descriptor!r:.200}")
    if int(descriptor.get("v", 0)) > DESCRIPTOR_VERSION:
        raise ShardError(f"descriptor version {descriptor.get('v')} is newer than this library supports")


def _event_ids(prefix: str, key: str, row_group: int, offset: int, n: int) -> pa.Array:
    head = f"{prefix}{key}:{row_group}:"
    return pa.array([f"{head}{offset + i}" for i in range(n)], pa.string())


def read_shard(
    descriptor: Mapping[str, Any],
    *,
    columns: Sequence[str] | None = None,
    batch_size: int = 10_000,
    event_id_prefix: str | None = None,
    event_id_column: str = "_event_id",
    verify: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Stream the rows of a Parquet shard as RecordBatches of at most ``batch_size`` rows.

    Only the shard's row groups are read, one batch at a time (memory stays around one row
    group), so a shard of millions of rows runs in a small worker.

    Args:
        descriptor: a descriptor from ``plan_parquet_shards``.
        columns: columns to read; default the descriptor's ``columns`` (``None`` = all).
        batch_size: rows per yielded batch.
        event_id_prefix: when set and the data has no ``event_id_column``, add one made of
            the row's position: ``<prefix><file key>:<row group>:<row>``. It is stable across
            retries and re-plans (it does not depend on how the dataset was cut), as long
            as the files are not rewritten. Prefer a real id from the source when it has one.
        event_id_column: the event id column name (``_event_id``).
        verify: check that each part's row groups still hold the planned number of rows, so
            a file rewritten between planning and running fails loudly instead of sending a
            different slice.

    Raises:
        ShardError: a bad descriptor, or the files changed since planning.
    """
    _check_descriptor(descriptor, "parquet")
    if batch_size < 1:
        raise ShardError("batch_size must be >= 1")
    cols = list(columns) if columns is not None else descriptor.get("columns")
    for part in descriptor["parts"]:
        path = str(part["path"])
        start, stop = int(part["row_group_start"]), int(part["row_group_stop"])
        handle = locate(path).open_input()
        try:
            pf = pq.ParquetFile(handle)
            meta = pf.metadata
            if stop > meta.num_row_groups:
                raise ShardError(f"{path!r} has {meta.num_row_groups} row groups, the shard wants up to {stop}")
            if verify:
                actual = sum(meta.row_group(rg).num_rows for rg in range(start, stop))
                if actual != int(part["rows"]):
                    raise ShardError(
                        f"{path!r} row groups [{start}, {stop}) hold {actual} rows, {part['rows']} were planned: "
                        "the file changed since planning; plan again"
                    )
            read_cols = cols
            add_ids = False
            if event_id_prefix is not None:
                names = pf.schema_arrow.names
                add_ids = event_id_column not in names
                if read_cols is not None and add_ids:
                    read_cols = [c for c in read_cols if c != event_id_column]
            for rg in range(start, stop):
                offset = 0
                for batch in pf.iter_batches(batch_size=batch_size, row_groups=[rg], columns=read_cols,
                                             use_threads=False):
                    if add_ids:
                        ids = _event_ids(event_id_prefix or "", str(part.get("key", path)), rg, offset,
                                         batch.num_rows)
                        batch = pa.RecordBatch.from_arrays([*batch.columns, ids],
                                                           names=[*batch.schema.names, event_id_column])
                    offset += batch.num_rows
                    yield batch
        finally:
            handle.close()


# ----------------------------------------------------------------------------------------
# SQL key ranges
# ----------------------------------------------------------------------------------------

KeyValue: TypeAlias = int | float | str | date | datetime | Decimal


def _encode_key(value: Any) -> tuple[Any, str]:
    """A JSON-friendly form of a key value and its type tag."""
    if isinstance(value, bool):
        raise ShardError("a boolean key column cannot be range-sharded")
    if isinstance(value, int):
        return value, "int"
    if isinstance(value, float):
        return value, "float"
    if isinstance(value, datetime):
        return value.isoformat(), "datetime"
    if isinstance(value, date):
        return value.isoformat(), "date"
    if isinstance(value, Decimal):
        return str(value), "decimal"
    if isinstance(value, str):
        return value, "str"
    # e.g. uuid.UUID: compare as text, the database casts the literal back
    return str(value), "str"


def _decode_key(value: Any, key_type: str) -> Any:
    if value is None:
        return None
    if key_type == "datetime":
        return datetime.fromisoformat(value)
    if key_type == "date":
        return date.fromisoformat(value)
    if key_type == "decimal":
        return Decimal(value)
    return value


def _check_identifier(text: str, what: str) -> str:
    try:
        return check_identifier(text, what)
    except InstasentConfigError as exc:
        raise ShardError(str(exc)) from None


def _source_sql(source: str) -> str:
    try:
        return source_sql(source)
    except InstasentConfigError as exc:
        raise ShardError(str(exc)) from None


def _split_values(lo: Any, hi: Any, n: int) -> list[Any]:
    """``n + 1`` increasing boundaries from ``lo`` to ``hi`` (deduplicated, so maybe fewer)."""
    if isinstance(lo, bool) or isinstance(hi, bool):
        raise ShardError("a boolean key column cannot be range-sharded")
    out: list[Any]
    if isinstance(lo, int) and isinstance(hi, int):
        span = hi - lo + 1
        n = max(1, min(n, span))
        out = [lo + (span * i) // n for i in range(n)] + [hi]
    elif isinstance(lo, datetime) and isinstance(hi, datetime):
        span_td = hi - lo
        out = [lo + span_td * i / n for i in range(n)] + [hi]
    elif isinstance(lo, date) and isinstance(hi, date) and not isinstance(lo, datetime):
        days = (hi - lo).days + 1
        n = max(1, min(n, days))
        out = [lo + timedelta(days=(days * i) // n) for i in range(n)] + [hi]
    elif isinstance(lo, (int, float, Decimal)) and isinstance(hi, (int, float, Decimal)):
        flo, fhi = float(lo), float(hi)
        out = [lo] + [flo + (fhi - flo) * i / n for i in range(1, n)] + [hi]
    else:
        raise ShardError(
            f"cannot split {type(lo).__name__} keys arithmetically: pass explicit boundaries "
            "(plan_key_ranges_from_boundaries) or use plan_sql_shards(..., balanced=True)"
        )
    dedup: list[Any] = []
    for v in out[:-1]:
        if not dedup or v > dedup[-1]:
            dedup.append(v)
    dedup.append(hi)
    return dedup


def _range_descriptors(
    source: str, key: str, edges: Sequence[Any], *, where: str | None, include_nulls: bool,
    estimated: Sequence[int | None] | None, name: str,
) -> list[ShardDescriptor]:
    _source_sql(source)
    _check_identifier(key, "key column")
    if len(edges) < 2:
        raise ShardError("need at least two boundaries")
    count = len(edges) - 1
    shards: list[ShardDescriptor] = []
    for i in range(count):
        lower, ltype = _encode_key(edges[i])
        upper, utype = _encode_key(edges[i + 1])
        key_type = ltype if ltype == utype else ("float" if {ltype, utype} <= {"int", "float"} else ltype)
        shards.append({
            "v": DESCRIPTOR_VERSION,
            "kind": "sql",
            "shard_id": f"{name}-{i:05d}",
            "index": i,
            "count": count,
            "source": source,
            "key": key,
            "key_type": key_type,
            "lower": lower,
            "upper": upper,
            "upper_inclusive": i == count - 1,
            "include_nulls": include_nulls and i == 0,
            "where": where,
            "estimated_rows": None if estimated is None else estimated[i],
        })
    return shards


def plan_key_ranges(
    source: str,
    key: str,
    *,
    min_key: KeyValue,
    max_key: KeyValue,
    n_shards: int | None = None,
    target_rows: int | None = None,
    row_count: int | None = None,
    max_shards: int | None = DEFAULT_MAX_SHARDS,
    where: str | None = None,
    include_nulls: bool = False,
    name: str = "shard",
) -> list[ShardDescriptor]:
    """Split ``[min_key, max_key]`` of ``key`` into contiguous ranges of equal width.

    Shard ``i`` covers ``lower <= key < upper``; the last one ``lower <= key <= max_key``.
    Integers, floats, decimals, dates and datetimes are split arithmetically. Equal widths
    give equal row counts only for dense keys (auto-increment ids); for skewed keys use
    ``plan_sql_shards`` with ``balanced=True``.

    Args:
        source: a table name (``schema.table``, optionally double-quoted parts) or a query
            (``SELECT ...``), which is wrapped as a sub-query.
        key: the key column (of ``source``'s output).
        min_key: inclusive lower bound, e.g. from ``bounds_query``.
        max_key: inclusive upper bound.
        n_shards: number of ranges; or give ``target_rows`` and ``row_count``.
        target_rows: wanted rows per range (with ``row_count``).
        row_count: rows in ``source`` (also gives each descriptor's ``estimated_rows``).
        max_shards: cap on the number of ranges.
        where: an extra SQL predicate every shard adds (trusted SQL, not a parameter).
        include_nulls: add ``OR key IS NULL`` to the first shard (rows with a NULL key are in
            no range otherwise).
        name: prefix of each ``shard_id``.
    """
    if n_shards is None:
        if target_rows is None or row_count is None:
            raise ShardError("give n_shards, or target_rows and row_count")
        if target_rows < 1:
            raise ShardError("target_rows must be >= 1")
        n_shards = max(1, math.ceil(row_count / target_rows))
    if n_shards < 1:
        raise ShardError("n_shards must be >= 1")
    if max_shards is not None:
        n_shards = min(n_shards, max_shards)
    if max_key < min_key:  # type: ignore[operator]
        raise ShardError(f"max_key {max_key!r} < min_key {min_key!r}")
    edges = _split_values(min_key, max_key, n_shards)
    if len(edges) == 1:  # min == max: a single one-value shard
        edges = [min_key, max_key]
    est = None if row_count is None else [round(row_count / (len(edges) - 1))] * (len(edges) - 1)
    return _range_descriptors(source, key, edges, where=where, include_nulls=include_nulls, estimated=est,
                              name=name)


def plan_key_ranges_from_boundaries(
    source: str,
    key: str,
    boundaries: Sequence[KeyValue],
    *,
    max_key: KeyValue | None = None,
    where: str | None = None,
    include_nulls: bool = False,
    estimated_rows: int | None = None,
    name: str = "shard",
) -> list[ShardDescriptor]:
    """Ranges between sorted ``boundaries`` (any ordered type: ints, strings, dates, ...).

    With ``boundaries = [b0, b1, ..., bk]`` shard ``i`` covers ``b_i <= key < b_{i+1}`` and
    the last shard ``b_{k-1} <= key <= b_k``; with ``max_key`` given, ``b_k`` is ``max_key``
    and there are ``k + 1`` shards. Duplicates are dropped.
    """
    values: list[Any] = sorted(set(boundaries))
    if max_key is not None and (not values or max_key > values[-1]):
        values.append(max_key)
    if len(values) == 1:
        values = [values[0], values[0]]
    n = len(values) - 1
    est = None if estimated_rows is None else [estimated_rows] * n
    return _range_descriptors(source, key, values, where=where, include_nulls=include_nulls, estimated=est,
                              name=name)


def bounds_query(source: str, key: str, *, where: str | None = None) -> str:
    """``SELECT MIN(key), MAX(key), COUNT(key)`` over ``source`` (NULL keys not counted)."""
    _check_identifier(key, "key column")
    sql = f"SELECT MIN({key}), MAX({key}), COUNT({key}) FROM {_source_sql(source)}"
    return f"{sql} WHERE ({where})" if where else sql


def quantile_query(source: str, key: str, step: int, *, where: str | None = None) -> str:
    """Every ``step``-th key in key order: boundaries that cut ``source`` into equal row counts.

    Uses ``ROW_NUMBER() OVER (ORDER BY key)`` (PostgreSQL, DuckDB, SQLite >= 3.25, MySQL 8,
    SQL Server, Snowflake, BigQuery...). It sorts the whole key column once, at planning time.
    """
    _check_identifier(key, "key column")
    if step < 1:
        raise ShardError("step must be >= 1")
    cond = f"{key} IS NOT NULL" + (f" AND ({where})" if where else "")
    return (
        f"SELECT _k FROM (SELECT {key} AS _k, ROW_NUMBER() OVER (ORDER BY {key}) AS _rn "
        f"FROM {_source_sql(source)} WHERE {cond}) _q WHERE (_rn - 1) % {int(step)} = 0 ORDER BY _k"
    )


def _fetch_all(conn: Any, sql: str) -> list[Sequence[Any]]:
    """Rows of ``sql`` from a hook, a DB-API/SQLAlchemy connection or a ``sql -> rows`` callable."""
    if callable(conn) and not hasattr(conn, "cursor") and not hasattr(conn, "get_conn"):
        return list(conn(sql))
    try:
        db = database(conn)
    except InstasentConfigError:
        raise ShardError("conn must be a common-sql hook, a DB-API connection, or a callable sql -> rows") from None
    return db.fetch_all(sql)


def plan_sql_shards(
    conn: Any | Callable[[str], Iterable[Sequence[Any]]],
    source: str,
    key: str,
    *,
    target_rows: int = DEFAULT_TARGET_ROWS,
    max_shards: int | None = DEFAULT_MAX_SHARDS,
    min_shards: int = 1,
    balanced: bool = False,
    where: str | None = None,
    include_nulls: bool = False,
    name: str = "shard",
) -> list[ShardDescriptor]:
    """Plan key-range shards by asking the database for the key's bounds (and quantiles).

    Runs ``bounds_query``; with ``balanced=True`` also ``quantile_query``, so each
    shard gets about ``target_rows`` rows however the keys are distributed (gaps, skew,
    strings). Otherwise the ``[min, max]`` interval is cut into equal widths.

    Args:
        conn: a common-sql ``DbApiHook`` (``get_records``), a DB-API connection (``cursor``),
            or a callable ``sql -> rows``.
        source: a table name or a query, see ``plan_key_ranges``.
        key: the key column.
        target_rows: wanted rows per shard.
        max_shards: at most this many shards (``None``: no cap).
        min_shards: at least this many shards.
        balanced: cut on row-count quantiles instead of equal key widths.
        where: an extra predicate, see ``plan_key_ranges``.
        include_nulls: put NULL keys in the first shard.
        name: prefix of each ``shard_id``.

    Returns:
        Descriptors, empty when the source has no non-NULL key (and ``include_nulls`` is off).
    """
    if target_rows < 1:
        raise ShardError("target_rows must be >= 1")
    rows = _fetch_all(conn, bounds_query(source, key, where=where))
    if not rows:
        raise ShardError("the bounds query returned no row")
    lo, hi, count = rows[0][0], rows[0][1], int(rows[0][2] or 0)
    if lo is None or hi is None or count == 0:
        if not include_nulls:
            return []
        return [{
            "v": DESCRIPTOR_VERSION, "kind": "sql", "shard_id": f"{name}-00000", "index": 0, "count": 1,
            "source": source, "key": _check_identifier(key, "key column"), "key_type": "null",
            "lower": None, "upper": None, "upper_inclusive": True, "include_nulls": True,
            "nulls_only": True, "where": where, "estimated_rows": None,
        }]
    n = max(math.ceil(count / target_rows), min_shards)
    if max_shards is not None:
        n = min(n, max_shards)
    n = max(1, n)
    if not balanced:
        return plan_key_ranges(source, key, min_key=lo, max_key=hi, n_shards=n, row_count=count, where=where,
                               include_nulls=include_nulls, name=name)
    step = max(1, math.ceil(count / n))
    qrows = _fetch_all(conn, quantile_query(source, key, step, where=where))
    edges = [r[0] for r in qrows]
    return plan_key_ranges_from_boundaries(source, key, edges, max_key=hi, where=where,
                                           include_nulls=include_nulls, estimated_rows=step, name=name)


def key_range_query(
    descriptor: Mapping[str, Any],
    *,
    columns: str | Sequence[str] = "*",
    paramstyle: Paramstyle = "pyformat",
    order_by_key: bool = True,
) -> tuple[str, dict[str, Any] | list[Any]]:
    """The ``SELECT`` of one SQL shard and its bind parameters.

    Returns ``(sql, params)``: ``params`` is a dict for ``pyformat``/``named`` and a list
    for the positional styles. Pass them to ``hook.get_records(sql, parameters=params)``,
    ``cursor.execute(sql, params)``, or the ingest operator's SQL source. ``paramstyle``:
    ``pyformat`` (psycopg2, ``%(lower)s``), ``format`` (``%s``), ``qmark`` (sqlite3, DuckDB,
    ``?``), ``named`` (``:lower``), ``numeric`` (``:1``) or ``dollar`` (``$1``).
    """
    _check_descriptor(descriptor, "sql")
    key = _check_identifier(str(descriptor["key"]), "key column")
    select_list = (
        columns if isinstance(columns, str) else ", ".join(_check_identifier(c, "column") for c in columns)
    )
    key_type = str(descriptor.get("key_type", "int"))
    named: list[tuple[str, Any]] = []
    conds: list[str] = []
    if not descriptor.get("nulls_only"):
        lower = _decode_key(descriptor.get("lower"), key_type)
        upper = _decode_key(descriptor.get("upper"), key_type)
        if lower is not None:
            named.append(("lower", lower))
            conds.append(f"{key} >= {bind_marker(paramstyle, 'lower', len(named))}")
        if upper is not None:
            named.append(("upper", upper))
            op = "<=" if descriptor.get("upper_inclusive") else "<"
            conds.append(f"{key} {op} {bind_marker(paramstyle, 'upper', len(named))}")
    range_cond = " AND ".join(conds) if conds else "1 = 1"
    if descriptor.get("nulls_only"):
        range_cond = f"{key} IS NULL"
    elif descriptor.get("include_nulls"):
        range_cond = f"(({range_cond}) OR {key} IS NULL)"
    where = descriptor.get("where")
    full = f"{range_cond} AND ({where})" if where else range_cond
    sql = f"SELECT {select_list} FROM {_source_sql(str(descriptor['source']))} WHERE {full}"
    if order_by_key:
        sql += f" ORDER BY {key}"
    params: dict[str, Any] | list[Any]
    params = dict(named) if paramstyle in ("pyformat", "named") else [v for _, v in named]
    return sql, params
