"""Fixtures: the projects, specs, tokens and plan an emulator serves.

A fixture is a JSON or YAML document (see ``docs/emulator.md``). ``load_fixture`` turns
one (a path, an already-parsed mapping, or ``None`` for the built-in ``default_fixture.json``)
into immutable, validated ``Fixture`` objects. Every mistake is a ``FixtureError``
naming the offending key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Container, Iterable, Mapping, Sequence
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
    """The raw fixture document for ``source``, with ``extends: default`` applied.

    Parts of the wrong type are merged as they are: the schema then names them.
    """
    if source is None:
        return default_fixture_dict()
    data = read_config_file(source) if isinstance(source, (str, Path)) else copy.deepcopy(dict(source))
    base = data.pop("extends", None)
    if base is None:
        return data
    if base != "default":
        raise FixtureError(f"extends: only 'default' is supported, got {base!r}")
    merged = default_fixture_dict()
    org = data.pop("organization", None)
    if isinstance(org, Mapping):
        plan = org.get("plan")
        merged["organization"].update({k: v for k, v in org.items() if k != "plan"})
        if isinstance(plan, Mapping):
            merged["organization"]["plan"] = {**merged["organization"]["plan"], **plan}
        elif plan is not None:
            merged["organization"]["plan"] = plan
    elif org is not None:
        merged["organization"] = org
    for key, id_key in (("projects", "uid"), ("tokens", "token")):
        entries = data.pop(key, None)
        if entries is None:
            continue
        if not isinstance(entries, list):
            merged[key] = entries
            continue
        by_id = {entry[id_key]: entry for entry in merged[key]}
        for n, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                by_id[("#", n)] = entry  # kept as it is, for the schema to name
            elif key == "projects" and entry.get(id_key) in by_id:
                by_id[entry[id_key]] = {**by_id[entry[id_key]], **entry}  # a project is updated
            else:
                by_id[str(entry.get(id_key))] = entry  # a token is replaced
        merged[key] = list(by_id.values())
    merged.update(data)
    return merged


def load_fixture(source: FixtureSource = None) -> Fixture:
    """Read and validate a fixture (``None``: the built-in default fixture)."""
    return parse_fixture(resolve_fixture_dict(source))


# --- parsing -------------------------------------------------------------------------------------
# The shape of the document is checked by its msgspec types (fixture_schema.py) first; what
# follows checks only what they cannot (uniqueness, references between entries, what a dynamic
# segment or a datasource token needs) and fills in defaults.
def _unique(values: Sequence[Any], message: str) -> None:
    if len(set(values)) != len(values):
        duplicates = sorted({repr(v) for v in values if values.count(v) > 1})
        raise FixtureError(f"{message} {', '.join(duplicates)}")


def _known(values: Iterable[str], known: Container[str], message: str) -> None:
    """Each of ``values`` must be in ``known``; ``message`` (with ``%r`` for the value) if not."""
    for value in values:
        if value not in known:
            raise FixtureError(message % (value,))


def parse_fixture(data: Mapping[str, Any]) -> Fixture:
    from .fixture_schema import first_error

    if not isinstance(data, Mapping):
        raise FixtureError(f"fixture: expected a mapping, got {type(data).__name__}")
    problem = first_error(data)
    if problem:
        raise FixtureError(problem)
    org = dict(data.get("organization") or {})
    plan_raw = org.pop("plan", None) or {}
    plan = PlanConfig(
        key=str(plan_raw.get("key", "XL")),
        quality=str(plan_raw.get("quality", "premium")),
        status=str(plan_raw.get("status", "active")),
        allowed_scopes=frozenset(plan_raw.get("allowedScopes", PLAN_GATED_SCOPES + MANUAL_SCOPES)),
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

    project_list = [_parse_project(raw, i) for i, raw in enumerate(data["projects"])]
    _unique([p.uid for p in project_list], "projects: duplicate uid")
    ds_ids = [ds.id for p in project_list for ds in p.datasources]
    _unique(ds_ids, "datasources: ids must be unique across projects, got")
    projects = {p.uid: p for p in project_list}
    token_list = [_parse_token(raw, i, projects) for i, raw in enumerate(data.get("tokens") or [])]
    _unique([t.token for t in token_list], "tokens: duplicate token")
    tokens = {t.token: t for t in token_list}
    return Fixture(organization=org, plan=plan, projects=projects, tokens=tokens, raw=data)


def _parse_project(raw: Mapping[str, Any], index: int) -> ProjectConfig:
    uid = raw["uid"]
    where = f"project {uid!r}"
    merging = tuple(raw.get("mergingAttributes", ["_user_id", "_email", "_phone_mobile"]))
    if "_user_id" not in merging:
        merging = ("_user_id", *merging)

    datasources: list[DatasourceConfig] = []
    for j, ds in enumerate(raw["datasources"]):
        ds_uid = ds["uid"]
        datasources.append(
            DatasourceConfig(
                uid=ds_uid,
                id=_or(ds.get("id"), (index + 1) * 1000 + j + 1),
                name=str(ds.get("name") or ds_uid),
                type=str(ds.get("type", "api")),
                priority=_or(ds.get("priority"), j + 1),
                audience_tags=tuple(str(t) for t in ds.get("audienceTags") or ()),
                description=str(ds.get("description") or ""),
                tags=tuple(str(t) for t in ds.get("tags") or ()),
                default_country=ds.get("defaultCountry"),
                locale=ds.get("locale"),
                timezone=ds.get("timezone"),
            )
        )
    _unique([d.uid for d in datasources], f"{where}.datasources: duplicate uid")
    datasources.sort(key=lambda d: d.priority)

    attributes: dict[str, AttributeSpec] = {}
    for uid_, data_type, multi, readonly, label in RESERVED_ATTRIBUTES:
        attributes[uid_] = AttributeSpec(uid_, data_type, multi, readonly, uid_ in merging, False, label)
    for a in raw.get("attributes") or []:
        a_uid = a["uid"]
        prev = attributes.get(a_uid)
        attributes[a_uid] = AttributeSpec(
            uid=a_uid,
            data_type=a.get("dataType", "string"),
            multivalue=_or(a.get("multivalue"), 1),
            readonly=bool(a.get("readonly", a.get("readOnly", prev.readonly if prev else False))),
            unique=a_uid in merging or bool(a.get("unique", False)),
            custom=bool(a.get("custom", not a_uid.startswith("_"))),
            display_label=str(a.get("displayLabel") or (prev.display_label if prev else a_uid)),
            description=str(a.get("description") or ""),
            max_length=a.get("maxLength"),
            important=bool(a.get("important", False)),
            visible=bool(a.get("visible", True)),
        )
    _known(merging, attributes, where + ".mergingAttributes: %r is not an attribute")

    event_types: dict[str, EventTypeSpec] = {}
    for e in raw.get("eventTypes") or []:
        e_uid = e["uid"]
        params = tuple(
            ParameterSpec(
                parameter=prm["parameter"],
                data_type=prm.get("dataType", "string"),
                title=str(prm.get("title") or prm["parameter"]),
                description=str(prm.get("description") or ""),
                required=bool(prm.get("required", False)),
                max_length=prm.get("maxLength"),
                multi_value=_or(prm.get("multiValue"), 1),
                visual_type=prm.get("visualType"),
                icon=prm.get("icon"),
            )
            for prm in e.get("parameters") or []
        )
        event_types[e_uid] = EventTypeSpec(
            uid=e_uid,
            name=str(e.get("name") or e_uid),
            parameters=params,
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
    for s in raw.get("segments") or []:
        root = s.get("root")
        if s.get("type", "dynamic") == "dynamic" and not isinstance(root, Mapping):
            raise FixtureError(f"{where}.segments[{s['uid']}].root: a dynamic segment needs a filter root")
        segments[s["uid"]] = SegmentConfig(
            uid=s["uid"],
            name=str(s.get("name") or s["uid"]),
            type=s.get("type", "dynamic"),
            members=tuple(str(m) for m in s.get("members") or ()),
            root=root if isinstance(root, Mapping) else None,
            parameterized=bool(s.get("parameterized", False)),
            description=str(s.get("description") or ""),
        )

    senders = tuple(dict(s) for s in raw.get("smsSenders") or [])
    default_sender = next(
        (s.get("id") for s in senders if s.get("default")), senders[0].get("id") if senders else None
    )
    seed_contacts = {str(k): tuple(v) for k, v in (raw.get("contacts") or {}).items()}
    seed_events = {str(k): tuple(v) for k, v in (raw.get("events") or {}).items()}
    ds_uids = {d.uid for d in datasources}
    _known([*seed_contacts, *seed_events], ds_uids, where + ": seed data for unknown datasource %r")

    return ProjectConfig(
        uid=uid,
        id=_or(raw.get("id"), index + 1),
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
        campaigns=tuple(dict(c) for c in raw.get("campaigns") or []),
        automations=tuple(dict(c) for c in raw.get("automations") or []),
        sms_senders=senders,
        default_sender_id=default_sender,
        seed_contacts=seed_contacts,
        seed_events=seed_events,
    )


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _parse_token(raw: Mapping[str, Any], index: int, projects: Mapping[str, ProjectConfig]) -> TokenConfig:
    where = f"tokens[{index}]"
    token = raw["token"]
    title = str(raw.get("title") or token)
    test_mode = bool(raw.get("testMode", False))
    token_id = int(raw.get("id", index + 1))
    if raw.get("type", "product") == "datasource":
        for key in ("project", "datasource"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise FixtureError(f"{where}.{key}: a datasource token needs one, got {raw.get(key)!r}")
        project, ds = raw["project"], raw["datasource"]
        _known([project], projects, where + ".project: unknown project %r")
        in_project = f" in project {project!r}".replace("%", "%%")
        ds_uids = {d.uid for d in projects[project].datasources}
        _known([ds], ds_uids, where + ".datasource: unknown datasource %r" + in_project)
        return TokenConfig(token, title, "datasource", DATASOURCE_TOKEN_SCOPES, (project,), ds, test_mode, token_id)
    scopes_raw = raw.get("scopes", [])
    scopes = ALL_SCOPES if scopes_raw in ("all", "*", ["*"]) else tuple(scopes_raw)
    _known(scopes, ALL_SCOPES, where + ".scopes: unknown scope %r")  # '*' among other scopes
    projects_raw = raw.get("projects", "all")
    token_projects = tuple(projects) if projects_raw in ("all", "*", ["*"]) else tuple(projects_raw)
    _known(token_projects, projects, where + ".projects: unknown project %r")
    return TokenConfig(token, title, "product", scopes, token_projects, None, test_mode, token_id)
