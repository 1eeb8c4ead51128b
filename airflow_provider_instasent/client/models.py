"""Small typed results returned by the client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import endpoints as ep


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
    def from_body(cls, status: int, body: Any, n_items: int | None = None) -> PushResult:
        """Parse either documented push-result shape (see api-facts.md, shapes A and B)."""
        if not isinstance(body, Mapping):
            body = {}
        accepted: list[int] = []
        errors: list[ItemError] = []
        if ep.ACCEPTED in body or ep.ERRORS in body:  # shape A: accepted/errors by position
            for entry in body.get(ep.ACCEPTED) or []:
                if isinstance(entry, Mapping) and ep.POSITION in entry:
                    accepted.append(int(entry[ep.POSITION]))
            for entry in body.get(ep.ERRORS) or []:
                if not isinstance(entry, Mapping):
                    continue
                fields = entry.get(ep.ERRORS)
                errors.append(
                    ItemError(
                        position=int(entry.get(ep.POSITION, -1)),
                        message=str(entry.get(ep.ERROR) or entry.get(ep.MESSAGE) or "rejected"),
                        fields={str(k): [str(x) for x in (v if isinstance(v, list) else [v])]
                                for k, v in fields.items()} if isinstance(fields, Mapping) else {},
                        item=entry.get(ep.ITEM),
                    )
                )
        elif isinstance(body.get(ep.ENTITY), Mapping) and "items" in body[ep.ENTITY]:  # shape B
            for pos, entry in enumerate(body[ep.ENTITY]["items"]):
                if entry.get("status") == "success":
                    accepted.append(pos)
                else:
                    fields = entry.get(ep.ERRORS) or {}
                    flat = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])]
                            for k, v in fields.items()}
                    message = "; ".join(f"{k}: {', '.join(v)}" for k, v in flat.items()) or "rejected"
                    errors.append(ItemError(pos, message, flat, entry))
        elif n_items is not None and 200 <= status < 300:
            accepted = list(range(n_items))
        return cls(status, accepted, errors, bool(body.get(ep.DRY_RUN, False)), body)


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
