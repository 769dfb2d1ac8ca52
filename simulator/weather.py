"""Synthetic weather at a station: surface pressure, ground temperature and a full temperature and
geopotential profile on the 37 ERA5 pressure levels, hourly, plus the muon-rate modulation it
causes.

The weather is a deterministic function of absolute time and of per-station parameters drawn once
from the run's seed, so any hour of any day is the same whatever span is simulated.

Model (all temperatures in K, pressures in hPa, time in hours since 1970):

- surface pressure
  ``p_s = p_mean + Σ_k a_k sin(2π t/T_k + φ_k) + A_S2 cos(4π (t_LST - 10 h)/24 h)``:
  three synoptic waves (periods 2-10 days, together up to about ±10 hPa) and the semidiurnal
  solar tide (maxima near 10 and 22 local solar time, amplitude ≈ 1.2 cos³(lat) hPa);
- free-atmosphere temperature at the surface
  ``T_sf = T_annual - A_season cos(2π (doy - 15)/365.25) + Σ synoptic waves``, and a diurnal cycle
  ``D = A_d cos(2π (t_LST - 15 h)/24 h)`` confined to the boundary layer
  (``D · exp(-(p_s - p)/80 hPa)``), so the 2 m temperature is ``T_sf + D``;
- troposphere with a constant lapse rate Γ = 6.5 K/km: ``T = T_sf (p/p_s)^(R_d Γ/g)``; a tropopause
  at ``T_tp`` (latitude-dependent, with its own synoptic wave); above ``p_strat`` = 50 hPa the
  stratosphere warms by ``S = 14 K`` per e-fold of pressure; so
  ``T(p) = max(T_sf (p/p_s)^κ, T_tp + S max(0, ln(p_strat/p))) + D e^{-(p_s - p)/80}``;
- geopotential from the hypsometric equation, ``Φ(p) = g z_station + R_d ∫_p^{p_s} T d ln p``
  (dry air), integrated on a fine grid in ln p;
- T_MW and T_eff from :mod:`services.common.atmosphere` on the 37 levels bounded by ``p_s``;
- rate factor ``f = exp(β/100 (p_s - P0)) · (1 + α_T/100 (T_eff - T_eff,ref))``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from services.common.atmosphere import (
    ERA5_PRESSURE_LEVELS_HPA,
    G0_M_S2,
    effective_temperature,
    mass_weighted_temperature,
)
from simulator.seeds import Stream, rng_for

#: Gas constant of dry air. [J kg⁻¹ K⁻¹]
R_DRY = 287.05
#: Tropospheric lapse rate. [K/m]
LAPSE_RATE_K_M = 0.0065
#: Exponent of T ∝ p^κ for a constant lapse rate.
KAPPA_LAPSE = R_DRY * LAPSE_RATE_K_M / G0_M_S2


@dataclass(frozen=True)
class AtmosphereCoefficients:
    """Rate modulation coefficients (DOMAIN.md §6)."""

    beta_pct_per_hpa: float
    p0_hpa: float
    alpha_t_pct_per_k: float
    teff_ref_k: float

    def rate_factor(self, pressure_hpa: np.ndarray, t_eff_k: np.ndarray) -> np.ndarray:
        """``f = exp(β/100 (P - P0)) (1 + α_T/100 (T_eff - T_eff,ref))``. [dimensionless]"""
        p = np.asarray(pressure_hpa, dtype=np.float64)
        t = np.asarray(t_eff_k, dtype=np.float64)
        return np.exp(self.beta_pct_per_hpa / 100.0 * (p - self.p0_hpa)) * (
            1.0 + self.alpha_t_pct_per_k / 100.0 * (t - self.teff_ref_k)
        )


@dataclass(frozen=True)
class WeatherHourly:
    """Hourly weather at a station.

    Attributes
    ----------
    time_s : numpy.ndarray of int64 [n]
        UTC seconds since 1970, on the hour. [s]
    surface_pressure_hpa : [n] [hPa]
    t2m_k : [n] 2 m temperature. [K]
    levels_hpa : [37] the ERA5 levels, 1000 .. 1. [hPa]
    t_levels_k : [n, 37] temperature on the levels (extrapolated below ground). [K]
    z_levels_m2s2 : [n, 37] geopotential on the levels. [m² s⁻²]
    t_mw_k, t_eff_k : [n] mass-weighted and effective temperature. [K]
    rate_factor : [n] true rate modulation. [dimensionless]
    """

    time_s: np.ndarray
    surface_pressure_hpa: np.ndarray
    t2m_k: np.ndarray
    levels_hpa: np.ndarray
    t_levels_k: np.ndarray
    z_levels_m2s2: np.ndarray
    t_mw_k: np.ndarray
    t_eff_k: np.ndarray
    rate_factor: np.ndarray

    def level(self, pressure_hpa: float) -> int:
        """Index of a pressure level."""
        return int(np.flatnonzero(self.levels_hpa == pressure_hpa)[0])

    def to_frame(self) -> pd.DataFrame:
        """The hourly truth table of ``weather_hourly.csv``."""
        i100 = self.level(100.0)
        return pd.DataFrame(
            {
                "time": pd.to_datetime(self.time_s, unit="s", utc=True).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "pressure_hpa": self.surface_pressure_hpa,
                "temp_ground_c": self.t2m_k - 273.15,
                "temp_100hpa_c": self.t_levels_k[:, i100] - 273.15,
                "height_100hpa_m": self.z_levels_m2s2[:, i100] / G0_M_S2,
                "t_mw_k": self.t_mw_k,
                "t_eff_k": self.t_eff_k,
                "rate_factor": self.rate_factor,
            }
        )

    def at_seconds(
        self, seconds: np.ndarray, coefficients: AtmosphereCoefficients
    ) -> tuple[np.ndarray, ...]:
        """Pressure [hPa], 2 m temperature [K], T_eff [K] and the rate factor at arbitrary seconds,
        linear between the hours (the factor is computed from the interpolated P and T_eff)."""
        t = np.asarray(seconds, dtype=np.float64)
        if t.size and (t.min() < self.time_s[0] or t.max() > self.time_s[-1]):
            raise ValueError("seconds outside the hourly weather span")
        p = np.interp(t, self.time_s, self.surface_pressure_hpa)
        t2m = np.interp(t, self.time_s, self.t2m_k)
        teff = np.interp(t, self.time_s, self.t_eff_k)
        return p, t2m, teff, coefficients.rate_factor(p, teff)


@dataclass(frozen=True)
class WeatherModel:
    """Parameters of a station's synthetic weather (see the module docstring)."""

    latitude: float
    longitude: float
    altitude_m: float
    p_mean_hpa: float
    p_amp_hpa: tuple[float, float, float]
    p_period_h: tuple[float, float, float]
    p_phase: tuple[float, float, float]
    tide_amp_hpa: float
    t_annual_k: float
    t_season_amp_k: float
    t_amp_k: tuple[float, float]
    t_period_h: tuple[float, float]
    t_phase: tuple[float, float]
    diurnal_amp_k: float
    tropopause_k: float
    tropopause_amp_k: float
    tropopause_period_h: float
    tropopause_phase: float
    stratosphere_warming_k: float = 14.0
    p_strat_hpa: float = 50.0
    boundary_layer_hpa: float = 80.0

    @classmethod
    def draw(
        cls,
        seed: int,
        station: int,
        latitude: float,
        longitude: float,
        altitude_m: float,
        p0_hpa: float,
    ) -> WeatherModel:
        """The weather of one station, drawn from the run's seed around its reference pressure."""
        rng = rng_for(seed, station, Stream.WEATHER)
        alat = abs(latitude)
        u = rng.uniform
        return cls(
            latitude=latitude,
            longitude=longitude,
            altitude_m=altitude_m,
            p_mean_hpa=p0_hpa + float(u(-2.0, 2.0)),
            p_amp_hpa=(float(u(4.5, 6.5)), float(u(2.5, 3.5)), float(u(1.2, 2.0))),
            p_period_h=(float(u(90, 150)), float(u(50, 80)), float(u(150, 240))),
            p_phase=tuple(float(x) for x in u(0, 2 * np.pi, 3)),  # type: ignore[arg-type]
            tide_amp_hpa=1.2 * np.cos(np.radians(latitude)) ** 3,
            t_annual_k=303.0 - 0.0065 * altitude_m - 0.008 * alat**2,
            t_season_amp_k=0.2 * alat,
            t_amp_k=(float(u(2.5, 3.5)), float(u(1.0, 2.0))),
            t_period_h=(float(u(100, 170)), float(u(45, 75))),
            t_phase=(float(u(0, 2 * np.pi)), float(u(0, 2 * np.pi))),
            diurnal_amp_k=float(u(4.0, 6.0)),
            tropopause_k=200.0 + 0.35 * alat + float(u(-1.0, 1.0)),
            tropopause_amp_k=float(u(1.5, 3.0)),
            tropopause_period_h=float(u(80, 140)),
            tropopause_phase=float(u(0, 2 * np.pi)),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def _local_solar_hour(self, hours: np.ndarray) -> np.ndarray:
        return np.mod(hours + self.longitude / 15.0, 24.0)

    def surface_state(
        self, time_s: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Surface pressure [hPa], free-atmosphere surface temperature T_sf [K], diurnal term D [K]
        and tropopause temperature [K] at UTC seconds ``time_s``."""
        hours = np.asarray(time_s, dtype=np.float64) / 3600.0
        p = np.full(hours.shape, self.p_mean_hpa)
        for a, period, phase in zip(self.p_amp_hpa, self.p_period_h, self.p_phase, strict=True):
            p = p + a * np.sin(2 * np.pi * hours / period + phase)
        lst = self._local_solar_hour(hours)
        p = p + self.tide_amp_hpa * np.cos(4 * np.pi * (lst - 10.0) / 24.0)
        doy = np.mod(hours / 24.0, 365.2425)  # day of the year up to a day; the season is smooth
        t_sf = self.t_annual_k - np.sign(self.latitude) * self.t_season_amp_k * np.cos(
            2 * np.pi * (doy - 15.0) / 365.2425
        )
        for a, period, phase in zip(self.t_amp_k, self.t_period_h, self.t_phase, strict=True):
            t_sf = t_sf + a * np.sin(2 * np.pi * hours / period + phase)
        diurnal = self.diurnal_amp_k * np.cos(2 * np.pi * (lst - 15.0) / 24.0)
        t_tp = self.tropopause_k + self.tropopause_amp_k * np.sin(
            2 * np.pi * hours / self.tropopause_period_h + self.tropopause_phase
        )
        return p, t_sf, diurnal, t_tp

    def temperature(
        self,
        p_hpa: np.ndarray,
        p_s: np.ndarray,
        t_sf: np.ndarray,
        diurnal: np.ndarray,
        t_tp: np.ndarray,
    ) -> np.ndarray:
        """Temperature profile [time, level] at ``p_hpa`` ([level] or [time, level]). [K]"""
        p = np.asarray(p_hpa, dtype=np.float64)
        p2 = p[None, :] if p.ndim == 1 else p
        ps = p_s[:, None]
        tropo = t_sf[:, None] * (p2 / ps) ** KAPPA_LAPSE
        strat = t_tp[:, None] + self.stratosphere_warming_k * np.maximum(
            0.0, np.log(self.p_strat_hpa / p2)
        )
        bl = diurnal[:, None] * np.exp(-np.maximum(ps - p2, 0.0) / self.boundary_layer_hpa)
        return np.maximum(tropo, strat) + bl

    def hourly(
        self, time_s: np.ndarray, coefficients: AtmosphereCoefficients, weight: str = "production"
    ) -> WeatherHourly:
        """The hourly weather at UTC seconds ``time_s`` (on the hour)."""
        t = np.asarray(time_s, dtype=np.int64)
        p_s, t_sf, diurnal, t_tp = self.surface_state(t)
        levels = ERA5_PRESSURE_LEVELS_HPA
        t_levels = self.temperature(levels, p_s, t_sf, diurnal, t_tp)
        # hypsometric equation on a fine ln p grid from 0.5 hPa to 1100 hPa
        grid = np.linspace(np.log(0.5), np.log(1100.0), 6001)
        t_grid = self.temperature(np.exp(grid), p_s, t_sf, diurnal, t_tp)
        step = grid[1] - grid[0]
        integral = np.concatenate(
            [
                np.zeros((t.size, 1)),
                np.cumsum(0.5 * (t_grid[:, 1:] + t_grid[:, :-1]) * step, axis=1),
            ],
            axis=1,
        )  # ∫_{grid[0]}^{u} T du
        z = np.empty_like(t_levels)
        ln_levels = np.log(levels)
        for i in range(t.size):
            at_surface = np.interp(np.log(p_s[i]), grid, integral[i])
            at_levels = np.interp(ln_levels, grid, integral[i])
            z[i] = G0_M_S2 * self.altitude_m + R_DRY * (at_surface - at_levels)
        t_mw = mass_weighted_temperature(levels, t_levels, p_s)
        t_eff = effective_temperature(levels, t_levels, p_s, weight=weight)  # type: ignore[arg-type]
        return WeatherHourly(
            time_s=t,
            surface_pressure_hpa=p_s,
            t2m_k=t_sf + diurnal,
            levels_hpa=levels.copy(),
            t_levels_k=t_levels,
            z_levels_m2s2=z,
            t_mw_k=np.asarray(t_mw),
            t_eff_k=np.asarray(t_eff),
            rate_factor=coefficients.rate_factor(p_s, t_eff),
        )
