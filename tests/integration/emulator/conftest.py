"""Shared fixtures: one emulator per test session (reset before every test) and an API helper."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from airflow_provider_instasent.emulator import Emulator

ADMIN = "demo-admin-token"
READONLY = "demo-readonly-token"
DS_TOKEN = "demo-dsapi-token"


class Api:
    """A thin ``requests`` wrapper: paths are relative to ``/v1``; no raising on errors."""

    def __init__(self, base_url: str, token: str | None = ADMIN, project: str = "demo") -> None:
        self.base_url = base_url
        self.project = project
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def as_token(self, token: str | None) -> Api:
        return Api(self.base_url, token, self.project)

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session.request(method, self.base_url + "/v1" + path, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, json=json, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    # project-relative helpers
    def p(self, path: str = "") -> str:
        return f"/project/{self.project}{path}"

    def ds(self, ds: str = "dsapi", path: str = "") -> str:
        return self.p(f"/datasource/{ds}{path}")

    def push_contacts(self, items: Any, ds: str = "dsapi", query: str = "") -> requests.Response:
        return self.post(self.ds(ds, "/stream/contacts") + query, json=items)

    def push_events(self, items: Any, ds: str = "dsapi", query: str = "") -> requests.Response:
        return self.post(self.ds(ds, "/stream/events") + query, json=items)

    def contact(self, user_id: str, ds: str = "dsapi") -> requests.Response:
        return self.get(self.ds(ds, f"/stream/contacts/{user_id}"))

    def audience_by_user(self, user_id: str) -> requests.Response:
        return self.get(self.p(f"/audience/user/{user_id}"))

    def scroll_all(
        self, path: str = "/audience/scroll", body: dict[str, Any] | None = None, query: str = ""
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every page of a scroll: ``(entities, metadatas)``."""
        entities: list[dict[str, Any]] = []
        metas: list[dict[str, Any]] = []
        payload = dict(body or {})
        while True:
            r = self.post(self.p(path) + query, json=payload)
            assert r.status_code == 200, r.text
            data = r.json()
            entities.extend(data["entities"])
            metas.append(data["metadata"])
            if data["metadata"]["cursor"] is None:
                return entities, metas
            payload = {"cursor": data["metadata"]["cursor"], "limit": payload.get("limit", 100)}

    # admin
    def state(self, project: str | None = None) -> dict[str, Any]:
        q = f"?project={project}" if project else ""
        return dict(requests.get(self.base_url + "/_emulator/state" + q, timeout=30).json())

    def automations(self) -> list[dict[str, Any]]:
        return list(requests.get(self.base_url + "/_emulator/automations", timeout=30).json()["events"])

    def faults(self, **changes: Any) -> dict[str, Any]:
        r = requests.post(self.base_url + "/_emulator/faults", json=changes, timeout=30)
        assert r.status_code == 200, r.text
        return dict(r.json())


def order(event_id: str, user_id: str = "u1", **extra: Any) -> dict[str, Any]:
    """A valid ``ecommerce_order_create`` event."""
    event: dict[str, Any] = {
        "_user_id": user_id,
        "_event_id": event_id,
        "_event_type": "ecommerce_order_create",
        "_event_parameters": {"order_id": f"o-{event_id}", "amount": 10.5, "currency": "EUR"},
    }
    event.update(extra)
    return event


@pytest.fixture
def emulator(shared_emulator: Emulator) -> Emulator:
    shared_emulator.set_queue_delay(0)
    shared_emulator.reset()
    shared_emulator.set_faults(latency_ms=0, rate_limit=None, fault_rate=0.0, fault_kinds=None, seed=None)
    return shared_emulator


@pytest.fixture
def api(emulator: Emulator) -> Api:
    return Api(emulator.base_url)




@pytest.fixture
def queued_api(emulator: Emulator) -> Api:
    """The API of an emulator that queues writes made without ``?_sync`` for 200 ms."""
    emulator.set_queue_delay(QUEUE_DELAY_MS)
    return Api(emulator.base_url)


QUEUE_DELAY_MS = 200
