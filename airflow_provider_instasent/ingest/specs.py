"""Datasource specs, loaded once per run, as typed field specs and as JSON Schemas.

``ProjectSpecs.load(client)`` reads ``/stream/specs/attributes`` and ``/stream/specs/events``
once, and the parameter specs of an event type (``/stream/specs/event-parameters/{type}``) the
first time that type is needed. The same specs drive:

* the fast, vectorised validator (``validate``), through ``FieldSpec``;
* a JSON Schema (Draft 2020-12) per event type and for contacts, describing one API item
  after the loader's coercions (``ProjectSpecs.json_schema``); users can export it, and
  ``ProjectSpecs.validator`` gives a ``jsonschema`` validator with exact messages.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..datatypes import KINDS, DataKind, data_kind, multivalue_limit
from .errors import IngestSchemaError

if TYPE_CHECKING:
    import jsonschema

    from ..client import InstasentClient

log = logging.getLogger(__name__)

Kind = Literal["contacts", "events"]
DataType = DataKind

#: Reserved event keys. ``_event_parameters`` and ``_user_data`` are objects.
USER_ID = "_user_id"
EVENT_ID = "_event_id"
EVENT_TYPE = "_event_type"
EVENT_DATE = "_event_date"
EVENT_PARAMETERS = "_event_parameters"
USER_DATA = "_user_data"
EVENT_RESERVED = (USER_ID, EVENT_ID, EVENT_TYPE, EVENT_DATE, EVENT_PARAMETERS, USER_DATA)

#: Longest ``_user_id`` / ``_event_id`` the API takes.
MAX_ID_LENGTH = 255

#: ``dataType`` spelling -> the checks applied to it: the one table in ``datatypes``.
_TYPE_MAP: Mapping[str, DataType] = KINDS

#: ``_user_id`` / ``_event_id``: a string with at least one non-blank character.
ID_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": r"\S"}
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def normalise_type(raw: Any) -> DataType:
    """Map an API ``dataType`` to the checks applied to it (unknown types: ``"any"``)."""
    return data_kind(raw)


def _as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class FieldSpec:
    """One attribute or event parameter as the loader checks it.

    ``multi`` is the most values of a multi-valued field (``multivalue``/``multiValue`` > 1),
    0 for a single-valued one. ``max_length`` applies to each string value.
    """

    name: str
    data_type: DataType = "any"
    raw_type: str = ""
    required: bool = False
    max_length: int | None = None
    multi: int = 0
    read_only: bool = False

    @classmethod
    def from_attribute(cls, spec: Mapping[str, Any]) -> FieldSpec:
        multi = multivalue_limit(spec)
        max_length = _as_int(spec.get("maxLength")) or None
        return cls(
            name=str(spec["uid"]),
            data_type=normalise_type(spec.get("dataType")),
            raw_type=str(spec.get("dataType") or ""),
            required=False,
            max_length=max_length,
            multi=multi,
            read_only=bool(spec.get("readOnly", spec.get("readonly", False))),
        )

    @classmethod
    def from_parameter(cls, spec: Mapping[str, Any]) -> FieldSpec:
        multi = multivalue_limit(spec)
        max_length = _as_int(spec.get("maxLength")) or None
        return cls(
            name=str(spec.get("parameter") or spec.get("uid")),
            data_type=normalise_type(spec.get("dataType")),
            raw_type=str(spec.get("dataType") or ""),
            required=bool(spec.get("required", False)),
            max_length=max_length,
            multi=multi,
        )

    def scalar_schema(self) -> dict[str, Any]:
        """JSON Schema of one value after coercion (without null)."""
        schema: dict[str, Any]
        if self.data_type in ("string", "email", "phone"):
            schema = {"type": "string"}
            if self.data_type == "email":
                schema["format"] = "email"
            if self.max_length:
                schema["maxLength"] = self.max_length
        elif self.data_type == "number":
            schema = {"type": "number"}
        elif self.data_type == "integer":
            schema = {"type": "integer"}
        elif self.data_type == "bool":
            schema = {"type": "string", "enum": ["1", "0"]}
        elif self.data_type == "date":
            schema = {"type": "string", "pattern": DATE_PATTERN, "format": "date"}
        elif self.data_type == "datetime":
            schema = {"type": "string", "pattern": DATETIME_PATTERN, "format": "date-time"}
        else:
            schema = {"type": ["string", "number", "boolean"]}
            if self.max_length:
                schema["maxLength"] = self.max_length
        return schema

    def json_schema(self, *, nullable: bool = True) -> dict[str, Any]:
        value = self.scalar_schema()
        if self.multi:
            value = {"type": "array", "maxItems": self.multi, "items": value}
        if self.raw_type:
            value["description"] = f"dataType {self.raw_type}" + (" (required)" if self.required else "")
        if nullable and not self.required:
            return {"anyOf": [value, {"type": "null"}]}
        return value


@dataclass
class EventTypeSpec:
    uid: str
    parameters: dict[str, FieldSpec] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def required(self) -> list[str]:
        return [name for name, spec in self.parameters.items() if spec.required]

    @classmethod
    def from_parameters(cls, uid: str, parameters: Iterable[Mapping[str, Any]]) -> EventTypeSpec:
        """From the API's parameter specs of the type."""
        fields = [FieldSpec.from_parameter(p) for p in parameters]
        return cls(uid, {f.name: f for f in fields})


