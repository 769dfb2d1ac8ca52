"""Per-minute tallies and rates of one station (DOMAIN.md §5.5-5.7): pure numpy.

A chunk's reconstructed events become a :class:`MinuteTally` (counts, live seconds, efficiency
counters and charge sums per minute, all additive); tallies of several chunks add up minute by
minute, so a minute covered by two chunks or files gets both contributions, and a chunk is
tallied once (the stream skips a chunk id it has seen). :func:`minute_records` turns a tally
into ``MinuteRates`` rows.

Live time of a file is its acquisition interval [file start, last event second + 1) cut into
minutes, minus the outlier seconds. The chunks of a file cover it in order, each from where the
previous one stopped (:class:`FileCover`) to the end of its last minute, the file's last chunk
and self-trigger chunks to the file's end: gaps between chunks (minutes without events) are live
time of the next chunk. A covered second is an outlier when its count of valid coincidence
events lies outside the band of the calibration in force (:func:`outlier_band`): the
``outlier_quantiles`` of the per-second counts of the seconds pooled for that calibration,
widened by ``outlier_margin_sigma`` times sqrt(median count). The margin matters: for Poisson
counts the bare 0.5-99.5 % quantile band drops ordinary fluctuations, and since high seconds
hold more events per second of live time than the mean, dropping them biases the rate low by
about 0.5 % at 8 Hz, more than the 0.12 % statistical error of a station-day; with a 3-sigma
margin only real bursts are dropped. Below about 30 Hz the margin also puts the low edge below 0
(8 Hz: -6.5), so no second is dropped for holding too few events: a dead period inside a file
counts as live time. A second is judged once, by the chunk that covers it and with that chunk's
events: events of a later chunk in an already judged second (a minute of more than a chunk's
events, cut by ingest) take that judgement, from the dropped seconds the cover remembers for the
last 60 judged seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas.columns import PLANES, REGIONS, TOPOLOGIES
from services.common.stations import ReconstructionConfig
from services.reconstruct._tally_kernels import count_events, count_seconds

if TYPE_CHECKING:  # events imports calibration, which imports this module
    from services.reconstruct.events import EventRates, EventResult

__all__ = [
    "NO_LIMIT",
    "FileCover",
    "MinuteTally",
    "chunk_end",
    "histogram_quantile",
    "merge_tallies",
    "minute_records",
    "outlier_band",
    "packed_records",
    "quantile_lerp",
    "quantile_ranks",
    "second_counts",
    "tally_chunk",
]

#: The upper edge of a band that drops nothing (a finite float, so that JSON keeps it).
NO_LIMIT = float(np.finfo(np.float64).max)
#: Judged seconds a file cover remembers (a minute cut into several chunks). [s]
_MEMORY_S = 60

_N_TOPO = len(TOPOLOGIES)
_N_REGION = len(REGIONS)
_FULL = 15
_PLANE_SHIFTS = np.arange(4, dtype=np.uint8)[None, :]
#: the plane a 3-plane hit mask (bits of planes 1-4) misses; -1 for other masks
_MISSING_PLANE = np.full(256, -1, np.int64)
_MISSING_PLANE[[_FULL ^ (1 << p) for p in range(4)]] = np.arange(4)


@dataclass(frozen=True, eq=False)
class MinuteTally:
    """Additive per-minute quantities of one station (arrays over m minutes, ascending).

    Attributes
    ----------
    minute_s : int64 (m,)
        Minute starts. [s since epoch, UTC]
    live_s : float64 (m,)
        Live acquisition seconds. [s]
    topology : int64 (m, 15)
        Events per topology (``TOPOLOGIES`` order).
    region : int64 (m, 13)
        3- and 4-plane events per angular region (``REGIONS`` order).
    full_fid : int64 (m, 4)
        4-plane events whose track crosses plane k inside the fiducial area.
    missing_fid : int64 (m, 4)
        3-plane events without plane k whose track crosses plane k inside the fiducial area.
    q_sum : float64 (m,)
        Sum of calibrated event charges of events with hits. [ns]
    q_events : int64 (m,)
        Events in ``q_sum``.
    rejected : int64 (m,)
        Impossible events and events of outlier seconds.
    """

    minute_s: np.ndarray
    live_s: np.ndarray
    topology: np.ndarray
    region: np.ndarray
    full_fid: np.ndarray
    missing_fid: np.ndarray
    q_sum: np.ndarray
    q_events: np.ndarray
    rejected: np.ndarray

    @staticmethod
    def empty() -> MinuteTally:
        """A tally without minutes."""
        i8 = np.int64
        return MinuteTally(
            np.zeros(0, i8),
            np.zeros(0),
            np.zeros((0, _N_TOPO), i8),
            np.zeros((0, _N_REGION), i8),
            np.zeros((0, 4), i8),
            np.zeros((0, 4), i8),
            np.zeros(0),
            np.zeros(0, i8),
            np.zeros(0, i8),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fields as a name → array mapping (for serialisation)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """Per minute, the integer fields side by side (int64, (m, 38)) and the float ones
        (float64, (m, 2): ``live_s``, ``q_sum``)."""
        # one concatenate: np.column_stack costs twice as much at a chunk's few minutes
        ints = np.concatenate(
            [
                self.topology,
                self.region,
                self.full_fid,
                self.missing_fid,
                self.q_events[:, None],
                self.rejected[:, None],
            ],
            axis=1,
        )
        return ints, np.column_stack([self.live_s, self.q_sum])


def quantile_ranks(q: float, n: int) -> tuple[int, int, float]:
    """The ranks i and j (the next, at most n - 1) of the order statistics that quantile q of n
    values lies between, and the weight of j, as ``np.quantile`` (linear) takes them."""
    position = q * (n - 1)
    i = math.floor(position)
    return i, min(i + 1, n - 1), position - i


def quantile_lerp(a: float, b: float, t: float) -> float:
    """Linear interpolation as ``np.quantile`` does it (so the results are the same floats)."""
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


def histogram_quantile(hist: np.ndarray, q: float) -> float:
    """Quantile q of the values a histogram counts (``hist[v]`` values equal to v), the same
    float as ``np.quantile(np.repeat(np.arange(len(hist)), hist), q)`` (linear)."""
    cumulative = np.cumsum(hist)
    i, j, t = quantile_ranks(q, int(cumulative[-1]))
    a, b = (float(v) for v in np.searchsorted(cumulative, [i, j], side="right"))
    return quantile_lerp(a, b, t)


def outlier_band(hist: np.ndarray, config: ReconstructionConfig) -> tuple[float, float]:
    """Per-second counts outside (low, high) make an outlier second (see the module doc).

    Parameters
    ----------
    hist : ndarray of int64
        Histogram of per-second counts: ``hist[c]`` seconds had c valid coincidence events.
    config : ReconstructionConfig
        ``outlier_quantiles`` and ``outlier_margin_sigma``.

    Returns
    -------
    (float, float)
        The band [events]; (0, ``NO_LIMIT``), which drops nothing, without any second.
    """
    if not np.any(hist):
        return 0.0, NO_LIMIT
    q_lo, q_hi = (histogram_quantile(hist, q) for q in config.outlier_quantiles)
    margin = config.outlier_margin_sigma * np.sqrt(max(histogram_quantile(hist, 0.5), 1.0))
    return float(q_lo - margin), float(q_hi + margin)


@dataclass(frozen=True)
class FileCover:
    """How far the chunks of one file have judged its seconds.

    Attributes
    ----------
    start_s, end_s : int
        The file's acquisition interval, end exclusive. [s since epoch, UTC]
    covered_s : int
        Seconds [start_s, covered_s) are judged (live or outlier). [s since epoch, UTC]
    dropped_s : tuple of int
        The outlier seconds among the last 60 judged ones. [s since epoch, UTC]
    """

    start_s: int
    end_s: int
    covered_s: int
    dropped_s: tuple[int, ...] = ()

    @staticmethod
    def new(start_s: int, end_s: int) -> FileCover:
        """A file none of whose seconds is judged yet."""
        return FileCover(start_s, end_s, start_s)


def chunk_end(cover: FileCover, last_time_s: int, closes_file: bool) -> int:
    """Where a chunk's cover ends: the end of the minute of its last event, or the file's end
    for the file's last chunk and for self-trigger chunks (which come after the file's
    coincidence chunks); never before the cover so far. [s since epoch, UTC]"""
    end = cover.end_s if closes_file else min(cover.end_s, (last_time_s // 60 + 1) * 60)
    return max(end, cover.covered_s)


def second_counts(time_s: np.ndarray, valid: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Valid events per second of [lo, hi) (int64, shape (hi - lo,))."""
    counts = np.zeros(max(hi - lo, 0), np.int64)
    count_seconds(time_s, valid, lo, counts)  # one pass, not five numpy calls per chunk
    return counts


