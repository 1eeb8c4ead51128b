"""The export engine: scroll pages -> Arrow RecordBatches with a stable schema, streaming.

A background thread follows the scroll (pages of at most 100 entities, retried by the
client with the same cursor on 429/5xx/lost connections) and feeds a bounded queue; every
few pages become a small Arrow RecordBatch (in the consumer's thread from the pages' raw
JSON bodies, or in the fetch thread from decoded pages: see ``Export.batches``), and
the consumer joins them into RecordBatches of ``batch_size`` rows. At most
``prefetch_pages`` pages (raw, or as Arrow data) plus the batch being assembled and the one
being written are in memory, whatever the size of the audience.

No module here imports Airflow.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import pyarrow as pa

from ..client import InstasentClient
from ..client.endpoints import MAX_SCROLL_LIMIT
from ..client.errors import InstasentConfigError
from ..progress import Progress
from .completeness import Completeness
from .convert import BatchBuilder, InvalidValues
from .incremental import coarse_root, cursor_for, keep_since, parse_since, server_now
from .schema import EVENTS_KEY, ExportSchema, audience_schema, events_schema

log = logging.getLogger(__name__)

Source = Literal["audience", "segment", "events"]
SOURCES: tuple[str, ...] = ("audience", "segment", "events")
DEFAULT_BATCH_SIZE = 10_000
#: Seconds between progress lines (the operators take their default from here).
DEFAULT_PROGRESS_INTERVAL = 5.0

T = TypeVar("T")

#: Scopes that decide which contact fields the API returns (see docs/export.md).
PRIVACY_SCOPES = {"PROJECT_AUDIENCE_DATA_FULL": "full", "PROJECT_AUDIENCE_DATA_BASIC": "basic"}


def _concat(parts: Sequence[pa.RecordBatch], schema: pa.Schema) -> pa.RecordBatch:
    if len(parts) == 1:
        return parts[0]
    concat = getattr(pa, "concat_batches", None)
    if concat is not None:  # pyarrow >= 19
        return concat(parts)
    table = pa.Table.from_batches(parts, schema=schema).combine_chunks()
    return table.to_batches(max_chunksize=table.num_rows)[0]


def privacy_level(scopes: Iterable[str]) -> str:
    """``full``, ``basic`` or ``default`` from a token's scopes (the data it will see)."""
    found = set(scopes)
    for scope, level in PRIVACY_SCOPES.items():
        if scope in found:
            return level
    return "default"


