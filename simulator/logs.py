"""Slow-control logs of a simulated station, in the layouts of :mod:`schemas.station_logs`.

Each log type gets one line per cadence (plus 0-4 s of logger delay) with exactly ``min_values``
values after the timestamp: the named columns at their positions, plausible numbers elsewhere.
Timestamps are ``YYYY-MM-DDThh:mm:ss``; each type has a habitual variant (a ``;`` right after the
timestamp, or a space instead of ``T``) and about 3 % of the lines use another one, as real loggers
that were updated mid-way do.

Values: the barometers read the true surface pressure plus a per-station offset and Gaussian noise;
the outside sensor reads the 2 m temperature, the inside one is ~8 K warmer; HV is about 5.5 kV with
sub-µA currents; the trigger counters of ``rates_`` are the simulated event counts of the 5 minutes
before the line (Accepted = all accepted events, CM_j = events where the j-th trigger pair fired);
gas flows about 1000 a.u.; disks fill slowly. A scenario (``simulator/scenario.py``) changes what
the outside barometer, the HV supply and the flow meters read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from schemas.station_logs import LOG_TYPES, LogType
from simulator.seeds import Stream, rng_for
from simulator.station import StationSim
from simulator.weather import WeatherHourly

#: Habitual timestamp style per log prefix: "T", "T;" (semicolon after it) or " " (space for T).
HABITUAL_STYLE = {
    "sensors_bus0_": "T",
    "sensors_bus1_": "T",
    "hv0_": " ",
    "rates_": "T;",
    "Flow0_": "T;",
    "Odroid_": "T",
}
STYLES = ("T", "T;", " ")
LOG_DAMAGE_KINDS = ("too_few_values", "bad_timestamp", "non_numeric")


@dataclass
class DayCounts:
    """Per-second event counts of one UTC day (86400 slots) and which seconds were acquired."""

    day_s: int
    n_pairs: int
    covered: np.ndarray = field(init=False)
    counts: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.covered = np.zeros(86400, bool)
        names = [
            "coincidence",
            "self",
            *(f"pair_{j}" for j in range(self.n_pairs)),
            *(f"plane_{k}" for k in range(4)),
        ]
        self.counts = {name: np.zeros(86400, np.int32) for name in names}

    def add(self, seconds: np.ndarray, per_second: dict[str, np.ndarray]) -> None:
        """Add a file's per-second counts (the part falling on this day)."""
        idx = seconds - self.day_s
        sel = (idx >= 0) & (idx < 86400)
        if not sel.any():
            return
        self.covered[idx[sel]] = True
        for name, values in per_second.items():
            if name in self.counts:
                self.counts[name][idx[sel]] += values[sel]


def _timestamp(t: int, style: str) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    if style == " ":
        return dt.strftime("%Y-%m-%d %H:%M:%S")
    stamp = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return stamp + ";" if style == "T;" else stamp


