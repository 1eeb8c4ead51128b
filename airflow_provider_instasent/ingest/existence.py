"""Which contacts a datasource holds: the contact check of an events run, and the read-back.

The API accepts an event-only item whose ``_user_id`` the datasource does not hold and never
stores it (ingest guide, "How events flow"); with queued writes (no ``?_sync``) a contact
written a moment ago may not be applied yet either. So an events run checks, before sending,
that it can vouch for each event's contact (docs/ingest.md, "No event lost in silence";
ADR 0013):

* contacts an earlier run of the same process or DAG chain **wrote** (applied with
  ``?_sync``) are known, and contacts it **rejected** make their events rejects with that
  reason (`ContactsFrom`, read from the ``contacts_from=`` option);
* the others are looked up through public endpoints, batched and cached (`ContactCheck`):
  an audience search on ``_user_id in [...]`` (≤ 50 ids a call) settles the ids found in an
  audience contact built from this datasource alone; every other id is settled exactly by
  ``GET …/stream/contacts/{userId}`` (404: it does not exist). A token without the audience
  scope (a datasource token) uses only the exact lookup.

`read_back` is the optional reconciliation after a load (``verify=True``): accepted contacts
looked up again, accepted events searched by ``_event_id``, through public endpoints only.
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..client.errors import NotFoundError, PermissionDeniedError
from .specs import USER_ID

log = logging.getLogger(__name__)

#: Ids per audience or event search (the API's search limit).
SEARCH_BATCH = 50
#: Cached answers kept before the cache starts over (a bound on memory in huge runs).
CACHE_SIZE = 1_000_000
#: How long ``verify=True`` keeps reading back what is still missing (queued writes), seconds.
VERIFY_WAIT_S = 30.0


def _attrs(entity: Mapping[str, Any]) -> Mapping[str, Any]:
    data = entity.get("attributesData")
    return data if isinstance(data, Mapping) else entity


@dataclass
class ContactsFrom:
    """What earlier contacts runs of this run or chain say about contacts.

    ``written``: user ids written with ``?_sync`` (applied before their response), so known;
    ``rejected``: user id -> the reason its contact row was rejected.
    """

    written: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, sources: Any) -> ContactsFrom:
        """From an ``IngestReport`` of a contacts run, a rejects DataFrame or table, the
        ``rejects_path`` Parquet of such a run, or a list of these."""
        out = cls()
        items = sources if isinstance(sources, (list, tuple)) else [sources]
        for source in items:
            if source is None:
                continue
            out._add(source)
        # a user written by a later row is known, whatever an earlier row of it did
        for uid in out.written:
            out.rejected.pop(uid, None)
        return out

    def _add(self, source: Any) -> None:
        written = getattr(source, "written_user_ids", None)
        if written is not None or hasattr(source, "reject_entries"):  # an IngestReport
            if getattr(source, "kind", "contacts") != "contacts":
                raise ValueError("contacts_from= takes the report of a contacts run")
            self.written.update(written or ())
            truncated = getattr(source, "rejects_truncated", False)
            path = getattr(source, "rejects_path", None)
            self._rejects(_read_parquet(path) if truncated and path else source.rejects)
            return
        if hasattr(source, "columns") or hasattr(source, "schema"):  # a DataFrame or an Arrow table
            self._rejects(source)
            return
        self._rejects(_read_parquet(source))

    def _rejects(self, frame: Any) -> None:
        import pyarrow as pa

        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        names = set(table.column_names)
        if USER_ID not in names or "reason" not in names:
            raise ValueError(f"contacts_from=: rejects need the columns {USER_ID!r} and 'reason' "
                             f"(got {', '.join(table.column_names)})")
        users = table.column(USER_ID).to_pylist()
        reasons = table.column("reason").to_pylist()
        fields_ = table.column("field").to_pylist() if "field" in names else [""] * len(users)
        stages = table.column("stage").to_pylist() if "stage" in names else ["local"] * len(users)
        for uid, f, reason, stage in zip(users, fields_, reasons, stages):
            # a dropped value (stage "dropped") did not cost the row; a failed request is no verdict
            if uid is None or stage not in ("local", "api") or str(reason).startswith("request failed"):
                continue
            self.rejected.setdefault(str(uid), f"{f}: {reason}" if f else str(reason))


def _read_parquet(path: Any) -> Any:
    import pyarrow as pa

    from ..io.parquet import discover, open_parquet

    tables = [open_parquet(loc).read() for loc in discover(path)]
    if not tables:
        raise ValueError(f"contacts_from=: no rejects file at {path}")
    return pa.concat_tables(tables, promote_options="default")


class _Lookups:
    """Threads that run lookups in order of priority (lowest first, then FIFO): an exact
    lookup that a search left over runs before the searches of later ids."""

    def __init__(self, threads: int) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], None] | None]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = [threading.Thread(target=self._work, name=f"instasent-check-{i}", daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, task: Callable[[], None]) -> None:
        self._queue.put((priority, next(self._seq), task))

    def close(self) -> None:
        """Drop the queued lookups and stop the threads once the running ones are done."""
        with self._queue.mutex:
            self._queue.queue.clear()
        for _ in self._threads:
            self._queue.put((-1, next(self._seq), None))
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while True:
            _, _, task = self._queue.get()
            if task is None:
                return
            try:
                task()  # settles its futures, errors included
            except Exception:  # a bug, not a lookup's error: keep the thread for the others
                log.exception("instasent contact check: a lookup task failed")


def _answer(future: Future[dict[str, Any]], uid: str) -> bool:
    """Whether ``uid`` exists, from its search batch's future; raises its lookup's error."""
    answer = future.result()[uid]
    if isinstance(answer, BaseException):
        raise answer
    return bool(answer)


class ContactCheck:
    """Settles whether each ``_user_id`` has a contact in the datasource (see the module doc).

    Lookups run on up to ``max_in_flight`` threads of their own, ahead of the sends: ``ahead``
    starts them without waiting (the engine calls it with a whole batch's ids), ``missing``
    waits only for the searches of the ids it is asked about (an id's search waits for the
    exact lookups of the ids it left over), so the first events of a batch can be sent while
    the lookups of its later ones are still on the wire. ``calls`` counts the API calls made
    (searches and lookups), ``looked_up`` the ids asked about. ``close`` stops the threads.
    """

    def __init__(self, client: Any, datasource: str | None, *, max_in_flight: int = 4,
                 contacts_from: ContactsFrom | None = None) -> None:
        self.client = client
        self.datasource = datasource or getattr(client, "datasource", None)
        self.max_in_flight = max(1, max_in_flight)
        self.chain = contacts_from or ContactsFrom()
        # the cache of answers, as two sets: ``missing`` settles a part by set difference
        self._found: set[str] = set()
        self._absent: set[str] = set()
        self._pending: dict[str, Future[dict[str, Any]]] = {}
        self._search = True
        self._lock = threading.Lock()
        self._pool: _Lookups | None = None
        self._order = itertools.count()  # the priority of the next ids asked about
        self.calls = 0
        self.looked_up = 0
        # Connections for the lookups beside the sends', reserved now: the client remounts its
        # adapter to grow the pool, which must not happen while other threads send.
        reserve = getattr(client, "reserve_connections", None)
        if callable(reserve):
            reserve(max(getattr(client, "pool_size", 0), max_in_flight) + self.max_in_flight)

    def ahead(self, user_ids: Iterable[str]) -> None:
        """Start looking up the ids of ``user_ids`` not settled yet; does not wait."""
        unique = dict.fromkeys(user_ids)
        # set arithmetic first: once the run has seen its users, nearly every id is settled
        new = unique.keys() - self._found - self._absent - self._pending.keys()
        if not new:
            return
        chain = self.chain
        ask = [uid for uid in unique if uid in new and uid not in chain.written and uid not in chain.rejected]
        if ask:
            self._pending.update(self._start(ask))

    def missing(self, user_ids: Iterable[str]) -> dict[str, str]:
        """The ids of ``user_ids`` whose events would not be stored, each with its reason.

        Waits for the lookups of these ids (started here unless ``ahead`` started them); a
        lookup that failed after the client's retries raises its error.
        """
        # an id found to exist is never in the chain's sets (``ahead`` does not look those up)
        asked = dict.fromkeys(user_ids)
        rest = asked.keys() - self._found
        if not rest:
            return {}
        unique = [uid for uid in asked if uid in rest]  # in the order asked: the lookups' priority
        self.ahead(unique)
        out: dict[str, str] = {}
        for uid in unique:
            if uid in self.chain.written:
                continue
            reason = self.chain.rejected.get(uid)
            if reason is not None:
                out[uid] = f"contact {uid!r} was rejected earlier in this run or chain ({reason})"
                continue
            pending = self._pending.get(uid)
            if pending is not None:
                exists = _answer(pending, uid)  # raises the lookup's error
                del self._pending[uid]
                self._remember(uid, exists)
            if uid in self._absent:
                out[uid] = f"contact {uid!r} does not exist in datasource {self.datasource!r}"
        return out

    def rejected_in_chain(self, uid: str) -> bool:
        """Whether an earlier run of this run or chain rejected ``uid``'s contact row."""
        return uid in self.chain.rejected

    def _remember(self, uid: str, exists: bool) -> None:
        if len(self._found) + len(self._absent) >= CACHE_SIZE:
            self._found.clear()
            self._absent.clear()
        (self._found if exists else self._absent).add(uid)

    def forget(self, user_ids: Iterable[str]) -> None:
        """Drop cached answers (the read-back asks again)."""
        for uid in user_ids:
            self._found.discard(uid)
            self._absent.discard(uid)

    def lookup(self, user_ids: Sequence[str]) -> dict[str, bool]:
        """Ask the API now, cache aside: ``{user id: exists}`` for every id (searches first,
        exact lookups for the rest); a lookup that failed raises its error."""
        futures = self._start(list(dict.fromkeys(user_ids)))
        return {uid: _answer(future, uid) for uid, future in futures.items()}

    def close(self) -> None:
        """Stop the lookup threads (lookups not started are dropped)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    # -- the lookups, on the check's threads ---------------------------------------------------
    def _start(self, user_ids: Sequence[str]) -> dict[str, Future[dict[str, Any]]]:
        """For each id, the future of its search batch (up to ``SEARCH_BATCH`` ids): it is
        settled with ``{id: exists}`` for the whole batch once the search and the exact lookups
        of the ids it left over (run before the searches of later ids) are done. One future per
        batch, not per id: a run's check settles its ids in bulk on the engine's thread."""
        self.looked_up += len(user_ids)
        futures: dict[str, Future[dict[str, Any]]] = {}
        for i in range(0, len(user_ids), SEARCH_BATCH):
            batch = list(user_ids[i:i + SEARCH_BATCH])
            future: Future[dict[str, Any]] = Future()
            futures.update(dict.fromkeys(batch, future))
            priority = next(self._order)
            if self._search:
                self._submit(priority, self._search_task, priority, batch, future)
            else:
                self._exact(priority, batch, {}, future)
        return futures

    def _submit(self, priority: int, task: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = _Lookups(self.max_in_flight)
            pool = self._pool
        pool.submit(priority, functools.partial(self._run, task, args))

    def _run(self, task: Callable[..., None], args: tuple[Any, ...]) -> None:
        # counted when made: lookups still queued when the run stops are dropped, never sent
        with self._lock:
            self.calls += 1
        task(*args)

    def _search_task(self, priority: int, batch: list[str], future: Future[dict[str, Any]]) -> None:
        found: dict[str, bool] = {}
        if self._search:
            try:
                found = self._search_batch(batch)
            except PermissionDeniedError:  # no audience scope: exact lookups only
                self._search = False
            except BaseException as exc:
                future.set_exception(exc)
                return
        self._exact(priority, [uid for uid in batch if not found.get(uid)], found, future)

    def _exact(self, priority: int, uids: list[str], settled: dict[str, Any],
               future: Future[dict[str, Any]]) -> None:
        """Look ``uids`` up one by one (on the check's threads); ``future`` gets ``settled``
        plus their answers once the last one is in. A lookup's error is that id's answer (the
        exception, raised by ``missing`` for it alone): an invalid raw id looked up ahead must
        not cost the valid ids of its batch their answer."""
        if not uids:
            future.set_result(settled)
            return
        left = len(uids)

        def one(uid: str) -> None:
            nonlocal left
            answer: Any
            try:
                answer = self._get_one(uid)
            except BaseException as exc:
                answer = exc
            with self._lock:
                settled[uid] = answer
                left -= 1
                if left == 0 and not future.done():
                    future.set_result(settled)

        for uid in uids:
            self._submit(priority, one, uid)

    def _search_batch(self, batch: list[str]) -> dict[str, bool]:
        """Ids found in an audience contact built from this datasource only (exact); the others
        are left to ``_get_one``."""
        root = {"type": "attribute_condition", "key": USER_ID, "operator": "in", "values": batch}
        entities = self.client.search_audience(root, limit=SEARCH_BATCH)
        wanted = set(batch)
        out: dict[str, bool] = {}
        for entity in entities:
            attrs = _attrs(entity)
            uid = attrs.get(USER_ID)
            sources = {str(s) for s in (attrs.get("_datasources") or [])}
            if uid in wanted and sources == {str(self.datasource)}:
                out[str(uid)] = True
        return out

    def _get_one(self, uid: str) -> bool:
        try:
            contact = self.client.get_contact(uid, datasource=self.datasource)
        except NotFoundError:
            return False
        return not bool(contact.get("deleted"))


@dataclass
class ReadBack:
    """The outcome of ``read_back``: accepted rows found stored, and the ones not found."""

    checked: int = 0
    found: int = 0
    missing: list[int] = field(default_factory=list)
    calls: int = 0


def read_back(client: Any, kind: str, accepted: Mapping[int, tuple[str, str | None]], *,
              datasource: str | None, max_in_flight: int = 4, wait_s: float = VERIFY_WAIT_S,
              sleep: Callable[[float], None] = time.sleep) -> ReadBack:
    """Read back accepted rows (``{source row: (user id, event id)}``) through public endpoints.

    Contacts: each ``_user_id`` looked up as the contact check does. Events: searched by
    ``_event_id`` (≤ 50 a call). What is not found is asked again, with a growing pause, for up
    to ``wait_s`` seconds (queued writes are applied late).
    """
    out = ReadBack(checked=len(accepted))
    pending = dict(accepted)
    check = ContactCheck(client, datasource, max_in_flight=max_in_flight)
    try:
        _read_back(check, client, kind, pending, out, wait_s, sleep)
    finally:
        check.close()
    out.calls += check.calls
    out.missing = sorted(pending)
    return out


def _read_back(check: ContactCheck, client: Any, kind: str, pending: dict[int, tuple[str, str | None]],
               out: ReadBack, wait_s: float, sleep: Callable[[float], None]) -> None:
    deadline = time.monotonic() + wait_s
    pause = 0.25
    while pending:
        if kind == "contacts":
            found_ids = {uid for uid, ok in check.lookup(list({u for u, _ in pending.values()})).items() if ok}
            stored = [row for row, (uid, _) in pending.items() if uid in found_ids]
        else:
            found_ids = _stored_event_ids(client, [e for _, e in pending.values() if e], out, check.datasource)
            stored = [row for row, (_, eid) in pending.items() if eid in found_ids]
        for row in stored:
            del pending[row]
        out.found += len(stored)
        if not pending or time.monotonic() + pause > deadline:
            break
        sleep(pause)
        pause = min(pause * 2, 4.0)


def _stored_event_ids(client: Any, event_ids: Sequence[str], out: ReadBack, datasource: str | None) -> set[str]:
    found: set[str] = set()
    unique = list(dict.fromkeys(event_ids))
    for i in range(0, len(unique), SEARCH_BATCH):
        batch = unique[i:i + SEARCH_BATCH]
        root = {"type": "event_condition", "key": "_event_id", "operator": "in", "values": batch}
        out.calls += 1
        for entity in client.search_events(root, limit=SEARCH_BATCH):
            eid = entity.get("_event_id")
            source = entity.get("datasource")
            if eid is not None and (source is None or datasource is None or str(source) == str(datasource)):
                found.add(str(eid))
    return found
