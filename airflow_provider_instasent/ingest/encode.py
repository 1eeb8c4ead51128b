"""Normalised Arrow columns → item dicts → request bodies of ≤100 items and ≤N bytes (orjson).

Items are built column-wise (one Python list per column, then one dict per row) and a whole
request is encoded with a single ``orjson.dumps`` call (cheaper than per-item calls: figures in
docs/performance.md). When a body passes the byte ceiling (rare for typical items), that request is re-packed
item by item by size; an item larger than the ceiling on its own is rejected locally.

Null policy (``nulls=``):

* ``"omit"`` (default): a null/NaN/NaT value is left out of the item. For a contact that
  means "keep the stored value"; for an event parameter, "not given".
* ``"null"``: a null is sent as JSON ``null``. For a contact that **clears** the attribute.

Whatever the policy, ``_user_id``, ``_event_id`` and ``_event_type`` are never null (such rows
are rejected) and a null ``_event_date`` is always omitted (the API then uses "now").
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa

from ..client.endpoints import MAX_ITEMS_PER_PUSH
from .consent import kept_nulls
from .idempotency import EventIdDeriver
from .specs import EVENT_DATE, EVENT_ID, EVENT_PARAMETERS, EVENT_TYPE, USER_DATA, USER_ID
from .validate import Group, Validated

NullPolicy = Literal["omit", "null"]
DEFAULT_MAX_REQUEST_BYTES = 1_048_576

_dumps = orjson.dumps


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small containers.

    Item dicts hold only scalars and lists of scalars (no cycles); building 10,000 of them
    triggers dozens of collections that scan every live object of the process (all of
    Airflow's, inside a task) and cost more than the building itself. Reference counting
    still frees everything; the collector resumes at the end of the block.
    """
    enabled = gc.isenabled()
    if enabled:
        gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def pylist(arr: pa.Array) -> list[Any]:
    """Python values of an Arrow array, fast for null-free numbers."""
    t = arr.type
    if arr.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return arr.to_numpy(zero_copy_only=False).tolist()
    return arr.to_pylist()


def rows_to_dicts(names: Sequence[str], arrays: Sequence[pa.Array], nulls: NullPolicy) -> list[dict[str, Any]]:
    """One dict per row from parallel columns; nulls omitted or kept per ``nulls``."""
    if not names:
        n = len(arrays[0]) if arrays else 0
        return [{} for _ in range(n)]
    values = [pylist(a) for a in arrays]
    keep_nulls = nulls == "null" or not any(a.null_count for a in arrays)
    names = tuple(names)
    if keep_nulls:
        return [dict(zip(names, row)) for row in zip(*values)]
    return [{k: v for k, v in zip(names, row) if v is not None} for row in zip(*values)]


def rows_to_dicts_per_field(names: Sequence[str], arrays: Sequence[pa.Array], kept: frozenset[str]
                            ) -> list[dict[str, Any]]:
    """``rows_to_dicts`` with a null policy per field: the nulls of ``kept`` are sent, others omitted."""
    if not kept:
        return rows_to_dicts(names, arrays, "omit")
    if all(n in kept or not a.null_count for n, a in zip(names, arrays)):
        return rows_to_dicts(names, arrays, "null")
    values = [pylist(a) for a in arrays]
    keeps = tuple(n in kept for n in names)
    names = tuple(names)
    return [{k: v for k, v, keep in zip(names, row, keeps) if keep or v is not None} for row in zip(*values)]


@lru_cache(maxsize=256)
def _event_builder(pnames: tuple[str, ...], with_date: bool) -> Callable[..., list[dict[str, Any]]]:
    """A function building event dicts with the parameters ``pnames`` in one comprehension.

    Generated once per shape (faster than building the parameter dicts apart and zipping them
    in; docs/performance.md). Names are embedded with ``repr``, so any string is safe.
    """
    args = [f"p{i}" for i in range(len(pnames))]
    params = ", ".join(f"{name!r}: {arg}" for name, arg in zip(pnames, args))
    date = f"{EVENT_DATE!r}: d, " if with_date else ""
    loop_vars = ", ".join(["u", "e", *(["d"] if with_date else []), *args])
    sources = ", ".join(["U", "E", *(["D"] if with_date else []), *[a.upper() for a in args]])
    code = (
        f"def build(etype, U, E, D, {', '.join(a.upper() for a in args)}):\n"
        f"    return [{{{USER_ID!r}: u, {EVENT_ID!r}: e, {EVENT_TYPE!r}: etype, {date}"
        f"{EVENT_PARAMETERS!r}: {{{params}}}}} for {loop_vars} in zip({sources})]\n"
    ) if args else (
        "def build(etype, U, E, D):\n"
        f"    return [{{{USER_ID!r}: u, {EVENT_ID!r}: e, {EVENT_TYPE!r}: etype, {date}"
        f"{EVENT_PARAMETERS!r}: {{}}}} for {loop_vars} in zip({sources})]\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(code, "<instasent-event-builder>", "exec"), namespace)
    return namespace["build"]


@dataclass
class EncodedBatch:
    """The valid rows of one batch as API items (dicts).

    ``rows``: batch-local indices (ascending); ``items``: one dict per row; ``user_ids``: their
    ``_user_id``; ``in_window``: events inside the ±1 h window.
    """

    rows: np.ndarray
    items: list[dict[str, Any]]
    user_ids: list[str]
    in_window: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)


