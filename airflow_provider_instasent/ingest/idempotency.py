"""Stable ``_event_id``: taken from a column, or derived from the event's content.

The API drops an event whose ``_event_id`` it already stored, so a stable id is what makes a
retried task or a re-run of the same file safe. When the input has an ``_event_id`` column it
is used as is. Otherwise the id is derived, deterministically, from:

* the event type (always), and
* by default: ``_user_id``, ``_event_date`` when the input has that column, and every event
  parameter that has a value in the row (a null parameter is left out, so adding an empty
  column, or a new optional parameter in the specs, does not change any id);
* or, with ``event_id_fields=[...]``, only the named fields (plus the event type): e.g.
  ``["order_id"]`` makes the order id the business key.

Values are hashed **after** the loader's coercions (timestamps as ISO 8601 UTC milliseconds,
numbers by their float64 value: ``10`` and ``10.0`` are the same), so the same event read from
a DataFrame, a Parquet file or a SQL table gets the same id. ``_user_data`` is never hashed.

Canonical form (hashed as UTF-8): ``d1-<len>:<event type>`` then, for each field in a fixed
order (``_user_id``, ``_event_date``, then parameters sorted by name, each written
``p.<name>``), ``<field>=<len>:<value>``, joined by ``\x1f``; a null field is left out. Lengths
are in characters; numbers are written as the signed 64-bit integer of their IEEE-754 bits;
lists as their elements, each written ``=<len>:<value>``, joined by ``,``.

Id format: ``"d1-"`` + the first 128 bits of BLAKE2b over a length-prefixed canonical form,
in hex (35 characters). The ``d1`` is the version of this recipe; it will not change within a
major version of this package (a golden test pins it).

Consequences (see docs/idempotency.md): two rows with the same type, user, date and
parameters are the same event (the second is dropped by the API); correcting a parameter and
re-sending creates a *new* event (events are immutable) unless ``event_id_fields`` names a
business key; without ``_event_date`` the date is not part of the id, so identical events on
different days collapse unless the parameters differ.

**The first row of an id wins** (``FirstRowWins``). The API keeps the first event it stores
for an ``_event_id``; with requests in flight side by side, "first" would be whichever request
lands first. So within one input the loader decides: a later row carrying the ``_event_id`` of
an earlier valid row but a different payload (event type, ``_user_id``, ``_event_date``,
parameters: what the default recipe hashes) is a *collision*, rejected locally (field
``_event_id``, naming the row that keeps the id) and never sent. A later row with the same
payload is a plain duplicate: sent, and dropped by the API. Ids derived by the default recipe
cannot collide (the id is the payload's hash): only an ``_event_id`` column or
``event_id_fields`` are checked. The memory is 24 bytes per distinct id (64-bit hashes of id
and payload, the row number), in sorted runs merged as they grow.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import IngestSchemaError
from .specs import EVENT_DATE, EVENT_ID, EVENT_PARAMETERS, USER_ID
from .validate import Validated

PREFIX = "d1-"
_SEP = "\x1f"


def _text(arr: pa.Array) -> pa.Array:
    """Canonical text of a normalised column (null stays null)."""
    t = arr.type
    if pa.types.is_string(t):
        return arr
    if pa.types.is_large_string(t):
        return arr.cast(pa.string())
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        # numbers: the IEEE-754 bits of the float64 value (10 == 10.0; -0.0 == 0.0), which does
        # not depend on any library's float formatting
        as_float = pc.add(arr.cast(pa.float64(), safe=False), 0.0)
        return as_float.view(pa.int64()).cast(pa.string())
    if pa.types.is_boolean(t):
        return arr.cast(pa.string())
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        flat = arr.flatten()
        texts = _prefixed(_text(flat), "")
        rebuilt = pa.ListArray.from_arrays(pc.subtract(arr.offsets, arr.offsets[0]), pc.fill_null(texts, "~"),
                                           mask=arr.is_null())
        return pc.binary_join(rebuilt, ",")
    return arr.cast(pa.string())


def _prefixed(text: pa.Array, name: str) -> pa.Array:
    """``name=<length>:<value>``, null where the value is null."""
    length = pc.utf8_length(text).cast(pa.string())
    return pc.binary_join_element_wise(pa.scalar(name + "="), length, pa.scalar(":"), text, "")


class EventIdDeriver:
    """Derives ``_event_id`` from the normalised columns of one event type.

    Args:
        fields: the fields that identify an event (``_user_id``, ``_event_date``, parameter
            names, optionally written ``_event_parameters.<name>``). None: the default recipe.
    """

    def __init__(self, fields: Sequence[str] | None = None) -> None:
        if fields is not None and isinstance(fields, str):
            fields = [fields]
        self.fields = None if fields is None else sorted(
            {f[len(EVENT_PARAMETERS) + 1:] if f.startswith(EVENT_PARAMETERS + ".") else f for f in fields}
        )

    def canonical(self, event_type: str, top: Mapping[str, pa.Array], params: Mapping[str, pa.Array]) -> pa.Array:
        """The canonical text hashed for each row (exposed for tests and docs)."""
        n = len(top[USER_ID])
        columns: list[tuple[str, pa.Array]] = []
        if self.fields is None:
            columns.append((USER_ID, top[USER_ID]))
            if EVENT_DATE in top:
                columns.append((EVENT_DATE, top[EVENT_DATE]))
            for name in sorted(params):
                columns.append(("p." + name, params[name]))
        else:
            for name in self.fields:
                if name in (USER_ID, EVENT_DATE):
                    if name not in top:
                        raise IngestSchemaError(f"event_id_fields names {name!r} but the input has no such column")
                    columns.append((name, top[name]))
                elif name in params:
                    columns.append(("p." + name, params[name]))
                else:
                    raise IngestSchemaError(
                        f"event_id_fields names {name!r}, which is not a column or parameter of the input "
                        f"(event type {event_type!r})")
        parts: list[pa.Array | pa.Scalar] = [pa.scalar(PREFIX + _prefix_len(event_type))]
        for name, arr in columns:
            parts.append(_prefixed(_text(arr), name))
        if len(parts) == 1:
            return pa.array([PREFIX + _prefix_len(event_type)] * n, pa.string())
        # a null part (a parameter without a value) is skipped with its separator
        return pc.binary_join_element_wise(*parts, _SEP, null_handling="skip")

    def derive(self, event_type: str, top: Mapping[str, pa.Array], params: Mapping[str, pa.Array]) -> pa.Array:
        text = self.canonical(event_type, top, params)
        data = text.cast(pa.binary()).to_pylist()
        blake = hashlib.blake2b
        return pa.array([PREFIX + blake(b, digest_size=16).hexdigest() for b in data], pa.string())


def _prefix_len(value: str) -> str:
    return f"{len(value)}:{value}"


def derive_event_id(event_type: str, user_id: str, parameters: Mapping[str, object] | None = None, *,
                    event_date: str | None = None) -> str:
    """The id the loader derives for one event given in API form (for tests and docs).

    ``parameters`` and ``event_date`` must already be coerced (numbers as numbers, the date as
    ``YYYY-MM-DDTHH:MM:SS.sssZ``).
    """
    top: dict[str, pa.Array] = {USER_ID: pa.array([user_id], pa.string())}
    if event_date is not None:
        top[EVENT_DATE] = pa.array([event_date], pa.string())
    params = {k: pa.array([v]) for k, v in (parameters or {}).items() if v is not None}
    return str(EventIdDeriver().derive(event_type, top, params)[0].as_py())


# ---------------------------------------------------------------------------------------------
# the first row of an _event_id wins
# ---------------------------------------------------------------------------------------------
_MIX = np.uint64(0x9E3779B97F4A7C15)
#: odd 64-bit weights, one per byte position (mod 4096): a string's hash is the sum of its
#: bytes times their weights, then mixed; fixed, so that a run's hashes never depend on the process
_CHUNK_BYTES = 1 << 20
_WEIGHTS = np.random.default_rng(18).integers(0, 2**62, size=4096, dtype=np.uint64) * np.uint64(2) + np.uint64(1)


def _fmix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: every input bit reaches every output bit."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _string_hashes(arr: pa.Array) -> np.ndarray:
    """64-bit hashes of a string column from its buffers, in numpy (no Python string per value:
    several times cheaper than hashing each string), about 1 MiB of text at a time (the
    temporaries are 24 bytes per byte of text); a null hashes as the empty string."""
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    large = pa.types.is_large_string(arr.type)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], np.int64 if large else np.int32)[arr.offset: arr.offset + len(arr) + 1]
    offsets = offsets.astype(np.int64)
    lengths = np.diff(offsets)
    sums = np.zeros(len(arr), np.uint64)
    data = np.frombuffer(buffers[2], np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    cuts = np.unique(np.searchsorted(offsets, np.arange(offsets[0], offsets[-1], _CHUNK_BYTES), side="right") - 1)
    bounds = [*cuts.tolist(), len(arr)]
    for lo, hi in itertools.pairwise(bounds):
        first, last = int(offsets[lo]), int(offsets[hi])
        if last == first:
            continue
        starts: np.ndarray = (offsets[lo:hi] - first).astype(np.int64)
        part = lengths[lo:hi]
        pos = np.arange(last - first, dtype=np.int64) - np.repeat(starts, part)
        weights = _WEIGHTS[pos & 4095] ^ (pos >> 12).astype(np.uint64) * _MIX
        present = part > 0
        at = np.asarray(starts[present], dtype=np.intp)
        sums[lo:hi][present] = np.add.reduceat((data[first:last].astype(np.uint64) + np.uint64(1)) * weights, at)
    return _fmix(sums ^ lengths.astype(np.uint64) * _MIX)


def _hashes(values: pa.Array) -> np.ndarray:
    """64-bit hashes of a column's values; numbers by their float64 value (``10`` and ``10.0``
    are one value), lists and booleans by their canonical text (``_text``)."""
    t = values.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        numbers = pc.add(values.cast(pa.float64(), safe=False), 0.0).fill_null(0.0)  # -0.0 is 0.0
        return _fmix(numbers.to_numpy(zero_copy_only=False).view(np.uint64))
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        values = _text(values)
    return _string_hashes(values)


def _payload_hashes(top: Mapping[str, pa.Array], params: Mapping[str, pa.Array], n: int) -> np.ndarray:
    """One 64-bit hash per row of what the default recipe hashes (type aside: one group is one
    type): ``_user_id``, ``_event_date``, every parameter with a value. Each field's hash is
    salted with its name and added, and a null adds nothing, so a null parameter and an absent
    column give the same hash (as in ``EventIdDeriver``)."""
    fields = [(USER_ID, top[USER_ID])] + ([(EVENT_DATE, top[EVENT_DATE])] if EVENT_DATE in top else [])
    fields += [("p." + name, params[name]) for name in sorted(params)]
    total = np.zeros(n, np.uint64)
    salts = _string_hashes(pa.array([name for name, _ in fields], pa.string()))
    with np.errstate(over="ignore"):
        for (_, arr), salt in zip(fields, salts):
            mixed = (_hashes(arr) ^ salt) * _MIX
            if arr.null_count:
                mixed[arr.is_null().to_numpy(zero_copy_only=False)] = 0
            total += mixed
    return total.view(np.int64)


class _SortedRuns:
    """A set of 64-bit keys, each with a payload hash and a row number, as sorted runs (numpy):
    a batch's new keys become a run, runs of similar size are merged, a lookup is a binary
    search per run. 24 bytes per key, no Python object per key; a merge of two runs holding
    ``m`` keys peaks at about 40 bytes per key (``_merge``)."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + p.nbytes + r.nbytes for k, p, r in self.runs)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(found, payload, row)`` for each key (payload and row meaningful where found)."""
        found = np.zeros(len(keys), bool)
        payload = np.zeros(len(keys), np.int64)
        row = np.zeros(len(keys), np.int64)
        for run_keys, run_payload, run_rows in self.runs:
            pos = np.minimum(np.searchsorted(run_keys, keys), len(run_keys) - 1)
            hit = (run_keys[pos] == keys) & ~found
            found |= hit
            payload[hit] = run_payload[pos[hit]]
            row[hit] = run_rows[pos[hit]]
        return found, payload, row

    def add(self, keys: np.ndarray, payload: np.ndarray, rows: np.ndarray) -> None:
        """Add keys that are not in the set yet (and distinct)."""
        if not len(keys):
            return
        order = np.argsort(keys)
        self.runs.append((keys[order], payload[order], rows[order]))
        while len(self.runs) > 1 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
            newer = list(self.runs.pop())
            older = list(self.runs.pop())
            self.runs.append(_merge(older, newer))


