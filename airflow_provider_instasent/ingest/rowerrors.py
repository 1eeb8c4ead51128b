"""The ingest engine's row-error collector: one job, keeping every error of every row of a batch.

``RowErrors`` holds them column-wise, as ``(row indices, field, reason or reasons)``
parts, so a vectorised check records all its failing rows at once and a row with three
problems gets three entries, not one. The coercions (``coerce``) and the validator
(``validate``) record into it; the engine reads the bad-row mask and the records for the
report and the rejects (``report``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class RowErrors:
    """Every error of one batch, column-wise: (row indices, field, reason or reasons)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.parts: list[tuple[np.ndarray, str, str | list[str]]] = []

    def add(self, rows: np.ndarray | pa.Array | Sequence[int], field_name: str, reason: str | list[str]) -> None:
        idx = _as_indices(rows)
        if len(idx):
            if isinstance(reason, list) and len(reason) != len(idx):
                raise AssertionError("one reason per row")
            self.parts.append((idx, field_name, reason))

    def add_mask(self, mask: pa.Array | np.ndarray, field_name: str, reason: str | Callable[[np.ndarray], list[str]]
                 ) -> np.ndarray:
        """Record ``reason`` for every row where ``mask`` is true; returns the row indices."""
        idx = mask_indices(mask)
        if len(idx):
            self.parts.append((idx, field_name, reason(idx) if callable(reason) else reason))
        return idx

    def extend(self, other: RowErrors, rows: np.ndarray) -> None:
        """Add the errors of a sub-batch whose row ``i`` is row ``rows[i]`` of this batch."""
        for idx, name, reason in other.parts:
            self.parts.append((rows[idx], name, reason))

    def split(self, take: Callable[[str], bool]) -> RowErrors:
        """Move the errors whose field ``take`` accepts into a new ``RowErrors`` (returned)."""
        out = RowErrors(self.n)
        out.parts = [part for part in self.parts if take(part[1])]
        self.parts = [part for part in self.parts if not take(part[1])]
        return out

    def __len__(self) -> int:
        return sum(len(idx) for idx, _, _ in self.parts)

    def bad_mask(self) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        for idx, _, _ in self.parts:
            mask[idx] = True
        return mask

    def records(self) -> tuple[np.ndarray, list[str], list[str]]:
        """``(rows, fields, reasons)``, ordered by row then by the order the checks ran."""
        if not self.parts:
            return np.zeros(0, dtype=np.int64), [], []
        rows = np.concatenate([idx for idx, _, _ in self.parts])
        fields: list[str] = []
        reasons: list[str] = []
        for idx, name, reason in self.parts:
            fields.extend([name] * len(idx))
            reasons.extend(reason if isinstance(reason, list) else [reason] * len(idx))
        order = np.argsort(rows, kind="stable")
        return rows[order], [fields[i] for i in order], [reasons[i] for i in order]


def _as_indices(rows: np.ndarray | pa.Array | Sequence[int]) -> np.ndarray:
    if isinstance(rows, pa.Array):
        return rows.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return np.asarray(rows, dtype=np.int64)


def mask_indices(mask: pa.Array | np.ndarray) -> np.ndarray:
    """The row indices where ``mask`` is true (a null counts as false)."""
    if isinstance(mask, np.ndarray):
        return np.flatnonzero(mask)
    if mask.null_count:
        mask = pc.fill_null(mask, False)
    return pc.indices_nonzero(mask).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
