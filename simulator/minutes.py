"""Minute-level data statistically consistent with the event simulator, without events.

Simulating 30 days of events at 8 Hz takes minutes per station; fits and detectors of the
atmospheric and anomaly analyses only need per-minute counts. This module draws them directly from
the simulator's own model: the accepted rate ``rate_hz · f(P, T_eff)`` of :mod:`simulator.weather`
(the same weather, coefficients and barometer offsets as ``mingo simulate``), split into the 13
angular regions by the fractions the detector model gives (a seeded Monte Carlo of candidate
tracks through :func:`simulator.detector.detector_response`, counting triggered 3- and 4-plane
events by true θ and φ), each region's count Poisson-distributed. The result has the columns of the
unified table (``schemas.models.UnifiedMinute``) that the fit and the detectors read.

:func:`slow_control_minutes` adds the slow-control columns (HV, currents, gas flows read every 15
minutes and interpolated to the minutes as unify does; plane efficiencies). The station's scenario
(``sim.scenario``, :mod:`simulator.scenario`) is applied as in the event simulator: its rate factor
multiplies the expected counts, its barometer, HV and flow faults change the readings, its data
gaps remove the minutes, and (here only) its efficiency drops change the efficiencies.

What it does not model: reconstruction (the true angles stand for the reconstructed ones), the
self-trigger run, damaged files, partial minutes at file boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from schemas.columns import REGIONS
from services.common.atmosphere import G0_M_S2
from simulator.detector import detector_response, fired_pairs
from simulator.muons import sample_candidates
from simulator.seeds import Stream, rng_for
from simulator.station import StationSim

#: Zenith limits of the regions (DOMAIN.md §5.6). [deg]
_THETA_HIGH_DEG = 10.0
_THETA_LOW_DEG = 40.0


def region_of(cos_theta: np.ndarray, phi_rad: np.ndarray) -> np.ndarray:
    """Index into ``REGIONS`` of tracks: high θ<10°, mid_k 10-40° in 45° sectors, low_k ≥40° in
    90° sectors, sector k = floor((φ + 180°) / width).

    Parameters
    ----------
    cos_theta : ndarray
        Cosine of the zenith angle. [1]
    phi_rad : ndarray
        Azimuth in (-π, π]. [rad]
    """
    theta = np.degrees(np.arccos(np.clip(cos_theta, -1.0, 1.0)))
    shifted = np.degrees(phi_rad) + 180.0
    mid = 1 + np.clip((shifted // 45.0).astype(np.int64), 0, 7)
    low = 9 + np.clip((shifted // 90.0).astype(np.int64), 0, 3)
    return np.where(theta < _THETA_HIGH_DEG, 0, np.where(theta < _THETA_LOW_DEG, mid, low))


def region_fractions(sim: StationSim, samples: int = 200_000) -> np.ndarray:
    """Fraction of accepted (triggered) events that are 3- or 4-plane events of each region.

    A seeded Monte Carlo with the simulator's detector code; the fractions sum to the share of
    triggered events that enter the total rate (below 1: 2-plane triggers are not counted).

    Returns
    -------
    ndarray, shape (13,)
        Per region of ``REGIONS``. [1]
    """
    rng = rng_for(sim.seed, sim.id, Stream.ACCEPTANCE, 7)
    tracks = sample_candidates(rng, samples, sim.detector)
    hits = detector_response(tracks, sim.detector, rng).hit_mask
    triggered = fired_pairs(hits, sim.detector) != 0
    planes = np.unpackbits(hits[:, None].astype(np.uint8), axis=1)[:, 4:].sum(axis=1)
    counted = triggered & (planes >= 3)
    regions = region_of(tracks.cos_theta[counted], tracks.phi[counted])
    return np.bincount(regions, minlength=len(REGIONS)) / max(1, int(triggered.sum()))


@dataclass(frozen=True)
class MinuteSeries:
    """Per-minute truth and data of a span.

    Attributes
    ----------
    frame : pandas.DataFrame
        Unified-table columns: ``time`` (UTC minute start), ``station``, ``live_s``,
        ``rate_<region>_hz`` and errors, ``rate_total_hz``, ``pressure_ext`` [hPa],
        ``temperature_ext`` [°C], ERA5 fields (``era5_surface_pressure_hpa``, ``era5_t_eff_k``,
        ``era5_temp_ground_c``, ``era5_temp_100hpa_c``, ``era5_height_100hpa_m``).
    expected_total_hz : ndarray
        Expected total (3/4-plane) rate of each minute (of ``frame``), after the scenario's
        modulation. [Hz]
    """

    frame: pd.DataFrame
    expected_total_hz: np.ndarray


def simulate_minutes(
    sim: StationSim,
    start_s: int,
    minutes: int,
    seed: int,
    fractions: np.ndarray | None = None,
) -> MinuteSeries:
    """Poisson minute counts of one station from the simulator's rate model.

    Parameters
    ----------
    sim : StationSim
        The station (:func:`simulator.station.build_station_sim`): rate, coefficients, weather,
        barometer offset and noise.
    start_s : int
        First minute, on a minute boundary. [s since epoch, UTC]
    minutes : int
        Number of minutes.
    seed : int
        Seed of the Poisson draws and barometer noise (independent of ``sim.seed``, so many
        statistical replicas share one weather).
    fractions : ndarray, optional
        :func:`region_fractions` (computed when not given; pass it to reuse it).
    """
    if start_s % 60:
        raise ValueError("start_s must be on a minute boundary")
    fractions = region_fractions(sim) if fractions is None else fractions
    starts = start_s + 60 * np.arange(minutes, dtype=np.int64)
    middles = starts + 30
    first_hour = start_s - start_s % 3600
    hours = np.arange(first_hour, int(middles[-1]) + 7200, 3600, dtype=np.int64)
    weather = sim.weather.hourly(hours, sim.coefficients)
    p, t2m, teff, factor = weather.at_seconds(middles, sim.coefficients)
    factor = factor * sim.scenario.rate_factor(middles)
    i100 = weather.level(100.0)
    t100 = np.interp(middles, weather.time_s, weather.t_levels_k[:, i100])
    h100 = np.interp(middles, weather.time_s, weather.z_levels_m2s2[:, i100]) / G0_M_S2
    rng = np.random.default_rng(np.random.SeedSequence([seed, sim.id, 0x6D696E]))
    expected = sim.rate_hz * factor[:, None] * fractions[None, :] * 60.0
    counts = rng.poisson(expected)
    columns: dict[str, object] = {
        "time": pd.to_datetime(starts, unit="s", utc=True),
        "station": sim.id,
        "live_s": 60.0,
    }
    for k, region in enumerate(REGIONS):
        columns[f"rate_{region}_hz"] = counts[:, k] / 60.0
        columns[f"rate_{region}_err_hz"] = np.sqrt(counts[:, k]) / 60.0
    total = counts.sum(axis=1)
    columns["rate_total_hz"] = total / 60.0
    columns["rate_total_err_hz"] = np.sqrt(total) / 60.0
    columns["pressure_ext"] = sim.scenario.reading(
        "pressure_ext",
        middles,
        p + sim.barometer_offset_hpa + rng.normal(0.0, sim.barometer_noise_hpa, minutes),
    )
    columns["temperature_ext"] = t2m - 273.15 + 0.3
    columns["era5_surface_pressure_hpa"] = p
    columns["era5_t_eff_k"] = teff
    columns["era5_temp_ground_c"] = t2m - 273.15
    columns["era5_temp_100hpa_c"] = t100 - 273.15
    columns["era5_height_100hpa_m"] = h100
    kept = ~sim.scenario.in_gap(middles)
    frame = pd.DataFrame(columns)[kept].reset_index(drop=True)
    return MinuteSeries(frame, expected.sum(axis=1)[kept] / 60.0)


#: Cadence of the simulated slow-control readings (HV and flow logs). [s]
READING_S = 900
#: Plane efficiencies (3-of-4 ratios) of the minute generator. [1]
PLANE_EFFICIENCY = (0.93, 0.94, 0.92, 0.95)


def slow_control_minutes(sim: StationSim, start_s: int, minutes: int, seed: int) -> pd.DataFrame:
    """HV, currents, gas flows and plane efficiencies of each minute, with the scenario's faults.

    HV (about 5.5 kV, both polarities as magnitudes, as the ``hv0_`` log writes them), currents
    (about 0.5 µA) and flows (about 1000 a.u.) are read every :data:`READING_S` seconds, changed
    by the scenario at the reading times and interpolated linearly to the minute middles (as
    unify interpolates log readings). Efficiencies are 3-of-4 ratios from about 800 four-plane
    events a minute (binomial).

    Parameters
    ----------
    sim : StationSim
        The station and its scenario.
    start_s : int
        First minute, on a minute boundary. [s since epoch, UTC]
    minutes : int
        Number of minutes.
    seed : int
        Seed of the reading noise.

    Returns
    -------
    pandas.DataFrame
        ``time`` (minute start, UTC), ``hv_neg``, ``hv_pos`` [kV], ``current_neg``,
        ``current_pos`` [µA], ``flow_1..4`` [a.u.], ``eff_1..4`` [1]; minutes in data gaps left out.
    """
    rng = np.random.default_rng([seed, sim.id, 77])
    readings_s = np.arange(start_s - READING_S, start_s + 60 * minutes + 2 * READING_S, READING_S)
    n = readings_s.size
    values = {
        "hv_neg": 5.5 + rng.normal(0, 0.002, n),
        "hv_pos": 5.5 + rng.normal(0, 0.002, n),
        "current_neg": 0.45 + rng.normal(0, 0.01, n),
        "current_pos": 0.52 + rng.normal(0, 0.01, n),
        **{f"flow_{k}": 1000 + rng.normal(0, 3, n) for k in (1, 2, 3, 4)},
    }
    starts = start_s + 60 * np.arange(minutes, dtype=np.int64)
    middles = starts + 30
    columns: dict[str, object] = {"time": pd.to_datetime(starts, unit="s", utc=True)}
    for name, v in values.items():
        columns[name] = np.interp(middles, readings_s, sim.scenario.reading(name, readings_s, v))
    for plane, eff in enumerate(PLANE_EFFICIENCY, start=1):
        expected = sim.scenario.efficiency(plane, middles, eff)
        columns[f"eff_{plane}"] = rng.binomial(800, expected) / 800
    kept = ~sim.scenario.in_gap(middles)
    return pd.DataFrame(columns)[kept].reset_index(drop=True)
