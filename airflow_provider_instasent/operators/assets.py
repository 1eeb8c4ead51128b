"""The ``instasent`` asset URI scheme (registered in ``get_provider_info()["asset-uris"]``).

An Instasent asset names one thing of one project::

    instasent://<project>/audience                       the unified audience
    instasent://<project>/segment/<segment uid>          a segment's contacts
    instasent://<project>/datasource/<uid>/contacts      a datasource's contacts
    instasent://<project>/datasource/<uid>/events        a datasource's events

Airflow calls ``sanitize_uri`` on every ``Asset("instasent://...")`` (after its own generic
clean-up: lower-case scheme, no trailing slash, no fragment) and refuses any other shape, so
a typo in a DAG is a parse error, not an asset nobody produces. ``create_asset`` is the
provider's asset factory; ``convert_asset_to_openlineage`` names the same thing as an
OpenLineage dataset (namespace ``instasent://<project>``, name the path without its slash),
so the asset and the lineage of a task agree (docs/airflow.md).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from urllib.parse import SplitResult

SCHEME = "instasent"
#: What an asset names (the first segment of the path).
Resource = Literal["audience", "segment", "datasource"]
_UID = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_PATH = re.compile(rf"^/(?:audience|segment/{_UID}|datasource/{_UID}/(?:contacts|events))$")


def asset_uri(project: str, resource: Resource, uid: str | None = None, kind: str | None = None) -> str:
    """The URI of an Instasent asset (``kind``: ``contacts`` or ``events`` of a datasource)."""
    if not project:
        raise ValueError("an instasent asset needs a project")
    if resource == "audience":
        path = "audience"
    elif resource == "segment":
        path = f"segment/{uid}"
    elif resource == "datasource":
        path = f"datasource/{uid}/{kind}"
    else:
        raise ValueError(f"resource must be audience, segment or datasource, got {resource!r}")
    return _check(urllib.parse.urlsplit(f"{SCHEME}://{project}/{path}")).geturl()


def _check(uri: SplitResult) -> SplitResult:
    if uri.scheme != SCHEME:
        raise ValueError(f"not an instasent URI: {uri.geturl()!r}")
    if not uri.netloc or not re.fullmatch(_UID, uri.netloc):
        raise ValueError(f"instasent URI {uri.geturl()!r}: the host part must be the project UID")
    if not _PATH.match(uri.path):
        raise ValueError(
            f"instasent URI {uri.geturl()!r}: the path must be /audience, /segment/<uid> or "
            "/datasource/<uid>/contacts|events")
    if uri.query:
        raise ValueError(f"instasent URI {uri.geturl()!r}: no query parameters")
    return uri


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's URI normaliser for the ``instasent`` scheme: checks the shape, drops user info."""
    netloc = uri.netloc.rpartition("@")[2]  # Airflow warns about (and drops) a password; a user goes too
    return _check(uri._replace(netloc=netloc, fragment=""))


def create_asset(*, project: str, resource: Resource, uid: str | None = None, kind: str | None = None,
                 extra: Mapping[str, Any] | None = None) -> Any:
    """The provider's asset factory: an ``Asset`` for an Instasent resource."""
    from airflow.sdk import Asset

    return Asset(uri=asset_uri(project, resource, uid, kind), extra=dict(extra or {}))


def convert_asset_to_openlineage(asset: Any, lineage_context: Any = None) -> Any:
    """The OpenLineage dataset of an Instasent asset (namespace ``instasent://<project>``)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    parts = urllib.parse.urlsplit(asset.uri)
    return Dataset(namespace=f"{SCHEME}://{parts.netloc}", name=parts.path.lstrip("/"))


def is_instasent_asset(value: Any) -> bool:
    """True for an ``Asset`` whose URI has the ``instasent`` scheme."""
    uri = getattr(value, "uri", None)
    return isinstance(uri, str) and uri.startswith(f"{SCHEME}://")


def literal(value: Any) -> str | None:
    """``value`` when it is a plain string known at parse time (not a Jinja template)."""
    return value if isinstance(value, str) and value and "{{" not in value and "{%" not in value else None


def annotate_outlets(context: Any, outlets: Iterable[Any], extra: Mapping[str, Any]) -> int:
    """Put ``extra`` on the asset event of each ``Asset`` outlet; returns how many.

    Airflow emits one event per outlet when the task succeeds; ``outlet_events[asset].extra``
    is the event's ``extra`` (Airflow 3.0+). Aliases and non-asset outlets are left alone.
    """
    events = context.get("outlet_events") if hasattr(context, "get") else None
    if events is None:
        return 0
    from airflow.sdk import Asset

    done = 0
    for outlet in outlets:
        if isinstance(outlet, Asset):
            events[outlet].extra.update(extra)
            done += 1
    return done
