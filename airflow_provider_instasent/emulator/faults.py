"""Run-time settings (latency, rate limit, faults) and the seeded fault injector.

For each ``/v1`` request, with probability ``fault_rate``, one of the enabled kinds is picked:
``500``/``502``/``503`` (a JSON error, nothing applied), ``drop_before`` (connection closed
before the request is applied) or ``drop_after`` (applied, then the connection closed
without a response: the case that makes ``_event_id`` matter).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS: tuple[str, ...] = ("500", "502", "503", "drop_before", "drop_after")


class SettingsError(ValueError):
    """An invalid value for ``POST /_emulator/faults`` or the CLI."""


@dataclass
class Settings:
    latency_ms: float = 0.0
    rate_limit: float | None = None
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "rate_limit": self.rate_limit,
            "fault_rate": self.fault_rate,
            "fault_kinds": list(self.fault_kinds),
            "seed": self.seed,
        }


def check_settings(
    latency_ms: Any = 0.0,
    rate_limit: Any = None,
    fault_rate: Any = 0.0,
    fault_kinds: Any = None,
    seed: Any = None,
) -> Settings:
    def number(name: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise SettingsError(f"{name} must be a number")
        return float(v)

    lat = number("latency_ms", latency_ms)
    if lat < 0:
        raise SettingsError("latency_ms must be >= 0")
    rl = None if rate_limit is None else number("rate_limit", rate_limit)
    if rl is not None and rl <= 0:
        raise SettingsError("rate_limit must be > 0 (or null for no limit)")
    fr = number("fault_rate", fault_rate)
    if not 0.0 <= fr <= 1.0:
        raise SettingsError("fault_rate must be between 0 and 1")
    kinds = FAULT_KINDS if fault_kinds is None else _kinds(fault_kinds)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise SettingsError("seed must be an integer or null")
    return Settings(lat, rl, fr, kinds, seed)


def _kinds(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, Iterable):
        raise SettingsError("fault_kinds must be a list")
    kinds = tuple(str(v).strip() for v in value)
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad or not kinds:
        raise SettingsError(
            f"fault_kinds must be a non-empty subset of {list(FAULT_KINDS)}, got {list(kinds)}"
        )
    return kinds


@dataclass
class FaultInjector:
    settings: Settings
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.settings.seed)

    def roll(self) -> str | None:
        """The fault for the next request, or ``None``."""
        s = self.settings
        if s.fault_rate <= 0.0:
            return None
        with self._lock:
            if self._rng.random() >= s.fault_rate:
                return None
            return self._rng.choice(s.fault_kinds)

    def update(self, changes: Mapping[str, Any]) -> Settings:
        """Apply a partial change (keys of ``Settings``); re-seed when ``seed`` is given."""
        unknown = set(changes) - {"latency_ms", "rate_limit", "fault_rate", "fault_kinds", "seed"}
        if unknown:
            raise SettingsError(f"unknown settings {sorted(unknown)}")
        current = self.settings.as_dict()
        current.update(changes)
        new = check_settings(**current)
        with self._lock:
            self.settings.latency_ms = new.latency_ms
            self.settings.rate_limit = new.rate_limit
            self.settings.fault_rate = new.fault_rate
            self.settings.fault_kinds = new.fault_kinds
            self.settings.seed = new.seed
            if "seed" in changes:
                self._rng = random.Random(new.seed)
        return self.settings
