"""Evidence that an export read the whole result, checked before anything is committed.

A scroll can end early (an empty page, a page without a cursor), repeat itself (a page served
twice, a cursor that never moves) or run away. None of that raises on the wire, so the export
checks what it read against what the API announced (docs/export.md, "Completeness"):

* **rows against ``totalHits``**: fewer rows than announced (beyond ``total_tolerance``) is an
  incomplete export; more than announced plus one page is a runaway scroll, stopped at once;
* **each key once**: the audience contact id (events: datasource + ``_event_id``) of every row
  is hashed to 64 bits (8 bytes a row, checked with one sort at the end); a key read twice
  means a page was served twice.

The engine raises ``IncompleteExportError`` from inside the batch stream, so a SQL or
Parquet writer never commits the table or file (``replace`` and ``merge`` keep the previous
contents).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ..client.errors import InstasentError

__all__ = ["Completeness", "IncompleteExportError"]


class IncompleteExportError(InstasentError):
    """The scroll's answer is evidently incomplete or repeated: nothing was committed."""


def _hash(column: pa.Array) -> np.ndarray:
    from pandas.util import hash_array

    values = column.to_numpy(zero_copy_only=False)
    return np.asarray(hash_array(values.astype(object), categorize=False), dtype=np.uint64)


class Completeness:
    """Counts and key hashes of one export (see the module doc)."""

    def __init__(self, key_columns: Sequence[str], *, total_tolerance: float = 0.0, page_size: int = 100,
                 what: str = "export") -> None:
        if not 0 <= total_tolerance < 1:
            raise ValueError("total_tolerance must be in [0, 1)")
        self.key_columns = list(key_columns)
        self.tolerance = total_tolerance
        self.page_size = page_size
        self.what = what
        self._hashes: list[np.ndarray] = []
        self.null_keys = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """Record the keys of ``batch``."""
        if not batch.num_rows:
            return
        combined: np.ndarray | None = None
        for name in self.key_columns:
            column = batch.column(name)
            self.null_keys += column.null_count if name == self.key_columns[-1] else 0
            h = _hash(column)
            combined = h if combined is None else combined * np.uint64(1_000_003) ^ h
        assert combined is not None
        self._hashes.append(combined)

    def check_running(self, rows: int, total: int | None) -> None:
        """Stop a runaway scroll: more rows than announced, plus one page."""
        if total is not None and rows > math.ceil(total * (1 + self.tolerance)) + self.page_size:
            raise IncompleteExportError(
                f"{self.what}: read {rows} rows but the API announced {total} (totalHits): the scroll repeats "
                "itself (a cursor that does not move, or pages served again); stopped, nothing committed")

    def finish(self, rows: int, total: int | None) -> None:
        """After the last page: the count matches ``totalHits`` and no key was read twice."""
        if total is not None and rows < math.floor(total * (1 - self.tolerance)):
            raise IncompleteExportError(
                f"{self.what}: expected {total} rows (totalHits) but the scroll ended after {rows} "
                f"(an empty page or a page without a cursor came early); nothing committed. If the "
                f"result may shrink while it is read, allow it with total_tolerance= (now {self.tolerance})")
        if self.null_keys:
            raise IncompleteExportError(
                f"{self.what}: {self.null_keys} row(s) have no {self.key_columns[-1]}; nothing committed")
        if self._hashes:
            keys = np.sort(np.concatenate(self._hashes))
            repeated = int(np.count_nonzero(keys[1:] == keys[:-1]))
            if repeated:
                raise IncompleteExportError(
                    f"{self.what}: {repeated} row(s) repeat the {'+'.join(self.key_columns)} of an earlier row "
                    "(a page was served twice); nothing committed")
