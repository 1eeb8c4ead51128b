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

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..client.errors import NotFoundError, PermissionDeniedError
from .sender import BoundedPool
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


class ContactCheck:
    """Settles whether each ``_user_id`` has a contact in the datasource (see the module doc).

    ``calls`` counts the API calls it made (searches and lookups), ``looked_up`` the ids it
    asked the API about.
    """

    def __init__(self, client: Any, datasource: str | None, *, max_in_flight: int = 4,
                 contacts_from: ContactsFrom | None = None) -> None:
        self.client = client
        self.datasource = datasource or getattr(client, "datasource", None)
        self.max_in_flight = max_in_flight
        self.chain = contacts_from or ContactsFrom()
        self._exists: dict[str, bool] = {}
        self._search = True
        self.calls = 0
        self.looked_up = 0

    def missing(self, user_ids: Iterable[str]) -> dict[str, str]:
        """The ids of ``user_ids`` whose events would not be stored, each with its reason."""
        unique = list(dict.fromkeys(user_ids))
        out: dict[str, str] = {}
        ask: list[str] = []
        for uid in unique:
            if uid in self.chain.written:
                continue
            reason = self.chain.rejected.get(uid)
            if reason is not None:
                out[uid] = f"contact {uid!r} was rejected earlier in this run or chain ({reason})"
            elif uid not in self._exists:
                ask.append(uid)
        if ask:
            self._remember(self.lookup(ask))
        for uid in unique:
            if self._exists.get(uid) is False:
                out[uid] = f"contact {uid!r} does not exist in datasource {self.datasource!r}"
        return out

    def rejected_in_chain(self, uid: str) -> bool:
        """Whether an earlier run of this run or chain rejected ``uid``'s contact row."""
        return uid in self.chain.rejected

    def _remember(self, found: Mapping[str, bool]) -> None:
        if len(self._exists) + len(found) > CACHE_SIZE:
            self._exists.clear()
        self._exists.update(found)

    def forget(self, user_ids: Iterable[str]) -> None:
        """Drop cached answers (the read-back asks again)."""
        for uid in user_ids:
            self._exists.pop(uid, None)

    def lookup(self, user_ids: Sequence[str]) -> dict[str, bool]:
        """Ask the API: ``{user id: exists}`` for every id (searches first, exact lookups for the rest)."""
        self.looked_up += len(user_ids)
        found: dict[str, bool] = {}
        if self._search:
            batches = [list(user_ids[i:i + SEARCH_BATCH]) for i in range(0, len(user_ids), SEARCH_BATCH)]
            self.calls += len(batches)  # counted here, not in the pool's threads
            for _batch, result in self._parallel(self._search_batch, batches):
                if isinstance(result, PermissionDeniedError):  # no audience scope: exact lookups only
                    self._search = False
                    break
                if isinstance(result, BaseException):
                    raise result
                found.update(result)
        rest = [uid for uid in user_ids if uid not in found]
        self.calls += len(rest)
        for uid, result in self._parallel(self._get_one, rest):
            if isinstance(result, BaseException):
                raise result
            found[uid] = result
        return found

    def _parallel(self, call: Callable[[Any], Any], items: Sequence[Any]) -> list[tuple[Any, Any]]:
        if not items:
            return []
        if len(items) == 1:
            try:
                return [(items[0], call(items[0]))]
            except Exception as exc:
                return [(items[0], exc)]
        pool: BoundedPool[Any] = BoundedPool(min(self.max_in_flight, len(items)), name="instasent-check",
                                             client=self.client)
        out: list[tuple[Any, Any]] = []
        try:
            for item in items:
                for done in pool.submit(call, item):
                    out.append((done.item, done.error if done.error is not None else done.result))
            for done in pool.drain():
                out.append((done.item, done.error if done.error is not None else done.result))
        finally:
            pool.close()
        return out

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
    out.calls += check.calls
    out.missing = sorted(pending)
    return out


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
