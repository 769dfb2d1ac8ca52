"""The events of one station-hour file: Poisson arrivals modulated by the weather, tracks, detector,
trigger, electronics and the daily self-trigger run.

A file's acquisition starts a few seconds after the hour (``FILE_OFFSET`` stream) and lasts until
the next file starts; event times are whole UTC seconds. In every second ``s`` the number of
candidate tracks is Poisson with mean ``R_cand · f(s)`` (``f`` interpolated linearly between the
hourly weather values), which is exact for an intensity that is constant within each second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from schemas.dat_format import N_CHANNELS, N_PLANES, TRIGGER_COINCIDENCE, TRIGGER_SELF, dat_filename
from simulator.detector import (
    detector_response,
    electronics,
    fired_pairs,
    self_trigger_ticks,
    timed_strips,
)
from simulator.muons import sample_candidates
from simulator.seeds import Stream, rng_for
from simulator.station import StationSim
from simulator.weather import WeatherHourly


def hour_index(hour_s: int) -> int:
    """Hours since 1970 of an hour start (the key of per-hour random streams)."""
    if hour_s % 3600:
        raise ValueError(f"{hour_s} is not on the hour")
    return hour_s // 3600


def file_offset_s(seed: int, station: int, hour_s: int) -> int:
    """Seconds after the hour at which the station's file of that hour starts (1..9)."""
    return int(rng_for(seed, station, Stream.FILE_OFFSET, hour_index(hour_s)).integers(1, 10))


@dataclass(frozen=True)
class FileWindow:
    """The acquisition interval of one hourly file.

    Attributes
    ----------
    station : int
    hour_s : int
        The hour this file belongs to (UTC seconds, on the hour). [s]
    name_s : int
        Start time encoded in the file name. [s]
    acq_start_s, acq_end_s : int
        Acquisition interval [start, end) in whole UTC seconds. [s]
    """

    station: int
    hour_s: int
    name_s: int
    acq_start_s: int
    acq_end_s: int

    @property
    def name(self) -> str:
        """The ``.dat`` file name."""
        return dat_filename(self.station, datetime.fromtimestamp(self.name_s, UTC))

    @property
    def base(self) -> str:
        """The file name without ``.dat``."""
        return self.name[: -len(".dat")]

    @property
    def live_s(self) -> int:
        """Acquisition seconds. [s]"""
        return self.acq_end_s - self.acq_start_s


def file_window(seed: int, station: int, hour_s: int, dead_start_s: int = 0) -> FileWindow:
    """The file of an hour: starts at the hour + offset (+ ``dead_start_s`` of lost acquisition),
    ends where the next hour's file starts."""
    start = hour_s + file_offset_s(seed, station, hour_s)
    end = hour_s + 3600 + file_offset_s(seed, station, hour_s + 3600)
    return FileWindow(station, hour_s, start + dead_start_s, start + dead_start_s, end)


def cut_window(window: FileWindow, gaps: list[tuple[float, float]]) -> FileWindow:
    """The file of ``window`` when the DAQ writes nothing in the ``[start, end)`` ``gaps`` [s].

    A file running when a gap starts ends there; a file that would start inside a gap starts
    (and is named) at its end; a file inside a gap has no acquisition (it holds only its header
    line). A gap that begins and ends inside one file ends that file at the gap start: the DAQ
    resumes with the next hourly file.
    """
    start, end, name = window.acq_start_s, window.acq_end_s, window.name_s
    for g0, g1 in gaps:
        if g1 <= start or g0 >= end:
            continue
        if g0 <= start:
            if g1 >= end:
                return FileWindow(window.station, window.hour_s, name, start, start)
            start = name = int(np.ceil(g1))
        else:
            end = int(np.ceil(g0))
    return FileWindow(window.station, window.hour_s, name, start, end)


@dataclass
class HourEvents:
    """Events of one file, in file order (by time), with their truth.

    ``truth`` columns (one row per event): ``time_s``, ``trigger_type``, ``x_p1..x_p4``,
    ``y_p1..y_p4`` [mm], ``theta_deg``, ``phi_deg``, ``hit_mask`` (planes with charge above
    threshold, bit k = plane k+1), ``avalanche_mask``, ``pairs_fired`` (bit j = j-th trigger pair),
    ``t_event_ns``. Self-trigger rows have NaN geometry.
    """

    window: FileWindow
    epoch_s: np.ndarray
    trigger: np.ndarray
    ticks: np.ndarray
    truth: dict[str, np.ndarray]
    generated_muons: int
    candidates: int
    triggered: int
    self_events: int
    expected_triggered: float
    seconds: np.ndarray
    per_second: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.epoch_s.size)


def self_trigger_seconds(sim: StationSim, window: FileWindow) -> np.ndarray:
    """Seconds of the window inside the day's self-trigger run."""
    st = sim.self_trigger
    out = []
    day = window.acq_start_s - window.acq_start_s % 86400
    for d in (day - 86400, day, day + 86400):
        lo = max(window.acq_start_s, d + st.start_s_of_day)
        hi = min(window.acq_end_s, d + st.start_s_of_day + st.duration_s)
        if hi > lo:
            out.append(np.arange(lo, hi, dtype=np.int64))
    return np.concatenate(out) if out else np.empty(0, np.int64)