class Encoder:
    """Turns validated batches into API items.

    Args:
        kind: ``"contacts"`` or ``"events"``.
        nulls: the null policy (see the module doc).
        deriver: derives ``_event_id`` for events without an ``_event_id`` column.
        null_policy: contacts: ``"leave"`` or ``"clear"`` per field (``consent.kept_nulls``:
            consent fields default to ``"leave"``).
    """

    def __init__(self, kind: str, *, nulls: NullPolicy = "omit", deriver: EventIdDeriver | None = None,
                 null_policy: Mapping[str, str] | None = None) -> None:
        if nulls not in ("omit", "null"):
            raise ValueError(f"nulls must be 'omit' or 'null', got {nulls!r}")
        self.kind = kind
        self.nulls: NullPolicy = nulls
        self.deriver = deriver or EventIdDeriver()
        self.null_policy = dict(null_policy or {})

    def __call__(self, validated: Validated, valid: np.ndarray | None = None) -> EncodedBatch:
        if valid is None:
            valid = validated.valid
        parts: list[EncodedBatch] = []
        with no_gc():
            for group in validated.groups:
                rows = np.arange(group.n) if group.rows is None else group.rows
                keep = valid[rows]
                if not keep.any():
                    continue
                parts.append(self._group(group, rows, keep))
        if not parts:
            return EncodedBatch(np.zeros(0, np.int64), [], [], np.zeros(0, bool))
        if len(parts) == 1:
            return parts[0]
        rows = np.concatenate([p.rows for p in parts])
        order = np.argsort(rows, kind="stable").tolist()
        items = [it for p in parts for it in p.items]
        users = [u for p in parts for u in p.user_ids]
        windows = [p.in_window if p.in_window is not None else np.zeros(len(p), bool) for p in parts]
        return EncodedBatch(rows[order], [items[i] for i in order], [users[i] for i in order],
                            np.concatenate(windows)[order])

    def _group(self, group: Group, rows: np.ndarray, keep: np.ndarray) -> EncodedBatch:
        all_rows = bool(keep.all())
        mask = None if all_rows else pa.array(keep)

        def sel(arr: pa.Array) -> pa.Array:
            return arr if mask is None else arr.filter(mask)

        out_rows = rows if all_rows else rows[keep]
        top = {k: sel(v) for k, v in group.top.items()}
        user_ids: list[str] = top[USER_ID].to_pylist()
        if self.kind == "contacts":
            names = list(top)
            kept = kept_nulls(names, self.nulls, self.null_policy)
            items = rows_to_dicts_per_field(names, [top[k] for k in names], kept)
            return EncodedBatch(out_rows, items, user_ids, None)

        # events
        params = {k: sel(v) for k, v in (group.params or {}).items()}
        event_ids = top.get(EVENT_ID)
        if event_ids is None:
            event_ids = self.deriver.derive(group.event_type or "", top, params)
        ids: list[str] = event_ids.to_pylist()
        etype = group.event_type
        pnames = tuple(params)
        dates_arr = top.get(EVENT_DATE)
        dates = dates_arr.to_pylist() if dates_arr is not None else None
        if self.nulls == "null" or not any(params[k].null_count for k in pnames):
            # the common case: one generated comprehension builds the nested dicts directly
            build = _event_builder(pnames, dates is not None)
            columns = [pylist(params[k]) for k in pnames]
            events = build(etype, user_ids, ids, dates, *columns)
        else:
            pdicts = rows_to_dicts(pnames, [params[k] for k in pnames], self.nulls)
            if dates is None:
                events = [
                    {USER_ID: u, EVENT_ID: e, EVENT_TYPE: etype, EVENT_PARAMETERS: p}
                    for u, e, p in zip(user_ids, ids, pdicts)
                ]
            else:
                events = [
                    {USER_ID: u, EVENT_ID: e, EVENT_TYPE: etype, EVENT_DATE: d, EVENT_PARAMETERS: p}
                    for u, e, d, p in zip(user_ids, ids, dates, pdicts)
                ]
        if dates_arr is not None and dates_arr.null_count:
            for ev in events:
                if ev[EVENT_DATE] is None:
                    del ev[EVENT_DATE]
        if group.user_data:
            unames = list(group.user_data)
            udicts = rows_to_dicts(unames, [sel(group.user_data[k]) for k in unames], self.nulls)
            for ev, ud in zip(events, udicts):
                if ud:
                    ev[USER_DATA] = ud
        window = group.in_window
        if window is not None and not all_rows:
            window = window[keep]
        return EncodedBatch(out_rows, events, user_ids, window)