@dataclass
class LogFile:
    """One day of one log type."""

    log_type: LogType
    day: str
    times: np.ndarray
    lines: list[str]
    damaged: list[tuple[int, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """File name ``<prefix>YYYY-MM-DD.log``."""
        return self.log_type.filename(self.day)

    def text(self, upto_line: int | None = None) -> str:
        """The file content (optionally only the first lines)."""
        lines = self.lines if upto_line is None else self.lines[:upto_line]
        return "".join(line + "\n" for line in lines)


def _window_rates(
    counts: DayCounts,
    times: np.ndarray,
    names: list[str],
    expected: np.ndarray,
    window_s: int = 300,
) -> dict[str, np.ndarray]:
    """Rates over the ``window_s`` before each time from the acquired seconds (expected if none)."""
    out = {}
    csum = {n: np.concatenate([[0], np.cumsum(counts.counts[n], dtype=np.int64)]) for n in names}
    cov = np.concatenate([[0], np.cumsum(counts.covered, dtype=np.int64)])
    hi = np.clip(times - counts.day_s, 0, 86400)
    lo = np.clip(hi - window_s, 0, 86400)
    live = cov[hi] - cov[lo]
    for n in names:
        total = csum[n][hi] - csum[n][lo]
        out[n] = np.where(live > 0, total / np.maximum(live, 1), expected)
    return out


def generate_day_logs(
    sim: StationSim, day_s: int, weather: WeatherHourly, counts: DayCounts, *, damage: bool
) -> list[LogFile]:
    """The six log files of one UTC day.

    Parameters
    ----------
    sim : StationSim
        The station.
    day_s : int
        UTC midnight, seconds since 1970. [s]
    weather : WeatherHourly
        Hourly weather covering the day.
    counts : DayCounts
        The day's simulated per-second event counts.
    damage : bool
        Damage a few lines (wrong field counts, bad timestamps, non-numeric values).
    """
    day = datetime.fromtimestamp(day_s, UTC).strftime("%Y-%m-%d")
    key = day_s // 86400
    files = []
    for type_index, log_type in enumerate(LOG_TYPES):
        rng = rng_for(sim.seed, sim.id, Stream.LOGS, key, type_index)
        n = 86400 // log_type.cadence_s
        times = day_s + np.arange(n) * log_type.cadence_s + rng.integers(0, 5, n)
        values, formats = _values(sim, log_type, times, weather, counts, rng)
        habitual = HABITUAL_STYLE.get(log_type.prefix, "T")
        styles = np.where(rng.random(n) < 0.03, rng.integers(0, 3, n), STYLES.index(habitual))
        lines = []
        for i in range(n):
            text = " ".join(fmt % v for fmt, v in zip(formats, values[i], strict=True))
            lines.append(f"{_timestamp(int(times[i]), STYLES[styles[i]])} {text}")
        files.append(LogFile(log_type, day, times, lines))
    if damage:
        _damage_logs(sim, key, files)
    return files


def _values(
    sim: StationSim,
    log_type: LogType,
    times: np.ndarray,
    weather: WeatherHourly,
    counts: DayCounts,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[str]]:
    n = times.size
    p, t2m, _, factor = weather.at_seconds(times, sim.coefficients)
    factor = factor * sim.scenario.rate_factor(times)
    t_c = t2m - 273.15
    prefix = log_type.prefix
    if prefix in ("sensors_bus0_", "sensors_bus1_"):
        outside = prefix == "sensors_bus0_"
        daily_mean = np.interp(times, weather.time_s, _daily_mean(weather)) - 273.15
        t_ext = t_c + 0.3 + rng.normal(0, 0.1, n)
        rh_ext = np.clip(75 - 3.0 * (t_ext - daily_mean) + rng.normal(0, 1.0, n), 5, 100)
        if outside:
            temp, rh = t_ext, rh_ext
            baro = p + sim.barometer_offset_hpa + rng.normal(0, sim.barometer_noise_hpa, n)
            baro = sim.scenario.reading("pressure_ext", times, baro)
        else:
            temp = (
                t_ext
                + 8.0
                + 0.5 * np.sin(2 * np.pi * (times % 86400) / 86400)
                + rng.normal(0, 0.1, n)
            )
            rh = np.clip(0.6 * rh_ext + rng.normal(0, 0.5, n), 5, 100)
            baro = p + sim.internal_barometer_offset_hpa + rng.normal(0, sim.barometer_noise_hpa, n)
        raw_t = np.round(temp * 100 + 52000)
        raw_p = np.round(baro * 300)
        cols = [
            np.zeros(n) + (0 if outside else 1),
            np.full(n, 118 if outside else 119),
            raw_t,
            raw_p,
            temp,
            rh,
            baro,
        ]
        return np.column_stack(cols), ["%d", "%d", "%d", "%d", "%.2f", "%.2f", "%.2f"]
    if prefix == "hv0_":
        current_neg = 0.45 + 0.004 * (t_c - 10) + rng.normal(0, 0.01, n)
        current_pos = 0.52 + 0.004 * (t_c - 10) + rng.normal(0, 0.01, n)
        hv_neg = 5.5 + rng.normal(0, 0.002, n)
        hv_pos = 5.5 + rng.normal(0, 0.002, n)
        if sim.scenario:
            current_neg = sim.scenario.reading("current_neg", times, current_neg)
            current_pos = sim.scenario.reading("current_pos", times, current_pos)
            hv_neg = sim.scenario.reading("hv_neg", times, hv_neg)
            hv_pos = sim.scenario.reading("hv_pos", times, hv_pos)
        head = [
            np.ones(n),
            np.ones(n),
            np.full(n, 5500.0),
            np.full(n, 5500.0),
            25 + 0.3 * t_c + rng.normal(0, 0.2, n),
            np.zeros(n),
        ]
        tail = [np.full(n, 10.0), np.full(n, 10.0), np.full(n, 10.0), np.full(n, 10.0)]
        tail += [30.0 + rng.normal(0, 0.2, n), 30.5 + rng.normal(0, 0.2, n)] + [np.zeros(n)] * 5
        cols = [*head, current_neg, current_pos, hv_neg, hv_pos, *tail]
        fmts = ["%d", "%d", "%d", "%d", "%.1f", "%d", "%.3f", "%.3f", "%.3f", "%.3f"]
        fmts += ["%.1f"] * 4 + ["%.1f", "%.1f"] + ["%d"] * 5
        return np.column_stack(cols), fmts
    if prefix == "rates_":
        names = [
            "coincidence",
            "self",
            *(f"pair_{j}" for j in range(counts.n_pairs)),
            *(f"plane_{k}" for k in range(4)),
        ]
        # windows without acquired seconds (before the first file) get the expected rates, the
        # pair and plane rates in the proportions of the day's events
        total = max(1, int(counts.counts["coincidence"].sum()))
        expected = {
            name: sim.rate_hz * factor * counts.counts[name].sum() / total for name in names
        }
        expected["coincidence"] = sim.rate_hz * factor
        expected["self"] = np.zeros(n)
        rates = {name: _window_rates(counts, times, [name], expected[name])[name] for name in names}
        accepted = rates["coincidence"] + rates["self"]
        asserted = accepted * 1.08 + 1.5 + rng.normal(0, 0.1, n)
        edge = accepted * 1.03 + 0.5 + rng.normal(0, 0.05, n)
        dark = 60 + 40 * rng.random(4)
        mux = [
            np.clip(dark[k] + 2.5 * rates[f"plane_{k}"] + rng.normal(0, 0.5, n), 0, None)
            for k in range(4)
        ]
        cm = [rates.get(f"pair_{j}", np.zeros(n)) for j in range(4)]
        return np.column_stack([asserted, edge, accepted, *mux, *cm]), ["%.2f"] * 11
    if prefix == "Flow0_":
        base = 980 + 40 * rng.random(4)
        hours = (times - times[0]) / 3600
        cols = [
            np.round(base[k] + 5 * np.sin(2 * np.pi * hours / 24 + k) + rng.normal(0, 3, n))
            for k in range(4)
        ]
        cols = [sim.scenario.reading(f"flow_{k + 1}", times, c) for k, c in enumerate(cols)]
        return np.column_stack(cols), ["%d"] * 4
    if prefix == "Odroid_":
        days = times / 86400.0
        fill1 = 35.0 + np.mod(0.4 * (days - 19000), 50.0)
        fill2 = 12.0 + np.mod(0.05 * (days - 19000), 20.0)
        fillx = 63.0 + np.mod(0.1 * (days - 19000), 30.0)
        return np.column_stack([fill1, fill2, fillx]), ["%.1f", "%.1f", "%.1f"]
    raise ValueError(f"no simulation for log type {prefix!r}")


def _daily_mean(weather: WeatherHourly) -> np.ndarray:
    """24-hour running mean of the 2 m temperature (for the relative humidity). [K]"""
    kernel = np.ones(25) / 25
    padded = np.pad(weather.t2m_k, 12, mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def _damage_logs(sim: StationSim, key: int, files: list[LogFile]) -> None:
    """Damage four lines of the day, spread over the log types."""
    rng = rng_for(sim.seed, sim.id, Stream.LOG_DAMAGE, key)
    for n_damage in range(4):
        f = files[int(rng.integers(0, len(files)))]
        kind = LOG_DAMAGE_KINDS[n_damage % len(LOG_DAMAGE_KINDS)]
        taken = {line for line, _ in f.damaged}
        i = int(rng.integers(0, len(f.lines)))
        while i + 1 in taken:
            i = (i + 1) % len(f.lines)
        stamp, *values = (
            f.lines[i].split(" ") if f.lines[i][10:11] != " " else _split_space_style(f.lines[i])
        )
        if kind == "too_few_values":
            keep = max(0, f.log_type.min_values - 1 - int(rng.integers(0, 3)))
            values = values[:keep]
        elif kind == "bad_timestamp":
            bad = ("T25:", "T24:61:", "-02-30T", "/")
            choice = bad[int(rng.integers(0, len(bad)))]
            date, _, clock = stamp.rstrip(";").partition("T")
            if choice == "T25:":
                stamp = f"{date}T25:{clock[3:]}"
            elif choice == "T24:61:":
                stamp = f"{date}T{clock[:2]}:61:{clock[6:]}"
            elif choice == "-02-30T":
                stamp = f"{date[:4]}-02-30T{clock}"
            else:
                stamp = f"{date.replace('-', '/')}-{clock}"
        else:
            column = f.log_type.columns[int(rng.integers(0, len(f.log_type.columns)))]
            values[column.position] = ("ERR", "--", "1.2.3", "12,5")[int(rng.integers(0, 4))]
        f.lines[i] = " ".join([stamp, *values])
        f.damaged.append((i + 1, kind))
    for f in files:
        f.damaged.sort()


def _split_space_style(line: str) -> list[str]:
    """Split a line whose timestamp has a space instead of T, keeping the timestamp whole."""
    date, clock, *values = line.split(" ")
    return [f"{date}T{clock}", *values]
