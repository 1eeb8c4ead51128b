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
``event_id_fields`` are checked. The index keeps 24 bytes per distinct id (64-bit hashes of id
and payload, the row number) in sorted runs merged as they grow; past ``MEMORY_KEYS`` ids the
runs go to files in a temporary directory and memory keeps 1.5 bytes per id spilled (a Bloom
filter), so the memory stays nearly flat however many ids the input has (ADR 0017).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence

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


#: keys the id index holds in memory (24 bytes each) before it writes them to a file as one run
MEMORY_KEYS = 1 << 18
#: records per block of a spilled run: what a lookup of a key reads (12 KiB)
_BLOCK = 512
#: records per buffer while a run is written or two runs are merged (384 KiB)
_CHUNK = 1 << 14
#: a spilled run's Bloom filter: bits per key, and bits set per key in its 64-bit word (about
#: 1% false positives)
_BLOOM_BITS = 12
_PROBES = 6
#: keys a spilled run looks up at a time (one block each at most)
_LOOKUP_KEYS = 256
_RECORD = np.dtype([("key", "<i8"), ("payload", "<i8"), ("row", "<i8")])


def _bloom_words(keys: np.ndarray, words: int) -> tuple[np.ndarray, np.ndarray]:
    """A key's word of a blocked Bloom filter of ``words`` 64-bit words, and the ``_PROBES``
    bits it sets there: one word per key, so a key costs one read and no ``ufunc.at``. The word
    grows with the key (its top 32 bits, scaled), so sorted keys give sorted words."""
    unsigned = keys.view(np.uint64) ^ np.uint64(1 << 63)  # signed order as unsigned order
    word = ((unsigned >> np.uint64(32)) * np.uint64(words)) >> np.uint64(32)
    mixed = _fmix(unsigned)
    mask = np.zeros(len(keys), np.uint64)
    for i in range(_PROBES):
        mask |= np.uint64(1) << ((mixed >> np.uint64(6 * i)) & np.uint64(63))
    return word.astype(np.intp), mask


