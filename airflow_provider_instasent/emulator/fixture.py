"""Fixtures: the projects, specs, tokens and plan an emulator serves.

A fixture is a JSON or YAML document (see ``docs/emulator.md``). :func:`load_fixture` turns
one (a path, an already-parsed mapping, or ``None`` for the built-in ``default_fixture.json``)
into immutable, validated :class:`Fixture` objects. Every mistake is a :class:`FixtureError`
naming the offending key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

# --- scopes --------------------------------------------------------------------------------
ALWAYS_AVAILABLE_SCOPES: tuple[str, ...] = (
    "ACCOUNT_READ",
    "PROJECT_DATASOURCE_READ",
    "PROJECT_DATASOURCE_WRITE",
    "PROJECT_AUDIENCE_READ",
    "PROJECT_AUDIENCE_WRITE",
    "PROJECT_CAMPAIGN_READ",
    "PROJECT_AUTOMATION_READ",
    "PROJECT_DIRECT_READ",
    "PROJECT_DIRECT_WRITE",
)
#: Granted only on plans that include them (product-api guide, "Scopes fall into three tiers").
PLAN_GATED_SCOPES: tuple[str, ...] = (
    "PROJECT_AUDIENCE_LIST",
    "PROJECT_AUDIENCE_DATA_BASIC",
    "PROJECT_AUDIENCE_DATA_EVENTS",
)
#: "Manually granted by Instasent": modelled as scopes the plan must list too.
MANUAL_SCOPES: tuple[str, ...] = ("PROJECT_AUDIENCE_DATA_FULL", "PROJECT_AGGREGATIONS")
ALL_SCOPES: tuple[str, ...] = ALWAYS_AVAILABLE_SCOPES + PLAN_GATED_SCOPES + MANUAL_SCOPES
GATED_SCOPES = frozenset(PLAN_GATED_SCOPES + MANUAL_SCOPES)
#: Scopes a datasource token implicitly holds on its own datasource.
DATASOURCE_TOKEN_SCOPES: tuple[str, ...] = ("PROJECT_DATASOURCE_READ", "PROJECT_DATASOURCE_WRITE")

ATTRIBUTE_TYPES = frozenset(
    {"string", "text", "payload", "number", "date", "datetime", "bool", "email", "phone"}
)
PARAMETER_TYPES = frozenset({"string", "text", "payload", "number", "bool", "date", "datetime"})

# Privacy levels of returned audience attributes (product-api guide, "Data privacy and plan gating").
LEVEL_DEFAULT, LEVEL_BASIC, LEVEL_FULL = 0, 1, 2
LEVEL_NAMES = ("default", "basic", "full")
DEFAULT_LEVEL_FIELDS = frozenset({"_user_id", "_full_name"})
BASIC_LEVEL_FIELDS = DEFAULT_LEVEL_FIELDS | {
    "_first_name",
    "_last_name",
    "_email",
    "_phone_mobile",
    "_country_code",
}

# (uid, dataType, multivalue, readOnly, label) of the reserved attributes every project has
# (api-facts.md section 5, "Known reserved attributes").
RESERVED_ATTRIBUTES: tuple[tuple[str, str, int, bool, str], ...] = (
    ("_user_id", "string", 1, False, "User id"),
    ("_first_name", "string", 1, False, "First name"),
    ("_last_name", "string", 1, False, "Last name"),
    ("_full_name", "string", 1, False, "Full name"),
    ("_email", "email", 1, False, "Email"),
    ("_phone_mobile", "phone", 1, False, "Mobile phone"),
    ("_country_code", "string", 1, False, "Country code"),
    ("_client_tags", "string", 50, False, "Tags"),
    ("_client_lists", "string", 50, False, "Lists"),
    ("_date_imported", "datetime", 1, True, "Imported at"),
    ("_date_registered", "date", 1, False, "Registered at"),
    ("_date_seen", "date", 1, False, "Last seen at"),
    ("_date_updated", "datetime", 1, True, "Updated at"),
    ("_accepts_marketing_email", "bool", 1, False, "Accepts email marketing"),
    ("_accepts_marketing_sms", "bool", 1, False, "Accepts SMS marketing"),
    ("_accepts_marketing_whatsapp", "bool", 1, False, "Accepts WhatsApp marketing"),
    ("_is_subscribed_email", "bool", 1, False, "Subscribed to email"),
    ("_is_subscribed_sms", "bool", 1, False, "Subscribed to SMS"),
    ("_is_subscribed_whatsapp", "bool", 1, False, "Subscribed to WhatsApp"),
    ("_email_verified", "bool", 1, False, "Email verified"),
    ("_phone_mobile_verified", "bool", 1, False, "Phone verified"),
)

FIXTURE_TIMESTAMP = "2024-01-01T00:00:00.000Z"


class FixtureError(ValueError):
    """A fixture document is malformed; the message names the key."""


@dataclass(frozen=True)
class AttributeSpec:
    uid: str
    data_type: str
    multivalue: int = 1
    readonly: bool = False
    unique: bool = False
    custom: bool = False
    display_label: str = ""
    description: str = ""
    max_length: int | None = None
    important: bool = False
    visible: bool = True

    @property
    def privacy(self) -> int:
        """The lowest privacy level that may see this attribute."""
        if self.uid in DEFAULT_LEVEL_FIELDS:
            return LEVEL_DEFAULT
        if self.uid in BASIC_LEVEL_FIELDS or self.data_type == "bool":
            return LEVEL_BASIC
        return LEVEL_FULL


@dataclass(frozen=True)
class ParameterSpec:
    parameter: str
    data_type: str
    title: str = ""
    description: str = ""
    required: bool = False
    max_length: int | None = None
    multi_value: int = 1
    visual_type: str | None = None
    icon: str | None = None


@dataclass(frozen=True)
class EventTypeSpec:
    uid: str
    name: str
    parameters: tuple[ParameterSpec, ...]
    description: str = ""
    category: str = "custom"
    attribution: bool = False
    automation: bool = True
    icon: str | None = None
    emoji: str | None = None
    important: bool = False
    param_map: Mapping[str, ParameterSpec] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class DatasourceConfig:
    uid: str
    id: int
    name: str
    type: str = "api"
    priority: int = 100
    audience_tags: tuple[str, ...] = ()
    description: str = ""
    tags: tuple[str, ...] = ()
    default_country: str | None = None
    locale: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class SegmentConfig:
    uid: str
    name: str
    type: str  # "static" | "dynamic"
    members: tuple[str, ...] = ()
    root: Mapping[str, Any] | None = None
    parameterized: bool = False
    description: str = ""


@dataclass(frozen=True)
class ProjectConfig:
    uid: str
    id: int
    name: str
    merging_attributes: tuple[str, ...]
    accept_unknown_attributes: bool
    datasources: tuple[DatasourceConfig, ...]
    attributes: Mapping[str, AttributeSpec]
    event_types: Mapping[str, EventTypeSpec]
    segments: Mapping[str, SegmentConfig]
    campaigns: tuple[Mapping[str, Any], ...] = ()
    automations: tuple[Mapping[str, Any], ...] = ()
    sms_senders: tuple[Mapping[str, Any], ...] = ()
    default_sender_id: Any = None
    description: str = ""
    locale: str = "en"
    timezone: str = "UTC"
    seed_contacts: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    seed_events: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanConfig:
    key: str
    quality: str
    status: str
    allowed_scopes: frozenset[str]


@dataclass(frozen=True)
class TokenConfig:
    token: str
    title: str
    kind: str  # "product" | "datasource"
    scopes: tuple[str, ...]
    projects: tuple[str, ...]
    datasource: str | None = None
    test_mode: bool = False
    id: int = 0


@dataclass(frozen=True)
class Fixture:
    organization: Mapping[str, Any]
    plan: PlanConfig
    projects: Mapping[str, ProjectConfig]
    tokens: Mapping[str, TokenConfig]
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


FixtureSource = str | Path | Mapping[str, Any] | None


# --- reading ---------------------------------------------------------------------------------
def default_fixture_dict() -> dict[str, Any]:
    """The built-in fixture as a fresh, mutable dictionary."""
    text = resources.files(__package__).joinpath("default_fixture.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a JSON (``.json``) or YAML (``.yaml``/``.yml``, or anything else) fixture file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FixtureError(f"cannot read fixture {p}: {exc}") from exc
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FixtureError(f"{p}: invalid JSON: {exc}") from exc
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FixtureError(f"{p}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise FixtureError(f"{p}: the fixture must be a mapping at the top level")
    return data


def resolve_fixture_dict(source: FixtureSource) -> dict[str, Any]:
    """The raw fixture document for ``source``, with ``extends: default`` applied."""
    if source is None:
        return default_fixture_dict()
    data = read_config_file(source) if isinstance(source, (str, Path)) else copy.deepcopy(dict(source))
    base = data.pop("extends", None)
    if base is None:
        return data
    if base != "default":
        raise FixtureError(f"extends: only 'default' is supported, got {base!r}")
    merged = default_fixture_dict()
    if "organization" in data:
        org = _mapping(data["organization"], "organization")
        plan = org.get("plan")
        merged["organization"].update({k: v for k, v in org.items() if k != "plan"})
        if plan is not None:
            merged["organization"]["plan"] = {**merged["organization"]["plan"], **_mapping(plan, "plan")}
    if "projects" in data:
        projects = {p["uid"]: p for p in merged["projects"]}
        for p in _list(data["projects"], "projects"):
            uid = _mapping(p, "projects[]").get("uid")
            if uid in projects:
                projects[uid] = {**projects[uid], **p}
            else:
                projects[str(uid)] = p
        merged["projects"] = list(projects.values())
    if "tokens" in data:
        tokens = {t["token"]: t for t in merged["tokens"]}
        for t in _list(data["tokens"], "tokens"):
            tokens[str(_mapping(t, "tokens[]").get("token"))] = t
        merged["tokens"] = list(tokens.values())
    for key, value in data.items():
        if key not in ("organization", "projects", "tokens"):
            merged[key] = value
    return merged


def load_fixture(source: FixtureSource = None) -> Fixture:
    """Read and validate a fixture (``None``: the built-in default fixture)."""
    return parse_fixture(resolve_fixture_dict(source))


# --- parsing ---------------------------------------------------------------------------------
def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FixtureError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise FixtureError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise FixtureError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _int(value: Any, where: str, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise FixtureError(f"{where}: expected an integer, got {value!r}")
    return value


def _opt_int(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where)


def parse_fixture(data: Mapping[str, Any]) -> Fixture:
    data = _mapping(data, "fixture")
    known = {"organization", "projects", "tokens"}
    unknown = set(data) - known
    if unknown:
        raise FixtureError(f"fixture: unknown top-level keys {sorted(unknown)} (expected {sorted(known)})")
    org = dict(_mapping(data.get("organization") or {}, "organization"))
    plan_raw = _mapping(org.pop("plan", None) or {}, "organization.plan")
    allowed_raw = plan_raw.get("allowedScopes", list(PLAN_GATED_SCOPES + MANUAL_SCOPES))
    allowed = frozenset(
        _str(s, "organization.plan.allowedScopes[]") for s in _list(allowed_raw, "allowedScopes")
    )
    for s in allowed:
        if s not in GATED_SCOPES:
            raise FixtureError(f"organization.plan.allowedScopes: {s!r} is not a plan-gated scope")
    plan = PlanConfig(
        key=str(plan_raw.get("key", "XL")),
        quality=str(plan_raw.get("quality", "premium")),
        status=str(plan_raw.get("status", "active")),
        allowed_scopes=allowed,
    )
    org.setdefault("id", 1)
    org.setdefault("name", "Emulated organization")
    org.setdefault(
        "account",
        {
            "credit": {"currency": "EUR", "value": 0.0, "resetAt": None, "resetTo": None},
            "funds": {"currency": "EUR", "value": 0.0},
        },
    )
    org.setdefault("api", {"tier": 1})

    projects: dict[str, ProjectConfig] = {}
    raw_projects = _list(data.get("projects") or [], "projects")
    if not raw_projects:
        raise FixtureError("projects: at least one project is required")
    for i, raw in enumerate(raw_projects):
        project = _parse_project(_mapping(raw, f"projects[{i}]"), i)
        if project.uid in projects:
            raise FixtureError(f"projects: duplicate uid {project.uid!r}")
        projects[project.uid] = project
    ds_ids = [ds.id for p in projects.values() for ds in p.datasources]
    if len(ds_ids) != len(set(ds_ids)):
        raise FixtureError("datasources: ids must be unique across projects")

    tokens: dict[str, TokenConfig] = {}
    for i, raw in enumerate(_list(data.get("tokens") or [], "tokens")):
        token = _parse_token(_mapping(raw, f"tokens[{i}]"), i, projects)
        if token.token in tokens:
            raise FixtureError(f"tokens: duplicate token {token.token!r}")
        tokens[token.token] = token
    return Fixture(organization=org, plan=plan, projects=projects, tokens=tokens, raw=data)


def _parse_project(raw: Mapping[str, Any], index: int) -> ProjectConfig:
    where = f"projects[{index}]"
    known = {
        "uid",
        "id",
        "name",
        "description",
        "locale",
        "timezone",
        "mergingAttributes",
        "acceptUnknownAttributes",
        "datasources",
        "attributes",
        "eventTypes",
        "segments",
        "campaigns",
        "automations",
        "smsSenders",
        "contacts",
        "events",
    }
    unknown = set(raw) - known
    if unknown:
        raise FixtureError(f"{where}: unknown keys {sorted(unknown)}")
    uid = _str(raw.get("uid"), f"{where}.uid")
    where = f"project {uid!r}"
    merging = tuple(
        _str(a, f"{where}.mergingAttributes[]")
        for a in _list(
            raw.get("mergingAttributes", ["_user_id", "_email", "_phone_mobile"]),
            f"{where}.mergingAttributes",
        )
    )
    if "_user_id" not in merging:
        merging = ("_user_id", *merging)

    datasources: list[DatasourceConfig] = []
    for j, ds in enumerate(_list(raw.get("datasources") or [], f"{where}.datasources")):
        ds = _mapping(ds, f"{where}.datasources[{j}]")
        ds_uid = _str(ds.get("uid"), f"{where}.datasources[{j}].uid")
        datasources.append(
            DatasourceConfig(
                uid=ds_uid,
                id=_int(ds.get("id"), f"{where}.datasources[{j}].id", default=(index + 1) * 1000 + j + 1),
                name=str(ds.get("name") or ds_uid),
                type=str(ds.get("type", "api")),
                priority=_int(ds.get("priority"), f"{where}.datasources[{j}].priority", default=j + 1),
                audience_tags=tuple(str(t) for t in ds.get("audienceTags") or ()),
                description=str(ds.get("description") or ""),
                tags=tuple(str(t) for t in ds.get("tags") or ()),
                default_country=ds.get("defaultCountry"),
                locale=ds.get("locale"),
                timezone=ds.get("timezone"),
            )
        )
    if not datasources:
        raise FixtureError(f"{where}.datasources: at least one datasource is required")
    if len({d.uid for d in datasources}) != len(datasources):
        raise FixtureError(f"{where}.datasources: duplicate uid")
    datasources.sort(key=lambda d: d.priority)

    attributes: dict[str, AttributeSpec] = {}
    for uid_, data_type, multi, readonly, label in RESERVED_ATTRIBUTES:
        attributes[uid_] = AttributeSpec(uid_, data_type, multi, readonly, uid_ in merging, False, label)
    for j, a in enumerate(_list(raw.get("attributes") or [], f"{where}.attributes")):
        a = _mapping(a, f"{where}.attributes[{j}]")
        a_uid = _str(a.get("uid"), f"{where}.attributes[{j}].uid")
        data_type = str(a.get("dataType", "string"))
        if data_type not in ATTRIBUTE_TYPES:
            raise FixtureError(
                f"{where}.attributes[{a_uid}].dataType: {data_type!r} not in {sorted(ATTRIBUTE_TYPES)}"
            )
        prev = attributes.get(a_uid)
        attributes[a_uid] = AttributeSpec(
            uid=a_uid,
            data_type=data_type,
            multivalue=_int(a.get("multivalue"), f"{where}.attributes[{a_uid}].multivalue", default=1),
            readonly=bool(a.get("readonly", a.get("readOnly", prev.readonly if prev else False))),
            unique=a_uid in merging or bool(a.get("unique", False)),
            custom=bool(a.get("custom", not a_uid.startswith("_"))),
            display_label=str(a.get("displayLabel") or (prev.display_label if prev else a_uid)),
            description=str(a.get("description") or ""),
            max_length=_opt_int(a.get("maxLength"), f"{where}.attributes[{a_uid}].maxLength"),
            important=bool(a.get("important", False)),
            visible=bool(a.get("visible", True)),
        )
    for m in merging:
        if m not in attributes:
            raise FixtureError(f"{where}.mergingAttributes: {m!r} is not an attribute")

    event_types: dict[str, EventTypeSpec] = {}
    for j, e in enumerate(_list(raw.get("eventTypes") or [], f"{where}.eventTypes")):
        e = _mapping(e, f"{where}.eventTypes[{j}]")
        e_uid = _str(e.get("uid"), f"{where}.eventTypes[{j}].uid")
        params: list[ParameterSpec] = []
        for k, prm in enumerate(_list(e.get("parameters") or [], f"{where}.eventTypes[{e_uid}].parameters")):
            pw = f"{where}.eventTypes[{e_uid}].parameters[{k}]"
            prm = _mapping(prm, pw)
            name = _str(prm.get("parameter"), f"{pw}.parameter")
            data_type = str(prm.get("dataType", "string"))
            if data_type not in PARAMETER_TYPES:
                raise FixtureError(f"{pw}.dataType: {data_type!r} not in {sorted(PARAMETER_TYPES)}")
            params.append(
                ParameterSpec(
                    parameter=name,
                    data_type=data_type,
                    title=str(prm.get("title") or name),
                    description=str(prm.get("description") or ""),
                    required=bool(prm.get("required", False)),
                    max_length=_opt_int(prm.get("maxLength"), f"{pw}.maxLength"),
                    multi_value=_int(prm.get("multiValue"), f"{pw}.multiValue", default=1),
                    visual_type=prm.get("visualType"),
                    icon=prm.get("icon"),
                )
            )
        event_types[e_uid] = EventTypeSpec(
            uid=e_uid,
            name=str(e.get("name") or e_uid),
            parameters=tuple(params),
            description=str(e.get("description") or ""),
            category=str(e.get("category") or "custom"),
            attribution=bool(e.get("attribution", False)),
            automation=bool(e.get("automation", True)),
            icon=e.get("icon"),
            emoji=e.get("emoji"),
            important=bool(e.get("important", False)),
            param_map={p.parameter: p for p in params},
        )

    segments: dict[str, SegmentConfig] = {}
    for j, s in enumerate(_list(raw.get("segments") or [], f"{where}.segments")):
        s = _mapping(s, f"{where}.segments[{j}]")
        s_uid = _str(s.get("uid"), f"{where}.segments[{j}].uid")
        s_type = str(s.get("type", "dynamic"))
        if s_type not in ("static", "dynamic"):
            raise FixtureError(f"{where}.segments[{s_uid}].type: expected 'static' or 'dynamic'")
        root = s.get("root")
        if s_type == "dynamic" and not isinstance(root, Mapping):
            raise FixtureError(f"{where}.segments[{s_uid}].root: a dynamic segment needs a filter root")
        segments[s_uid] = SegmentConfig(
            uid=s_uid,
            name=str(s.get("name") or s_uid),
            type=s_type,
            members=tuple(str(m) for m in s.get("members") or ()),
            root=root if isinstance(root, Mapping) else None,
            parameterized=bool(s.get("parameterized", False)),
            description=str(s.get("description") or ""),
        )

    senders = tuple(
        dict(_mapping(s, f"{where}.smsSenders[]"))
        for s in _list(raw.get("smsSenders") or [], f"{where}.smsSenders")
    )
    default_sender = next(
        (s.get("id") for s in senders if s.get("default")), senders[0].get("id") if senders else None
    )

    seed_contacts = {
        str(k): tuple(_list(v, f"{where}.contacts.{k}"))
        for k, v in _mapping(raw.get("contacts") or {}, f"{where}.contacts").items()
    }
    seed_events = {
        str(k): tuple(_list(v, f"{where}.events.{k}"))
        for k, v in _mapping(raw.get("events") or {}, f"{where}.events").items()
    }
    ds_uids = {d.uid for d in datasources}
    for seed_ds in list(seed_contacts) + list(seed_events):
        if seed_ds not in ds_uids:
            raise FixtureError(f"{where}: seed data for unknown datasource {seed_ds!r}")

    return ProjectConfig(
        uid=uid,
        id=_int(raw.get("id"), f"{where}.id", default=index + 1),
        name=str(raw.get("name") or uid),
        description=str(raw.get("description") or ""),
        locale=str(raw.get("locale") or "en"),
        timezone=str(raw.get("timezone") or "UTC"),
        merging_attributes=merging,
        accept_unknown_attributes=bool(raw.get("acceptUnknownAttributes", False)),
        datasources=tuple(datasources),
        attributes=attributes,
        event_types=event_types,
        segments=segments,
        campaigns=tuple(
            dict(_mapping(c, f"{where}.campaigns[]"))
            for c in _list(raw.get("campaigns") or [], f"{where}.campaigns")
        ),
        automations=tuple(
            dict(_mapping(c, f"{where}.automations[]"))
            for c in _list(raw.get("automations") or [], f"{where}.automations")
        ),
        sms_senders=senders,
        default_sender_id=default_sender,
        seed_contacts=seed_contacts,
        seed_events=seed_events,
    )


def _parse_token(raw: Mapping[str, Any], index: int, projects: Mapping[str, ProjectConfig]) -> TokenConfig:
    where = f"tokens[{index}]"
    token = _str(raw.get("token"), f"{where}.token")
    kind = str(raw.get("type", "product"))
    title = str(raw.get("title") or token)
    if kind == "datasource":
        project = _str(raw.get("project"), f"{where}.project")
        if project not in projects:
            raise FixtureError(f"{where}.project: unknown project {project!r}")
        ds = _str(raw.get("datasource"), f"{where}.datasource")
        if ds not in {d.uid for d in projects[project].datasources}:
            raise FixtureError(f"{where}.datasource: unknown datasource {ds!r} in project {project!r}")
        return TokenConfig(
            token,
            title,
            "datasource",
            DATASOURCE_TOKEN_SCOPES,
            (project,),
            ds,
            bool(raw.get("testMode", False)),
            int(raw.get("id", index + 1)),
        )
    if kind != "product":
        raise FixtureError(f"{where}.type: expected 'product' or 'datasource', got {kind!r}")
    scopes_raw = raw.get("scopes", [])
    if scopes_raw in ("all", "*", ["*"]):
        scopes = ALL_SCOPES
    else:
        scopes = tuple(_str(s, f"{where}.scopes[]") for s in _list(scopes_raw, f"{where}.scopes"))
        for s in scopes:
            if s not in ALL_SCOPES:
                raise FixtureError(f"{where}.scopes: unknown scope {s!r}")
    projects_raw = raw.get("projects", "all")
    if projects_raw in ("all", "*", ["*"]):
        token_projects = tuple(projects)
    else:
        token_projects = tuple(
            _str(p, f"{where}.projects[]") for p in _list(projects_raw, f"{where}.projects")
        )
        for p in token_projects:
            if p not in projects:
                raise FixtureError(f"{where}.projects: unknown project {p!r}")
    return TokenConfig(
        token,
        title,
        "product",
        scopes,
        token_projects,
        None,
        bool(raw.get("testMode", False)),
        int(raw.get("id", index + 1)),
    )
