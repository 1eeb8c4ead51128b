"""The emulator's state: datasource contacts, events, dedupe, automations log, snapshots.

One ``Store`` holds every project of a fixture. All mutation happens under
``Store.lock``; validation and JSON encoding happen outside it, so the lock is held
O(items) per batch. Records are immutable and replaced on change.
"""

from __future__ import annotations

import gc
import itertools
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .audience import AudienceContact, AudienceIndex, DsContact, Key
from .clock import Clock
from .fixture import DatasourceConfig, Fixture, ProjectConfig, TokenConfig
from .validation import (
    ContactItem,
    Errors,
    EventItem,
    Validator,
    iso_ms,
    normalize_email,
    phone_key,
)
from .writequeue import WriteQueue

T = TypeVar("T")

AUTOMATION_WINDOW_S = 3600.0
SNAPSHOT_TTL_S = 900.0
SNAPSHOT_MAX = 256
SNAPSHOT_MAX_REFS = 5_000_000


@dataclass(slots=True)  # treated as immutable; not frozen because frozen __init__ is slow
class Event:
    seq: int
    num: int  # the event's id, formatted when it is read (most stored events never are)
    event_id: str
    type: str
    date: float
    date_iso: str
    params: dict[str, Any]
    user_id: str
    ds: str
    received_at: float
    received_iso: str

    @property
    def id(self) -> str:
        return f"{self.num:024x}"

    @property
    def key(self) -> Key:
        return (self.ds, self.user_id)


@dataclass
class DatasourceState:
    """A datasource of a project at run time (configuration plus counters)."""

    config: DatasourceConfig
    created_at: float
    token: str | None = None
    received_contacts: int = 0
    received_events: int = 0
    errored_contacts: int = 0
    calls_total: int = 0
    calls_success: int = 0
    calls_failures: int = 0
    entities_success: int = 0
    entities_failures: int = 0
    last_call: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_contact_received: float | None = None
    last_event_received: float | None = None
    contact_count: int = 0

    @property
    def uid(self) -> str:
        return self.config.uid


@dataclass
class PushOutcome:
    accepted: list[int] = field(default_factory=list)
    errors: list[tuple[int, Errors]] = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    skipped: int = 0


def _priority_of(datasources: dict[str, DatasourceState]) -> Callable[[str], int]:
    def priority(ds_uid: str) -> int:
        ds = datasources.get(ds_uid)
        return ds.config.priority if ds else 1_000_000

    return priority


class ProjectState:
    def __init__(self, config: ProjectConfig, now: float, clock: Clock | None = None) -> None:
        self.config = config
        self.validator = Validator(config)  # the specs compiled once for every push
        self.clock = clock or Clock()  # the store's: relative date filters read it
        self.datasources: dict[str, DatasourceState] = {
            d.uid: DatasourceState(d, now) for d in config.datasources
        }
        # A function over the datasources dict, not the bound method: a bound method would make
        # ProjectState -> AudienceIndex -> ProjectState a reference cycle, so a reset would leave
        # the whole old store alive until a full garbage collection (docs/performance.md).
        self.audience = AudienceIndex(config.merging_attributes, _priority_of(self.datasources))
        self.events: dict[int, Event] = {}
        self.event_index: dict[str, dict[str, int]] = {}  # datasource -> _event_id -> seq
        self.events_by_contact: dict[Key, list[int]] = {}
        self.automations: list[dict[str, Any]] = []
        self.sms: dict[str, dict[str, Any]] = {}

    def priority(self, ds_uid: str) -> int:
        return self.audience.priority(ds_uid)

    def resolve_datasource(self, uid: str) -> DatasourceState | None:
        ds = self.datasources.get(uid)
        if ds is None and uid == "dsapi":  # alias: the highest-priority API datasource
            api = [d for d in list(self.datasources.values()) if d.config.type == "api"]
            if api:
                ds = min(api, key=lambda d: d.config.priority)
        return ds

    def events_of(self, contact: AudienceContact) -> list[Event]:
        out: list[Event] = []
        for key in contact.keys:
            for seq in self.events_by_contact.get(key, ()):
                ev = self.events.get(seq)
                if ev is not None:
                    out.append(ev)
        return out