def simulate_hour(
    sim: StationSim, window: FileWindow, weather: WeatherHourly, *, with_electronics: bool = True
) -> HourEvents:
    """Simulate one file.

    Parameters
    ----------
    sim : StationSim
        The station.
    window : FileWindow
        Acquisition interval.
    weather : WeatherHourly
        Hourly weather covering the window.
    with_electronics : bool
        False computes arrivals, tracks and the trigger only (``ticks`` stays empty): the per-second
        counts are identical, which the live mode uses to write the trigger-rate logs ahead.
    """
    model = sim.detector
    key = hour_index(window.hour_s)
    seconds = np.arange(window.acq_start_s, window.acq_end_s, dtype=np.int64)
    *_, factor = weather.at_seconds(seconds, sim.coefficients)
    if sim.scenario:
        factor = factor * sim.scenario.rate_factor(seconds)

    rng = rng_for(sim.seed, sim.id, Stream.TRIGGER, key)
    per_second = rng.poisson(sim.rate_candidates_hz * factor)
    n_cand = int(per_second.sum())
    tracks = sample_candidates(rng, n_cand, model)
    response = detector_response(tracks, model, rng)
    fired = fired_pairs(response.hit_mask, model)
    lam_total = sim.rate_generated_hz * float(factor.sum())
    generated = n_cand + int(rng.poisson(lam_total * (1.0 - sim.candidate_fraction)))
    chosen = np.flatnonzero(fired)
    t1 = np.repeat(seconds, per_second)[chosen]
    tracks1 = tracks.take(chosen)
    response1 = response.take(chosen)
    fired1 = fired[chosen]
    m = chosen.size

    rng_e = rng_for(sim.seed, sim.id, Stream.ELECTRONICS, key)
    t_event = rng_e.random(m) * model.event_jitter_ns
    if with_electronics:
        noise = rng_e.standard_normal(4 * timed_strips(response1, model))
        ticks1 = electronics(response1, tracks1.cos_theta, t_event, noise, model)
    else:
        ticks1 = np.empty((0, N_CHANNELS), np.int64)

    st_seconds = self_trigger_seconds(sim, window)
    rng_s = rng_for(sim.seed, sim.id, Stream.SELF_TRIGGER, key)
    n_st = rng_s.poisson(sim.self_trigger.rate_hz, size=st_seconds.size)
    t2 = np.repeat(st_seconds, n_st)
    ticks2, hit2 = self_trigger_ticks(rng_s, t2.size, model)

    epoch = np.concatenate([t1, t2])
    order = np.argsort(epoch, kind="stable")
    n2 = t2.size
    nan2 = np.full(n2, np.nan)
    theta = np.degrees(np.arccos(tracks1.cos_theta))
    truth: dict[str, np.ndarray] = {
        "time_s": epoch[order],
        "trigger_type": np.concatenate(
            [np.full(m, TRIGGER_COINCIDENCE, np.int8), np.full(n2, TRIGGER_SELF, np.int8)]
        )[order],
    }
    for k in range(N_PLANES):
        truth[f"x_p{k + 1}"] = np.concatenate([response1.x_at[:, k], nan2])[order]
        truth[f"y_p{k + 1}"] = np.concatenate([response1.y_at[:, k], nan2])[order]
    truth["theta_deg"] = np.concatenate([theta, nan2])[order]
    truth["phi_deg"] = np.concatenate([np.degrees(tracks1.phi), nan2])[order]
    truth["hit_mask"] = np.concatenate([response1.hit_mask, hit2])[order]
    truth["avalanche_mask"] = np.concatenate([response1.avalanche, np.zeros(n2, np.uint8)])[order]
    truth["pairs_fired"] = np.concatenate([fired1, np.zeros(n2, np.uint8)])[order]
    truth["t_event_ns"] = np.concatenate([t_event, nan2])[order]

    n_sec = seconds.size
    idx1 = t1 - window.acq_start_s
    counts: dict[str, np.ndarray] = {
        "coincidence": np.bincount(idx1, minlength=n_sec).astype(np.int32),
        "self": np.bincount(t2 - window.acq_start_s, minlength=n_sec).astype(np.int32),
    }
    for j in range(len(model.trigger_pairs)):
        sel = (fired1 >> j) & 1 == 1
        counts[f"pair_{j}"] = np.bincount(idx1[sel], minlength=n_sec).astype(np.int32)
    for k in range(N_PLANES):
        sel = (response1.hit_mask >> k) & 1 == 1
        counts[f"plane_{k}"] = np.bincount(idx1[sel], minlength=n_sec).astype(np.int32)

    ticks = np.concatenate([ticks1, ticks2])[order] if with_electronics else ticks1
    return HourEvents(
        window=window,
        epoch_s=epoch[order],
        trigger=truth["trigger_type"].astype(np.int64),
        ticks=ticks,
        truth=truth,
        generated_muons=generated,
        candidates=n_cand,
        triggered=m,
        self_events=n2,
        expected_triggered=sim.rate_hz * float(factor.sum()),
        seconds=seconds,
        per_second=counts,
    )
