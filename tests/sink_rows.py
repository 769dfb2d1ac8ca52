"""Realistic unified minutes for the sink's tests (built here: unify may not exist yet)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from schemas.columns import ENVIRONMENT_COLUMNS, PLANES, REGIONS, TOPOLOGIES
from schemas.models import UnifiedMinute

_TOPOLOGY_SHARE = {"1234": 0.62, "123": 0.08, "124": 0.05, "134": 0.05, "234": 0.08}
_ENVIRONMENT = {
    "temperature_ext": 18.0,
    "rh_ext": 45.0,
    "pressure_ext": 942.0,
    "temperature_int": 27.0,
    "rh_int": 30.0,
    "pressure_int": 941.5,
    "current_neg": 0.9,
    "current_pos": 0.8,
    "hv_neg": 5.6,
    "hv_pos": 5.6,
    "asserted": 21.0,
    "edge": 12.0,
    "accepted": 11.0,
}


def unified_row(
    station: int, time: datetime, *, revision: int = 0, seed: int = 0, **overrides: Any
) -> Any:
    """One unified minute with plausible values (about 9 Hz total, Madrid's pressure)."""
    rng = np.random.default_rng([station, int(time.timestamp()), seed])
    live_s = 60.0
    total_hz = 9.0 * (1 + 0.02 * math.sin(time.timestamp() / 3600))
    values: dict[str, Any] = {
        "station": station,
        "time": time,
        "revision": revision,
        "live_s": live_s,
    }
    for topology in TOPOLOGIES:
        share = _TOPOLOGY_SHARE.get(topology, 0.01)
        values[f"count_{topology}"] = int(rng.poisson(total_hz * share * live_s))
    counts_total = sum(values[f"count_{t}"] for t in _TOPOLOGY_SHARE)
    for region in REGIONS:
        share = 0.2 if region == "high" else (0.06 if region.startswith("mid") else 0.08)
        count = int(rng.poisson(counts_total * share))
        values[f"rate_{region}_hz"] = count / live_s
        values[f"rate_{region}_err_hz"] = math.sqrt(count) / live_s
    values["rate_total_hz"] = counts_total / live_s
    values["rate_total_err_hz"] = math.sqrt(counts_total) / live_s
    for plane in PLANES:
        values[f"eff_{plane}"] = float(0.92 + 0.01 * plane)
        values[f"eff_{plane}_err"] = 0.004
    values["q_event_mean"] = float(rng.normal(95.0, 3.0))
    for name, _unit, _description in ENVIRONMENT_COLUMNS:
        base = _ENVIRONMENT.get(name)
        if base is None and name.startswith("flow_"):
            base = 1.1
        if base is not None:
            values[name] = float(base + rng.normal(0, 0.05))
    values |= {
        "era5_temp_ground_c": 16.5,
        "era5_surface_pressure_hpa": 941.8,
        "era5_temp_100hpa_c": -62.0,
        "era5_height_100hpa_m": 16300.0,
        "era5_t_mw_k": 228.0,
        "era5_t_eff_k": 221.0,
        "rate_p_corr_hz": values["rate_total_hz"] * 1.003,
        "rate_p_corr_err_hz": values["rate_total_err_hz"],
        "rate_pt_corr_hz": values["rate_total_hz"] * 1.001,
        "rate_pt_corr_err_hz": values["rate_total_err_hz"],
        "rate_eff_corr_hz": values["rate_total_hz"] * 1.2,
        "rate_eff_corr_err_hz": values["rate_total_err_hz"] * 1.2,
        "quality_flags": 0,
        "quality": [],
    }
    values.update(overrides)
    return UnifiedMinute(**values)


def unified_rows(station: int, start: datetime, minutes: int, **kwargs: Any) -> list[Any]:
    """Consecutive minutes of one station."""
    return [unified_row(station, start + timedelta(minutes=i), **kwargs) for i in range(minutes)]
