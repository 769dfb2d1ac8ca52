"""Anomaly detectors on the unified table (pure pandas/numpy, no Kafka).

Every detector takes a station's minutes (unified-table columns, any order, gaps allowed), puts
them on a complete minute grid and returns :class:`schemas.models.Alert` records. An alert starts
at the first anomalous minute, is *detected* once the condition has held ``sustain`` minutes (that
is the earliest time a streaming consumer can raise it), and ends at the minute after the last
anomalous one, or stays open (``end`` null) when the anomaly reaches the end of the data.
Alert ids are ``<station>/<kind>/<start>``, so re-running on more data re-emits the same alert
with a later end instead of a new one.

Station level (DOMAIN.md §6 disturbances):

- ``rate_excursion``: the corrected rate (pressure and T_eff, else pressure only) averaged over
  ``rate_window_min`` deviates from its baseline (median of the same average over the preceding
  ``baseline_h``, lagged by the window) by more than ``rate_n_sigma`` Poisson σ (from the raw
  counts, plus the baseline's own statistical error), for ``rate_sustain_min`` minutes;
- ``barometer_mismatch``: station barometer minus ERA5 surface pressure moves more than
  ``baro_max_dev_hpa`` away from its baseline (median over the preceding ``baseline_h``) for
  ``baro_sustain_min`` minutes: a jump or a drift faster than the baseline follows (the constant
  offset of altitude and calibration is not an anomaly);
- ``hv_out_of_band`` / ``current_out_of_band``: |HV| or a current outside its band;
- ``gas_flow_low``: a gas flow below its alarm level;
- ``efficiency_drop``: a plane efficiency, averaged over ``eff_window_min``, falls more than
  ``eff_max_drop`` below its baseline;
- ``data_stopped``: no minute rows for ``stopped_after_min`` minutes (a gap, or the end of the
  data up to ``now``); ``logs_stopped``: minutes without any slow-control value for
  ``logs_stopped_after_min`` minutes.

Network level: ``forbush_candidate`` when the corrected rate is down by more than
``forbush_station_sigma`` at ``forbush_min_stations`` or more stations at once and their combined
deviation (inverse-variance mean) is beyond ``-forbush_n_sigma`` for ``forbush_sustain_min``
minutes; onset = the start of the window where the combined deviation went below -1σ and stayed
there, depth = the deepest combined relative deviation over the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd

from schemas.models import Alert, AlertKind
from services.common.stations import AlertThresholds

#: Unified columns the detectors read.
DETECTOR_COLUMNS: tuple[str, ...] = (
    "live_s",
    "rate_total_hz",
    "rate_p_corr_hz",
    "rate_pt_corr_hz",
    "pressure_ext",
    "temperature_ext",
    "era5_surface_pressure_hpa",
    "hv_neg",
    "hv_pos",
    "current_neg",
    "current_pos",
    "accepted",
    "flow_1",
    "flow_2",
    "flow_3",
    "flow_4",
    "eff_1",
    "eff_2",
    "eff_3",
    "eff_4",
)
MINUTE = pd.Timedelta(minutes=1)
Severity = Literal["info", "warning", "critical"]
_DEFAULT_BANDS = AlertThresholds()


@dataclass(frozen=True)
class AlertSettings:
    """Thresholds of the detectors (see the module docstring). Units in the names.

    The HV, current and flow limits are per station (``config/stations.yaml``, ``alerts:``);
    :meth:`for_station` puts a station's into these settings.
    """

    baseline_h: float = 24.0
    rate_window_min: int = 180
    rate_n_sigma: float = 5.0
    rate_sustain_min: int = 30
    baro_max_dev_hpa: float = 2.0
    baro_sustain_min: int = 30
    hv_band_kv: tuple[float, float] = _DEFAULT_BANDS.hv_band_kv
    current_band_ua: tuple[float, float] = _DEFAULT_BANDS.current_band_ua
    hv_sustain_min: int = 5
    flow_alarm: float = _DEFAULT_BANDS.flow_alarm
    flow_sustain_min: int = 10
    eff_window_min: int = 60
    eff_max_drop: float = 0.05
    eff_sustain_min: int = 30
    stopped_after_min: int = 15
    logs_stopped_after_min: int = 60
    forbush_n_sigma: float = 5.0
    forbush_station_sigma: float = 2.0
    forbush_sustain_min: int = 30
    forbush_min_stations: int = 2

    def for_station(self, thresholds: AlertThresholds) -> AlertSettings:
        """These settings with a station's configured bands and flow alarm."""
        return replace(
            self,
            hv_band_kv=thresholds.hv_band_kv,
            current_band_ua=thresholds.current_band_ua,
            flow_alarm=thresholds.flow_alarm,
        )


