"""Small typed results returned by the client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import endpoints as ep
from .errors import InstasentProtocolError, redact_value


@dataclass(frozen=True)
class ApiResponse:
    """A decoded response: status, JSON body (or text), headers."""

    status: int
    data: Any
    headers: Mapping[str, str]


@dataclass(frozen=True)
class ItemError:
    """One rejected item of a push: its 0-based position in the batch and every reason.

    ``fields`` maps a field name (``_email``, ``_event_parameters.amount``) to its reasons;
    ``message`` is the API's text.
    """

    position: int
    message: str
    fields: Mapping[str, list[str]] = field(default_factory=dict)
    item: Any = None

    def reasons(self) -> list[tuple[str, str]]:
        """``(field, reason)`` pairs; ``("", message)`` when the API named no field."""
        pairs = [(name, reason) for name, reasons in self.fields.items() for reason in reasons]
        return pairs or [("", self.message)]


@dataclass(frozen=True)
class PushResult:
    """What the API did with one ingest batch (contacts, events or a delete)."""

    status: int
    accepted: list[int]
    errors: list[ItemError]
    dry_run: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    @classmethod
    def from_body(cls, status: int, body: Any, n_items: int | None = None, *, method: str = "POST",
                  endpoint: str = "push", secrets: tuple[str, ...] = ()) -> PushResult:
        """Parse either documented push-result shape (see api-facts.md, shapes A and B).

        Only what the answer says counts: an item is accepted when the body names its position
        in ``accepted`` (or, when the body has no ``accepted`` list, when ``entitiesSuccess``
        says every item was). A 2xx body that is not such a result, or whose positions or counts
        contradict each other, raises ``InstasentProtocolError`` (never "all accepted").
        A ``204 No Content`` is the one answer without a body that means success. Every string
        of the answer is redacted of ``secrets`` (the token) and of bearer tokens before it is
        kept: per-item errors reach reports, rejects files and XComs.
        """
        def bad(problem: str) -> InstasentProtocolError:
            return InstasentProtocolError(method, endpoint, status, problem)

        if status == 204 and not body:
            return cls(status, list(range(n_items or 0)), [], False, {})
        if not isinstance(body, Mapping):
            raise bad("its body is not a JSON object")
        if body.get(ep.ERRORS) or ep.ENTITY in body:
            # errors are kept (reports, rejects): never the token. The accepted entries (positions
            # and the echoed items) reach no report, and are most of a large body: left as sent.
            body = {k: v if k == ep.ACCEPTED else redact_value(v, secrets) for k, v in body.items()}
        accepted: list[int] = []
        errors: list[ItemError] = []
        if ep.ACCEPTED in body or ep.ERRORS in body:  # shape A: accepted/errors by position
            for entry in body.get(ep.ACCEPTED) or []:
                # type() first: JSON objects are dicts, and an ABC check costs more than the rest
                mapping = type(entry) is dict or isinstance(entry, Mapping)
                if not mapping or not isinstance(entry.get(ep.POSITION), int):
                    raise bad(f"an accepted entry has no position: {str(entry)[:80]!r}")
                accepted.append(entry[ep.POSITION])
            for entry in body.get(ep.ERRORS) or []:
                if not isinstance(entry, Mapping):
                    continue
                fields = entry.get(ep.ERRORS)  # optional detail (the emulator sends it)
                errors.append(
                    ItemError(
                        position=int(entry.get(ep.POSITION, -1)),
                        message=str(entry.get(ep.ERROR) or entry.get(ep.MESSAGE) or "rejected"),
                        fields={str(k): [str(x) for x in (v if isinstance(v, list) else [v])]
                                for k, v in fields.items()} if isinstance(fields, Mapping) else {},
                        item=entry.get(ep.ITEM),
                    )
                )
            if ep.ACCEPTED not in body and isinstance(body.get(ep.ENTITIES_SUCCESS), int) and n_items \
                    and body[ep.ENTITIES_SUCCESS] == n_items and not errors:
                accepted = list(range(n_items))
        elif isinstance(body.get(ep.ENTITY), Mapping) and isinstance(body[ep.ENTITY].get("items"), list):  # shape B
            for pos, entry in enumerate(body[ep.ENTITY]["items"]):
                if isinstance(entry, Mapping) and entry.get("status") == "success":
                    accepted.append(pos)
                else:
                    fields = (entry.get(ep.ERRORS) if isinstance(entry, Mapping) else None) or {}
                    flat = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])]
                            for k, v in fields.items()}
                    message = "; ".join(f"{k}: {', '.join(v)}" for k, v in flat.items()) or "rejected"
                    errors.append(ItemError(pos, message, flat, entry))
        elif isinstance(body.get(ep.ENTITIES_SUCCESS), int) and n_items is not None \
                and body[ep.ENTITIES_SUCCESS] == n_items and not body.get(ep.ENTITIES_FAILURES):
            accepted = list(range(n_items))  # counts only, every item a success: evidence enough
        else:
            raise bad("its body is not a push result (no accepted/errors, no entity.items, no entitiesSuccess)")
        cls._check(bad, accepted, errors, body, n_items)
        return cls(status, accepted, errors, bool(body.get(ep.DRY_RUN, False)), body)

    @staticmethod
    def _check(bad: Any, accepted: list[int], errors: list[ItemError], body: Mapping[str, Any],
               n_items: int | None) -> None:
        """Each item at most once, inside the request, and the counts agree with the positions."""
        positions = accepted + [e.position for e in errors if e.position >= 0]
        if len(set(positions)) != len(positions):
            raise bad("it names an item twice")
        if n_items is not None and any(not 0 <= p < n_items for p in positions):
            raise bad(f"it names a position outside the {n_items} items sent")
        success = body.get(ep.ENTITIES_SUCCESS)
        if isinstance(success, int) and ep.ACCEPTED in body and success != len(accepted):
            raise bad(f"entitiesSuccess is {success} but {len(accepted)} items are listed as accepted")


@dataclass(frozen=True)
class ScrollPage:
    """One page of a cursor scroll."""

    entities: list[dict[str, Any]]
    cursor: str | None
    total_hits: int | None


@dataclass(frozen=True)
class RawScrollPage:
    """One page of a cursor scroll as the API sent it: the JSON body, not decoded.

    Only the page's ``metadata`` (cursor, total) is read; ``content`` is the whole body
    (``{"entities": [...], "metadata": {...}}``), for readers that parse it straight into
    another format (the export engine parses it into Arrow). ``has_entities`` says whether
    the page's ``entities`` is non-empty (an empty page ends the scroll).
    """

    content: bytes
    cursor: str | None
    total_hits: int | None
    has_entities: bool = True