@dataclass
class ProjectSpecs:
    """The attribute and event specs of one datasource.

    Build it with ``load`` (from the API, once per run) or ``from_specs`` (from the
    raw spec lists, e.g. in tests or benchmarks).
    """

    attributes: dict[str, FieldSpec]
    event_types: dict[str, EventTypeSpec | None]
    client: InstasentClient | None = field(default=None, repr=False)
    datasource: str | None = None

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_specs(
        cls,
        attributes: Iterable[Mapping[str, Any]] = (),
        event_types: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
    ) -> ProjectSpecs:
        """From raw spec dicts: attribute specs, and ``{event_type: [parameter specs]}``."""
        attrs = {str(a["uid"]): FieldSpec.from_attribute(a) for a in attributes if a.get("uid")}
        types: dict[str, EventTypeSpec | None] = {}
        for uid, params in (event_types or {}).items():
            fields = [FieldSpec.from_parameter(p) for p in params]
            types[uid] = EventTypeSpec(uid, {f.name: f for f in fields})
        return cls(attrs, types)

    @classmethod
    def load(
        cls, client: InstasentClient, *, datasource: str | None = None, kind: Kind | None = None,
        event_type: str | None = None,
    ) -> ProjectSpecs:
        """Fetch the datasource's specs (attributes always; event types when ``kind`` is
        ``"events"`` or None). Event parameter specs load lazily, once per type; those of
        ``event_type`` are fetched now.

        The requests are independent, so they are sent together: a run starts after one round
        trip instead of three (docs/performance.md, "Ingest at the concurrency limit").
        """
        events = kind in (None, "events")
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="instasent-specs") as pool:
            attributes_f = pool.submit(client.get_stream_attribute_specs, datasource=datasource)
            types_f = pool.submit(client.get_stream_event_specs, datasource=datasource) if events else None
            params_f = (pool.submit(client.get_stream_event_parameter_specs, event_type, datasource=datasource)
                        if events and event_type else None)
            attributes = attributes_f.result()
            type_specs = types_f.result() if types_f is not None else []
            try:
                params = params_f.result() if params_f is not None else None
            except Exception:  # an unknown type, say: event_type() below names the known ones
                params = None
        attrs = {str(a["uid"]): FieldSpec.from_attribute(a) for a in attributes if a.get("uid")}
        types: dict[str, EventTypeSpec | None] = {}
        for spec in type_specs:
            uid = spec.get("uid") or spec.get("eventType") or spec.get("type")
            if uid:
                types[str(uid)] = None  # parameters are fetched on first use
        if event_type in types and params is not None:
            types[event_type] = EventTypeSpec.from_parameters(event_type, params)
        specs = cls(attrs, types, client, datasource)
        log.debug("loaded specs: %d attributes, %d event types", len(attrs), len(types))
        return specs

    # -- lookups ------------------------------------------------------------------------------
    def has_event_type(self, event_type: str) -> bool:
        return event_type in self.event_types

    def event_type(self, event_type: str) -> EventTypeSpec:
        """The parameter specs of ``event_type`` (fetched from the API the first time)."""
        if event_type not in self.event_types:
            known = ", ".join(sorted(self.event_types)) or "none"
            raise IngestSchemaError(f"unknown event type {event_type!r}; the datasource defines: {known}")
        spec = self.event_types[event_type]
        if spec is None:
            if self.client is None:
                raise IngestSchemaError(f"no parameter specs for event type {event_type!r}")
            params = self.client.get_stream_event_parameter_specs(event_type, datasource=self.datasource)
            spec = EventTypeSpec.from_parameters(event_type, params)
            self.event_types[event_type] = spec
        return spec

    def writable_attributes(self) -> dict[str, FieldSpec]:
        return {uid: spec for uid, spec in self.attributes.items() if not spec.read_only}

    # -- JSON Schema --------------------------------------------------------------------------
    def contact_schema(self, *, for_user_data: bool = False) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for uid, spec in self.writable_attributes().items():
            if uid == USER_ID:
                props[uid] = ID_SCHEMA
            else:
                props[uid] = spec.json_schema()
        schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if not for_user_data:
            schema["required"] = [USER_ID]
        return schema

    def event_schema(self, event_type: str) -> dict[str, Any]:
        spec = self.event_type(event_type)
        params = {name: p.json_schema() for name, p in spec.parameters.items()}
        return {
            "type": "object",
            "required": [USER_ID, EVENT_TYPE, EVENT_PARAMETERS],
            "properties": {
                USER_ID: ID_SCHEMA,
                EVENT_ID: ID_SCHEMA,
                EVENT_TYPE: {"const": event_type},
                EVENT_DATE: {"type": "string", "pattern": DATETIME_PATTERN, "format": "date-time"},
                EVENT_PARAMETERS: {
                    "type": "object",
                    "properties": params,
                    "required": spec.required,
                    "additionalProperties": False,
                },
                USER_DATA: self.contact_schema(for_user_data=True),
            },
            "additionalProperties": False,
        }

    def json_schema(self, kind: Kind, event_type: str | None = None) -> dict[str, Any]:
        """A Draft 2020-12 JSON Schema of one API item (after coercion) of ``kind``.

        For events, ``event_type`` is required. This is what the loader sends: timestamps
        as ``YYYY-MM-DDTHH:MM:SS.sssZ``, dates as ``YYYY-MM-DD``, booleans as ``"1"``/``"0"``.
        """
        if kind == "contacts":
            body = self.contact_schema()
            title = "Instasent contact"
        elif kind == "events":
            if not event_type:
                raise IngestSchemaError("json_schema('events', ...) needs an event_type")
            body = self.event_schema(event_type)
            title = f"Instasent event {event_type}"
        else:
            raise IngestSchemaError(f"kind must be 'contacts' or 'events', got {kind!r}")
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **body}

    def validator(self, kind: Kind, event_type: str | None = None) -> jsonschema.protocols.Validator:
        """A ``jsonschema`` validator for one item (slow, exact messages; not the fast path)."""
        import jsonschema

        cls = jsonschema.validators.validator_for(self.json_schema(kind, event_type))
        return cls(self.json_schema(kind, event_type), format_checker=cls.FORMAT_CHECKER)