class Snapshots:
    """Frozen result lists for cursor scrolls, expiring ``ttl`` seconds after their last use.

    Least recently used snapshots are evicted beyond ``max_count`` snapshots or ``max_refs``
    references in total (a snapshot is a list of references to immutable records).
    """

    def __init__(
        self, ttl: float = SNAPSHOT_TTL_S, max_count: int = SNAPSHOT_MAX, max_refs: int = SNAPSHOT_MAX_REFS
    ) -> None:
        self.ttl = ttl
        self.max_count = max_count
        self.max_refs = max_refs
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[float, str, Sequence[Any]]] = OrderedDict()
        self._refs = 0

    def create(self, owner: str, items: Sequence[Any]) -> str:
        sid = secrets.token_hex(8)
        now = time.monotonic()
        with self._lock:
            self._items[sid] = (now, owner, items)
            self._refs += len(items)
            while len(self._items) > 1 and (len(self._items) > self.max_count or self._refs > self.max_refs):
                _, (_, _, dropped) = self._items.popitem(last=False)
                self._refs -= len(dropped)
        return sid

    def get(self, sid: str, owner: str) -> Sequence[Any] | None:
        now = time.monotonic()
        with self._lock:
            entry = self._items.get(sid)
            if entry is None or entry[1] != owner:
                return None
            if now - entry[0] > self.ttl:
                del self._items[sid]
                self._refs -= len(entry[2])
                return None
            self._items[sid] = (now, entry[1], entry[2])
            self._items.move_to_end(sid)
            return entry[2]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._refs = 0


def tune_gc_for_the_store() -> None:
    """Keep the cyclic garbage collector off the store's records (a process serving one store).

    The store is a long-lived in-memory database of millions of small objects with no reference
    cycles among them (reset frees them by reference counting). Python's full collections walk
    every tracked object, so as the store grows they cost a share of every write that grows with
    it (about half the CPU of an event write at 1M stored events: docs/performance.md). Here the
    young generations still collect the short-lived cycles a request may make; only the automatic
    full collection, whose work is the store itself, is pushed out of reach. The CLI calls this;
    an emulator started in a test process leaves that process' collector alone.
    """
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, 1_000_000)
    gc.freeze()  # what was loaded at start-up (modules, the fixture) is never garbage