class _SpilledRun:
    """A sorted run written to a file as ``_RECORD``s. In memory it keeps only the first key of
    each block of ``_BLOCK`` records (the fences) and a Bloom filter of its keys (``_BLOOM_BITS``
    per key): a key that is not in the run (nearly every key looked up) costs no read, one that
    may be costs one block, read into a small buffer (``os.pread``; a mapped file would count
    every page it touched in the process' RSS).

    Args:
        path: the file (created; removed by ``close``).
        n: how many records ``chunks`` yields, in key order.
        chunks: the records, a buffer at a time.
    """

    def __init__(self, path: str, n: int, chunks: Iterable[np.ndarray]) -> None:
        self.path = path
        self.n = n
        self.bloom = np.zeros(_BLOOM_BITS * n // 64 + 1, np.uint64)
        fences: list[np.ndarray] = []
        written = 0
        self.file = open(path, "w+b")  # noqa: SIM115 (closed by close())
        try:
            for chunk in chunks:
                keys = chunk["key"]
                fences.append(keys[(-written) % _BLOCK::_BLOCK].copy())
                word, mask = _bloom_words(keys, len(self.bloom))  # keys sorted: words sorted
                starts = np.flatnonzero(np.diff(word, prepend=-1))
                self.bloom[word[starts]] |= np.bitwise_or.reduceat(mask, starts)
                self.file.write(chunk.tobytes())
                written += len(chunk)
            self.file.flush()
        except BaseException:
            self.close()
            raise
        if written != n:
            self.close()
            raise AssertionError(f"a spilled run got {written} records, expected {n}")
        self.fences = np.concatenate(fences) if fences else np.zeros(0, np.int64)

    @property
    def nbytes(self) -> int:
        return self.bloom.nbytes + self.fences.nbytes

    def may_hold(self, keys: np.ndarray) -> np.ndarray:
        word, mask = _bloom_words(keys, len(self.bloom))
        return (self.bloom[word] & mask) == mask

    def _read(self, start: int, count: int) -> np.ndarray:
        data = os.pread(self.file.fileno(), count * _RECORD.itemsize, start * _RECORD.itemsize)
        return np.frombuffer(data, _RECORD)

    def chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, self.n, _CHUNK):
            yield self._read(start, min(_CHUNK, self.n - start))

    def lookup(self, keys: np.ndarray, found: np.ndarray, payload: np.ndarray, row: np.ndarray) -> None:
        """Fill ``found``, ``payload`` and ``row`` for the ``keys`` held here (not found yet)."""
        ask = np.flatnonzero(~found)
        ask = ask[self.may_hold(keys[ask])]
        block = np.searchsorted(self.fences, keys[ask], side="right") - 1
        ask, block = ask[block >= 0], block[block >= 0]
        for start in range(0, len(ask), _LOOKUP_KEYS):  # at most _LOOKUP_KEYS blocks read at a time
            self._lookup_blocks(keys, ask[start:start + _LOOKUP_KEYS], block[start:start + _LOOKUP_KEYS],
                                found, payload, row)

    def _lookup_blocks(self, keys: np.ndarray, ask: np.ndarray, block: np.ndarray, found: np.ndarray,
                       payload: np.ndarray, row: np.ndarray) -> None:
        blocks, rank = np.unique(block, return_inverse=True)
        records = np.empty((len(blocks), _BLOCK), _RECORD)
        sizes = np.minimum(_BLOCK, self.n - blocks * _BLOCK)
        for i, (b, size) in enumerate(zip(blocks.tolist(), sizes.tolist())):
            records[i, :size] = self._read(b * _BLOCK, size)
        # each asked key against every key of its block (a short last block: only its records)
        match = (records["key"][rank] == keys[ask][:, None]) & (np.arange(_BLOCK) < sizes[rank][:, None])
        hit = match.any(axis=1)
        held = records[rank[hit], match[hit].argmax(axis=1)]
        found[ask[hit]] = True
        payload[ask[hit]] = held["payload"]
        row[ask[hit]] = held["row"]

    def close(self) -> None:
        self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _merged_records(it_a: Iterator[np.ndarray], it_b: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """The records of two sorted runs (no key in both), given a buffer at a time, in key order,
    a buffer at a time: each step merges what both buffers hold up to the smaller of their last
    keys, so one buffer is used up per step and no more than two buffers and their merge are
    held."""
    a, b = next(it_a, None), next(it_b, None)
    while a is not None and b is not None:
        cut = min(a["key"][-1], b["key"][-1])
        i, j = int(np.searchsorted(a["key"], cut, "right")), int(np.searchsorted(b["key"], cut, "right"))
        merged = np.empty(i + j, _RECORD)  # each record placed as in _merge: no sort
        merged[np.searchsorted(b["key"][:j], a["key"][:i]) + np.arange(i)] = a[:i]
        merged[np.searchsorted(a["key"][:i], b["key"][:j]) + np.arange(j)] = b[:j]
        yield merged
        a = a[i:] if i < len(a) else next(it_a, None)
        b = b[j:] if j < len(b) else next(it_b, None)
    rest, it = (a, it_a) if a is not None else (b, it_b)
    while rest is not None:
        yield rest
        rest = next(it, None)


def _run_records(run: list[np.ndarray]) -> Iterator[np.ndarray]:
    """An in-memory run (keys, payloads, rows) as ``_RECORD``s, a buffer at a time."""
    keys, payload, rows = run
    for start in range(0, len(keys), _CHUNK):
        end = min(start + _CHUNK, len(keys))
        records = np.empty(end - start, _RECORD)
        records["key"], records["payload"], records["row"] = keys[start:end], payload[start:end], rows[start:end]
        yield records


class _SortedRuns:
    """A set of 64-bit keys, each with a payload hash and a row number, as sorted runs (numpy):
    a batch's new keys become a run, runs of similar size are merged, a lookup is a binary
    search per run. 24 bytes per key in memory, no Python object per key; a merge of two runs
    holding ``m`` keys peaks at about 40 bytes per key (``_merge``).

    Past ``memory_keys`` keys in memory, the runs in memory are written, merged as they are
    written, to one file in a temporary directory (``_SpilledRun``) and dropped from memory;
    spilled runs of similar size are merged into one file, a buffer at a time, so there are
    about log2(keys / memory_keys) of them and a key is written that many times. A spilled key
    keeps 1.5 bytes in memory (its Bloom filter). ``close`` removes the files (a finaliser does
    if it is not called).

    Args:
        memory_keys: keys held in memory before they are spilled.
        directory: where the temporary directory is made (None: the system's temporary directory).
    """

    def __init__(self, memory_keys: int = MEMORY_KEYS, directory: str | None = None) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.spilled: list[_SpilledRun] = []
        self.memory_keys = memory_keys
        self.directory = directory
        self.path: str | None = None
        self._files = 0
        self._finalizer: weakref.finalize | None = None

    @property
    def nbytes(self) -> int:
        """Bytes held in memory."""
        return sum(k.nbytes + p.nbytes + r.nbytes for k, p, r in self.runs) + sum(s.nbytes for s in self.spilled)

    def __len__(self) -> int:
        return sum(len(k) for k, _, _ in self.runs) + sum(s.n for s in self.spilled)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(found, payload, row)`` for each of the sorted, distinct ``keys`` (payload and row
        meaningful where found)."""
        found = np.zeros(len(keys), bool)
        payload = np.zeros(len(keys), np.int64)
        row = np.zeros(len(keys), np.int64)
        for run_keys, run_payload, run_rows in self.runs:
            pos = np.minimum(np.searchsorted(run_keys, keys), len(run_keys) - 1)
            hit = (run_keys[pos] == keys) & ~found
            found |= hit
            payload[hit] = run_payload[pos[hit]]
            row[hit] = run_rows[pos[hit]]
        for run in self.spilled:
            run.lookup(keys, found, payload, row)
        return found, payload, row

    def add(self, keys: np.ndarray, payload: np.ndarray, rows: np.ndarray) -> None:
        """Add keys that are not in the set yet (and distinct)."""
        if not len(keys):
            return
        order = np.argsort(keys)
        self.runs.append((keys[order], payload[order], rows[order]))
        if sum(len(k) for k, _, _ in self.runs) > self.memory_keys:
            self._spill()  # before merging in memory: the spill merges them anyway, without a copy
            return
        while len(self.runs) > 1 and len(self.runs[-2][0]) <= 2 * len(self.runs[-1][0]):
            newer = list(self.runs.pop())
            older = list(self.runs.pop())
            self.runs.append(_merge(older, newer))

    def _spill(self) -> None:
        # the runs in memory are merged as they are written (no merged copy of them in memory)
        records = _run_records(list(self.runs[0]))
        for run in self.runs[1:]:
            records = _merged_records(records, _run_records(list(run)))
        self.spilled.append(_SpilledRun(self._new_path(), sum(len(k) for k, _, _ in self.runs), records))
        self.runs = []
        while len(self.spilled) > 1 and self.spilled[-2].n <= 2 * self.spilled[-1].n:
            newer_run, older_run = self.spilled.pop(), self.spilled.pop()
            older_run.bloom = newer_run.bloom = np.zeros(1, np.uint64)  # not looked up again: memory back now
            try:
                self.spilled.append(_SpilledRun(self._new_path(), older_run.n + newer_run.n,
                                                _merged_records(older_run.chunks(), newer_run.chunks())))
            finally:
                older_run.close()
                newer_run.close()

    def _new_path(self) -> str:
        if self.path is None:
            self.path = tempfile.mkdtemp(prefix="instasent-event-ids-", dir=self.directory)
            self._finalizer = weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)
        self._files += 1
        return os.path.join(self.path, f"run-{self._files}.bin")

    def close(self) -> None:
        """Drop every run and remove the temporary directory (if any)."""
        for run in self.spilled:
            run.close()
        self.spilled, self.runs = [], []
        if self._finalizer is not None:
            self._finalizer()


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
        memory_keys: ids held in memory before the index spills them to files (``_SortedRuns``).
        directory: where the index's temporary directory is made (None: the system's).
    """

    def __init__(self, deriver: EventIdDeriver, *, memory_keys: int = MEMORY_KEYS,
                 directory: str | None = None) -> None:
        self.deriver = deriver
        self.index = _SortedRuns(memory_keys, directory)

    def close(self) -> None:
        """Drop the index and remove its files."""
        self.index.close()

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
