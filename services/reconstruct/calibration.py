"""Calibration constants of one station from a pool of its raw events (DOMAIN.md §5.1).

A station's :class:`CalibrationPool` holds, per pooled chunk, a small :class:`ChunkPart` (what the
chunk contributes to each constant), its T_sum normal equations and the histogram of its
per-second event counts; :meth:`CalibrationPool.calibration` merges them into a
:class:`Calibration`, a versioned record that every minute says it was computed with. A
calibration so costs one pass over each chunk (done as the chunk arrives) plus a merge of the
parts, not a pass over the whole pool (bench/README.md, "Calibration from per-file parts").

* Charge pedestal per channel: the lower edge of the channel's time-over-threshold distribution
  (quantile ``pedestal_quantile`` of its non-zero values). A written charge always lies above the
  electronics threshold, so this edge is the pedestal plus the width of a threshold charge, the
  same for every channel: calibrated charges of all channels start at 0.
* T_dif offset per strip: the centre of the plateau of T_dif = (T_B - T_F)/2 that uniform
  illumination gives, taken as the midpoint of two symmetric quantiles.
* T_sum offset per strip: least squares over the time differences between the planes of 4-plane
  tracks (after the time of flight along the fitted track at c); only differences matter, so the
  offsets are relative (gauge: their sum is 0).
* Outlier band: the per-second counts outside it are outlier seconds (``minutes.outlier_band``),
  from the pooled seconds' counts.

The quantiles are exact, not binned: a quantile q of N pooled values is an interpolation between
the order statistics of rank ⌊q(N - 1)⌋ and the next, and both are among the
⌊q(M - 1)⌋ + 2 lowest values of every chunk when the pool never holds more than M events.
Each part therefore keeps only that many lowest (or highest) values per channel, and the pool
keeps whole chunks, at most ``calibration_max_events`` events (the newest chunk always). The
T_sum normal equations add up: each chunk keeps its own 16 x 16 system (pairs of the chunk's
tracks whose residual from the T_sum offsets in force, or before any were fitted from the
chunk's own solution, is below 1 ns).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import TYPE_CHECKING

import numpy as np

from services.common.stations import ReconstructionConfig
from services.reconstruct._calibration_kernels import (
    gather_channels,
    kept_pair_system,
    pack_rows,
    pair_differences,
)
from services.reconstruct.geometry import C_MM_NS
from services.reconstruct.minutes import NO_LIMIT, outlier_band, quantile_lerp, quantile_ranks

if TYPE_CHECKING:  # events imports this module
    from services.reconstruct.events import Tracks

log = logging.getLogger(__name__)

__all__ = [
    "Calibration",
    "CalibrationPool",
    "ChunkPart",
    "TsumEquations",
    "calibrate",
    "chunk_part",
    "make_calibration",
    "tsum_equations",
]

#: Fewest values for a per-channel constant (fewer gives the median of the other channels), and
#: fewest 4-plane tracks for T_sum offsets (fewer gives zeros).
_MIN_VALUES = 50
#: A pair of planes whose residual from the reference T_sum offsets exceeds this is dropped. [ns]
_TSUM_CUT_NS = 1.0


@dataclass(frozen=True, eq=False)
class Calibration:
    """Calibration constants of one station.

    Attributes
    ----------
    station : int
        Station id.
    version : str
        ``<station>-<last pooled event UTC>Z-<hash>``, the hash of the constants, the plane z
        and the outlier band (:func:`make_calibration`): the same pool gives the same version.
    pedestal_ns : ndarray (4, 4, 2)
        Charge pedestal edge per plane, strip and side (front, back). [ns]
    tdif_offset_ns : ndarray (4, 4)
        T_dif plateau centre per plane and strip. [ns]
    tsum_offset_ns : ndarray (4, 4)
        Relative T_sum offset per plane and strip. [ns]
    events : int
        Events the constants were computed from.
    first_time_s, last_time_s : int
        Time span of the pooled events. [s since epoch, UTC]
    z_mm : tuple of 4 float
        Plane z positions the events are reconstructed with (logbook). [mm]
    outlier_band : tuple of 2 float
        Per-second counts below the first or above the second make an outlier second. [events]
    pool_files : tuple of str
        Files whose chunks were pooled, oldest first.
    source_file, source_chunk : str, int
        The first chunk reconstructed with this calibration (file and chunk index).
    """

    station: int
    version: str
    pedestal_ns: np.ndarray
    tdif_offset_ns: np.ndarray
    tsum_offset_ns: np.ndarray
    events: int
    first_time_s: int
    last_time_s: int
    z_mm: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    outlier_band: tuple[float, float] = (0.0, NO_LIMIT)
    pool_files: tuple[str, ...] = ()
    source_file: str = ""
    source_chunk: int = 0


def _version(station: int, last_time_s: int, *arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, np.float64).tobytes())
    stamp = np.datetime64(int(last_time_s), "s").astype(str).replace("-", "").replace(":", "")
    return f"{station}-{stamp}Z-{digest.hexdigest()[:10]}"


def make_calibration(
    station: int,
    pedestal_ns: np.ndarray,
    tdif_offset_ns: np.ndarray,
    tsum_offset_ns: np.ndarray,
    events: int,
    first_time_s: int,
    last_time_s: int,
    z_mm: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
    outlier_band: tuple[float, float] = (0.0, NO_LIMIT),
) -> Calibration:
    """A :class:`Calibration` with its deterministic version string (the hash covers the
    constants, the plane z and the outlier band: everything a minute's numbers depend on)."""
    arrays = (
        np.asarray(pedestal_ns, np.float64).reshape(4, 4, 2),
        np.asarray(tdif_offset_ns, np.float64).reshape(4, 4),
        np.asarray(tsum_offset_ns, np.float64).reshape(4, 4),
    )
    z = _z4(z_mm)
    band = (float(outlier_band[0]), float(outlier_band[1]))
    return Calibration(
        station,
        _version(station, last_time_s, *arrays, np.array(z), np.array(band)),
        *arrays,
        events=events,
        first_time_s=first_time_s,
        last_time_s=last_time_s,
        z_mm=z,
        outlier_band=band,
    )


def _z4(z_mm: tuple[float, float, float, float] | np.ndarray) -> tuple[float, float, float, float]:
    z = [float(v) for v in np.asarray(z_mm, np.float64).reshape(4)]
    return z[0], z[1], z[2], z[3]


# -- exact quantiles from per-chunk tails -------------------------------------------------------
def _tail_size(q: float, max_events: int) -> int:
    """Order statistics a chunk keeps from one end so that quantile q of a pool of at most
    ``max_events`` values is exact: ranks ⌊q(N - 1)⌋ and the next, for every N ≤ max_events."""
    return math.floor(q * (max_events - 1)) + 2


def _quantile(lows: Sequence[np.ndarray], highs: Sequence[np.ndarray], n: int, q: float) -> float:
    """Quantile q (linear, ``np.quantile``'s default) of n pooled values of which each chunk
    kept its lowest values (``lows``, ascending) and, for q > 0.5, its highest (``highs``, also
    ascending). The value of rank r of the pool is among the r + 1 lowest of every chunk, so
    only those prefixes are merged."""
    i, j, t = quantile_ranks(q, n)
    # the merged copy partitioned in place (np.partition would copy it once more); a part no
    # longer than the prefix is taken whole (the pool has hundreds: a slice each costs)
    if q <= 0.5:
        merged = np.concatenate([low if low.size <= j + 1 else low[: j + 1] for low in lows])
        merged.partition((i, j))
        a, b = merged[i], merged[j]
    else:
        top_i, top_j = n - 1 - i, n - 1 - j  # ranks from the top
        merged = np.concatenate(
            [high if high.size <= top_i + 1 else high[high.size - top_i - 1 :] for high in highs]
        )
        m = merged.size
        merged.partition((m - 1 - top_j, m - 1 - top_i))
        a, b = merged[m - 1 - top_i], merged[m - 1 - top_j]
    return quantile_lerp(float(a), float(b), t)


def _quantiles_of_all(values: Sequence[np.ndarray], qs: Sequence[float]) -> list[float]:
    """Quantiles (linear, ``np.quantile``'s) of all the values of the arrays, from one merge and
    one partition (the same order statistics, so the same floats, as :func:`_quantile` each)."""
    merged = np.concatenate(values)
    ranks = [quantile_ranks(q, merged.size) for q in qs]
    merged.partition([r for i, j, _ in ranks for r in (i, j)])
    return [quantile_lerp(float(merged[i]), float(merged[j]), t) for i, j, t in ranks]


# -- what one chunk contributes -----------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class TsumEquations:
    """Normal equations of the T_sum offsets from one chunk's 4-plane tracks (additive).

    Attributes
    ----------
    normal : ndarray (16, 16)
        Σ over kept pairs of the design products, without the gauge term.
    rhs : ndarray (16,)
        Σ over kept pairs of the design row times the time difference. [ns]
    tracks : int
        4-plane tracks that entered.
    """

    normal: np.ndarray
    rhs: np.ndarray
    tracks: int


@dataclass(frozen=True, eq=False)
class ChunkPart:
    """One chunk's contribution to the calibration pool: exact tails and counts, additive.

    Attributes
    ----------
    key : str
        The chunk id (a chunk is pooled once).
    events : int
        Finite coincidence events of the chunk.
    first_time_s, last_time_s : int
        Time span of those events. [s since epoch, UTC]
    charge_count : int64 (4, 4, 2)
        Valid non-zero charges per channel.
    charge_low : list of 32 float64 arrays
        The lowest charges per channel (plane, strip, side, C order), ascending. [ns]
    tdif_count : int64 (4, 4)
        Events with both times and charges of the strip written.
    tdif_low, tdif_high : list of 16 float64 arrays
        The lowest and highest T_dif values per strip (plane, strip, C order), ascending (one
        array for both when the chunk has no more values than the two tails). [ns]
    source_file : str
        The file the chunk comes from.
    """

    key: str
    events: int
    first_time_s: int
    last_time_s: int
    charge_count: np.ndarray
    charge_low: list[np.ndarray]
    tdif_count: np.ndarray
    tdif_low: list[np.ndarray]
    tdif_high: list[np.ndarray]
    source_file: str = ""


def _lowest(values: np.ndarray, k: int) -> np.ndarray:
    """The k lowest values (all if fewer), ascending (a copy)."""
    values = np.partition(values, k - 1)[:k] if values.size > k else values.copy()
    values.sort()  # the method: np.sort's dispatch costs as much at a chunk's few values
    return values


def _tails(values: np.ndarray, k_low: int, k_high: int) -> tuple[np.ndarray, np.ndarray]:
    """The k_low lowest and the k_high highest values (all if fewer), each ascending."""
    n = values.size
    if n <= k_low + k_high:
        every = values.copy()
        every.sort()
        return every, every
    values = np.partition(values, (k_low - 1, n - k_high))
    low, high = values[:k_low].copy(), values[n - k_high :].copy()
    low.sort()
    high.sort()
    return low, high


def _gather_reference(
    time_s: np.ndarray, channels: np.ndarray, config: ReconstructionConfig
) -> tuple[list[np.ndarray], list[np.ndarray], int, int, int]:
    """Plain-numpy specification of ``_calibration_kernels.gather_channels``: per charge channel
    its valid non-zero values, per strip its T_dif values (rows with a NaN or inf left out), the
    usable rows and their first and last time."""
    usable = np.isfinite(channels).all(axis=1)
    channels, time_s = channels[usable], time_s[usable]
    blocks = channels.T.reshape(4, 4, 4, -1)[::-1]  # plane 1-4, quantity, strip, event
    lo, hi = config.charge_valid_ns
    charges, tdif = [], []
    for p in range(4):
        for s in range(4):
            tf, tb, qf, qb = (blocks[p, i, s] for i in range(4))
            for q in (qf, qb):
                charges.append(q[(q != 0) & (q >= lo) & (q <= hi)])
            hit = (tf != 0) & (tb != 0) & (qf != 0) & (qb != 0)
            tdif.append(0.5 * (tb[hit] - tf[hit]))
    n = len(time_s)
    return charges, tdif, n, int(time_s.min()) if n else 0, int(time_s.max()) if n else 0


def chunk_part(
    time_s: np.ndarray,
    channels: np.ndarray,
    config: ReconstructionConfig,
    key: str,
    source_file: str = "",
) -> ChunkPart:
    """What one chunk's coincidence events contribute to the pool (rows with a NaN are left out).

    Parameters
    ----------
    time_s : ndarray of int64, shape (n,)
        Event times. [s since epoch, UTC]
    channels : ndarray of float64, shape (n, 64)
        Raw channel values in file order (plane 4 first). [ns]
    config : ReconstructionConfig
        Quantiles, windows and ``calibration_max_events`` (which sets the tail sizes).
    key : str
        The chunk id.
    source_file : str, optional
        The chunk's file.

    Returns
    -------
    ChunkPart
        Its counts and quantile tails ([ns]) and the time span of its usable events.
    """
    channels = np.ascontiguousarray(channels, np.float64)
    time_s = np.ascontiguousarray(time_s, np.int64)
    if channels.ndim != 2 or channels.shape[1] != 64 or time_s.shape != (channels.shape[0],):
        raise ValueError(f"channels must be (n, 64) with n times, got {channels.shape}")
    n = channels.shape[0]
    rows = np.empty((48, n))  # the 32 charge channels, then the 16 strips' T_dif
    counts = np.empty(48, np.int64)
    span = np.empty(2, np.int64)
    lo, hi = config.charge_valid_ns
    usable = gather_channels(
        time_s, channels, lo, hi, rows[:32], counts[:32], rows[32:], counts[32:], span
    )
    # a pool never holds more than max(max_events, the newest chunk) events (CalibrationPool.add)
    most = max(config.calibration_max_events, usable)
    k_charge = _tail_size(config.pedestal_quantile, most)
    q_lo, q_hi = config.tdif_plateau_quantiles
    k_low, k_high = _tail_size(q_lo, most), _tail_size(1.0 - q_hi, most)
    sizes = counts.tolist()  # 48 numbers: Python's checks cost less than numpy's calls
    if max(sizes[:32]) <= k_charge and max(sizes[32:]) <= k_low + k_high:
        # every value is in a tail (a chunk of a few thousand events): the rows packed in one
        # array and sorted in place (numpy's sort is several times numba's), 48 views, instead
        # of 48 copies
        packed = pack_rows(rows, counts)
        ends = list(accumulate(sizes))
        every = [packed[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        for values in every:
            values.sort()
        charge_low, tdif_low, tdif_high = every[:32], every[32:], every[32:]
    else:
        charge_low = [_lowest(rows[c, : counts[c]], k_charge) for c in range(32)]
        tdif_low, tdif_high = [], []
        for c in range(32, 48):
            low, high = _tails(rows[c, : counts[c]], k_low, k_high)
            tdif_low.append(low)
            tdif_high.append(high)
    return ChunkPart(
        key,
        usable,
        int(span[0]),
        int(span[1]),
        counts[:32].reshape(4, 4, 2),
        charge_low,
        counts[32:].reshape(4, 4),
        tdif_low,
        tdif_high,
        source_file,
    )


def _fill(values: np.ndarray) -> np.ndarray:
    """Channels without enough data take the median of the others (0 if none has data)."""
    good = np.isfinite(values)
    fill = float(np.median(values[good])) if good.any() else 0.0
    return np.where(good, values, fill)


def _pedestals(parts: Sequence[ChunkPart], config: ReconstructionConfig) -> np.ndarray:
    """Charge pedestal per channel (4, 4, 2) of the pooled parts: quantile
    ``pedestal_quantile`` of the channel's valid non-zero charges. [ns]"""
    counts = sum(part.charge_count for part in parts)
    pedestal = np.full(32, np.nan)
    for c, n in enumerate(np.ravel(counts)):
        if n >= _MIN_VALUES:
            lows = [part.charge_low[c] for part in parts]
            pedestal[c] = _quantile(lows, [], int(n), config.pedestal_quantile)
    return _fill(pedestal.reshape(4, 4, 2))


def _tdif_offsets(parts: Sequence[ChunkPart], config: ReconstructionConfig) -> np.ndarray:
    """T_dif offset per strip (4, 4) of the pooled parts: the midpoint of the
    ``tdif_plateau_quantiles`` of the strip's T_dif values. [ns]"""
    counts = sum(part.tdif_count for part in parts)
    q_lo, q_hi = config.tdif_plateau_quantiles
    offsets = np.full(16, np.nan)
    for c, n in enumerate(np.ravel(counts)):
        if n >= _MIN_VALUES:
            lows = [part.tdif_low[c] for part in parts]
            highs = [part.tdif_high[c] for part in parts]
            if all(low is high for low, high in zip(lows, highs, strict=True)):
                a, b = _quantiles_of_all(lows, (q_lo, q_hi))  # every part kept all its values
            else:
                a, b = _quantile(lows, highs, int(n), q_lo), _quantile(lows, highs, int(n), q_hi)
            offsets[c] = 0.5 * (a + b)
    return _fill(offsets.reshape(4, 4))


def _solve(normal: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """The 16 offsets of normal equations, with the gauge Σ o = 0 (all-ones term)."""
    return np.linalg.lstsq(normal + 1.0, rhs, rcond=None)[0]


def _pair_system(a: np.ndarray, b: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    normal = np.diag(np.bincount(a, minlength=16) + np.bincount(b, minlength=16)).astype(float)
    ab = np.bincount(a * 16 + b, minlength=256).reshape(16, 16)
    normal -= ab + ab.T
    rhs = np.bincount(a, value, 16) - np.bincount(b, value, 16)
    return normal, rhs


def tsum_equations(
    tracks: Tracks,
    z_mm: tuple[float, float, float, float] | np.ndarray,
    tsum_offset_ns: np.ndarray,
    reference_ns: np.ndarray | None = None,
) -> TsumEquations:
    """T_sum normal equations of one chunk's 4-plane tracks.

    Each pair (p, q) of planes of a 4-plane track (χ²/ndf < 4: ``events.tracks_of``) gives
    (t_p - tof_p) - (t_q - tof_q) = o[p, s_p] - o[q, s_q] plus noise, with t the raw T_sum (the
    calibrated one plus the offsets the events were reconstructed with). Pairs whose residual
    from ``reference_ns`` (the offsets of the calibration in force), or without it from the
    chunk's own solution, exceeds 1 ns (noise hits, streamers' late times) are dropped.

    Parameters
    ----------
    tracks : Tracks
        The tracks of the chunk's reconstructed coincidence events.
    z_mm : sequence of 4 float
        Plane z positions the events were reconstructed with. [mm]
    tsum_offset_ns : ndarray (4, 4)
        T_sum offsets the events were reconstructed with. [ns]
    reference_ns : ndarray (4, 4), optional
        Offsets to measure the residuals from; None: the chunk's own least-squares solution
        (when no fitted offsets exist yet). [ns]

    Returns
    -------
    TsumEquations
        The kept pairs' normal equations (right-hand side in [ns]).
    """
    z = np.asarray(z_mm, np.float64)
    secant = np.sqrt(1.0 + np.tan(np.radians(tracks.theta)) ** 2)
    offsets_in = np.ascontiguousarray(tsum_offset_ns, np.float64)
    a, b, value = pair_differences(tracks.strip, tracks.t, secant, z, offsets_in, C_MM_NS)
    if reference_ns is None:
        offsets = _solve(*_pair_system(a, b, value))
    else:
        offsets = np.asarray(reference_ns, np.float64).reshape(16)
    normal, rhs = kept_pair_system(a, b, value, offsets, _TSUM_CUT_NS)
    return TsumEquations(normal, rhs, len(tracks))


class CalibrationPool:
    """The parts of one station's recent chunks, bounded by count and age (DOMAIN.md §5.1).

    Whole chunks are pooled, in arrival order: the latest arrived whose events add up to at
    most ``calibration_max_events`` (the latest always, however large); the earliest arrived
    leave while their last event is older than ``calibration_max_age_s`` before the newest
    pooled event (a chunk that arrived late, behind newer ones, waits for them to leave). With
    each part the pool keeps the chunk's T_sum normal equations and the histogram of its
    per-second counts.

    Parameters
    ----------
    config : ReconstructionConfig
        ``calibration_max_events`` and ``calibration_max_age_s`` bound the pool.
    """

    def __init__(self, config: ReconstructionConfig) -> None:
        self.config = config
        self._parts: deque[ChunkPart] = deque()
        self._keys: set[str] = set()  # of the parts, and their events: kept up to date
        self._events = 0
        self._newest = 0  # the parts' latest last_time_s (0 without parts)
        self._equations: dict[str, TsumEquations] = {}
        self._seconds: dict[str, np.ndarray] = {}
        #: The calibration in force, and the events pooled since it was made.
        self.current: Calibration | None = None
        self.added_since_current = 0

    def refresh_due(self) -> bool:
        """Whether the next chunk must be reconstructed with a new calibration.

        It must once the pool has gained ``calibration_refresh_events`` events since the
        current calibration was made, or, while the pool fills, as many events as the current
        one was made from (so the first calibrations follow each other at 2, 4, 8, ... times
        the first one's events). Depends only on the chunks pooled, so the command, the
        service and a replay make the same calibrations.
        """
        current = self.current
        if current is None:
            return False
        due = min(self.config.calibration_refresh_events, max(current.events, 1))
        return self.added_since_current >= due

    def calibrated(self, calibration: Calibration) -> None:
        """Record ``calibration`` as computed from the pool as it is now."""
        self.current = calibration
        self.added_since_current = 0

    def add(self, part: ChunkPart) -> None:
        """Pool a chunk's part and forget the chunks that fall out.

        A part whose ``key`` (the chunk id) is still in the pool is not added again: a
        replayed chunk leaves the pool as it was.
        """
        if part.events and part.key not in self._keys:
            self._parts.append(part)
            self._keys.add(part.key)
            self._events += part.events
            self._newest = max(self._newest, part.last_time_s)
            self.added_since_current += part.events
        limit = self._newest - self.config.calibration_max_age_s
        while self._parts and self._parts[0].last_time_s < limit:
            self._drop_oldest()
        while len(self._parts) > 1 and self.events > self.config.calibration_max_events:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        part = self._parts.popleft()
        key = part.key
        self._keys.discard(key)
        self._events -= part.events
        if part.last_time_s >= self._newest:  # (a late chunk dropped by count)
            self._newest = max((p.last_time_s for p in self._parts), default=0)
        self._equations.pop(key, None)
        self._seconds.pop(key, None)

    def add_equations(
        self, key: str, equations: TsumEquations, seconds: np.ndarray | None = None
    ) -> None:
        """The T_sum equations of the pooled chunk ``key`` and the histogram of its seconds'
        event counts (``seconds[c]``: seconds with c events); ignored if not pooled or already
        in."""
        if key not in self._equations and key in self._keys:
            self._equations[key] = equations
            if seconds is not None:
                self._seconds[key] = np.asarray(seconds, np.int64)

    @property
    def parts(self) -> tuple[ChunkPart, ...]:
        """The pooled parts, oldest first."""
        return tuple(self._parts)

    def equations(self, key: str) -> TsumEquations | None:
        """The T_sum equations of the pooled chunk ``key``, if it has them."""
        return self._equations.get(key)

    def seconds(self, key: str) -> np.ndarray | None:
        """The histogram of the per-second counts of the pooled chunk ``key``, if it has one."""
        return self._seconds.get(key)

    def restore(
        self,
        parts: list[ChunkPart],
        equations: dict[str, TsumEquations],
        seconds: dict[str, np.ndarray],
        current: Calibration | None,
        added_since_current: int,
    ) -> None:
        """Set the pool to a stored state (the service's state store)."""
        self._parts = deque(parts)
        self._keys = {p.key for p in parts}
        self._events = sum(p.events for p in parts)
        self._newest = max((p.last_time_s for p in parts), default=0)
        self._equations = {key: value for key, value in equations.items()}
        self._seconds = {key: value for key, value in seconds.items()}
        self.current = current
        self.added_since_current = added_since_current

    @property
    def keys(self) -> tuple[str, ...]:
        """Keys (chunk ids) of the pooled parts, oldest first."""
        return tuple(p.key for p in self._parts)

    @property
    def files(self) -> tuple[str, ...]:
        """The files of the pooled chunks, oldest first, each once."""
        return tuple(dict.fromkeys(p.source_file for p in self._parts))

    @property
    def events(self) -> int:
        """Events in the pool."""
        return self._events

    def pedestals_tdif(self) -> tuple[np.ndarray, np.ndarray]:
        """Charge pedestals (4, 4, 2) and T_dif offsets (4, 4) of the pooled chunks. [ns]"""
        parts = list(self._parts)
        return _pedestals(parts, self.config), _tdif_offsets(parts, self.config)

    def tsum_offsets(self, station: int) -> np.ndarray:
        """T_sum offsets (4, 4) from the summed equations of the pooled chunks. [ns]"""
        equations = list(self._equations.values())
        if sum(e.tracks for e in equations) < _MIN_VALUES:
            log.warning("too few 4-plane tracks for T_sum offsets", extra={"station": station})
            return np.zeros((4, 4))
        normal = sum((e.normal for e in equations), np.zeros((16, 16)))
        rhs = sum((e.rhs for e in equations), np.zeros(16))
        return _solve(normal, rhs).reshape(4, 4)

    def band(self) -> tuple[float, float]:
        """Outlier band of the pooled chunks' seconds (``minutes.outlier_band``). [events]"""
        hists = list(self._seconds.values())
        total = np.zeros(max((len(h) for h in hists), default=0), np.int64)
        for hist in hists:
            total[: len(hist)] += hist
        return outlier_band(total, self.config)

    def calibration(
        self,
        station: int,
        z_mm: tuple[float, float, float, float],
        pedestal_tdif: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Calibration:
        """The calibration of the pool as it is (``pedestal_tdif``: those constants when
        already computed from it); not yet :meth:`calibrated`."""
        pedestal, tdif = pedestal_tdif or self.pedestals_tdif()
        tsum = self.tsum_offsets(station)
        parts = list(self._parts)
        first = min((p.first_time_s for p in parts), default=0)
        last = max((p.last_time_s for p in parts), default=0)
        made = make_calibration(
            station, pedestal, tdif, tsum, self.events, first, last, z_mm, self.band()
        )
        return replace(made, pool_files=self.files)


def calibrate(
    station: int,
    time_s: np.ndarray,
    channels: np.ndarray,
    z_mm: tuple[float, float, float, float] | np.ndarray,
    config: ReconstructionConfig,
) -> Calibration:
    """Calibration constants from the coincidence events of one station (a pool of one part;
    no outlier band: per-second counts need the events' reconstruction status).

    Parameters
    ----------
    station : int
        Station id.
    time_s : ndarray of int64, shape (n,)
        Event times. [s since epoch, UTC]
    channels : ndarray of float64, shape (n, 64)
        Raw channel values in file order (plane 4 first). [ns]
    z_mm : sequence of 4 float
        Plane z positions for the track fits of the T_sum step. [mm]
    config : ReconstructionConfig
        Quantiles and windows.

    Returns
    -------
    Calibration
    """
    from services.reconstruct.events import reconstruct_rates  # events imports this module

    z = _z4(z_mm)
    pool = CalibrationPool(config)  # the newest chunk is always pooled, however large
    pool.add(chunk_part(time_s, channels, config, key="events"))
    pedestal, tdif = pool.pedestals_tdif()
    zero = np.zeros((4, 4))
    trial = reconstruct_rates(
        channels, make_calibration(station, pedestal, tdif, zero, 0, 0, 0), z, config
    )
    pool.add_equations("events", tsum_equations(trial.tracks, z, zero))
    return replace(pool.calibration(station, z, (pedestal, tdif)), pool_files=())
