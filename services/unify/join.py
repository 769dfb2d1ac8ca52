"""The join of one station's minute rates, slow-control logs and ERA5 hours (pure pandas/numpy).

Every minute is evaluated at its middle (start + 30 s), since its rate is an average over it:

- a log value is linearly interpolated between the readings just before and just after (a
  reading at the very time is taken as is), when those two are at most ``log_max_gap_s`` apart;
  otherwise it is missing (``ENV_MISSING``). Readings with a null value do not count for it;
- ERA5 hours (highest revision per hour) are interpolated the same way with ``era5_max_gap_s``;
  a minute after the newest hour is ``ERA5_PENDING``, never extrapolated;
- corrections as in :mod:`services.unify.corrections`; the pressure is the station's external
  barometer when usable (present and within limits), else ERA5 surface pressure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from schemas.columns import ENVIRONMENT_COLUMNS, PLANES
from schemas.models import Era5Hour, LogReading, UnifiedMinute
from schemas.station_logs import LOG_TYPES_BY_SOURCE
from services.common.stations import AtmosphereCoefficients
from services.reanalysis.records import latest_by_hour
from services.unify.corrections import (
    efficiency_correction,
    pressure_correction,
    temperature_correction,
    three_of_four_efficiency,
)
from services.unify.flags import Flag, flag_names, set_flag

__all__ = [
    "ERA5_FIELDS",
    "MINUTE_MIDDLE_S",
    "JoinSettings",
    "Sampled",
    "sample",
    "to_rows",
    "unify_frame",
    "unify_rows",
]

#: Unified column <- Era5Hour field.
ERA5_FIELDS: dict[str, str] = {
    "era5_temp_ground_c": "temp_ground_c",
    "era5_surface_pressure_hpa": "surface_pressure_hpa",
    "era5_temp_100hpa_c": "temp_100hpa_c",
    "era5_height_100hpa_m": "height_100hpa_m",
    "era5_t_mw_k": "t_mw_k",
    "era5_t_eff_k": "t_eff_k",
}
_LIMITS = {
    c.name: (c.low, c.high) for log_type in LOG_TYPES_BY_SOURCE.values() for c in log_type.columns
}
_ENV = [name for name, _, _ in ENVIRONMENT_COLUMNS]
_COLUMNS = [n for n in UnifiedMinute.model_fields if n != "schema_version"]
#: Where a minute is evaluated: its middle, seconds after its start. [s]
MINUTE_MIDDLE_S = 30


@dataclass(frozen=True)
class JoinSettings:
    """Tunables of the join.

    Attributes
    ----------
    log_max_gap_s : float
        Largest distance between the two log readings a minute is interpolated from. [s]
    era5_max_gap_s : float
        Largest distance between the two ERA5 hours a minute is interpolated from. [s]
    """

    log_max_gap_s: float = 1800.0
    era5_max_gap_s: float = 3600.0


@dataclass(frozen=True)
class Sampled:
    """A series sampled at given times.

    Attributes
    ----------
    value : ndarray of float64
        Interpolated values, NaN where missing.
    ok : ndarray of bool
        A value exists (a sample at the time, or two within the maximum gap around it).
    exact : ndarray of bool
        A sample sits at the very time (not interpolated).
    left, right : ndarray of int64
        Indices of the samples used (equal when exact; meaningless where not ``ok``).
    """

    value: np.ndarray
    ok: np.ndarray
    exact: np.ndarray
    left: np.ndarray
    right: np.ndarray


def sample(t_s: np.ndarray, v: np.ndarray, at_s: np.ndarray, max_gap_s: float) -> Sampled:
    """Linear interpolation of samples ``(t_s, v)`` at times ``at_s``, within a maximum gap.

    Parameters
    ----------
    t_s : ndarray
        Strictly increasing sample times. [s]
    v : ndarray
        Sample values (no NaN). [any unit]
    at_s : ndarray
        Times to evaluate at. [s]
    max_gap_s : float
        Largest distance between the two samples around a time. [s]

    Returns
    -------
    Sampled
        Values (NaN where not ``ok``) and where they come from.
    """
    t = np.asarray(t_s, dtype=np.float64)
    x = np.asarray(at_s, dtype=np.float64)
    n = len(t)
    if n == 0:
        none = np.zeros(len(x), dtype=bool)
        idx = np.zeros(len(x), dtype=np.int64)
        return Sampled(np.full(len(x), np.nan), none, none, idx, idx)
    right = np.searchsorted(t, x, side="left")
    right_c = np.minimum(right, n - 1)
    exact = (right < n) & (t[right_c] == x)
    left = np.where(exact, right_c, np.maximum(right - 1, 0))
    inside = (right > 0) & (right < n)
    ok = exact | (inside & (t[right_c] - t[left] <= max_gap_s))
    span = t[right_c] - t[left]
    weight = np.where(span > 0, (x - t[left]) / np.where(span > 0, span, 1.0), 0.0)
    value = v[left] + weight * (v[right_c] - v[left])
    return Sampled(np.where(ok, value, np.nan), ok, exact, left, right_c)


def _log_series(readings: Sequence[LogReading], name: str) -> tuple[np.ndarray, ...]:
    """Times [s], values and out-of-range marks of one log value (nulls left out, last wins)."""
    by_time: dict[float, tuple[float, bool]] = {}
    for r in readings:
        value = r.values.get(name)
        if value is not None:
            by_time[r.time.timestamp()] = (value, name in r.out_of_range)
    times = np.array(sorted(by_time), dtype=np.float64)
    values = np.array([by_time[t][0] for t in times], dtype=np.float64)
    bad = np.array([by_time[t][1] for t in times], dtype=bool)
    return times, values, bad


def _environment(
    readings: Iterable[LogReading], at_s: np.ndarray, max_gap_s: float, masks: np.ndarray
) -> dict[str, np.ndarray]:
    by_source: dict[str, list[LogReading]] = {}
    for reading in readings:
        by_source.setdefault(reading.source, []).append(reading)
    columns: dict[str, np.ndarray] = {}
    for source, log_type in LOG_TYPES_BY_SOURCE.items():
        for column in log_type.columns:
            times, values, bad = _log_series(by_source.get(source, []), column.name)
            s = sample(times, values, at_s, max_gap_s)
            low, high = _LIMITS[column.name]
            out = np.zeros(len(at_s), dtype=bool)
            if len(times):
                out = s.ok & (bad[s.left] | bad[s.right])
            if low is not None:
                out |= s.value < low
            if high is not None:
                out |= s.value > high
            set_flag(masks, Flag.ENV_MISSING, ~s.ok)
            set_flag(masks, Flag.ENV_INTERPOLATED, s.ok & ~s.exact)
            set_flag(masks, Flag.ENV_OUT_OF_RANGE, out)
            columns[column.name] = s.value
            if column.name == "pressure_ext":
                columns["_pressure_usable"] = s.ok & ~out
    return columns


def _era5(
    hours: Iterable[Era5Hour], at_s: np.ndarray, max_gap_s: float, masks: np.ndarray
) -> dict[str, np.ndarray]:
    latest = sorted(latest_by_hour(hours).values(), key=lambda h: h.time)
    times = np.array([h.time.timestamp() for h in latest], dtype=np.float64)
    preliminary = np.array([h.expver != "0001" for h in latest], dtype=bool)
    columns: dict[str, np.ndarray] = {}
    base = sample(times, np.zeros(len(times)), at_s, max_gap_s)
    pending = at_s > times.max() if len(times) else np.ones(len(at_s), dtype=bool)
    set_flag(masks, Flag.ERA5_PENDING, pending)
    set_flag(masks, Flag.ERA5_MISSING, ~base.ok & ~pending)
    set_flag(masks, Flag.ERA5_INTERPOLATED, base.ok & ~base.exact)
    if len(times):
        set_flag(
            masks,
            Flag.ERA5_PRELIMINARY,
            base.ok & (preliminary[base.left] | preliminary[base.right]),
        )
    for column, field in ERA5_FIELDS.items():
        raw = np.array([getattr(h, field) for h in latest], dtype=np.float64)
        present = ~np.isnan(raw)
        # a missing value of one hour must not be bridged by a wider interpolation
        s = sample(times[present], raw[present], at_s, max_gap_s)
        columns[column] = np.where(base.ok, s.value, np.nan)
    set_flag(masks, Flag.TEFF_MISSING, base.ok & np.isnan(columns["era5_t_eff_k"]))
    return columns


def unify_frame(
    rates: Sequence[dict[str, Any]],
    readings: Iterable[LogReading],
    hours: Iterable[Era5Hour],
    coefficients: AtmosphereCoefficients,
    settings: JoinSettings | None = None,
    revision: int = 0,
) -> pd.DataFrame:
    """Unified minutes of one station: the rates joined with logs and ERA5, corrected, flagged.

    Parameters
    ----------
    rates : sequence of dict
        Minute records of one station (``MinuteRates`` fields, ``time`` aware).
    readings : iterable of LogReading
        The station's log readings (any order, any sources).
    hours : iterable of Era5Hour
        The station's ERA5 hours (several revisions of an hour allowed: the highest counts).
    coefficients : AtmosphereCoefficients
        β, P0, α_T, T_eff reference of the station.
    settings : JoinSettings, optional
        Maximum interpolation gaps.
    revision : int, optional
        Revision number given to every row.

    Returns
    -------
    pandas.DataFrame
        One row per minute, the ``UnifiedMinute`` fields as columns (NaN = missing; ``quality``
        is a list of flag names), sorted by time.
    """
    settings = settings or JoinSettings()
    frame = pd.DataFrame(list(rates))
    if frame.empty:
        return pd.DataFrame(columns=_COLUMNS)
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    at_s = np.array([t.timestamp() for t in frame["time"]], dtype=np.float64) + MINUTE_MIDDLE_S
    added = _joined(
        at_s,
        frame["live_s"].to_numpy(np.float64),
        frame["rate_total_hz"].to_numpy(np.float64),
        frame["rate_total_err_hz"].to_numpy(np.float64),
        frame[[f"eff_{p}" for p in PLANES]].to_numpy(np.float64),
        frame[[f"eff_{p}_err" for p in PLANES]].to_numpy(np.float64),
        readings,
        hours,
        coefficients,
        settings,
    )
    added["revision"] = revision
    added["quality"] = [flag_names(int(m)) for m in added["quality_flags"]]
    # new columns are gathered and added at once: one insert per column costs ~1 ms in pandas
    frame = pd.concat([frame, pd.DataFrame(added, index=frame.index)], axis=1)
    return frame.reindex(columns=_COLUMNS)


def unify_rows(
    rates: Sequence[dict[str, Any]],
    readings: Iterable[LogReading],
    hours: Iterable[Era5Hour],
    coefficients: AtmosphereCoefficients,
    settings: JoinSettings | None = None,
) -> list[UnifiedMinute]:
    """The rows of :func:`unify_frame` (revision 0) without pandas, for a few minutes at a time.

    The streaming service joins a handful of minutes per record; a DataFrame costs several ms
    to build and to take apart whatever its size, this builds the rows from the records and the
    joined columns directly. ``to_rows(unify_frame(...))`` gives the same rows.

    Parameters
    ----------
    rates, readings, hours, coefficients, settings
        As for :func:`unify_frame`.

    Returns
    -------
    list of UnifiedMinute
        One row per minute record, sorted by time (stable).
    """
    settings = settings or JoinSettings()
    records = sorted(rates, key=lambda r: r["time"])
    if not records:
        return []

    def floats(name: str) -> np.ndarray:
        return np.array([_nan_if_none(r.get(name)) for r in records], dtype=np.float64)

    at_s = np.array([r["time"].timestamp() for r in records], dtype=np.float64) + MINUTE_MIDDLE_S
    added = _joined(
        at_s,
        floats("live_s"),
        floats("rate_total_hz"),
        floats("rate_total_err_hz"),
        np.column_stack([floats(f"eff_{p}") for p in PLANES]),
        np.column_stack([floats(f"eff_{p}_err") for p in PLANES]),
        readings,
        hours,
        coefficients,
        settings,
    )
    # whole columns to Python scalars at once (NaN -> None): per value it costs ~10x more
    columns = {name: _scalars(values) for name, values in added.items()}
    quality = {mask: flag_names(mask) for mask in set(columns["quality_flags"])}
    names = [name for name in _COLUMNS if name not in columns]
    rows = []
    for i, record in enumerate(records):
        values = {name: record.get(name) for name in names}
        values = {name: v if v == v else None for name, v in values.items()}  # NaN != NaN
        values |= {name: column[i] for name, column in columns.items()}
        values["revision"] = 0
        values["quality"] = quality[values["quality_flags"]]
        rows.append(UnifiedMinute.model_validate(values))
    return rows


def _scalars(values: np.ndarray) -> list[Any]:
    """Python scalars of an array, None where NaN."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        scalars = array.astype(object)
        scalars[np.isnan(array)] = None
        return list(scalars)
    return list(array.tolist())


