"""The unified audience: datasource contacts merged into audience contacts.

Datasource contacts that share ``_user_id`` or the normalised value of any merging
attribute (``_email`` lower-cased, ``_phone_mobile`` without punctuation or ``+``) belong to
one audience contact; the relation is transitive (connected components). When datasources
disagree, the non-null value of the highest-priority datasource wins (ties: the most
recently updated contact). The audience id of a component is the id minted for its oldest
member, so it stays stable while that member stays in the component.

Records are immutable and replaced on every change, so a scroll snapshot (a list of
references) never sees a half-updated contact. The caller (the store) holds the lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .validation import iso_ms, normalize_email, phone_key

Key = tuple[str, str]  # (datasource uid, _user_id)
IndexKey = tuple[str, str]  # (merging attribute, normalised value)


@dataclass(slots=True)  # treated as immutable; not frozen because frozen __init__ is slow
class DsContact:
    """One contact as it arrived in one datasource (``data`` includes ``_user_id``)."""

    key: Key
    num: int  # the contact's id, formatted when it is read
    seq: int
    origin_aid: str
    data: Mapping[str, Any]
    created_at: float
    updated_at: float
    update_seq: int
    # its merge keys (AudienceIndex.index_keys), set by AudienceIndex.put as the record is stored
    ikeys: tuple[IndexKey, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.num:024x}"


@dataclass(slots=True)  # treated as immutable; not frozen because frozen __init__ is slow
class AudienceContact:
    id: str
    attrs: Mapping[str, Any]
    members: tuple[DsContact, ...]
    datasources: tuple[str, ...]
    audience_ids: tuple[str, ...]
    created_at: float
    updated_at: float
    indexed_at: float

    @property
    def keys(self) -> tuple[Key, ...]:
        return tuple(m.key for m in self.members)

    @property
    def ds_contact_ids(self) -> list[str]:
        return [m.id for m in self.members]

    @property
    def user_ids(self) -> set[str]:
        return {m.key[1] for m in self.members}


def merge_values(attribute: str, value: Any) -> list[str]:
    """Normalised merge keys of one attribute value (several for a multi-valued one)."""
    values = value if isinstance(value, list) else [value]
    out: list[str] = []
    for v in values:
        if v is None or v == "":
            continue
        if attribute == "_email":
            out.append(normalize_email(v))
        elif attribute == "_phone_mobile":
            key = phone_key(v)
            if key:
                out.append(key)
        else:
            out.append(str(v).strip())
    return out


def _scalar_merge_key(attribute: str) -> Callable[[Any], str | None]:
    """``merge_values(attribute, value)`` of one non-null scalar value: its key, or None."""
    if attribute == "_email":
        return lambda v: None if v == "" else normalize_email(v)
    if attribute == "_phone_mobile":
        return lambda v: None if v == "" else (phone_key(v) or None)
    return lambda v: None if v == "" else str(v).strip()


def _full_name(attrs: Mapping[str, Any]) -> str | None:
    """The ``_full_name`` to add to an audience contact: its first and last names joined (None:
    it has one already, or no names)."""
    if "_full_name" in attrs:
        return None
    if "_first_name" in attrs:
        first = str(attrs["_first_name"])
        return first + " " + str(attrs["_last_name"]) if "_last_name" in attrs else first
    if "_last_name" in attrs:
        return str(attrs["_last_name"])
    return None


class AudienceIndex:
    """Datasource contacts, the merge index and the audience contacts built from them."""

    def __init__(self, merging: Sequence[str], priority: Callable[[str], int]) -> None:
        self.merging = tuple(merging)
        self.priority = priority
        self.contacts: dict[Key, DsContact] = {}
        self.audience: dict[str, AudienceContact] = {}
        self.member_of: dict[Key, str] = {}
        # merge key -> the contact holding it, or a set of them when several do (a key held by one
        # contact, most of them, costs no set: a set is a 200-byte object the collector tracks)
        self._index: dict[IndexKey, Key | set[Key]] = {}
        # audience id minted for a contact -> that contact, for the members of a merged component
        # (a contact alone, or the oldest of its component, is found under its own id in audience)
        self._origin: dict[str, Key] = {}
        # (merging attribute, the merge key of one scalar value) for index_keys
        self._merge_keys = tuple((a, _scalar_merge_key(a)) for a in dict.fromkeys(self.merging) if a != "_user_id")

    def resolve(self, audience_id: str) -> AudienceContact | None:
        """The audience contact with this id, or the one it was merged into."""
        contact = self.audience.get(audience_id)
        if contact is None:
            key = self._origin.get(audience_id)
            aid = self.member_of.get(key) if key is not None else None
            contact = self.audience.get(aid) if aid is not None else None
        return contact

    def _holders(self, ik: IndexKey) -> Iterable[Key]:
        """The contacts holding merge key ``ik``."""
        found = self._index.get(ik)
        if found is None:
            return ()
        return found if isinstance(found, set) else (found,)

    def index_keys(self, contact: DsContact) -> tuple[IndexKey, ...]:
        keys: list[IndexKey] = [("_user_id", contact.key[1])]
        data = contact.data
        several = False  # a multi-valued attribute may repeat a key
        for attr, one in self._merge_keys:
            value = data.get(attr)
            if value is None:
                continue
            if type(value) is list:
                keys.extend((attr, v) for v in merge_values(attr, value))
                several = True
            else:
                v = one(value)
                if v is not None:
                    keys.append((attr, v))
        return tuple(dict.fromkeys(keys)) if several else tuple(keys)

    def put(self, contact: DsContact, now: float) -> None:
        key = contact.key
        new_keys = contact.ikeys = self.index_keys(contact)
        old = self.contacts.get(key)
        self.contacts[key] = contact
        if old is None:
            index = self._index
            for ik in new_keys:
                if index.setdefault(ik, key) is not key:  # held already: not alone, undo
                    for taken in new_keys:
                        if taken == ik:
                            break
                        del index[taken]
                    break
            else:  # a new contact that shares no key (most of a load): a component of its own
                self._build_one(contact, now)
                return
        elif old.ikeys == new_keys:
            self._build(self.audience.pop(self.member_of[key]).keys, now)
            return
        self._relink(key, old.ikeys if old is not None else (), new_keys, now)

    def remove(self, key: Key, now: float) -> DsContact | None:
        contact = self.contacts.pop(key, None)
        if contact is not None:
            self._origin.pop(contact.origin_aid, None)
            self._relink(key, contact.ikeys, (), now)
        return contact

    def _relink(
        self, key: Key, old_keys: tuple[IndexKey, ...], new_keys: tuple[IndexKey, ...], now: float
    ) -> None:
        affected: set[str] = set()
        aid = self.member_of.get(key)
        if aid is not None:
            affected.add(aid)
        index = self._index
        for ik in old_keys:
            bucket = index.get(ik)
            if bucket is None:
                continue
            if not isinstance(bucket, set):
                if bucket == key:
                    del index[ik]
                continue
            bucket.discard(key)
            if len(bucket) == 1:
                index[ik] = next(iter(bucket))
            elif not bucket:
                del index[ik]
        alone = True  # no other contact shares a key: the component is this contact alone
        if new_keys:
            for ik in new_keys:
                bucket = index.get(ik)
                if bucket is None:
                    index[ik] = key
                    continue
                if not isinstance(bucket, set):
                    if bucket == key:
                        continue
                    bucket = index[ik] = {bucket}
                for other in bucket:
                    if other != key:
                        alone = False
                        other_aid = self.member_of.get(other)
                        if other_aid is not None:
                            affected.add(other_aid)
                bucket.add(key)
        was = self.audience.get(aid) if aid is not None else None
        if alone and key in self.contacts and (aid is None or (was is not None and len(was.members) == 1)):
            # The common case of a load (a new contact, or one that was alone and stays alone):
            # no graph to walk. Same result as the general path below.
            if aid is not None:
                del self.audience[aid]
            self._build((key,), now)
            return
        seeds: list[Key] = []
        for a in affected:
            old = self.audience.pop(a, None)
            if old is not None:
                seeds.extend(old.keys)
        if key in self.contacts:
            seeds.append(key)
        for s in seeds:
            self.member_of.pop(s, None)
        seen: set[Key] = set()
        for s in seeds:
            if s in seen or s not in self.contacts:
                continue
            component: list[Key] = []
            stack = [s]
            seen.add(s)
            while stack:
                k = stack.pop()
                component.append(k)
                member = self.contacts.get(k)
                for ik in member.ikeys if member is not None else ():
                    for nb in self._holders(ik):
                        if nb not in seen:
                            seen.add(nb)
                            stack.append(nb)
                            stray = self.member_of.get(nb)
                            if stray is not None:  # defensive: never expected
                                old = self.audience.pop(stray, None)
                                if old is not None:
                                    for sk in old.keys:
                                        self.member_of.pop(sk, None)
                                        if sk not in seen:
                                            seen.add(sk)
                                            stack.append(sk)
            self._build(component, now)

    def _build(self, component: Iterable[Key], now: float) -> AudienceContact:
        if isinstance(component, tuple) and len(component) == 1:
            return self._build_one(self.contacts[component[0]], now)
        prio = self.priority
        members = sorted((self.contacts[k] for k in component), key=lambda c: (prio(c.key[0]), -c.update_seq))
        oldest = min(members, key=lambda c: c.seq)
        aid = oldest.origin_aid
        attrs: dict[str, Any] = {}
        for m in members:
            for k, v in m.data.items():
                if k not in attrs:
                    attrs[k] = v
        updated = max(m.updated_at for m in members)
        attrs["_date_updated"] = iso_ms(updated)
        full_name = _full_name(attrs)
        if full_name is not None:
            attrs["_full_name"] = full_name
        datasources = tuple(dict.fromkeys(m.key[0] for m in members))
        others = sorted({m.origin_aid for m in members} - {aid})
        contact = AudienceContact(
            id=aid,
            attrs=attrs,
            members=tuple(members),
            datasources=datasources,
            audience_ids=(aid, *others),
            created_at=min(m.created_at for m in members),
            updated_at=updated,
            indexed_at=now,
        )
        self.audience[aid] = contact
        for m in members:
            self.member_of[m.key] = aid
            self._origin[m.origin_aid] = m.key
        return contact

    def _build_one(self, m: DsContact, now: float) -> AudienceContact:
        """``_build`` of a component of one contact (what most of a load builds)."""
        # The store writes a contact's ``_date_updated`` as iso_ms(updated_at) (_build's value), so
        # its data is the audience contact's attributes as they are, shared (both are immutable)
        # unless a _full_name is added.
        full_name = _full_name(m.data)
        attrs = m.data if full_name is None else {**m.data, "_full_name": full_name}
        aid = m.origin_aid
        contact = AudienceContact(aid, attrs, (m,), (m.key[0],), (aid,), m.created_at, m.updated_at, now)
        self.audience[aid] = contact
        self.member_of[m.key] = aid
        return contact

    def with_user_ids(self, user_ids: Iterable[str]) -> list[AudienceContact]:
        """Audience contacts built from a datasource contact keyed by one of ``user_ids``."""
        found: dict[str, AudienceContact] = {}
        for uid in user_ids:
            for k in self._holders(("_user_id", uid)):
                aid = self.member_of.get(k)
                if aid is not None and aid in self.audience:
                    found[aid] = self.audience[aid]
        return list(found.values())

    def find(self, attribute: str, value: Any) -> list[AudienceContact]:
        """Audience contacts holding ``value`` in merging ``attribute`` (normalised match)."""
        found: dict[str, AudienceContact] = {}
        for v in merge_values(attribute, value):
            for k in self._holders((attribute, v)):
                aid = self.member_of.get(k)
                if aid is not None and aid in self.audience:
                    found[aid] = self.audience[aid]
        return [found[a] for a in sorted(found)]