def minute_grid(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows on a complete minute index (UTC) from the first to the last minute; missing minutes
    are NaN rows. Column ``present`` says which minutes had a row."""
    times = pd.to_datetime(frame["time"], utc=True).dt.floor("min")
    indexed = frame.drop(columns=["time"]).set_index(pd.DatetimeIndex(times, name="time"))
    indexed = indexed[~indexed.index.duplicated(keep="last")].sort_index()
    if indexed.empty:
        return indexed.assign(present=pd.Series(dtype=bool))
    full = pd.date_range(indexed.index[0], indexed.index[-1], freq="min", name="time")
    grid = indexed.reindex(full)
    grid["present"] = full.isin(indexed.index)
    return grid


def runs(mask: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """``[start, stop)`` index ranges of consecutive True values at least ``min_length`` long."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    pairs = edges.reshape(-1, 2)
    return [(int(a), int(b)) for a, b in pairs if b - a >= min_length]


def held_runs(trigger: np.ndarray, hold: np.ndarray, min_length: int) -> list[tuple[int, int]]:
    """Runs of ``trigger`` at least ``min_length`` long, each extended to the end of the run of
    ``hold`` (a weaker condition, True wherever ``trigger`` is) that contains it: hysteresis, so
    that one anomaly flickering around its threshold stays one alert. Returns ``[start, stop)``."""
    hold = np.asarray(hold, dtype=bool) | np.asarray(trigger, dtype=bool)
    out: list[tuple[int, int]] = []
    for a, _ in runs(trigger, min_length):
        if out and a < out[-1][1]:
            continue  # inside the previous held run
        stop = a
        while stop < hold.size and hold[stop]:
            stop += 1
        # a run held only by missing data up to the end is still open; one that ends in
        # missing data closes at the last minute of the condition itself
        while stop > a and not trigger[stop - 1] and stop < hold.size:
            stop -= 1
        out.append((a, stop))
    return out


def _column(grid: pd.DataFrame, name: str) -> np.ndarray:
    if name in grid:
        return grid[name].astype("float64").to_numpy()
    return np.full(len(grid), np.nan)


def _alert(
    station: int | None,
    kind: AlertKind,
    severity: Severity,
    index: pd.DatetimeIndex,
    start: int,
    stop: int,
    sustain: int,
    evidence: Mapping[str, float],
    message: str,
    stations: list[int] | None = None,
    onset: pd.Timestamp | None = None,
) -> Alert:
    """An alert over minutes ``[start, stop)`` of ``index``; open when ``stop`` is the end."""
    first = onset if onset is not None else index[start]
    who = "network" if station is None else str(station)
    end = None if stop >= len(index) else index[stop - 1] + MINUTE
    return Alert(
        alert_id=f"{who}/{kind}/{first.strftime('%Y-%m-%dT%H:%MZ')}",
        station=station,
        stations=stations or ([] if station is None else [station]),
        kind=kind,
        severity=severity,
        start=first.to_pydatetime(),
        end=None if end is None else end.to_pydatetime(),
        detected=(index[start + sustain - 1] + MINUTE).to_pydatetime(),
        evidence={k: round(float(v), 6) for k, v in evidence.items() if np.isfinite(v)},
        message=message,
    )


@dataclass(frozen=True)
class RateDeviation:
    """Relative deviation of a station's corrected rate from its baseline, per minute.

    Attributes
    ----------
    index : DatetimeIndex
        Minutes. [UTC]
    deviation : ndarray
        Window mean / baseline - 1 (NaN without enough data). [1]
    sigma : ndarray
        Its statistical error. [1]
    baseline_hz : ndarray
        The baseline. [Hz]
    """

    index: pd.DatetimeIndex
    deviation: np.ndarray
    sigma: np.ndarray
    baseline_hz: np.ndarray

    @property
    def z(self) -> np.ndarray:
        """Deviation in units of σ. [1]"""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.deviation / self.sigma


def rate_deviation(
    grid: pd.DataFrame, settings: AlertSettings, disturbed: np.ndarray | None = None
) -> RateDeviation:
    """The corrected rate's windowed deviation from its lagged baseline (module docstring).

    Minutes marked ``disturbed`` stay out of the baseline, which then keeps its last value: a
    long disturbance is measured against the rate before it, not absorbed into the baseline.
    """
    corrected = _column(grid, "rate_pt_corr_hz")
    corrected = np.where(np.isfinite(corrected), corrected, _column(grid, "rate_p_corr_hz"))
    raw = _column(grid, "rate_total_hz")
    live = np.nan_to_num(_column(grid, "live_s"))
    ok = np.isfinite(corrected) & np.isfinite(raw) & (live > 0)
    window = settings.rate_window_min
    frame = pd.DataFrame(
        {
            "weighted": np.where(ok, corrected * live, 0.0),
            "live": np.where(ok, live, 0.0),
            "counts": np.where(ok, raw * live, 0.0),
        }
    )
    sums = frame.rolling(window, min_periods=1).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (sums["weighted"] / sums["live"]).to_numpy()
        relative = 1.0 / np.sqrt(sums["counts"].to_numpy())
    enough = sums["live"].to_numpy() >= 0.5 * 60.0 * window
    mean = np.where(enough, mean, np.nan)
    span = int(settings.baseline_h * 60)
    quiet = pd.Series(mean)
    if disturbed is not None:
        quiet[np.asarray(disturbed, dtype=bool)] = np.nan
    baseline = quiet.shift(window).rolling(span, min_periods=span // 2).median().ffill().to_numpy()
    # the baseline is a median of correlated window means: its error ≈ 1.25 σ sqrt(window/span)
    sigma = relative * np.sqrt(1.0 + 1.57 * window / span)
    with np.errstate(invalid="ignore", divide="ignore"):
        deviation = mean / baseline - 1.0
    return RateDeviation(pd.DatetimeIndex(grid.index), deviation, sigma, baseline)


def detect_rate_excursion(station: int, grid: pd.DataFrame, settings: AlertSettings) -> list[Alert]:
    """``rate_excursion`` alerts (module docstring).

    Iterated: the minutes of the alerts found (and the window before them) are kept out of the
    baseline and the detection is repeated until the alerts stop changing (at most 5 passes).
    """
    disturbed = np.zeros(len(grid), dtype=bool)
    held: list[tuple[int, int]] = []
    for _ in range(5):
        dev = rate_deviation(grid, settings, disturbed)
        z = dev.z
        size = np.nan_to_num(np.abs(z))
        found = held_runs(
            size > settings.rate_n_sigma,
            (size > settings.rate_n_sigma / 2) | ~np.isfinite(z),
            settings.rate_sustain_min,
        )
        if found == held:
            break
        held = found
        disturbed[:] = False
        for a, b in held:
            disturbed[max(0, a - settings.rate_window_min) : b] = True
    alerts = []
    for a, b in held:
        k = a + int(np.nanargmax(np.abs(z[a:b])))
        alerts.append(
            _alert(
                station,
                "rate_excursion",
                "warning",
                dev.index,
                a,
                b,
                settings.rate_sustain_min,
                {
                    "z_max": z[k],
                    "deviation_pct": 100 * dev.deviation[k],
                    "baseline_hz": dev.baseline_hz[k],
                    "window_min": settings.rate_window_min,
                },
                f"station {station}: corrected rate {100 * dev.deviation[k]:+.2f} % "
                f"({z[k]:+.1f} σ) from its baseline",
            )
        )
    return alerts


def detect_barometer(station: int, grid: pd.DataFrame, settings: AlertSettings) -> list[Alert]:
    """``barometer_mismatch`` alerts (module docstring)."""
    diff = _column(grid, "pressure_ext") - _column(grid, "era5_surface_pressure_hpa")
    span = int(settings.baseline_h * 60)
    baseline = (
        pd.Series(diff)
        .shift(settings.baro_sustain_min)
        .rolling(span, min_periods=60)
        .median()
        .to_numpy()
    )
    moved = diff - baseline
    size = np.nan_to_num(np.abs(moved))
    limit = settings.baro_max_dev_hpa
    alerts = []
    hold = (size > limit / 2) | ~np.isfinite(moved)
    for a, b in held_runs(size > limit, hold, settings.baro_sustain_min):
        k = a + int(np.nanargmax(np.abs(moved[a:b])))
        alerts.append(
            _alert(
                station,
                "barometer_mismatch",
                "warning",
                pd.DatetimeIndex(grid.index),
                a,
                b,
                settings.baro_sustain_min,
                {
                    "station_minus_era5_hpa": diff[k],
                    "baseline_hpa": baseline[k],
                    "change_hpa": moved[k],
                },
                f"station {station}: barometer moved {moved[k]:+.1f} hPa against ERA5 "
                "(sensor fault or drift)",
            )
        )
    return alerts


def _band(
    station: int,
    grid: pd.DataFrame,
    columns: tuple[str, ...],
    band: tuple[float, float],
    sustain: int,
    kind: AlertKind,
    unit: str,
    absolute: bool,
) -> list[Alert]:
    values = np.column_stack([_column(grid, c) for c in columns])
    if absolute:
        values = np.abs(values)
    outside = np.nan_to_num((values < band[0]) | (values > band[1])).astype(bool)
    unknown = ~np.isfinite(values).any(axis=1)
    alerts = []
    for a, b in held_runs(np.asarray(outside.any(axis=1)), np.asarray(unknown), sustain):
        worst = {
            f"{c}_{unit}": float(
                values[a:b, j][np.nanargmax(np.abs(values[a:b, j] - np.mean(band)))]
            )
            for j, c in enumerate(columns)
            if outside[a:b, j].any()
        }
        names = ", ".join(c for j, c in enumerate(columns) if outside[a:b, j].any())
        alerts.append(
            _alert(
                station,
                kind,
                "critical",
                pd.DatetimeIndex(grid.index),
                a,
                b,
                sustain,
                {**worst, f"band_low_{unit}": band[0], f"band_high_{unit}": band[1]},
                f"station {station}: {names} outside [{band[0]}, {band[1]}] {unit}",
            )
        )
    return alerts


def detect_hv(station: int, grid: pd.DataFrame, settings: AlertSettings) -> list[Alert]:
    """``hv_out_of_band`` and ``current_out_of_band`` alerts (|HV| [kV], currents [µA])."""
    hv = _band(
        station,
        grid,
        ("hv_neg", "hv_pos"),
        settings.hv_band_kv,
        settings.hv_sustain_min,
        "hv_out_of_band",
        "kv",
        absolute=True,
    )
    current = _band(
        station,
        grid,
        ("current_neg", "current_pos"),
        settings.current_band_ua,
        settings.hv_sustain_min,
        "current_out_of_band",
        "ua",
        absolute=True,
    )
    return hv + current


def detect_gas_flow(station: int, grid: pd.DataFrame, settings: AlertSettings) -> list[Alert]:
    """``gas_flow_low`` alerts: any of ``flow_1..4`` below the alarm level."""
    return _band(
        station,
        grid,
        ("flow_1", "flow_2", "flow_3", "flow_4"),
        (settings.flow_alarm, np.inf),
        settings.flow_sustain_min,
        "gas_flow_low",
        "au",
        absolute=False,
    )


def detect_efficiency(station: int, grid: pd.DataFrame, settings: AlertSettings) -> list[Alert]:
    """``efficiency_drop`` alerts per plane (module docstring)."""
    alerts = []
    span = int(settings.baseline_h * 60)
    window = settings.eff_window_min
    for plane in (1, 2, 3, 4):
        eff = pd.Series(_column(grid, f"eff_{plane}"))
        mean = eff.rolling(window, min_periods=window // 2).mean()
        baseline = mean.shift(window).rolling(span, min_periods=span // 4).median()
        drop = (baseline - mean).to_numpy()
        size = np.nan_to_num(drop)
        limit = settings.eff_max_drop
        hold = (size > limit / 2) | ~np.isfinite(drop)
        for a, b in held_runs(size > limit, hold, settings.eff_sustain_min):
            k = a + int(np.nanargmax(drop[a:b]))
            alerts.append(
                _alert(
                    station,
                    "efficiency_drop",
                    "warning",
                    pd.DatetimeIndex(grid.index),
                    a,
                    b,
                    settings.eff_sustain_min,
                    {
                        "plane": plane,
                        "efficiency": float(mean.iloc[k]),
                        "baseline": float(baseline.iloc[k]),
                    },
                    f"station {station}: plane {plane} efficiency {mean.iloc[k]:.3f}, "
                    f"baseline {baseline.iloc[k]:.3f}",
                )
            )
    return alerts


_LOG_COLUMNS = ("pressure_ext", "temperature_ext", "hv_neg", "hv_pos", "flow_1", "accepted")


def detect_stopped(
    station: int, grid: pd.DataFrame, settings: AlertSettings, now: pd.Timestamp | None = None
) -> list[Alert]:
    """``data_stopped`` (no minute rows) and ``logs_stopped`` (rows without slow-control values).

    ``now`` extends the grid to that time: minutes up to it without rows count as missing.
    """
    if now is not None and len(grid):
        end = pd.Timestamp(now).floor("min")
        if end > grid.index[-1]:
            extra = pd.date_range(grid.index[-1] + MINUTE, end, freq="min", name="time")
            grid = pd.concat([grid, pd.DataFrame({"present": False}, index=extra)])
    index = pd.DatetimeIndex(grid.index)
    present = grid["present"].fillna(False).to_numpy(dtype=bool)
    alerts = []
    sustain = settings.stopped_after_min
    for a, b in runs(~present, sustain):
        alerts.append(
            _alert(
                station,
                "data_stopped",
                "critical",
                index,
                a,
                b,
                sustain,
                {"silent_min": b - a},
                f"station {station}: no data for {b - a} min",
            )
        )
    logs = np.column_stack([np.isfinite(_column(grid, c)) for c in _LOG_COLUMNS]).any(axis=1)
    sustain = settings.logs_stopped_after_min
    for a, b in runs(present & ~logs, sustain):
        alerts.append(
            _alert(
                station,
                "logs_stopped",
                "warning",
                index,
                a,
                b,
                sustain,
                {"silent_min": b - a},
                f"station {station}: no slow-control values for {b - a} min",
            )
        )
    return alerts


def detect_station(
    station: int,
    frame: pd.DataFrame,
    settings: AlertSettings = AlertSettings(),
    now: pd.Timestamp | None = None,
) -> list[Alert]:
    """Every station-level detector on one station's minutes, sorted by start."""
    if frame.empty:
        return []
    grid = minute_grid(frame)
    alerts = [
        *detect_rate_excursion(station, grid, settings),
        *detect_barometer(station, grid, settings),
        *detect_hv(station, grid, settings),
        *detect_gas_flow(station, grid, settings),
        *detect_efficiency(station, grid, settings),
        *detect_stopped(station, grid, settings, now),
    ]
    return sorted(alerts, key=lambda a: (a.start, a.kind))


def detect_forbush(
    frames: Mapping[int, pd.DataFrame], settings: AlertSettings = AlertSettings()
) -> list[Alert]:
    """``forbush_candidate`` alerts from the stations' minutes (module docstring)."""
    deviations = {
        s: rate_deviation(minute_grid(f), settings) for s, f in frames.items() if not f.empty
    }
    if len(deviations) < settings.forbush_min_stations:
        return []
    first = min(d.index[0] for d in deviations.values())
    last = max(d.index[-1] for d in deviations.values())
    index = pd.date_range(first, last, freq="min", name="time")
    stations = sorted(deviations)
    z = np.column_stack(
        [pd.Series(deviations[s].z, deviations[s].index).reindex(index) for s in stations]
    )
    dev = np.column_stack(
        [pd.Series(deviations[s].deviation, deviations[s].index).reindex(index) for s in stations]
    )
    sig = np.column_stack(
        [pd.Series(deviations[s].sigma, deviations[s].index).reindex(index) for s in stations]
    )
    zz = np.nan_to_num(z, nan=0.0)
    # the stations whose rate is down, combined (inverse-variance mean of their deviations)
    down = zz < -settings.forbush_station_sigma
    weight = np.where(down & np.isfinite(sig), 1.0 / np.where(down, sig, 1.0) ** 2, 0.0)
    total_weight = weight.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        combined = (weight * np.nan_to_num(dev)).sum(axis=1) / total_weight
        z_combined = np.nan_to_num(combined * np.sqrt(total_weight))
    enough = down.sum(axis=1) >= settings.forbush_min_stations
    together = enough & (z_combined < -settings.forbush_n_sigma)
    still = enough & (z_combined < -settings.forbush_n_sigma / 2)
    alerts = []
    window = pd.Timedelta(minutes=settings.rate_window_min)
    for a, b in held_runs(together, still, settings.forbush_sustain_min):
        involved = [s for j, s in enumerate(stations) if down[a:b, j].any()]
        # onset: start of the window where the combined deviation went below -1σ and stayed
        j = a
        while j > 0 and z_combined[j - 1] < -1.0:
            j -= 1
        onset = index[j] - window + MINUTE
        k = a + int(np.nanargmin(combined[a:b]))
        alerts.append(
            _alert(
                None,
                "forbush_candidate",
                "info",
                index,
                a,
                b,
                settings.forbush_sustain_min,
                {
                    "depth_pct": -100 * combined[k],
                    "z_combined": z_combined[k],
                    "stations": len(involved),
                },
                f"Forbush-decrease candidate at stations {involved}: "
                f"{100 * combined[k]:+.2f} % from {onset:%Y-%m-%d %H:%M} UTC",
                stations=involved,
                onset=onset,
            )
        )
    return alerts
