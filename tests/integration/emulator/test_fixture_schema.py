"""Fixture shape errors (msgspec types, fixture_schema.py) start with the path of the bad field."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_instasent.emulator import FixtureError, load_fixture


def project(**extra: Any) -> dict[str, Any]:
    return {"uid": "p", "datasources": [{"uid": "d"}], **extra}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "fixture: missing required key 'projects'"),
        ({"projects": [project(), 3]}, "projects[1]: Expected object"),
        ({"projects": [project(datasources=[{"uid": "d", "id": True}])]}, "projects[0].datasources[0].id: Expected int"),
        ({"projects": [project(datasources=[{"uid": ""}])]}, "projects[0].datasources[0].uid: expected a non-empty string"),
        (
            {"projects": [project(eventTypes=[{"uid": "e", "parameters": [{"parameter": "x", "dataType": "blob"}]}])]},
            "projects[0].eventTypes[0].parameters[0].dataType: 'blob' not in ['bool', ",
        ),
        ({"projects": [project(segments=[{"uid": "s", "type": "stat"}])]}, "projects[0].segments[0].type: 'stat' is neither"),
        ({"projects": [project(segments=[{"uid": "s"}])]}, "project 'p'.segments[s].root: a dynamic segment needs a filter root"),
        ({"projects": [project(contacts={"d": {}})]}, "projects[0].contacts[...]: Expected array"),
        (
            {"organization": {"plan": {"allowedScopes": ["ACCOUNT_READ"]}}, "projects": [project()]},
            "organization.plan.allowedScopes[0]: 'ACCOUNT_READ' is not a plan-gated scope",
        ),
        ({"projects": [project()], "tokens": [{"token": "t", "type": "datasource"}]}, "tokens[0].project: a datasource token needs one"),
        ({"projects": [project()], "tokens": [{"token": "t", "scopes": ["*", "ACCOUNT_READ"]}]}, "tokens[0].scopes: unknown scope '*'"),
        ({"extends": "default", "tokens": [{"token": "x", "scopes": "some"}]}, "tokens[3].scopes: unknown scope 'some'"),
    ],
)
def test_shape_errors_name_the_path(config: dict[str, Any], message: str) -> None:
    with pytest.raises(FixtureError) as info:
        load_fixture(config)
    assert str(info.value).startswith(message), str(info.value)


def test_fields_read_as_text_or_flags_take_any_value() -> None:
    fx = load_fixture({"projects": [project(name=5, acceptUnknownAttributes=1)], "tokens": [{"token": "t"}]})
    assert fx.projects["p"].name == "5" and fx.projects["p"].accept_unknown_attributes is True