# ---------------------------------------------------------------------------------------------
# chunking
# ---------------------------------------------------------------------------------------------
@dataclass
class Request:
    """One push call: its body and, per position, the source row and ``_user_id``."""

    body: bytes
    rows: list[int]
    user_ids: list[str]
    in_window: list[bool] = field(default_factory=list)

    @property
    def n_items(self) -> int:
        return len(self.rows)


@dataclass
class Oversize:
    """An item larger than the byte ceiling on its own (rejected locally, never sent)."""

    row: int
    user_id: str
    size: int
    #: the field whose value is the largest part of the item (``_event_parameters.notes``...)
    field: str = ""


def largest_field(item: Any, prefix: str = "") -> tuple[str, int]:
    """The (dotted) key of the largest value of an item, and that value's encoded size."""
    best, size = prefix.rstrip("."), 0
    if not isinstance(item, dict):
        return best, len(_dumps(item))
    for key, value in item.items():
        name, n = largest_field(value, f"{prefix}{key}.") if isinstance(value, dict) else (
            f"{prefix}{key}", len(_dumps(value)))
        if n > size:
            best, size = name, n
    return best, size


class Chunker:
    """Packs items into requests of at most ``max_items`` items and ``max_bytes`` bytes.

    With ``distinct_users=True`` (contacts) a request never holds two items with the same
    ``_user_id``: the second one starts a new request, so "later row wins" does not depend on
    how the API orders items inside one call. Items keep their source order across batches (a
    partial request is carried over to the next batch). Items too large on their own are
    collected in ``oversize`` (take them with ``take_oversize``).

    With ``hold_back=True`` (the ingest engine's contacts) a user is *busy* from the moment a
    request holding it is yielded until ``done(request)`` is called (its answer arrived): an
    item of a busy user, or of a user already in the open request, is held back, in source
    order per user, and joins a request only once that user's earlier item was answered. So
    the later row of a user is sent after the earlier one was processed ("later row wins")
    while every other user's items go on being sent; ``held`` counts the items held back.
    """

    def __init__(self, *, max_items: int = MAX_ITEMS_PER_PUSH, max_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 distinct_users: bool = False, hold_back: bool = False) -> None:
        if not 1 <= max_items <= MAX_ITEMS_PER_PUSH:
            raise ValueError(f"max_items must be between 1 and {MAX_ITEMS_PER_PUSH}")
        if max_bytes < 64:
            raise ValueError("max_bytes must be at least 64")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.distinct_users = distinct_users
        self._items: list[Any] = []
        self._rows: list[int] = []
        self._users: list[str] = []
        self._window: list[bool] = []
        self.oversize: list[Oversize] = []
        self.hold_back = hold_back
        self.held = 0
        self._in_open: set[str] = set()  # hold_back: the users of the open request
        self._busy: dict[str, int] = {}  # hold_back: user -> requests yielded and not answered
        self._held: dict[str, deque[tuple[Any, int, bool]]] = {}

    def take_oversize(self) -> list[Oversize]:
        out, self.oversize = self.oversize, []
        return out

    def add(self, items: Sequence[Any], rows: Sequence[int], user_ids: Sequence[str],
            in_window: Sequence[bool] | None = None) -> Iterator[Request]:
        """Add items in order; yield every request that is full."""
        windows = list(in_window) if in_window is not None else [False] * len(items)
        if self.hold_back:
            yield from self._add_holding(items, rows, user_ids, windows)
            return
        if self.distinct_users and len(set(user_ids) | set(self._users)) != len(user_ids) + len(self._users):
            yield from self._add_distinct(items, rows, user_ids, windows)
            return
        # no repeated user in reach: plain slicing
        start, n, size = 0, len(items), self.max_items
        while start < n:
            room = size - len(self._items)
            end = min(n, start + room)
            self._items.extend(items[start:end])
            self._rows.extend(rows[start:end])
            self._users.extend(user_ids[start:end])
            self._window.extend(windows[start:end])
            start = end
            if len(self._items) >= size:
                yield from self._take()

    def _add_distinct(self, items: Sequence[Any], rows: Sequence[int], user_ids: Sequence[str],
                      windows: Sequence[bool]) -> Iterator[Request]:
        seen = set(self._users)
        for item, row, user, win in zip(items, rows, user_ids, windows):
            if len(self._items) >= self.max_items or user in seen:
                yield from self._take()
                seen = set()
            self._items.append(item)
            self._rows.append(int(row))
            self._users.append(user)
            self._window.append(bool(win))
            seen.add(user)

    # -- hold_back ----------------------------------------------------------------------------
    def _add_holding(self, items: Sequence[Any], rows: Sequence[int], user_ids: Sequence[str],
                     windows: Sequence[bool]) -> Iterator[Request]:
        busy, held = self._busy, self._held
        for item, row, user, win in zip(items, rows, user_ids, windows):
            # self._in_open, not a local: a full request starts a new open one (``_take``)
            if user in busy or user in held or user in self._in_open:
                held.setdefault(user, deque()).append((item, int(row), bool(win)))
                self.held += 1
                continue
            if self._put(item, int(row), user, bool(win)):
                yield from self._take()

    def _put(self, item: Any, row: int, user: str, win: bool) -> bool:
        """Add an item to the open request; True when that request is full (then ``_take``)."""
        self._items.append(item)
        self._rows.append(row)
        self._users.append(user)
        self._window.append(win)
        self._in_open.add(user)
        return len(self._items) >= self.max_items

    @property
    def unsent(self) -> int:
        """Items added and not yielded in a request yet: held back or in the open request."""
        return self.held + len(self._items)

    def done(self, request: Request) -> Iterator[Request]:
        """``hold_back``: ``request`` was answered (or failed): its users are free, and the next
        held item of each joins the open request. Yields the requests that fill up."""
        for user in request.user_ids:
            left = self._busy.get(user, 0) - 1
            if left > 0:
                self._busy[user] = left
            else:
                self._busy.pop(user, None)
        yield from self._release(request.user_ids)

    def _release(self, users: Sequence[str]) -> Iterator[Request]:
        for user in users:
            queue = self._held.get(user)
            if queue is None or user in self._busy or user in self._in_open:
                continue
            item, row, win = queue.popleft()
            self.held -= 1
            if not queue:
                del self._held[user]
            if self._put(item, row, user, win):
                yield from self._take()

    def flush(self) -> Iterator[Request]:
        if self._items:
            yield from self._take()

    def _take(self) -> Iterator[Request]:
        if not self.hold_back:
            yield from self._pack()
            return
        taken = self._users
        self._in_open = set()
        sent: set[str] = set()
        for request in self._pack():
            for user in request.user_ids:
                self._busy[user] = self._busy.get(user, 0) + 1
            sent.update(request.user_ids)
            yield request
        # a user whose only item was too large is not busy: its next held item may go now
        yield from self._release([u for u in dict.fromkeys(taken) if u not in sent])

    def _pack(self) -> Iterator[Request]:
        items, rows, users, window = self._items, self._rows, self._users, self._window
        self._items, self._rows, self._users, self._window = [], [], [], []
        body = _dumps(items)
        if len(body) <= self.max_bytes:
            yield Request(body, rows, users, window)
            return
        yield from self._pack_by_size(items, rows, users, window)

    def _pack_by_size(self, items: list[Any], rows: list[int], users: list[str], window: list[bool]
                      ) -> Iterator[Request]:
        parts: list[bytes] = []
        p_rows: list[int] = []
        p_users: list[str] = []
        p_window: list[bool] = []
        total = 2
        for item, row, user, win in zip(items, rows, users, window):
            data = _dumps(item)
            if len(data) + 2 > self.max_bytes:
                self.oversize.append(Oversize(row, user, len(data), largest_field(item)[0]))
                continue
            if parts and total + 1 + len(data) > self.max_bytes:
                yield Request(body_of(parts), p_rows, p_users, p_window)
                parts, p_rows, p_users, p_window, total = [], [], [], [], 2
            total += len(data) + (1 if parts else 0)
            parts.append(data)
            p_rows.append(row)
            p_users.append(user)
            p_window.append(win)
        if parts:
            yield Request(body_of(parts), p_rows, p_users, p_window)


def body_of(items: Sequence[bytes]) -> bytes:
    """A JSON array of already-encoded items."""
    return b"[" + b",".join(items) + b"]"