def _joined(
    at_s: np.ndarray,
    live_s: np.ndarray,
    rate: np.ndarray,
    rate_err: np.ndarray,
    eff: np.ndarray,
    eff_err: np.ndarray,
    readings: Iterable[LogReading],
    hours: Iterable[Era5Hour],
    coefficients: AtmosphereCoefficients,
    settings: JoinSettings,
) -> dict[str, Any]:
    """The columns the join adds to minute records (arrays over the minutes, in time order).

    ``at_s`` are the minute middles [s], ``rate``/``rate_err`` the total rate and its error
    [Hz], ``eff``/``eff_err`` the plane efficiencies (one column per plane). The result holds the
    environment, ERA5 and corrected-rate columns and ``quality_flags``.
    """
    masks = np.zeros(len(at_s), dtype=np.int64)
    set_flag(masks, Flag.PARTIAL_MINUTE, live_s < 60.0)
    env = _environment(readings, at_s, settings.log_max_gap_s, masks)
    era5 = _era5(hours, at_s, settings.era5_max_gap_s, masks)
    added: dict[str, Any] = {name: env[name] for name in _ENV} | era5

    usable = env["_pressure_usable"]
    era5_p = era5["era5_surface_pressure_hpa"]
    pressure = np.where(usable, env["pressure_ext"], era5_p)
    set_flag(masks, Flag.PRESSURE_FROM_ERA5, ~usable & ~np.isnan(era5_p))
    set_flag(masks, Flag.PRESSURE_MISSING, np.isnan(pressure))
    c = coefficients
    p_rate, p_err = pressure_correction(
        rate, rate_err, pressure, c.beta_pct_per_hpa, c.beta_err_pct_per_hpa, c.p0_hpa
    )
    pt_rate, pt_err = temperature_correction(
        p_rate,
        p_err,
        era5["era5_t_eff_k"],
        c.alpha_t_pct_per_k,
        c.alpha_t_err_pct_per_k,
        c.teff_ref_k,
    )
    e, e_err = three_of_four_efficiency(eff, eff_err)
    set_flag(masks, Flag.EFFICIENCY_MISSING, np.isnan(e))
    e_rate, e_err_hz = efficiency_correction(rate, rate_err, e, e_err)
    added["rate_p_corr_hz"], added["rate_p_corr_err_hz"] = p_rate, p_err
    added["rate_pt_corr_hz"], added["rate_pt_corr_err_hz"] = pt_rate, pt_err
    added["rate_eff_corr_hz"], added["rate_eff_corr_err_hz"] = e_rate, e_err_hz
    added["quality_flags"] = masks
    return added


def _nan_if_none(value: Any) -> Any:
    return math.nan if value is None else value


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def to_rows(frame: pd.DataFrame) -> list[UnifiedMinute]:
    """``UnifiedMinute`` rows of a frame of :func:`unify_frame` (NaN -> None)."""
    # column lists of Python scalars: much faster than DataFrame.to_dict on a wide frame
    columns = {str(name): frame[name].tolist() for name in frame.columns}
    return [
        UnifiedMinute.model_validate(
            {name: _none_if_nan(values[i]) for name, values in columns.items()}
        )
        for i in range(len(frame))
    ]
