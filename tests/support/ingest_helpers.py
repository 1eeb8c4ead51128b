"""Shared helpers of the ingest tests: specs shaped like the emulator's default fixture,
sample frames, and a fake client for engine tests that need no HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd

from airflow_provider_instasent.client.errors import NotFoundError
from airflow_provider_instasent.client.models import ItemError, PushResult

ATTRIBUTES: list[dict[str, Any]] = [
    {"uid": "_user_id", "dataType": "string", "multivalue": 1, "readOnly": False},
    {"uid": "_first_name", "dataType": "string", "multivalue": 1, "readOnly": False},
    {"uid": "_email", "dataType": "email", "multivalue": 1, "readOnly": False},
    {"uid": "_phone_mobile", "dataType": "phone", "multivalue": 1, "readOnly": False},
    {"uid": "_client_tags", "dataType": "string", "multivalue": 50, "readOnly": False},
    {"uid": "_date_updated", "dataType": "datetime", "multivalue": 1, "readOnly": True},
    {"uid": "_accepts_marketing_sms", "dataType": "bool", "multivalue": 1, "readOnly": False},
    {"uid": "plan", "dataType": "string", "multivalue": 1, "readOnly": False},
    {"uid": "loyalty_points", "dataType": "number", "multivalue": 1, "readOnly": False},
    {"uid": "birthday", "dataType": "date", "multivalue": 1, "readOnly": False},
]
EVENT_TYPES: dict[str, list[dict[str, Any]]] = {
    "ecommerce_order_create": [
        {"parameter": "order_id", "dataType": "string", "required": True, "maxLength": 64, "multiValue": 0},
        {"parameter": "amount", "dataType": "number", "required": True, "multiValue": 0},
        {"parameter": "currency", "dataType": "string", "maxLength": 3, "multiValue": 0},
        {"parameter": "items", "dataType": "string", "multiValue": 10},
    ],
    "page_view": [{"parameter": "url", "dataType": "string", "required": True, "maxLength": 2048}],
}
ORDER = "ecommerce_order_create"


def orders(n: int, *, seed: int = 0, users: int = 50, start: str = "2024-01-01") -> pd.DataFrame:
    """``n`` valid order events with dates far in the past (no automations)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "_user_id": [f"user-{i % users}" for i in range(n)],
        "_event_date": pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.arange(n), unit="min"),
        "order_id": [f"order-{seed}-{i}" for i in range(n)],
        "amount": np.round(rng.random(n) * 100, 2),
        "currency": ["EUR"] * n,
    })


def contacts(n: int, *, prefix: str = "user-") -> pd.DataFrame:
    return pd.DataFrame({
        "_user_id": [f"{prefix}{i}" for i in range(n)],
        "plan": ["pro" if i % 2 else "free" for i in range(n)],
        "loyalty_points": np.arange(n, dtype=float),
    })


class FakeClient:
    """Records push calls; accepts every item unless ``reject(item) -> reasons`` says otherwise.

    The contact check of events runs finds every contact, unless ``contacts`` names the ones
    that exist (``lookups`` counts the check's calls).
    """

    datasource = "dsapi"

    def __init__(self, reject: Callable[[dict[str, Any]], dict[str, list[str]] | None] | None = None,
                 fail_on_call: int | None = None, failure: BaseException | None = None,
                 contacts: set[str] | None = None) -> None:
        self.reject = reject
        self.fail_on_call = fail_on_call
        self.failure = failure
        self.contacts = contacts
        self.lookups = 0
        self.calls: list[list[dict[str, Any]]] = []
        self.lock = threading.Lock()

    def push(self, kind: str, body: bytes, *, n_items: int | None = None, dry_run: bool = False,
             datasource: str | None = None, sync: bool = False) -> PushResult:
        items = orjson.loads(body)
        assert n_items == len(items) and len(items) <= 100
        with self.lock:
            self.calls.append(items)
            call = len(self.calls)
        if self.fail_on_call is not None and call == self.fail_on_call:
            raise self.failure or RuntimeError("boom")
        accepted, errors = [], []
        for pos, item in enumerate(items):
            reasons = self.reject(item) if self.reject else None
            if reasons:
                errors.append(ItemError(pos, "; ".join(f"{k}: {v}" for k, vs in reasons.items() for v in vs),
                                        reasons, item))
            else:
                accepted.append(pos)
        return PushResult(422 if errors and not accepted else 202, accepted, errors, dry_run)

    def _exists(self, user_id: str) -> bool:
        return self.contacts is None or user_id in self.contacts

    def search_audience(self, root: dict[str, Any], *, limit: int = 50) -> list[dict[str, Any]]:
        with self.lock:
            self.lookups += 1
        return [{"attributesData": {"_user_id": uid, "_datasources": [self.datasource]}}
                for uid in root["values"] if self._exists(uid)][:limit]

    def get_contact(self, user_id: str, datasource: str | None = None) -> dict[str, Any]:
        with self.lock:
            self.lookups += 1
        if not self._exists(user_id):
            raise NotFoundError(404, "GET", "/stream/contacts/{userId}", "not found")
        return {"contactData": {"_user_id": user_id}, "deleted": False}

    @property
    def items(self) -> list[dict[str, Any]]:
        return [item for call in self.calls for item in call]
