"""Minute tables of a simulated station for the alert detectors and fits: the simulator's minute
generator (``simulator.minutes``: Poisson counts, slow control, the injected events of a
``simulator.scenario.Scenario``) and the corrections of ``services.unify.corrections`` with the
injected coefficients, as unify would apply them."""

from __future__ import annotations

import pandas as pd

from services.unify.corrections import pressure_correction, temperature_correction
from simulator.minutes import region_fractions, simulate_minutes, slow_control_minutes
from simulator.scenario import Scenario
from simulator.station import StationSim

START = pd.Timestamp("2024-03-01", tz="UTC")


def station_frame(
    sim: StationSim, days: float, seed: int, scenario: Scenario | None = None
) -> pd.DataFrame:
    """Unified-table minutes of ``days`` from ``START`` for ``sim``, with ``scenario``'s events."""
    if scenario is not None:
        sim = sim.with_scenario(scenario)
    minutes = int(days * 1440)
    start_s = int(START.timestamp())
    frame = simulate_minutes(sim, start_s, minutes, seed, region_fractions(sim, 50_000)).frame
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
    frame = frame.merge(slow_control_minutes(sim, start_s, minutes, seed), on="time")
    frame["accepted"] = frame["rate_total_hz"] * 1.5
    return frame


def scenario(*events: dict[str, object]) -> Scenario:
    """A scenario from event mappings (as in a scenario file)."""
    return Scenario.model_validate({"events": list(events)})
