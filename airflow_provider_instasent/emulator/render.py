"""JSON shapes of the emulator's entities (as documented in api-facts.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .auth import SOURCE_ATTRIBUTES, filter_attributes, mask_token
from .fixture import FIXTURE_TIMESTAMP, AttributeSpec, EventTypeSpec, Fixture, ParameterSpec, TokenConfig
from .validation import iso_ms

if TYPE_CHECKING:
    from .audience import AudienceContact, DsContact
    from .store import DatasourceState, Event, ProjectState, Store


def _ts(value: float | None) -> str | None:
    return None if value is None else iso_ms(value)


def organization(fixture: Fixture, scopes: frozenset[str]) -> dict[str, Any]:
    org = fixture.organization
    out: dict[str, Any] = {
        "id": org.get("id"),
        "name": org.get("name"),
        "api": org.get("api", {"tier": 1}),
        "plan": {"key": fixture.plan.key, "quality": fixture.plan.quality, "status": fixture.plan.status},
    }
    if "ACCOUNT_READ" in scopes:
        out["account"] = org.get("account")
    return out


def project_brief(ps: ProjectState) -> dict[str, Any]:
    c = ps.config
    return {"id": c.id, "uid": c.uid, "name": c.name}


def project_entity(ps: ProjectState) -> dict[str, Any]:
    c = ps.config
    return {
        "id": c.id,
        "uid": c.uid,
        "name": c.name,
        "description": c.description,
        "locale": c.locale,
        "timezone": c.timezone,
        "projectStatus": "active",
        "projectType": "standard",
        "businessType": "ecommerce",
        "defaultSmsSender": c.default_sender_id,
        "attributionConfig": {"hours": 24},
        "generalConfig": {"channelDefaults": {}, "channelEmail": {}, "channelSms": {}},
        "createdAt": FIXTURE_TIMESTAMP,
        "updatedAt": FIXTURE_TIMESTAMP,
    }


def unique_attributes(ps: ProjectState) -> list[str]:
    return [a.uid for a in ps.config.attributes.values() if a.unique]


def token_entity(token: TokenConfig, store: Store) -> dict[str, Any]:
    return {
        "id": token.id,
        "title": token.title,
        "token": mask_token(token.token),
        "testMode": token.test_mode,
        "callbackUrl": None,
        "createdAt": FIXTURE_TIMESTAMP,
        "projects": [project_brief(store.projects[p]) for p in token.projects if p in store.projects],
        "support": [],
    }


def attribute_spec(spec: AttributeSpec, *, stream: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "uid": spec.uid,
        "displayLabel": spec.display_label or spec.uid,
        "description": spec.description,
        "dataType": spec.data_type,
        "visualType": spec.data_type,
        "multivalue": spec.multivalue,
        "custom": spec.custom,
        "important": spec.important,
        "visible": spec.visible,
    }
    # readOnly/requiredInWebhook: read by both official integrations, on the stream specs and
    # (n8n's getProjectAttributes) on the project specs too
    out["readOnly"] = spec.readonly
    out["requiredInWebhook"] = spec.uid == "_user_id"
    if not stream:
        out.update(
            {
                "readonly": spec.readonly,
                "unique": spec.unique,
                "enabled": True,
                "eventBased": False,
                "internal": spec.uid.startswith("_"),
                "mappeable": not spec.readonly,
                "adhocUid": None,
                "createdByDatasourceType": None,
                "createdByDatasourceUid": None,
                "createdAt": FIXTURE_TIMESTAMP,
                "updatedAt": FIXTURE_TIMESTAMP,
            }
        )
    if spec.max_length is not None:
        out["maxLength"] = spec.max_length
    return out


def event_spec(spec: EventTypeSpec) -> dict[str, Any]:
    return {
        "uid": spec.uid,
        "name": spec.name,
        "description": spec.description,
        "category": spec.category,
        "attribution": spec.attribution,
        "automation": spec.automation,
        "icon": spec.icon,
        "emoji": spec.emoji,
        "important": spec.important,
    }


def parameter_spec(p: ParameterSpec) -> dict[str, Any]:
    return {
        "parameter": p.parameter,
        "title": p.title,
        "description": p.description,
        "icon": p.icon,
        "dataType": p.data_type,
        "visualType": p.visual_type or p.data_type,
        "maxLength": p.max_length,
        "required": p.required,
        "multiValue": p.multi_value,
    }


def datasource_entity(ds: DatasourceState, ps: ProjectState, store: Store) -> dict[str, Any]:
    c = ds.config
    token = store.tokens.get(ds.token) if ds.token else None
    return {
        "id": c.id,
        "uid": c.uid,
        "name": c.name,
        "type": c.type,
        "description": c.description,
        "priority": c.priority,
        "sequence": c.priority,
        "locale": c.locale or ps.config.locale,
        "timezone": c.timezone or ps.config.timezone,
        "defaultCountry": c.default_country,
        "audienceTags": list(c.audience_tags),
        "tags": list(c.tags),
        "integration": None,
        "uniqueDsfield": "_user_id",
        "sequenceDate": _ts(ds.created_at),
        "deleted": False,
        "createdAt": _ts(ds.created_at),
        "updatedAt": _ts(ds.last_call or ds.created_at),
        "lastContactCreatedAt": _ts(ds.last_contact_received),
        "lastContactReceivedAt": _ts(ds.last_contact_received),
        "lastEventCreatedAt": _ts(ds.last_event_received),
        "lastEventReceivedAt": _ts(ds.last_event_received),
        "receivedContacts": ds.received_contacts,
        "receivedEvents": ds.received_events,
        "token": None
        if token is None
        else {
            "id": token.id,
            "title": token.title,
            "token": token.token,
            "testMode": token.test_mode,
            "callbackUrl": None,
            "projects": [project_brief(ps)],
            "createdAt": _ts(ds.created_at),
        },
    }


def stream_entity(ds: DatasourceState) -> dict[str, Any]:
    return {
        "id": f"stream-{ds.config.id}",
        "type": "api",
        "exposed": True,
        "purpose": "ingest",
        "callsTotal": ds.calls_total,
        "callsSuccess": ds.calls_success,
        "callsFailures": ds.calls_failures,
        "processedEntitiesSuccess": ds.entities_success,
        "processedEntitiesFailures": ds.entities_failures,
        "lastCallTime": _ts(ds.last_call),
        "lastSuccessTime": _ts(ds.last_success),
        "lastFailureTime": _ts(ds.last_failure),
    }


def ds_contact(contact: DsContact, ps: ProjectState) -> dict[str, Any]:
    return {
        "id": contact.id,
        "contactId": contact.id,
        "audienceId": ps.audience.member_of.get(contact.key),
        "contactData": dict(contact.data),
        "createdAt": iso_ms(contact.created_at),
        "updatedAt": iso_ms(contact.updated_at),
        "deleted": False,
        "datasourceSequence": contact.seq,
        "customTag": {},
        "hasErrors": {},
        "temporaryContactId": {},
    }


def audience_contact(contact: AudienceContact, ps: ProjectState, level: int) -> dict[str, Any]:
    attrs = filter_attributes(contact.attrs, level, ps.config.attributes)
    attrs[SOURCE_ATTRIBUTES[0]] = list(contact.datasources)
    attrs[SOURCE_ATTRIBUTES[1]] = contact.ds_contact_ids
    ds_ids = []
    for uid in contact.datasources:
        ds = ps.datasources.get(uid)
        if ds is not None:
            ds_ids.append(ds.config.id)
    return {
        "id": contact.id,
        "attributesData": attrs,
        "audienceIds": list(contact.audience_ids),
        "dsIds": ds_ids,
        "dsContactIds": contact.ds_contact_ids,
        "createdAt": iso_ms(contact.created_at),
        "updatedAt": iso_ms(contact.updated_at),
        "indexedAt": iso_ms(contact.indexed_at),
        "deletedAt": None,
    }


def event(ev: Event, ps: ProjectState) -> dict[str, Any]:
    return {
        "id": ev.id,
        "_event_id": ev.event_id,
        "_event_type": ev.type,
        "_event_date": ev.date_iso,
        "_event_parameters": ev.params,
        "_user_id": ev.user_id,
        "audienceId": ps.audience.member_of.get(ev.key),
        "datasource": ev.ds,
        "receivedAt": ev.received_iso,
    }