class Store:
    def __init__(self, fixture: Fixture, clock: Clock | None = None) -> None:
        self.fixture = fixture
        self.clock = clock or Clock()
        self.lock = threading.RLock()
        self.snapshots = Snapshots()
        self.queue = WriteQueue()
        self.projects: dict[str, ProjectState] = {}
        self.tokens: dict[str, TokenConfig] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the fixture and to real time: seeded data only, runtime datasources and tokens dropped."""
        self.clock.reset()
        now = self.clock.now()
        self.queue.clear()
        with self.lock:
            self._ids = itertools.count(1)
            self._seq = itertools.count(1)
            self.projects = {uid: ProjectState(p, now, self.clock) for uid, p in self.fixture.projects.items()}
            self.tokens = dict(self.fixture.tokens)
            for token in self.tokens.values():
                if token.kind == "datasource" and token.datasource:
                    self.projects[token.projects[0]].datasources[token.datasource].token = token.token
            self.snapshots.clear()
            for ps in self.projects.values():
                for ds_uid, items in ps.config.seed_contacts.items():
                    self.push_contacts(ps, ps.datasources[ds_uid], list(items), dry_run=False)
                for ds_uid, items in ps.config.seed_events.items():
                    self.push_events(ps, ps.datasources[ds_uid], list(items), dry_run=False)

    def next_id(self) -> str:
        return f"{next(self._ids):024x}"

    # -- ingest ------------------------------------------------------------------------------
    def _upsert(self, ps: ProjectState, ds: DatasourceState, item: ContactItem, now: float) -> DsContact:
        key = (ds.config.uid, item.user_id)
        old = ps.audience.contacts.get(key)
        seq = next(self._seq)
        changes = item.changes
        if old is None:
            data = changes  # _user_id first, as a contact's data starts
            if item.nulls:  # a null unsets: nothing to unset on a new contact
                data = {k: v for k, v in changes.items() if v is not None}
            data["_date_imported"] = data["_date_updated"] = iso_ms(now)
            ids = self._ids
            contact = DsContact(key, next(ids), seq, f"{next(ids):024x}", data, now, now, seq)
            ds.contact_count += 1
        else:
            data = dict(old.data)
            for k, v in changes.items():
                if v is None:
                    data.pop(k, None)
                else:
                    data[k] = v
            data["_date_updated"] = iso_ms(now)
            contact = DsContact(key, old.num, old.seq, old.origin_aid, data, old.created_at, now, seq)
        ps.audience.put(contact, now)
        ds.last_contact_received = now
        return contact

    def _record_call(self, ds: DatasourceState, outcome: PushOutcome, now: float) -> None:
        ds.calls_total += 1
        ds.last_call = now
        ds.entities_success += len(outcome.accepted)
        ds.entities_failures += len(outcome.errors)
        if outcome.accepted or not outcome.errors:
            ds.calls_success += 1
            ds.last_success = now
        else:
            ds.calls_failures += 1
            ds.last_failure = now

    def _push(
        self,
        ds: DatasourceState,
        checked: Sequence[tuple[T | None, Errors]],
        dry_run: bool,
        store: Callable[[list[T], float, PushOutcome], None],
        *,
        count_errors: bool = False,
        queued: bool = False,
    ) -> PushOutcome:
        """Store the valid items, in order (unless ``dry_run``), under the lock; account for the call.

        ``store(items, now, outcome)`` stores a call's valid items. ``queued``: they are stored
        later, by the write queue (a write without ``?_sync`` while a queue delay is set); the
        call itself is accounted for now.
        """
        outcome = PushOutcome()
        valid: list[T] = []
        accepted, errored = outcome.accepted, outcome.errors
        with self.lock:
            now = self.clock.now()
            for pos, (item, errors) in enumerate(checked):
                if item is None:
                    errored.append((pos, errors))
                else:
                    accepted.append(pos)
                    valid.append(item)
            if not dry_run:
                if count_errors:
                    ds.errored_contacts += len(errored)
                if valid and not queued:
                    store(valid, now, outcome)
                self._record_call(ds, outcome, now)
        if valid and queued and not dry_run:

            def apply() -> None:
                with self.lock:
                    store(valid, self.clock.now(), PushOutcome())

            self.queue.put(apply)
        return outcome

    def defer(self, apply: Callable[[], None], *, queued: bool) -> None:
        """Run ``apply`` (which takes the lock itself) now, or through the write queue."""
        if queued:
            self.queue.put(apply)
        else:
            apply()

    def queued(self, sync: bool, dry_run: bool = False) -> bool:
        """Whether a write is queued: no ``?_sync``, not a dry run, and a queue delay set."""
        return not sync and not dry_run and self.queue.enabled

    def push_contacts(
        self,
        ps: ProjectState,
        ds: DatasourceState,
        items: Sequence[Any],
        *,
        dry_run: bool,
        queued: bool = False,
        before_write: Callable[[], None] | None = None,
    ) -> PushOutcome:
        """Validate ``items`` (no lock needed), call ``before_write`` (the server's latency), store."""

        def store(contacts: list[ContactItem], now: float, outcome: PushOutcome) -> None:
            upsert = self._upsert
            for contact in contacts:
                upsert(ps, ds, contact, now)
            ds.received_contacts += len(contacts)
            outcome.stored += len(contacts)

        checked = ps.validator.contacts(items)
        if before_write is not None:
            before_write()
        return self._push(ds, checked, dry_run, store, count_errors=True, queued=queued)

    def push_events(
        self,
        ps: ProjectState,
        ds: DatasourceState,
        items: Sequence[Any],
        *,
        dry_run: bool,
        received_at: float | None = None,
        queued: bool = False,
        before_write: Callable[[], None] | None = None,
    ) -> PushOutcome:
        """Validate ``items`` (no lock needed), call ``before_write`` (the server's latency), store.

        ``received_at`` (default: the clock's now, as the request arrived) is the events' reception time.
        """
        received = self.clock.now() if received_at is None else received_at
        received_iso = iso_ms(received)

        ds_uid = ds.config.uid

        def store(items: list[EventItem], now: float, outcome: PushOutcome) -> None:
            contacts, events, by_contact = ps.audience.contacts, ps.events, ps.events_by_contact
            seen = ps.event_index.get(ds_uid)
            if seen is None:
                seen = ps.event_index[ds_uid] = {}
            seqs, ids = self._seq, self._ids
            stored = 0
            for event in items:
                user_id = event.user_id
                if event.user_data is not None:
                    self._upsert(ps, ds, event.user_data, now)
                    ds.received_contacts += 1
                key = (ds_uid, user_id)
                mine = by_contact.get(key)  # only a stored contact has events (_drop_contact)
                if mine is None and key not in contacts:
                    outcome.skipped += 1
                    continue
                event_id = event.event_id
                if event_id in seen:
                    outcome.duplicates += 1
                    continue
                seq = next(seqs)
                events[seq] = Event(
                    seq, next(ids), event_id, event.event_type, event.date, event.date_iso, event.parameters,
                    user_id, ds_uid, received, received_iso,
                )
                seen[event_id] = seq
                if mine is None:
                    by_contact[key] = [seq]
                else:
                    mine.append(seq)
                stored += 1
                if abs(event.date - received) <= AUTOMATION_WINDOW_S:
                    self._automation(ps, event, received_iso, ds_uid)
            if stored:
                ds.received_events += stored
                ds.last_event_received = now
                outcome.stored += stored

        checked = ps.validator.events(items, received, received_iso)
        if before_write is not None:
            before_write()
        return self._push(ds, checked, dry_run, store, queued=queued)

    @staticmethod
    def _automation(ps: ProjectState, event: EventItem, received_iso: str, ds_uid: str) -> None:
        """Log an event that arrived within the automation window of its date (what would trigger)."""
        ps.automations.append(
            {
                "_event_id": event.event_id,
                "_event_type": event.event_type,
                "_user_id": event.user_id,
                "_event_date": event.date_iso,
                "receivedAt": received_iso,
                "project": ps.config.uid,
                "datasource": ds_uid,
            }
        )

    def _drop_contact(self, ps: ProjectState, key: Key, now: float) -> bool:
        contact = ps.audience.remove(key, now)
        if contact is None:
            return False
        ds = ps.datasources.get(key[0])
        if ds is not None:
            ds.contact_count -= 1
        for seq in ps.events_by_contact.pop(key, ()):
            ev = ps.events.pop(seq, None)
            if ev is not None:
                ps.event_index.get(ev.ds, {}).pop(ev.event_id, None)
        return True

    def delete_contact(
        self, ps: ProjectState, ds: DatasourceState, user_id: str, *, dry_run: bool, queued: bool = False
    ) -> bool:
        key = (ds.uid, user_id)

        def apply() -> None:
            with self.lock:
                self._drop_contact(ps, key, self.clock.now())

        with self.lock:
            now = self.clock.now()
            if key not in ps.audience.contacts:
                return False
            if not dry_run:
                ds.calls_total += 1
                ds.calls_success += 1
                ds.last_call = ds.last_success = now
                if not queued:
                    self._drop_contact(ps, key, now)
        if queued and not dry_run:
            self.queue.put(apply)
        return True

    # -- audience actions ----------------------------------------------------------------------
    def delete_audience_contact(self, ps: ProjectState, audience_id: str, *, queued: bool = False) -> bool:
        with self.lock:
            if ps.audience.resolve(audience_id) is None:
                return False

        def apply() -> None:
            with self.lock:
                contact = ps.audience.resolve(audience_id)
                if contact is None:
                    return
                now = self.clock.now()
                for key in contact.keys:
                    self._drop_contact(ps, key, now)

        self.defer(apply, queued=queued)
        return True

    def set_audience_attribute(
        self, ps: ProjectState, audience_id: str, attribute: str, value: Any, *, queued: bool = False
    ) -> bool:
        """Write ``attribute`` on every datasource contact of an audience contact."""
        with self.lock:
            if ps.audience.resolve(audience_id) is None:
                return False
        self.defer(lambda: self._set_audience_attribute(ps, audience_id, attribute, value), queued=queued)
        return True

    def _set_audience_attribute(self, ps: ProjectState, audience_id: str, attribute: str, value: Any) -> None:
        with self.lock:
            contact = ps.audience.resolve(audience_id)
            if contact is None:
                return
            now = self.clock.now()
            for member in contact.members:
                current = ps.audience.contacts.get(member.key)
                if current is None:
                    continue
                data = dict(current.data)
                data[attribute] = value
                data["_date_updated"] = iso_ms(now)
                ps.audience.put(replace(current, data=data, updated_at=now, update_seq=next(self._seq)), now)

    # -- reads -----------------------------------------------------------------------------------
    def audience_snapshot(self, ps: ProjectState) -> list[AudienceContact]:
        with self.lock:
            return list(ps.audience.audience.values())

    def audience_with_user_ids(self, ps: ProjectState, user_ids: Iterable[str]) -> list[AudienceContact]:
        """Audience contacts holding a datasource contact keyed by one of ``user_ids`` (indexed)."""
        with self.lock:
            return ps.audience.with_user_ids(user_ids)

    def events_snapshot(self, ps: ProjectState) -> list[Event]:
        with self.lock:
            return list(ps.events.values())

    def find_audience(self, ps: ProjectState, attribute: str, value: Any) -> list[AudienceContact]:
        with self.lock:
            if attribute in ps.audience.merging:
                return ps.audience.find(attribute, value)
            contacts = list(ps.audience.audience.values())
        if attribute == "_phone_mobile":
            want = phone_key(value)
            return [
                c
                for c in contacts
                if c.attrs.get(attribute) is not None and phone_key(c.attrs[attribute]) == want
            ]
        if attribute == "_email":
            want = normalize_email(value)
            return [c for c in contacts if normalize_email(c.attrs.get(attribute, "")) == want]
        return [c for c in contacts if c.attrs.get(attribute) == value]

    def find_by_user(self, ps: ProjectState, value: str) -> AudienceContact | None:
        with self.lock:
            found: dict[str, AudienceContact] = {}
            for attr in ps.audience.merging:
                for c in ps.audience.find(attr, value):
                    found[c.id] = c
            for spec in ps.config.attributes.values():
                if spec.unique and spec.uid not in ps.audience.merging:
                    for c in ps.audience.audience.values():
                        if c.attrs.get(spec.uid) == value:
                            found[c.id] = c
        return found[min(found)] if found else None

    def state(self, project: str | None = None) -> dict[str, Any]:
        with self.lock:
            projects: dict[str, dict[str, Any]] = {}
            for uid, ps in self.projects.items():
                projects[uid] = {
                    "events": len(ps.events),
                    "audience_contacts": len(ps.audience.audience),
                    "contacts": {d.uid: d.contact_count for d in ps.datasources.values()},
                }
        if project is not None:
            return dict(projects[project])
        contacts: dict[str, int] = {}
        for p in projects.values():
            for ds_uid, n in p["contacts"].items():
                contacts[ds_uid] = contacts.get(ds_uid, 0) + n
        return {
            "events": sum(p["events"] for p in projects.values()),
            "audience_contacts": sum(p["audience_contacts"] for p in projects.values()),
            "contacts": contacts,
            "projects": projects,
        }

    def automations(self, project: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            out: list[dict[str, Any]] = []
            for uid, ps in self.projects.items():
                if project is None or uid == project:
                    out.extend(dict(a) for a in ps.automations)
        return out

    # -- datasources and tokens ------------------------------------------------------------------
    def create_datasource(
        self,
        ps: ProjectState,
        *,
        name: str,
        audience_tags: Iterable[str],
        description: str = "",
        tags: Iterable[str] = (),
        default_country: str | None = None,
        locale: str | None = None,
        timezone: str | None = None,
    ) -> DatasourceState:
        with self.lock:
            base = "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_") or "datasource"
            uid = base
            n = 2
            while uid in ps.datasources or uid == "dsapi":
                uid = f"{base}_{n}"
                n += 1
            all_ids = [d.config.id for p in self.projects.values() for d in p.datasources.values()]
            priority = max((d.config.priority for d in ps.datasources.values()), default=0) + 1
            config = DatasourceConfig(
                uid=uid,
                id=max(all_ids, default=0) + 1,
                name=name,
                type="api",
                priority=priority,
                audience_tags=tuple(audience_tags),
                description=description,
                tags=tuple(tags),
                default_country=default_country,
                locale=locale,
                timezone=timezone,
            )
            ds = DatasourceState(config, self.clock.now())
            token = f"ds-{uid}-{secrets.token_hex(12)}"
            ds.token = token
            token_ids = [t.id for t in self.tokens.values()]
            self.tokens[token] = TokenConfig(
                token=token,
                title=f"{name} datasource token",
                kind="datasource",
                scopes=("PROJECT_DATASOURCE_READ", "PROJECT_DATASOURCE_WRITE"),
                projects=(ps.config.uid,),
                datasource=uid,
                id=max(token_ids, default=0) + 1,
            )
            ps.datasources[uid] = ds
            return ds
