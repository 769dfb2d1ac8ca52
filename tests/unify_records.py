"""Synthetic unify inputs and a JSON store, shared by the unify tests and bench/bench_unify.py."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.columns import PLANES, REGIONS, TOPOLOGIES
from schemas.models import MinuteRates

T0 = datetime(2024, 3, 1, tzinfo=UTC)


class JsonStore:
    """A dict store that keeps values as JSON bytes, as the Quix store does."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else orjson.loads(value)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = orjson.dumps(value)

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def minute_rates(minutes: range, rng: random.Random) -> list[MinuteRates]:
    """Minute records of station 1 from 2024-03-01 00:00 UTC (every 97th minute partial)."""
    records = []
    for k in minutes:
        rate = rng.uniform(7.0, 9.0)
        row: dict[str, Any] = {"station": 1, "time": T0 + timedelta(minutes=k)}
        row["live_s"] = 60.0 if k % 97 else 31.0
        row |= {f"count_{t}": rng.randrange(100) for t in TOPOLOGIES}
        for region in (*REGIONS, "total"):
            row[f"rate_{region}_hz"] = rate
            row[f"rate_{region}_err_hz"] = math.sqrt(rate / 60.0)
        row |= {f"eff_{p}": rng.uniform(0.85, 0.95) for p in PLANES}
        row |= {f"eff_{p}_err": 0.01 for p in PLANES}
        row |= {"q_event_mean": 50.0, "rejected_events": 0, "calibration_version": "v1"}
        records.append(MinuteRates(**row))
    return records
