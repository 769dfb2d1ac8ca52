"""Minute tables of a simulated station for the alert detectors: the simulator's Poisson minute
counts (``simulator.minutes``), the corrections of ``services.unify.corrections`` with the
injected coefficients, and slow-control values read every 15 minutes and interpolated to the
minutes as unify does, with optional injected faults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.unify.corrections import pressure_correction, temperature_correction
from simulator.minutes import region_fractions, simulate_minutes
from simulator.station import StationSim

START = pd.Timestamp("2024-03-01", tz="UTC")
READING_S = 900  #: slow-control cadence [s]

Fault = Callable[[np.ndarray, dict[str, np.ndarray]], None]


@dataclass
class Injected:
    """Faults to inject: each takes reading times [s] and the readings (modified in place)."""

    faults: tuple[Fault, ...] = ()
    extra_factor: np.ndarray | None = None  #: multiplies the expected rate per minute
    gap: tuple[pd.Timestamp, pd.Timestamp] | None = None  #: minutes without rows [start, end)


def station_frame(
    sim: StationSim, days: float, seed: int, injected: Injected | None = None
) -> pd.DataFrame:
    """Unified-table minutes of ``days`` from ``START`` for ``sim``."""
    injected = injected or Injected()
    minutes = int(days * 1440)
    start_s = int(START.timestamp())
    series = simulate_minutes(
        sim, start_s, minutes, seed, region_fractions(sim, 50_000), injected.extra_factor
    )
    frame = series.frame
    atm = sim.coefficients
    p_rate, p_err = pressure_correction(
        frame["rate_total_hz"].to_numpy(),
        frame["rate_total_err_hz"].to_numpy(),
        frame["pressure_ext"].to_numpy(),
        atm.beta_pct_per_hpa,
        0.0,
        atm.p0_hpa,
    )
    pt_rate, pt_err = temperature_correction(
        p_rate, p_err, frame["era5_t_eff_k"].to_numpy(), atm.alpha_t_pct_per_k, 0.0, atm.teff_ref_k
    )
    frame["rate_p_corr_hz"], frame["rate_p_corr_err_hz"] = p_rate, p_err
    frame["rate_pt_corr_hz"], frame["rate_pt_corr_err_hz"] = pt_rate, pt_err
    rng = np.random.default_rng([seed, sim.id, 77])
    readings_s = np.arange(start_s - READING_S, start_s + 60 * minutes + 2 * READING_S, READING_S)
    n = readings_s.size
    values = {
        "hv_neg": -5.5 + rng.normal(0, 0.002, n),
        "hv_pos": 5.5 + rng.normal(0, 0.002, n),
        "current_neg": 0.45 + rng.normal(0, 0.01, n),
        "current_pos": 0.52 + rng.normal(0, 0.01, n),
        **{f"flow_{k}": 1000 + rng.normal(0, 3, n) for k in (1, 2, 3, 4)},
        "baro_step": np.zeros(n),
    }
    for fault in injected.faults:
        fault(readings_s, values)
    middles = start_s + 60 * np.arange(minutes) + 30
    for name, v in values.items():
        if name not in ("baro_step", "eff_drop"):
            frame[name] = np.interp(middles, readings_s, v)
    frame["pressure_ext"] += np.interp(middles, readings_s, values["baro_step"])
    frame["accepted"] = frame["rate_total_hz"] * 1.5
    # 3-of-4 efficiencies from about 800 four-plane events a minute
    for plane, eff in zip((1, 2, 3, 4), (0.93, 0.94, 0.92, 0.95), strict=True):
        value = np.full(minutes, eff)
        if "eff_drop" in values and values["eff_drop"][0] == plane:
            value = np.where(middles >= values["eff_drop"][1], values["eff_drop"][2], value)
        frame[f"eff_{plane}"] = rng.binomial(800, value) / 800
    if injected.gap is not None:
        lo, hi = injected.gap
        frame = frame[(frame["time"] < lo) | (frame["time"] >= hi)].reset_index(drop=True)
    return frame


def step(name: str, at: pd.Timestamp, value: float, add: bool = False) -> Fault:
    """A fault: reading ``name`` becomes (or, with ``add``, shifts by) ``value`` from ``at``."""

    def apply(readings_s: np.ndarray, values: dict[str, np.ndarray]) -> None:
        after = readings_s >= at.timestamp()
        values[name] = np.where(after, values[name] + value if add else value, values[name])

    return apply


def efficiency_drop(plane: int, at: pd.Timestamp, value: float) -> Fault:
    """A fault: plane ``plane``'s efficiency becomes ``value`` from ``at``."""

    def apply(readings_s: np.ndarray, values: dict[str, np.ndarray]) -> None:
        values["eff_drop"] = np.array([plane, at.timestamp(), value])

    return apply


def forbush_factor(minutes: int, onset: pd.Timestamp, depth: float, fall_h: float) -> np.ndarray:
    """Rate factor of a decrease reaching ``depth`` linearly over ``fall_h`` hours from
    ``onset``, then recovering linearly over two days."""
    t_h = (np.arange(minutes) * 60 + 30 - (onset - START).total_seconds()) / 3600.0
    fall = np.clip(t_h / fall_h, 0, 1) * depth
    recover = np.clip((t_h - fall_h) / 48.0, 0, 1) * depth
    return 1.0 - np.where(t_h > 0, fall - recover, 0.0)
