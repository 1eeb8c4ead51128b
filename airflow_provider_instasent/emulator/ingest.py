"""Organization, project, specs, datasource and Ingest (``/stream``) endpoints."""

from __future__ import annotations

from typing import Any

from . import render
from .core import ApiError, Ctx, Response, Router, json_response
from .store import PushOutcome
from .validation import error_text

MAX_BATCH = 100
router = Router()
_DS = "/project/{p}/datasource/{ds}"


# --- organization and project ------------------------------------------------------------------
@router.add("GET", "/", any_project_token=True)
def token_info(ctx: Ctx) -> Response:
    store = ctx.store
    return json_response(
        200,
        {
            "entity": render.token_entity(ctx.token, store),
            "metadata": {
                "organization": render.organization(store.fixture, ctx.scopes),
                "scopes": sorted(ctx.scopes),
                "tokenScopes": list(ctx.token.scopes),
            },
        },
    )


@router.add("GET", "/project/{p}", any_project_token=True)
def project(ctx: Ctx) -> Response:
    return json_response(
        200,
        {
            "entity": render.project_entity(ctx.ps),
            "metadata": {
                "organization": render.organization(ctx.store.fixture, ctx.scopes),
                "scopes": sorted(ctx.scopes),
                "uniqueAttributes": render.unique_attributes(ctx.ps),
            },
        },
    )


@router.add("GET", "/project/{p}/specs/attributes", any_project_token=True)
def project_attribute_specs(ctx: Ctx) -> Response:
    specs = [render.attribute_spec(a, stream=False) for a in ctx.ps.config.attributes.values()]
    return json_response(
        200, {"entities": specs, "metadata": {"uniqueAttributes": render.unique_attributes(ctx.ps)}}
    )


@router.add("GET", "/project/{p}/specs/events", any_project_token=True)
def project_event_specs(ctx: Ctx) -> Response:
    specs = [render.event_spec(e) for e in ctx.ps.config.event_types.values()]
    return json_response(200, {"entities": specs, "metadata": {"count": len(specs)}})


@router.add("GET", "/project/{p}/specs/events/{event_type}", any_project_token=True)
def project_event_parameter_specs(ctx: Ctx) -> Response:
    spec = ctx.ps.config.event_types.get(ctx.params["event_type"])
    if spec is None:
        raise ApiError(404, f"Event type '{ctx.params['event_type']}' not found")
    return json_response(
        200,
        {
            "entities": [render.parameter_spec(p) for p in spec.parameters],
            "metadata": {"event": render.event_spec(spec)},
        },
    )


# --- datasources ---------------------------------------------------------------------------------------
@router.add("GET", "/project/{p}/datasource", "PROJECT_DATASOURCE_READ")
def datasources(ctx: Ctx) -> Response:
    from .query import index_query

    with ctx.store.lock:
        items = [render.datasource_entity(d, ctx.ps, ctx.store) for d in ctx.ps.datasources.values()]
    page, meta = index_query(items, ctx.req.query)
    return json_response(200, {"entities": page, "metadata": meta})