def _merge(older: list[np.ndarray], newer: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two sorted runs (keys, payloads, rows) as one sorted run, emptying both lists.

    No sort: a key's place in the merged run is its index in its own run plus the number of
    keys of the other run before it (``searchsorted``; an older key comes before an equal newer
    one). The columns are merged one at a time and each input column is dropped once merged,
    so the peak is the two runs plus 16 bytes per key (the places and one merged column):
    about 40 bytes per key, where sorting the concatenation (concatenated copies, the sort
    order, the sorted copies) peaked at 80 and dominated the ingest's peak RSS on millions of
    events.
    """
    keys_old, keys_new = older[0], newer[0]
    place_old = np.searchsorted(keys_new, keys_old, side="left")
    place_old += np.arange(len(keys_old), dtype=place_old.dtype)
    place_new = np.searchsorted(keys_old, keys_new, side="right")
    place_new += np.arange(len(keys_new), dtype=place_new.dtype)
    del keys_old, keys_new
    merged: list[np.ndarray] = []
    while older:
        col_old, col_new = older.pop(0), newer.pop(0)
        out = np.empty(len(col_old) + len(col_new), col_old.dtype)
        out[place_old] = col_old
        out[place_new] = col_new
        merged.append(out)
        del col_old, col_new, out
    return merged[0], merged[1], merged[2]


class FirstRowWins:
    """Finds the event rows whose ``_event_id`` an earlier row of the run already holds with a
    different payload (see the module doc), and records them as row errors of ``_event_id``.

    Args:
        deriver: the run's id deriver (for ids derived from ``event_id_fields``).
    """

    def __init__(self, deriver: EventIdDeriver) -> None:
        self.deriver = deriver
        self.index = _SortedRuns()

    def __call__(self, validated: Validated, offset: int) -> int:
        """Check the valid rows of one batch (its first row is source row ``offset``); the
        collisions become errors of ``validated``. Returns how many rows collided."""
        valid = validated.valid
        rows_parts: list[np.ndarray] = []
        id_parts: list[np.ndarray] = []
        payload_parts: list[np.ndarray] = []
        for group in validated.groups:
            if EVENT_ID not in group.top and self.deriver.fields is None:
                continue  # ids are the payload's hash: the same id is the same payload
            rows = np.arange(group.n) if group.rows is None else group.rows
            keep = valid[rows]
            if not keep.any():
                continue
            mask = pa.array(keep)
            top = {k: v.filter(mask) for k, v in group.top.items()}
            params = {k: v.filter(mask) for k, v in (group.params or {}).items()}
            etype = group.event_type or ""
            ids = top[EVENT_ID] if EVENT_ID in top else self.deriver.derive(etype, top, params)
            rows_parts.append(rows[keep])
            id_parts.append(_hashes(ids).view(np.int64))
            payload_parts.append(_payload_hashes(top, params, len(ids)) ^ _hashes(pa.array([etype])).view(np.int64))
        if not rows_parts:
            return 0
        rows = np.concatenate(rows_parts)
        order = np.argsort(rows, kind="stable")  # source order across event types
        rows, keys, payload = rows[order], np.concatenate(id_parts)[order], np.concatenate(payload_parts)[order]
        unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        found, old_payload, old_row = self.index.lookup(unique)
        seen = found[inverse]
        ref_payload = np.where(seen, old_payload[inverse], payload[first[inverse]])
        ref_row = np.where(seen, old_row[inverse], rows[first[inverse]] + offset)
        is_first = ~seen & (np.arange(len(rows)) == first[inverse])
        collide = ~is_first & (payload != ref_payload)
        new = ~found
        self.index.add(unique[new], payload[first[new]], rows[first[new]] + offset)
        if not collide.any():
            return 0
        kept = ref_row[collide].tolist()
        validated.errors.add(rows[collide], EVENT_ID, [
            f"row {k} has this _event_id with a different payload; the first row keeps the id, so this one is "
            f"not sent (the API would drop it)" for k in kept])
        return int(np.count_nonzero(collide))