def _second_counts_reference(time_s: np.ndarray, valid: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Plain-numpy specification of :func:`second_counts` (``_tally_kernels.count_seconds``)."""
    inside = valid & (time_s >= lo) & (time_s < hi)
    return np.bincount(time_s[inside] - lo, minlength=max(hi - lo, 0))


def _count2(row: np.ndarray, column: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """(rows, columns) int64 histogram of index pairs (one bincount: faster than np.add.at)."""
    flat = row.astype(np.int64) * columns + column.astype(np.int64)
    return np.bincount(flat, minlength=rows * columns).reshape(rows, columns)


def tally_chunk(
    time_s: np.ndarray,
    events: EventResult | EventRates,
    cover: FileCover,
    hi: int,
    counts: np.ndarray,
    band: tuple[float, float],
) -> tuple[MinuteTally, FileCover]:
    """Per-minute tally of one chunk's coincidence events, judging its seconds
    [``cover.covered_s``, hi) with the outlier ``band``.

    Parameters
    ----------
    time_s : ndarray of int64, shape (n,)
        Event times. [s since epoch, UTC]
    events : EventResult or EventRates
        The reconstructed events (same order); ``reconstruct_rates`` gives all the tally reads.
    cover : FileCover
        The chunk's file, judged so far.
    hi : int
        End of the seconds this chunk judges (:func:`chunk_end`). [s since epoch, UTC]
    counts : ndarray of int64, shape (hi - covered_s,)
        Valid events per judged second (:func:`second_counts`).
    band : (float, float)
        Outlier band of the calibration in force. [events]

    Returns
    -------
    MinuteTally
        The minutes of the judged seconds and of the events.
    FileCover
        The file's cover after this chunk.

    Events outside the file's acquisition interval, invalid events (``status`` != 0), events
    in outlier seconds and events in seconds judged before the cover's memory are rejected.
    """
    time_s = np.asarray(time_s, np.int64)
    if time_s.shape != (len(events),):
        raise ValueError("one time per event is needed")
    start, end, lo = cover.start_s, cover.end_s, cover.covered_s
    if end <= start:
        return MinuteTally.empty(), cover
    # the minutes of the events' times clipped to the file and of the judged seconds (clipping
    # is monotonic: the clipped extremes are the extremes clipped)
    extremes = [lo, hi - 1] if hi > lo else []
    if len(time_s):
        extremes += [min(max(int(t), start), end - 1) for t in (time_s.min(), time_s.max())]
    if not extremes:
        return MinuteTally.empty(), cover
    first_minute = min(extremes) // 60
    n_min = max(extremes) // 60 - first_minute + 1
    minute_s = np.arange(first_minute * 60, (first_minute + n_min) * 60, 60, dtype=np.int64)
    dropped = np.empty(max(hi - lo, 0), np.bool_)
    live = np.zeros(n_min)
    memory_lo = max(start, lo - _MEMORY_S)
    memory = np.array(cover.dropped_s, np.int64)
    topology, region, full_fid, missing_fid, q_sum, q_events, rejected = (
        np.zeros((n_min, _N_TOPO), np.int64),
        np.zeros((n_min, _N_REGION), np.int64),
        np.zeros((n_min, 4), np.int64),
        np.zeros((n_min, 4), np.int64),
        np.zeros(n_min),
        np.zeros(n_min, np.int64),
        np.zeros(n_min, np.int64),
    )
    count_events(
        time_s,
        events.status,
        events.topology,
        events.region,
        events.mask,
        events.fiducial,
        events.q_event,
        start,
        end,
        lo,
        hi,
        counts,
        float(band[0]),
        float(band[1]),
        memory_lo,
        memory,
        first_minute,
        dropped,
        live,
        topology,
        region,
        full_fid,
        missing_fid,
        q_sum,
        q_events,
        rejected,
    )
    tally = MinuteTally(
        minute_s, live, topology, region, full_fid, missing_fid, q_sum, q_events, rejected
    )
    covered = max(hi, lo)
    keep_from = covered - _MEMORY_S
    remembered = [s for s in cover.dropped_s if s >= keep_from]
    remembered += [s for s in (np.flatnonzero(dropped) + lo).tolist() if s >= keep_from]
    return tally, FileCover(start, end, covered, tuple(remembered))


def _count_events_reference(
    time_s: np.ndarray,
    events: EventResult | EventRates,
    start: int,
    end: int,
    lo: int,
    hi: int,
    counts: np.ndarray,
    band: tuple[float, float],
    memory_lo: int,
    memory_dropped: np.ndarray,
    first_minute: int,
    n_min: int,
) -> tuple[np.ndarray, ...]:
    """Plain-numpy specification of ``_tally_kernels.count_events`` (its inputs, and the
    output rows ``n_min``; returns dropped, live, topology, region, full, missing, q_sum,
    q_events, rejected)."""
    dropped = (counts < band[0]) | (counts > band[1])
    seconds = np.arange(lo, hi)
    live = np.bincount(seconds // 60 - first_minute, weights=~dropped, minlength=n_min)
    valid = events.status == 0
    clipped = np.clip(time_s, start, end - 1)
    minute = clipped // 60 - first_minute
    new = (clipped >= lo) & (clipped < hi)
    fresh_ok = ~dropped[np.clip(clipped - lo, 0, max(hi - lo - 1, 0))] if hi > lo else new
    remembered = (clipped >= memory_lo) & (clipped < lo)
    old_ok = remembered & ~np.isin(clipped, memory_dropped)
    judged_ok = np.where(new, fresh_ok, old_ok)
    # events outside the acquisition interval cannot be in its live time: rejected
    counted = valid & judged_ok & (time_s == clipped)
    rejected = np.bincount(minute[~counted], minlength=n_min)

    has_hits = counted & (events.topology >= 0)
    m_hit = minute[has_hits]
    topology = _count2(m_hit, events.topology[has_hits], n_min, _N_TOPO)
    in_region = counted & (events.region >= 0)
    region = _count2(minute[in_region], events.region[in_region], n_min, _N_REGION)

    # 4-plane events: each fiducial plane; 3-plane events: the missing plane, if fiducial
    full = counted & (events.mask == _FULL)
    rows, planes = np.nonzero((events.fiducial[full, None] >> _PLANE_SHIFTS) & 1)
    full_fid = _count2(minute[full][rows], planes, n_min, 4)
    missing_plane = _MISSING_PLANE[events.mask]
    three = counted & (missing_plane >= 0)
    plane = missing_plane[three]
    fid = ((events.fiducial[three] >> plane) & 1) == 1
    missing_fid = _count2(minute[three][fid], plane[fid], n_min, 4)

    q_sum = np.bincount(m_hit, weights=events.q_event[has_hits], minlength=n_min)
    q_events = np.bincount(m_hit, minlength=n_min)
    return dropped, live, topology, region, full_fid, missing_fid, q_sum, q_events, rejected


def merge_tallies(tallies: Iterable[MinuteTally]) -> MinuteTally:
    """Sum tallies minute by minute (chunks or files sharing a minute), in the given order."""
    parts = [t for t in tallies if len(t.minute_s)]
    if not parts:
        return MinuteTally.empty()
    minutes = np.unique(np.concatenate([t.minute_s for t in parts]))
    merged = {
        name: np.zeros(
            (len(minutes), *getattr(parts[0], name).shape[1:]), getattr(parts[0], name).dtype
        )
        for name in MinuteTally.__dataclass_fields__
        if name != "minute_s"
    }
    for tally in parts:
        where = np.searchsorted(minutes, tally.minute_s)
        for name, target in merged.items():
            target[where] += getattr(tally, name)
    return MinuteTally(minute_s=minutes, **merged)


def minute_records(
    tally: MinuteTally, station: int, calibration_version: str | Sequence[str]
) -> list[dict[str, Any]]:
    """``MinuteRates`` field dicts of the minutes with live time, in time order.

    Rates are count / live seconds [Hz] with Poisson errors sqrt(count) / live; plane
    efficiencies use the 3-of-4 method on fiducial tracks, ε_k = N1234 / (N1234 + N_missing k),
    with binomial errors sqrt(ε(1 - ε) / (N1234 + N_missing k)); None without tracks.
    """
    versions = (
        [calibration_version] * len(tally.minute_s)
        if isinstance(calibration_version, str)
        else list(calibration_version)
    )
    if len(versions) != len(tally.minute_s):
        raise ValueError("one calibration version per minute is needed")
    # Python floats, one tolist per field: a chunk's records cover a few minutes, at which the
    # ~40 numpy calls of a vectorised version cost several times this loop (the same IEEE
    # operations, so the same values: int / float, sqrt, as numpy computes them)
    fields = zip(
        tally.minute_s.tolist(),
        tally.live_s.tolist(),
        tally.topology.tolist(),
        tally.region.tolist(),
        tally.full_fid.tolist(),
        tally.missing_fid.tolist(),
        tally.q_sum.tolist(),
        tally.q_events.tolist(),
        tally.rejected.tolist(),
        versions,
        strict=True,
    )
    return [row for values in fields if (row := _record(station, *values)) is not None]


def packed_records(
    station: int,
    minute_s: Sequence[int],
    ints: Sequence[Sequence[int]],
    floats: Sequence[Sequence[float]],
    versions: Sequence[str],
) -> list[dict[str, Any]]:
    """:func:`minute_records` of minutes given as :meth:`MinuteTally.packed` rows (as lists: the
    stream's minute sums, without stacking them into a tally per chunk)."""
    r, f = _N_TOPO, _N_TOPO + _N_REGION  # where the regions and the fiducial counts start
    rows = []
    for minute, i, (live, q_sum), version in zip(minute_s, ints, floats, versions, strict=True):
        fields = (i[:r], i[r:f], i[f : f + 4], i[f + 4 : f + 8], q_sum, i[f + 8], i[f + 9])
        row = _record(station, minute, live, *fields, version)
        if row is not None:
            rows.append(row)
    return rows


def _record(
    station: int,
    minute: int,
    live: float,
    topology: Sequence[int],
    region: Sequence[int],
    full: Sequence[int],
    missing: Sequence[int],
    q_sum: float,
    q_events: int,
    rejected: int,
    version: str,
) -> dict[str, Any] | None:
    """One minute's ``MinuteRates`` field dict (None without live time)."""
    if not live > 0:
        return None
    values = [station, datetime.fromtimestamp(minute, UTC), live, *topology]
    for count in [*region, sum(region)]:
        values += (count / live, math.sqrt(count) / live)
    for n_full, n_missing in zip(full, missing, strict=True):
        trials = n_full + n_missing
        if trials:
            eff = n_full / trials
            values += (eff, math.sqrt(eff * (1 - eff) / trials))
        else:
            values += (None, None)
    values += [q_sum / q_events if q_events > 0 else None, rejected, version]
    return dict(zip(_RECORD_NAMES, values, strict=True))


_RECORD_NAMES = [
    "station",
    "time",
    "live_s",
    *(f"count_{name}" for name in TOPOLOGIES),
    *(n for name in REGIONS for n in (f"rate_{name}_hz", f"rate_{name}_err_hz")),
    "rate_total_hz",
    "rate_total_err_hz",
    *(n for plane in PLANES for n in (f"eff_{plane}", f"eff_{plane}_err")),
    "q_event_mean",
    "rejected_events",
    "calibration_version",
]