@router.add("POST", "/project/{p}/datasource", "PROJECT_DATASOURCE_WRITE")
def datasource_create(ctx: Ctx) -> Response:
    body = ctx.req.json_object()
    errors: dict[str, list[str]] = {}
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = ["required: a non-empty string"]
    tags = body.get("audienceTags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        errors["audienceTags"] = ["required: an array of strings"]
    for key in ("description", "defaultCountry", "locale", "timezone"):
        if body.get(key) is not None and not isinstance(body[key], str):
            errors[key] = ["expected a string"]
    extra_tags = body.get("tags", [])
    if not isinstance(extra_tags, list):
        errors["tags"] = ["expected an array of strings"]
    if errors:
        raise ApiError(400, "Validation failed: " + error_text(errors), errors=errors)
    assert isinstance(name, str)
    assert isinstance(tags, list)
    ds = ctx.store.create_datasource(
        ctx.ps,
        name=name.strip(),
        audience_tags=tags,
        description=body.get("description") or "",
        tags=[str(t) for t in extra_tags],
        default_country=body.get("defaultCountry"),
        locale=body.get("locale"),
        timezone=body.get("timezone"),
    )
    entity = render.datasource_entity(ds, ctx.ps, ctx.store)
    entity["projectAttributeMappings"] = []
    return json_response(201, {"entity": entity})


@router.add("GET", "/project/{p}/datasource/{ds}", "PROJECT_DATASOURCE_READ")
def datasource(ctx: Ctx) -> Response:
    with ctx.store.lock:
        entity = render.datasource_entity(ctx.datasource, ctx.ps, ctx.store)
    return json_response(200, {"entity": entity})


# --- ingest ------------------------------------------------------------------------------------------------
@router.add("GET", _DS + "/stream", "PROJECT_DATASOURCE_READ", stream=True)
def stream(ctx: Ctx) -> Response:
    with ctx.store.lock:
        body = {
            "organization": render.organization(ctx.store.fixture, ctx.scopes),
            "stream": render.stream_entity(ctx.datasource),
            "datasource": render.datasource_entity(ctx.datasource, ctx.ps, ctx.store),
            "project": {
                **render.project_brief(ctx.ps),
                "locale": ctx.ps.config.locale,
                "timezone": ctx.ps.config.timezone,
                "createdAt": render.FIXTURE_TIMESTAMP,
                "updatedAt": render.FIXTURE_TIMESTAMP,
            },
            "token": {"type": ctx.token.kind, "scopes": sorted(ctx.scopes)},
        }
    return json_response(200, body)


@router.add("GET", _DS + "/stream/specs/attributes", "PROJECT_DATASOURCE_READ", stream=True)
def stream_attribute_specs(ctx: Ctx) -> Response:
    return json_response(
        200, {"specs": [render.attribute_spec(a, stream=True) for a in ctx.ps.config.attributes.values()]}
    )


@router.add("GET", _DS + "/stream/specs/events", "PROJECT_DATASOURCE_READ", stream=True)
def stream_event_specs(ctx: Ctx) -> Response:
    return json_response(200, {"specs": [render.event_spec(e) for e in ctx.ps.config.event_types.values()]})


@router.add(
    "GET", _DS + "/stream/specs/event-parameters/{event_type}", "PROJECT_DATASOURCE_READ", stream=True
)
def stream_event_parameter_specs(ctx: Ctx) -> Response:
    spec = ctx.ps.config.event_types.get(ctx.params["event_type"])
    if spec is None:
        raise ApiError(404, f"Event type '{ctx.params['event_type']}' not found")
    return json_response(200, {"specs": [render.parameter_spec(p) for p in spec.parameters]})


@router.add("GET", _DS + "/stats", "PROJECT_DATASOURCE_READ", stream=True)
def stats(ctx: Ctx) -> Response:
    ds = ctx.datasource
    with ctx.store.lock:
        body = {
            "contacts": {"total": ds.contact_count, "errored": ds.errored_contacts},
            "events": {"total": ds.received_events},
            "datasource": render.datasource_entity(ds, ctx.ps, ctx.store),
        }
    return json_response(200, body)


def _batch(ctx: Ctx) -> list[Any]:
    items = ctx.req.json(required=False)
    if not isinstance(items, list):
        raise ApiError(400, "Body should be an array")
    if len(items) > MAX_BATCH:
        raise ApiError(400, f"Batch exceeds {MAX_BATCH} items", entitiesLimit=MAX_BATCH, received=len(items))
    return items


def push_body(
    ctx: Ctx, accepted: list[dict[str, Any]], errors: list[dict[str, Any]], dry_run: bool
) -> Response:
    ds, ps = ctx.datasource, ctx.ps
    failed = bool(errors) and not accepted
    status = 422 if failed else 202
    return json_response(
        status,
        {
            "success": not failed,
            "status": status,
            "streamId": f"stream-{ds.config.id}",
            "projectId": str(ps.config.id),
            "projectUid": ps.config.uid,
            "datasourceId": str(ds.config.id),
            "datasourceUid": ds.uid,
            "dryRun": dry_run,
            "apiSpeedTier": 1,
            "entitiesLimit": MAX_BATCH,
            "entitiesSuccess": len(accepted),
            "entitiesFailures": len(errors),
            "accepted": accepted,
            "errors": errors,
            "stats": {
                "callsTotal": 1,
                "callsSuccess": 0 if failed else 1,
                "callsFailures": 1 if failed else 0,
                "entitiesSuccess": len(accepted),
                "entitiesFailures": len(errors),
            },
        },
    )


def _outcome_response(ctx: Ctx, items: list[Any], outcome: PushOutcome, dry_run: bool) -> Response:
    accepted = [{"position": p, "item": items[p]} for p in outcome.accepted]
    errors = [
        {"position": p, "item": items[p], "error": error_text(e), "errors": e} for p, e in outcome.errors
    ]
    return push_body(ctx, accepted, errors, dry_run)


@router.add(
    "POST",
    _DS + "/stream/contacts",
    "PROJECT_DATASOURCE_WRITE",
    endpoint_class="ingest",
    stream=True,
    waits_itself=True,
)
def push_contacts(ctx: Ctx) -> Response:
    items = _batch(ctx)
    dry_run = ctx.req.flag("_dryRun")
    queued = ctx.store.queued(ctx.req.flag("_sync"), dry_run)
    outcome = ctx.store.push_contacts(
        ctx.ps, ctx.datasource, items, dry_run=dry_run, queued=queued, before_write=ctx.req.wait
    )
    return _outcome_response(ctx, items, outcome, dry_run)


@router.add(
    "POST",
    _DS + "/stream/events",
    "PROJECT_DATASOURCE_WRITE",
    endpoint_class="ingest",
    stream=True,
    waits_itself=True,
)
def push_events(ctx: Ctx) -> Response:
    items = _batch(ctx)
    dry_run = ctx.req.flag("_dryRun")
    queued = ctx.store.queued(ctx.req.flag("_sync"), dry_run)
    outcome = ctx.store.push_events(
        ctx.ps, ctx.datasource, items, dry_run=dry_run, queued=queued, before_write=ctx.req.wait
    )
    return _outcome_response(ctx, items, outcome, dry_run)


@router.add("GET", _DS + "/stream/contacts/{user_id}", "PROJECT_DATASOURCE_READ", stream=True)
def stream_contact(ctx: Ctx) -> Response:
    user_id = ctx.params["user_id"]
    with ctx.store.lock:
        contact = ctx.ps.audience.contacts.get((ctx.datasource.uid, user_id))
        if contact is None:
            raise ApiError(404, f"Contact '{user_id}' not found in datasource '{ctx.datasource.uid}'")
        body = {"contact": render.ds_contact(contact, ctx.ps)}
    return json_response(200, body)


@router.add(
    "DELETE",
    _DS + "/stream/contacts/{user_id}",
    "PROJECT_DATASOURCE_WRITE",
    endpoint_class="ingest",
    stream=True,
)
def delete_contact(ctx: Ctx) -> Response:
    user_id = ctx.params["user_id"]
    dry_run = ctx.req.flag("_dryRun")
    queued = ctx.store.queued(ctx.req.flag("_sync"), dry_run)
    if not ctx.store.delete_contact(ctx.ps, ctx.datasource, user_id, dry_run=dry_run, queued=queued):
        raise ApiError(404, f"Contact '{user_id}' not found in datasource '{ctx.datasource.uid}'")
    return push_body(ctx, [{"position": 0, "item": user_id}], [], dry_run)