def _root(filter: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """Accept a query-filter ``root`` node, or a body that wraps it as ``{"root": ...}``."""
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise InstasentConfigError(f"filter must be a mapping (a query filter root), got {type(filter).__name__}")
    if "root" in filter and "type" not in filter:
        inner = filter["root"]
        return inner if inner is None or isinstance(inner, Mapping) else _root(inner)
    return filter


@dataclass
class ExportStats:
    """What an export did; ``as_dict()`` is what the operators push to XCom."""

    source: str = ""
    rows: int = 0
    #: rows the API returned (an incremental export drops those unchanged since ``since``)
    rows_read: int = 0
    pages: int = 0
    batches: int = 0
    total_hits: int | None = None
    seconds: float = 0.0
    invalid: InvalidValues = field(default_factory=InvalidValues)
    started: float = field(default_factory=time.monotonic)
    #: incremental exports: the lower bound read from, and the server's time at the start
    since: dt.datetime | None = None
    server_started: dt.datetime | None = None

    @property
    def rows_per_second(self) -> float:
        elapsed = self.seconds or (time.monotonic() - self.started)
        return self.rows / elapsed if elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "rows_read": self.rows_read,
            "pages": self.pages,
            "batches": self.batches,
            "total_hits": self.total_hits,
            "invalid_values": self.invalid.total,
            "invalid_by_column": self.invalid.as_dict(),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "since": _iso(self.since),
            "server_started": _iso(self.server_started),
        }

    def _repr_html_(self) -> str:
        """The stats as an HTML table in Jupyter: rows, pages, throughput, invalid values per column."""
        import pandas as pd

        from .._html import report_html

        counts = [("rows", self.rows), ("of total hits", self.total_hits), ("pages", self.pages),
                  ("batches", self.batches), ("seconds", round(self.seconds, 1)),
                  ("rows/s", round(self.rows_per_second, 1)),
                  ("values exported as null (did not fit their column)", self.invalid.total)]
        invalid = pd.DataFrame(sorted(self.invalid.as_dict().items()), columns=["column", "invalid values"])
        return report_html(f"Instasent {self.source or 'export'} export", counts, frame=invalid,
                           frame_title="invalid values by column")


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(items: Iterable[T], maxsize: int, name: str = "instasent-prefetch") -> Generator[T, None, None]:
    """Iterate ``items`` in a daemon thread, at most ``maxsize`` items ahead of the consumer.

    An exception in the producer is re-raised in the consumer. When the consumer stops early
    (``close()``, an exception, garbage collection) the producer is told to stop and the
    underlying iterator is closed in its own thread.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, maxsize))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as exc:
            put(_Failure(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # pragma: no cover - best effort
                    log.debug("closing the prefetched iterator failed", exc_info=True)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()


class Export:
    """One export: a source (``audience``, ``segment`` or ``events``), its schema and its batches.

    Args:
        client: an ``InstasentClient`` (thread-safe; it paces and retries by itself).
        source: ``"audience"``, ``"segment"`` (needs ``segment``) or ``"events"``.
        segment: the segment uid for ``source="segment"``.
        parameter: the parameter of a parameterised dynamic segment.
        filter: a query-filter ``root`` (AudienceQueryFilter for audience/segment,
            EventQueryFilter for events), or ``{"root": ...}``.
        attributes: restrict the attribute columns to these uids (audience/segment only).
        batch_size: rows per RecordBatch (and per Parquet row group / SQL load step).
        page_size: scroll page size, 1..100.
        prefetch_pages: how many pages the fetch thread may read ahead (default: one batch
            plus 20 pages), as raw page bodies or converted Arrow data: this bounds the memory.
        progress_interval: seconds between progress log lines (0 disables them).
        specs: attribute specs to use instead of ``GET /specs/attributes``.
        total_tolerance: how far the rows read may fall short of the API's ``totalHits`` (a
            share, default 0: every announced row must arrive) before the export is refused as
            incomplete (``IncompleteExportError``, nothing committed; see ``export.completeness``).
        since: read only what changed at or after this time (a timezone-aware datetime or ISO
            8601 text): contacts by ``_date_updated``, events by their date, narrowed on the server
            by whole days and exactly here (``export.incremental``).
        track_start: record the server's time before the scroll in ``stats.server_started`` (the
            next watermark of an incremental export; always done with ``since``).
    """

    def __init__(
        self,
        client: InstasentClient,
        source: str = "audience",
        *,
        segment: str | None = None,
        parameter: str | None = None,
        filter: Mapping[str, Any] | None = None,
        attributes: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        page_size: int = MAX_SCROLL_LIMIT,
        prefetch_pages: int | None = None,
        progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
        specs: Sequence[Mapping[str, Any]] | None = None,
        logger: Any = None,
        total_tolerance: float = 0.0,
        since: dt.datetime | str | None = None,
        track_start: bool = False,
    ) -> None:
        if source not in SOURCES:
            raise InstasentConfigError(f"source must be one of {', '.join(SOURCES)}; got {source!r}")
        if source == "segment" and not segment:
            raise InstasentConfigError("source='segment' needs segment=<segment uid>")
        if source != "segment" and (segment or parameter):
            raise InstasentConfigError("segment/parameter are only valid with source='segment'")
        if source == "events" and attributes is not None:
            raise InstasentConfigError("attributes is not valid with source='events' (the events schema is fixed)")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InstasentConfigError("batch_size must be a positive integer")
        if not isinstance(page_size, int) or not 1 <= page_size <= MAX_SCROLL_LIMIT:
            raise InstasentConfigError(f"page_size must be between 1 and {MAX_SCROLL_LIMIT}")
        if not 0 <= total_tolerance < 1:
            raise InstasentConfigError(f"total_tolerance must be in [0, 1); got {total_tolerance!r}")
        self.total_tolerance = total_tolerance
        self.client = client
        self.source = source
        self.segment = segment
        self.parameter = parameter
        self.root = _root(filter)
        self.attributes = list(attributes) if attributes is not None else None
        self.batch_size = batch_size
        self.page_size = page_size
        if prefetch_pages is None:  # one batch ahead, plus two conversion chunks
            prefetch_pages = -(-batch_size // page_size) + 20
        self.prefetch_pages = max(1, prefetch_pages)
        self.progress_interval = progress_interval
        self._specs = specs
        self.log = logger or log
        self.stats = ExportStats(source=source, since=parse_since(since))
        self.since = self.stats.since
        self.track_start = track_start or self.since is not None
        self._schema: ExportSchema | None = None

    # -- schema -----------------------------------------------------------------------------
    @property
    def export_schema(self) -> ExportSchema:
        if self._schema is None:
            if self.source == "events":
                self._schema = events_schema()
            else:
                specs = self._specs if self._specs is not None else self.client.get_attribute_specs()
                self._schema = audience_schema(specs, self.attributes)
        return self._schema

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema every batch of this export has."""
        return self.export_schema.arrow

    @property
    def key(self) -> str:
        """The merge key: ``audience_id`` for contacts, ``_event_id`` for events."""
        return self.export_schema.key

    def describe_target(self) -> str:
        if self.source == "segment":
            return f"segment {self.segment}" + (f" (parameter {self.parameter!r})" if self.parameter else "")
        return self.source

    def start(self) -> None:
        """Resolve the schema (``GET /specs/attributes``) and, with ``track_start``, read the
        server's time into ``stats.server_started``: before the first page, so a change made
        while the scroll runs is dated after it. ``batches`` calls it; calling it first lets a
        writer know the next watermark before the first batch."""
        self.export_schema  # noqa: B018 (resolves and caches the specs)
        if self.track_start and self.stats.server_started is None:
            self.stats.server_started = server_now(self.client)

    # -- pages and batches ----------------------------------------------------------------
    def pages(self) -> Iterator[Any]:
        """The decoded scroll pages (``ScrollPage``)."""
        pages = self._scroll("pages")
        assert pages is not None
        return pages

    def raw_pages(self) -> Iterator[Any] | None:
        """The scroll pages with their JSON bodies undecoded
        (``RawScrollPage``), or None when the client
        cannot give them (a client other than ``InstasentClient``)."""
        return self._scroll("raw")

    def _scroll(self, mode: Literal["pages", "raw"]) -> Iterator[Any] | None:
        """This export's scroll, by ``InstasentClient.scroll``; None when the client does not
        list ``mode`` in its ``scroll_modes`` (a stand-in client without raw pages)."""
        if mode not in getattr(self.client, "scroll_modes", frozenset({"entities", "pages", "raw"})):
            return None
        kind = cast(Source, self.source)  # checked against SOURCES in __init__
        root = self.root
        if self.since is not None:
            self.start()  # the server's now anchors the relative filter
            assert self.stats.server_started is not None
            root = coarse_root(root, self.source, self.since, self.stats.server_started)
        return self.client.scroll(kind, mode=mode, root=root, segment=self.segment, parameter=self.parameter,
                                  page_size=self.page_size)

    @property
    def chunk_pages(self) -> int:
        """Pages converted together (at most 10, at most one batch)."""
        return max(1, min(10, -(-self.batch_size // self.page_size)))

    def _counted(self, pages: Iterable[Any]) -> Iterator[Any]:
        stats = self.stats
        for page in pages:
            stats.pages += 1
            if page.total_hits is not None:
                stats.total_hits = page.total_hits
            yield page

    def _raw_source(self, builder: BatchBuilder) -> Iterator[Any] | None:
        return self.raw_pages() if builder.reads_raw else None

    def _decoded_chunks(self, builder: BatchBuilder) -> Iterator[pa.RecordBatch]:
        """Decoded pages -> small RecordBatches of ``chunk_pages`` pages, converted page by
        page as they arrive (see ``BatchBuilder``)."""
        rows_per_chunk = self.chunk_pages * self.page_size
        for page in self._counted(self.pages()):
            builder.add(page.entities)
            del page
            if builder.rows >= rows_per_chunk:
                yield builder.build()
        if builder.rows:
            yield builder.build()

    def _raw_chunks(self, pages: Iterable[Any], builder: BatchBuilder) -> Iterator[pa.RecordBatch]:
        """Raw pages -> small RecordBatches: each ``chunk_pages`` pages parsed in one call of
        Arrow's JSON reader (C++, without the GIL)."""
        for page in pages:
            builder.add_raw(page.content)
            if builder.pages >= self.chunk_pages:
                yield builder.build()
        if builder.pages:
            yield builder.build()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """RecordBatches of ``batch_size`` rows (the last one smaller), all with ``schema``.

        The scroll runs in a background thread, at most ``prefetch_pages`` pages ahead of
        the consumer. Nothing is requested before the first ``next()``.

        Where the pages are converted depends on the client and the schema:

        * With a client that gives raw pages (``InstasentClient``) and a schema that
          Arrow's JSON reader converts exactly (``BatchBuilder.reads_raw``: audience and
          segment exports, unless a spec has an integer or a multi-value non-text attribute),
          the fetch thread keeps each page's body undecoded (it reads only the cursor, so it
          does less than a plain page loop) and this thread parses every ``chunk_pages``
          pages in one call of the JSON reader, in C++ and without the GIL: the conversion
          overlaps the scroll instead of lengthening it.
        * Otherwise (events, other clients) the fetch thread converts each page as it
          arrives. Converting Python dicts in another thread would make the
          latency-sensitive fetch thread wait for the GIL behind the conversion (the
          "convoy effect", which halved the export rate).
        """
        self.start()
        schema = self.export_schema
        arrow_schema = schema.arrow
        stats = self.stats
        stats.started = time.monotonic()
        exact = cursor_for(self.source).column if self.since is not None else None
        progress = Progress(self.log, f"export {stats.source}", self.progress_interval)
        self.log.info("export %s: scrolling %d per page into batches of %d rows", self.describe_target(),
                      self.page_size, self.batch_size)
        queue_chunks = max(1, -(-self.prefetch_pages // self.chunk_pages))
        parts: list[pa.RecordBatch] = []
        buffered = 0

        def emit(final: bool) -> Iterator[pa.RecordBatch]:
            nonlocal parts, buffered
            while buffered >= self.batch_size or (final and buffered):
                whole = _concat(parts, arrow_schema)
                take = min(self.batch_size, whole.num_rows)
                batch, rest = whole.slice(0, take), whole.slice(take)
                parts, buffered = ([rest] if rest.num_rows else []), rest.num_rows
                stats.rows += batch.num_rows
                stats.batches += 1
                yield batch

        keys = ["datasource", EVENTS_KEY] if self.source == "events" else [schema.key]
        complete = Completeness(keys, total_tolerance=self.total_tolerance, page_size=self.page_size,
                                what=f"export {self.describe_target()}")
        builder = BatchBuilder(schema, stats.invalid)
        raw = self._raw_source(builder)
        chunks: Iterator[pa.RecordBatch]
        if raw is None:  # the fetch thread converts
            fetched = prefetch(self._decoded_chunks(builder), queue_chunks, "instasent-scroll")
            chunks = fetched
        else:  # the fetch thread only fetches; the pages are parsed here
            fetched = prefetch(self._counted(raw), self.prefetch_pages, "instasent-scroll")
            chunks = self._raw_chunks(fetched, builder)
        try:
            for chunk in chunks:
                stats.rows_read += chunk.num_rows
                complete.add(chunk)  # what the API returned, before the exact filter
                progress.total = stats.total_hits  # known after the first page
                progress.tick(stats.rows_read)
                complete.check_running(stats.rows_read, stats.total_hits)
                if exact is not None:
                    assert self.since is not None
                    chunk = chunk.filter(keep_since(chunk, exact, self.since))
                parts.append(chunk)
                buffered += chunk.num_rows
                yield from emit(final=False)
            yield from emit(final=True)
            # raised before the consumer's loop ends: a writer never commits what is incomplete
            complete.finish(stats.rows_read, stats.total_hits)
        finally:
            fetched.close()  # stops the fetch thread at once if the consumer stopped early
            stats.seconds = time.monotonic() - stats.started
        if stats.invalid.total:
            self.log.warning("export %s: %d value(s) did not fit their column and were exported as null: %s",
                             self.describe_target(), stats.invalid.total, stats.invalid.as_dict())
        if self.since is not None:
            self.log.info("export %s since %s: %d of %d rows read changed since then", self.describe_target(),
                          _iso(self.since), stats.rows, stats.rows_read)
        self.log.info("export %s: %d rows, %d pages in %.1fs (%.0f rows/s)", self.describe_target(), stats.rows,
                      stats.pages, stats.seconds, stats.rows_per_second)

    def reader(self) -> pa.RecordBatchReader:
        """A ``pyarrow.RecordBatchReader`` over ``batches`` (streams, flat memory)."""
        return pa.RecordBatchReader.from_batches(self.schema, self.batches())

    def table(self) -> pa.Table:
        """Everything in one ``pyarrow.Table`` (for small exports)."""
        return pa.Table.from_batches(list(self.batches()), schema=self.schema)
