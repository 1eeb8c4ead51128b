"""Every Instasent endpoint path, method, scope, header and response key, in one place.

The paths come from ``shared/reference/api-facts.md`` (Instasent's own n8n and Activepieces
integrations, the public docs). When the official OpenAPI files disagree, correcting the
client is an edit to this module only: nothing else in the package spells a path, a header
or a response key (except the emulator, which stands in for the API and imports nothing from
the client).

Paths are templates relative to the API root (``{base_url}/v1``). ``{project}`` and
``{datasource}`` are filled from the client's defaults unless a call overrides them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

API_PREFIX = "/v1"
DEFAULT_BASE_URL = "https://api.instasent.com"
DEFAULT_DATASOURCE = "dsapi"

#: Most items one ingest call may carry (a larger batch is answered 400).
MAX_ITEMS_PER_PUSH = 100
#: Page size ceiling of the scroll endpoints (audience, segment, events).
MAX_SCROLL_LIMIT = 100
#: Result ceiling of the search endpoints (audience, events): no pagination.
MAX_SEARCH_LIMIT = 50

EndpointClass = Literal["ingest", "hot", "default"]

# --- response keys ---------------------------------------------------------------------
ENTITY = "entity"
ENTITIES = "entities"
METADATA = "metadata"
SPECS = "specs"
CURSOR = "cursor"
TOTAL_HITS = "totalHits"
COUNT = "count"
MESSAGE = "message"
MISSING_SCOPE = "missingScope"
SCOPES = "scopes"  # token info: metadata.scopes
# push results
ACCEPTED = "accepted"
ERRORS = "errors"
ENTITIES_SUCCESS = "entitiesSuccess"  # what Activepieces decides success on (api-facts §2)
ENTITIES_FAILURES = "entitiesFailures"
POSITION = "position"
ITEM = "item"
ERROR = "error"
DRY_RUN = "dryRun"
# stream contact
CONTACT = "contact"

# --- headers -----------------------------------------------------------------------------
H_LIMIT = "X-RateLimit-Limit"
H_REMAINING = "X-RateLimit-Remaining"
H_RESET = "X-RateLimit-Reset"
H_RETRY_AFTER = "Retry-After"
H_AUTHORIZATION = "Authorization"  # "Bearer <token>"
H_ACCEPT = "Accept"
H_CONTENT_TYPE = "Content-Type"
H_USER_AGENT = "User-Agent"
H_DATE = "Date"  # the server's clock (RFC 9110): the export's watermarks are in server time
JSON_MEDIA_TYPE = "application/json"

# --- query flags -------------------------------------------------------------------------
Q_DRY_RUN = "_dryRun"
Q_SYNC = "_sync"
Q_START = "_start"
Q_LIMIT = "_limit"
Q_PARAMETER = "parameter"  # a parameterised dynamic segment's value(s)
Q_QUERY = "_q"  # an index endpoint's Query Filter as JSON ({"filter": [...], "sort": [...]})

# --- request body keys -------------------------------------------------------------------
ROOT = "root"  # a query filter's root node
LIMIT = "limit"


@dataclass(frozen=True)
class Endpoint:
    """One API operation.

    ``scope`` is the token scope the operation needs (``None``: any valid token), used in
    error messages and docs. ``endpoint_class`` selects the rate-limit budget. ``idempotent``
    says whether a request may be retried after an ambiguous failure (a 5xx, a dropped
    connection, a read timeout): contact upserts and events with ``_event_id`` are, an SMS
    send is not.
    """

    name: str
    method: str
    path: str
    scope: str | None = None
    endpoint_class: EndpointClass = "default"
    idempotent: bool = True


_DS = "/project/{project}/datasource/{datasource}"
_P = "/project/{project}"

# Organization and project
TOKEN_INFO = Endpoint("token_info", "GET", "/")
PROJECT = Endpoint("project", "GET", _P)
PROJECT_ATTRIBUTE_SPECS = Endpoint("project_attribute_specs", "GET", _P + "/specs/attributes")
PROJECT_EVENT_SPECS = Endpoint("project_event_specs", "GET", _P + "/specs/events")
PROJECT_EVENT_PARAMETER_SPECS = Endpoint(
    "project_event_parameter_specs", "GET", _P + "/specs/events/{event_type}"
)

# Datasources
DATASOURCES = Endpoint("datasources", "GET", _P + "/datasource", "PROJECT_DATASOURCE_READ")
DATASOURCE = Endpoint("datasource", "GET", _P + "/datasource/{uid}", "PROJECT_DATASOURCE_READ")
DATASOURCE_CREATE = Endpoint(
    "datasource_create", "POST", _P + "/datasource", "PROJECT_DATASOURCE_WRITE", idempotent=False
)

# Ingest (datasource level)
STREAM = Endpoint("stream", "GET", _DS + "/stream", "PROJECT_DATASOURCE_READ")
STREAM_ATTRIBUTE_SPECS = Endpoint(
    "stream_attribute_specs", "GET", _DS + "/stream/specs/attributes", "PROJECT_DATASOURCE_READ"
)
STREAM_EVENT_SPECS = Endpoint(
    "stream_event_specs", "GET", _DS + "/stream/specs/events", "PROJECT_DATASOURCE_READ"
)
STREAM_EVENT_PARAMETER_SPECS = Endpoint(
    "stream_event_parameter_specs",
    "GET",
    _DS + "/stream/specs/event-parameters/{event_type}",
    "PROJECT_DATASOURCE_READ",
)
STATS = Endpoint("stats", "GET", _DS + "/stats", "PROJECT_DATASOURCE_READ")
PUSH_CONTACTS = Endpoint(
    "push_contacts", "POST", _DS + "/stream/contacts", "PROJECT_DATASOURCE_WRITE", "ingest"
)
PUSH_EVENTS = Endpoint("push_events", "POST", _DS + "/stream/events", "PROJECT_DATASOURCE_WRITE", "ingest")
STREAM_CONTACT = Endpoint(
    "stream_contact", "GET", _DS + "/stream/contacts/{user_id}", "PROJECT_DATASOURCE_READ"
)
DELETE_CONTACT = Endpoint(
    "delete_contact", "DELETE", _DS + "/stream/contacts/{user_id}", "PROJECT_DATASOURCE_WRITE", "ingest"
)

# Unified audience
AUDIENCE_CONTACT = Endpoint("audience_contact", "GET", _P + "/audience/{audience_id}", "PROJECT_AUDIENCE_READ")
AUDIENCE_BY_USER = Endpoint("audience_by_user", "GET", _P + "/audience/user/{user_id}", "PROJECT_AUDIENCE_READ")
AUDIENCE_BY_PHONE = Endpoint(
    "audience_by_phone", "GET", _P + "/audience/search/phone/{phone}", "PROJECT_AUDIENCE_READ"
)
AUDIENCE_BY_EMAIL = Endpoint(
    "audience_by_email", "GET", _P + "/audience/search/email/{email}", "PROJECT_AUDIENCE_READ"
)
AUDIENCE_SEARCH = Endpoint("audience_search", "POST", _P + "/audience/search", "PROJECT_AUDIENCE_LIST", "hot")
AUDIENCE_SCROLL = Endpoint("audience_scroll", "POST", _P + "/audience/scroll", "PROJECT_AUDIENCE_LIST", "hot")
SEGMENT_SCROLL = Endpoint(
    "segment_scroll", "POST", _P + "/audience/segment/{segment_uid}/scroll", "PROJECT_AUDIENCE_LIST", "hot"
)
AUDIENCE_AGGREGATIONS = Endpoint(
    "audience_aggregations", "POST", _P + "/audience/aggregations", "PROJECT_AGGREGATIONS", "hot"
)
AUDIENCE_ACTION = Endpoint(
    "audience_action", "POST", _P + "/audience/stream/{action}", "PROJECT_AUDIENCE_WRITE"
)
AUDIENCE_EVENTS = Endpoint(
    "audience_events", "GET", _P + "/audience/{audience_id}/events", "PROJECT_AUDIENCE_DATA_EVENTS"
)
AUDIENCE_ACTIONS = ("sms-subscribe", "sms-unsubscribe", "email-subscribe", "email-unsubscribe", "delete-contact")

# Events
EVENT_SEARCH = Endpoint("event_search", "POST", _P + "/event/search", "PROJECT_AUDIENCE_DATA_EVENTS", "hot")
EVENT_SCROLL = Endpoint("event_scroll", "POST", _P + "/event/scroll", "PROJECT_AUDIENCE_DATA_EVENTS", "hot")

#: What ``InstasentClient.scroll`` scrolls, and the endpoint of each.
ScrollKind = Literal["audience", "segment", "events"]
SCROLLS: dict[str, Endpoint] = {"audience": AUDIENCE_SCROLL, "segment": SEGMENT_SCROLL, "events": EVENT_SCROLL}

# Segments, campaigns, automations
SEGMENTS = Endpoint("segments", "GET", _P + "/segment", "PROJECT_AUDIENCE_READ")
DYNAMIC_SEGMENTS = Endpoint("dynamic_segments", "GET", _P + "/segment/dynamic", "PROJECT_AUDIENCE_READ")
SEGMENT = Endpoint("segment", "GET", _P + "/segment/{uid}", "PROJECT_AUDIENCE_READ")
CAMPAIGNS = Endpoint("campaigns", "GET", _P + "/campaign", "PROJECT_CAMPAIGN_READ")
CAMPAIGN = Endpoint("campaign", "GET", _P + "/campaign/{id}", "PROJECT_CAMPAIGN_READ")
AUTOMATIONS = Endpoint("automations", "GET", _P + "/automation", "PROJECT_AUTOMATION_READ")
AUTOMATION = Endpoint("automation", "GET", _P + "/automation/{id}", "PROJECT_AUTOMATION_READ")

# SMS
SMS_SENDERS = Endpoint("sms_senders", "GET", _P + "/channel/sms/sender", "PROJECT_DIRECT_READ")
SMS = Endpoint("sms", "GET", _P + "/channel/sms/sms/{id}", "PROJECT_DIRECT_READ")

#: The SMS listings (index endpoints: ``_start``/``_limit``/``_q``), by what they list, with the
#: path parameters each one needs (n8n ``InstasentProduct.node.ts``; api-facts.md). ``audience``
#: takes an audience id or a phone number with its international code (n8n: "Audience ID or
#: Phone … normalized automatically"); the indices of ``campaign`` and ``automation`` are 0-based.
SmsListKind = Literal["audience", "send", "campaign", "automation", "direct", "direct_utm"]
SMS_LISTS: dict[str, tuple[Endpoint, tuple[str, ...]]] = {
    kind: (Endpoint(f"sms_by_{kind}", "GET", _P + "/channel/sms/sms" + suffix, "PROJECT_DIRECT_READ"),
           tuple(part[1:-1] for part in suffix.split("/") if part.startswith("{")))
    for kind, suffix in (
        ("audience", "/audience/{audience_id}"),
        ("send", "/send/{send_id}"),
        ("campaign", "/campaign/{campaign_id}/{option_idx}"),
        ("automation", "/automation/{automation_id}/{message_idx}"),
        ("direct", "/direct"),
        ("direct_utm", "/direct/{utm_term}"),
    )
}
SMS_BY_AUDIENCE = SMS_LISTS["audience"][0]
SMS_DIRECT_LIST = SMS_LISTS["direct"][0]
SMS_DIRECT_LIST_UTM = SMS_LISTS["direct_utm"][0]
#: the longest ``utmTerm`` the API takes
MAX_UTM_TERM = 40
SMS_SEND = Endpoint(
    "sms_send",
    "POST",
    _P + "/channel/sms/sms/direct/{sender}/{audience_id}",
    "PROJECT_DIRECT_WRITE",
    idempotent=False,
)
SMS_SEND_UTM = Endpoint(
    "sms_send_utm",
    "POST",
    _P + "/channel/sms/sms/direct/{sender}/{audience_id}/{utm_term}",
    "PROJECT_DIRECT_WRITE",
    idempotent=False,
)

