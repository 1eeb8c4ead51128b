"""Deleting datasource contacts in bulk (``DELETE /stream/contacts/{userId}``, one per id).

Deleting is idempotent: a contact that is already gone answers 404, which counts as
``missing`` (not an error unless ``missing_ok=False``), so a retried task is safe.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..client.errors import NotFoundError
from ..progress import Progress
from .errors import IngestError, IngestSchemaError
from .sender import BoundedPool, Done
from .sources import SqlSource, open_source

log = logging.getLogger("airflow_provider_instasent.ingest")


@dataclass
class DeleteReport:
    """``requested`` ids, ``deleted``, ``missing`` (already absent: 404), ``failed``."""

    requested: int = 0
    deleted: int = 0
    missing: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    dry_run: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "deleted": self.deleted,
            "missing": self.missing,
            "failed": self.failed,
            "elapsed_s": round(self.elapsed_s, 3),
            "dry_run": self.dry_run,
            "failures": [{"_user_id": u, "error": e} for u, e in self.failures[:20]],
        }

    def _repr_html_(self) -> str:
        """The report as an HTML table in Jupyter: counts, throughput, the first failures."""
        import pandas as pd

        from .._html import report_html

        per_s = self.requested / self.elapsed_s if self.elapsed_s > 0 else 0.0
        counts = [("requested", self.requested), ("deleted", self.deleted), ("missing (already gone)", self.missing),
                  ("failed", self.failed), ("seconds", round(self.elapsed_s, 1)), ("ids/s", round(per_s, 1))]
        failures = pd.DataFrame(self.failures, columns=["_user_id", "error"])
        return report_html(f"{'DRY RUN ' if self.dry_run else ''}Instasent contact delete", counts,
                           frame=failures, frame_title="failures", total=self.failed)


def _ids_from_batches(batches: Iterable[pa.RecordBatch], column: str | None) -> Iterator[str]:
    for batch in batches:
        names = batch.schema.names
        if not names:
            continue
        name = column or ("_user_id" if "_user_id" in names else names[0])
        if name not in names:
            raise IngestSchemaError(f"no column {name!r} in the input (columns: {', '.join(names)})")
        for value in batch.column(name).to_pylist():
            if value is None:
                continue
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            text = str(value).strip()
            if text:
                yield text


def user_ids_from(data: Any, *, column: str | None = None, batch_rows: int = 10_000) -> Iterator[str]:
    """User ids from a list, a ``SqlSource`` (first column or ``column``), a text file (one
    id per line), a CSV file (``column``, default ``_user_id``), or Parquet/Arrow/pandas data."""
    if isinstance(data, (list, tuple, set, frozenset)) and not (
            data and all(isinstance(v, (str, os.PathLike)) and str(v).endswith(".parquet") for v in data)):
        for value in data:
            if value is not None and str(value).strip():
                yield str(value).strip()
        return
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        lower = path.lower()
        if lower.endswith((".txt", ".ids", ".lst")):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    text = line.strip()
                    if text and not text.startswith("#"):
                        yield text
            return
        if lower.endswith(".csv"):
            import pyarrow.csv as pacsv

            reader = pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(
                column_types={column or "_user_id": pa.string()}))
            yield from _ids_from_batches(reader, column or "_user_id")
            return
    if isinstance(data, SqlSource):
        yield from _ids_from_batches(data.batches(), column)
        return
    yield from _ids_from_batches(open_source(data, batch_rows=batch_rows).batches(), column)


def delete_contacts(client: Any, user_ids: Any, *, max_in_flight: int = 16, datasource: str | None = None,
                    missing_ok: bool = True, dry_run: bool = False, column: str | None = None,
                    progress_interval: float = 5.0, logger: Any = None) -> DeleteReport:
    """Delete every contact in ``user_ids`` (see ``user_ids_from`` for the inputs).

    ``dry_run`` only counts the ids (the API has no dry run for deletes). Raises
    ``IngestError`` (with ``.report``) when a delete failed, or when a contact was
    missing and ``missing_ok`` is False.
    """
    logger = logger or log
    report = DeleteReport(dry_run=dry_run)
    started = time.monotonic()
    ids = user_ids_from(user_ids, column=column)
    if dry_run:
        for _ in ids:
            report.requested += 1
        report.elapsed_s = time.monotonic() - started
        logger.info("instasent delete DRY RUN: %d contacts would be deleted", report.requested)
        return report

    def one(user_id: str) -> str:
        try:
            client.delete_contact(user_id, datasource=datasource)
            return "deleted"
        except NotFoundError:
            return "missing"

    def settle(done: Iterable[Done[str]]) -> None:
        for d in done:
            if d.error is not None:
                report.failed += 1
                if len(report.failures) < 1000:
                    report.failures.append((d.item, str(d.error)))
            elif d.result == "deleted":
                report.deleted += 1
            else:
                report.missing += 1

    progress = Progress(logger, "delete", progress_interval, unit="requested")
    pool: BoundedPool[str] = BoundedPool(max_in_flight, name="instasent-delete", client=client)
    try:
        for user_id in ids:
            settle(pool.submit(one, user_id))
            report.requested += 1
            progress.tick(report.requested, f"{report.deleted} deleted, {report.missing} missing, "
                                            f"{report.failed} failed")
        settle(pool.drain())
    finally:
        pool.close(cancel=True)
    report.elapsed_s = time.monotonic() - started
    logger.info("instasent delete: %d requested, %d deleted, %d missing (already absent), %d failed in %.1fs",
                report.requested, report.deleted, report.missing, report.failed, report.elapsed_s)
    if report.failed:
        raise IngestError(f"{report.failed} of {report.requested} deletes failed; first: "
                          f"{report.failures[0][0]}: {report.failures[0][1]}", report)
    if report.missing and not missing_ok:
        raise IngestError(f"{report.missing} of {report.requested} contacts did not exist (missing_ok=False)",
                          report)
    return report
