"""Tokens, scopes, plan gating and privacy filtering.

A scope counts only if the token holds it *and* the organization's plan allows it (the
plan lists which gated scopes it includes). The privacy level of returned audience data is
the highest of default/basic/full that the counted scopes reach.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .fixture import (
    GATED_SCOPES,
    LEVEL_BASIC,
    LEVEL_DEFAULT,
    LEVEL_FULL,
    LEVEL_NAMES,
    MANUAL_SCOPES,
    AttributeSpec,
    PlanConfig,
    TokenConfig,
)

SOURCE_ATTRIBUTES = ("_datasources", "_ds_contact_ids")


class AuthError(Exception):
    """Raised with an HTTP status, a message and extra body keys."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def effective_scopes(token: TokenConfig, plan: PlanConfig) -> frozenset[str]:
    """The token's scopes that the plan lets it use."""
    return frozenset(s for s in token.scopes if s not in GATED_SCOPES or s in plan.allowed_scopes)


def require_scope(token: TokenConfig, plan: PlanConfig, scope: str) -> None:
    """403 unless ``token`` holds ``scope`` and the plan allows it."""
    if scope not in token.scopes:
        raise AuthError(403, f"Token lacks scope {scope} required by this endpoint", missingScope=scope)
    if scope in GATED_SCOPES and scope not in plan.allowed_scopes:
        tier = "manually granted by Instasent" if scope in MANUAL_SCOPES else "a higher subscription plan"
        raise AuthError(
            403,
            f"Scope {scope} is not available on the organization's plan '{plan.key}': it requires {tier}",
            missingScope=scope,
            planLevel=plan.key,
        )


def privacy_level(scopes: frozenset[str]) -> int:
    if "PROJECT_AUDIENCE_DATA_FULL" in scopes:
        return LEVEL_FULL
    if "PROJECT_AUDIENCE_DATA_BASIC" in scopes:
        return LEVEL_BASIC
    return LEVEL_DEFAULT


def level_name(level: int) -> str:
    return LEVEL_NAMES[level]


def filter_attributes(
    attrs: Mapping[str, Any], level: int, specs: Mapping[str, AttributeSpec]
) -> dict[str, Any]:
    """The attributes a caller at ``level`` may see (unknown keys count as full-level data)."""
    if level >= LEVEL_FULL:
        return dict(attrs)
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        spec = specs.get(key)
        visible = (
            (isinstance(value, bool) and level >= LEVEL_BASIC) if spec is None else spec.privacy <= level
        )
        if visible:
            out[key] = value
    return out


def mask_token(token: str) -> str:
    if len(token) <= 8:
        return "*" * len(token)
    return token[:4] + "*" * (len(token) - 8) + token[-4:]
