"""Calibration constants of one station from a pool of its raw events (DOMAIN.md §5.1).

Pure numpy: :func:`calibrate` turns pooled coincidence events into a :class:`Calibration`, a
versioned record that every minute says it was computed with.

* Charge pedestal per channel: the lower edge of the channel's time-over-threshold distribution
  (quantile ``pedestal_quantile`` of its non-zero values). A written charge always lies above the
  electronics threshold, so this edge is the pedestal plus the width of a threshold charge, the
  same for every channel: calibrated charges of all channels start at 0.
* T_dif offset per strip: the centre of the plateau of T_dif = (T_B - T_F)/2 that uniform
  illumination gives, taken as the midpoint of two symmetric quantiles.
* T_sum offset per strip: least squares over the time differences between the planes of 4-plane
  tracks (after the time of flight along the fitted track at c); only differences matter, so the
  offsets are relative (gauge: their sum is 0).
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from dataclasses import dataclass

import numpy as np

from services.common.stations import ReconstructionConfig

log = logging.getLogger(__name__)

__all__ = ["Calibration", "CalibrationPool", "calibrate", "identity_calibration"]

#: Fewest values for a per-channel constant; fewer gives the median of the other channels.
_MIN_VALUES = 50


@dataclass(frozen=True, eq=False)
class Calibration:
    """Calibration constants of one station.

    Attributes
    ----------
    station : int
        Station id.
    version : str
        ``<station>-<last pooled event UTC>-<hash of the constants>``, deterministic.
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
    pool_files: tuple[str, ...] = ()
    source_file: str = ""


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
) -> Calibration:
    """A :class:`Calibration` with its deterministic version string."""
    arrays = (
        np.asarray(pedestal_ns, np.float64).reshape(4, 4, 2),
        np.asarray(tdif_offset_ns, np.float64).reshape(4, 4),
        np.asarray(tsum_offset_ns, np.float64).reshape(4, 4),
    )
    return Calibration(
        station,
        _version(station, last_time_s, *arrays),
        *arrays,
        events=events,
        first_time_s=first_time_s,
        last_time_s=last_time_s,
        z_mm=_z4(z_mm),
    )


def _z4(z_mm: tuple[float, float, float, float] | np.ndarray) -> tuple[float, float, float, float]:
    z = [float(v) for v in np.asarray(z_mm, np.float64).reshape(4)]
    return z[0], z[1], z[2], z[3]


def identity_calibration(station: int) -> Calibration:
    """Zero pedestals and offsets (raw values), version ``<station>-none``."""
    zero = np.zeros((4, 4))
    return Calibration(station, f"{station}-none", np.zeros((4, 4, 2)), zero, zero, 0, 0, 0)


def _column_blocks(channels: np.ndarray) -> np.ndarray:
    """(n, 64) file order → (plane 1-4, quantity T_F T_B Q_F Q_B, strip 1-4, n).

    Transposed once so that each channel's n values are contiguous: the per-channel masks and
    quantiles below then run on contiguous memory instead of a stride of 64 values.
    """
    return np.ascontiguousarray(channels.T).reshape(4, 4, 4, -1)[::-1]


def _fill(values: np.ndarray) -> np.ndarray:
    """Channels without enough data take the median of the others (0 if none has data)."""
    good = np.isfinite(values)
    fill = float(np.median(values[good])) if good.any() else 0.0
    return np.where(good, values, fill)


def _pedestals(blocks: np.ndarray, config: ReconstructionConfig) -> np.ndarray:
    pedestal = np.full((4, 4, 2), np.nan)
    lo, hi = config.charge_valid_ns
    for p in range(4):
        for s in range(4):
            for side in range(2):
                values = blocks[p, 2 + side, s]
                values = values[(values != 0) & (values >= lo) & (values <= hi)]
                if values.size >= _MIN_VALUES:
                    pedestal[p, s, side] = np.quantile(values, config.pedestal_quantile)
    return _fill(pedestal)


def _tdif_offsets(blocks: np.ndarray, config: ReconstructionConfig) -> np.ndarray:
    offsets = np.full((4, 4), np.nan)
    q_lo, q_hi = config.tdif_plateau_quantiles
    for p in range(4):
        for s in range(4):
            tf, tb = blocks[p, 0, s], blocks[p, 1, s]
            qf, qb = blocks[p, 2, s], blocks[p, 3, s]
            hit = (tf != 0) & (tb != 0) & (qf != 0) & (qb != 0)
            if np.count_nonzero(hit) >= _MIN_VALUES:
                tdif = 0.5 * (tb[hit] - tf[hit])
                offsets[p, s] = 0.5 * (np.quantile(tdif, q_lo) + np.quantile(tdif, q_hi))
    return _fill(offsets)


def _tsum_offsets(
    channels: np.ndarray,
    pedestal: np.ndarray,
    tdif: np.ndarray,
    z_mm: np.ndarray,
    config: ReconstructionConfig,
    station: int,
) -> np.ndarray:
    """Least-squares strip offsets from the time differences of plane pairs in 4-plane tracks.

    Each pair (p, q) of a track gives (t_p - tof_p) - (t_q - tof_q) = o[p, s_p] - o[q, s_q] plus
    noise; the 16 offsets solve the normal equations with the gauge Σ o = 0. A second pass
    drops pairs whose residual exceeds 1 ns (noise hits, streamers' late times).
    """
    from services.reconstruct.events import reconstruct_events  # events imports this module
    from services.reconstruct.geometry import C_MM_NS

    trial = make_calibration(station, pedestal, tdif, np.zeros((4, 4)), 0, 0, 0)
    ev = reconstruct_events(channels, trial, z_mm, config)
    good = (ev.mask == 15) & (ev.chi2 < 4.0 * 4)  # 4 planes, χ² per dof < 4 (ndf = 4)
    if np.count_nonzero(good) < _MIN_VALUES:
        log.warning("too few 4-plane tracks for T_sum offsets", extra={"station": station})
        return np.zeros((4, 4))
    secant = np.sqrt(1.0 + np.tan(np.radians(ev.theta[good])) ** 2)
    residual = ev.t[good] - (z_mm - z_mm[0])[None, :] * secant[:, None] / C_MM_NS
    index = np.arange(4)[None, :] * 4 + ev.strip[good].astype(np.int64)  # unknown of each hit
    pairs = [(p, q) for p in range(4) for q in range(p + 1, 4)]
    a = np.concatenate([index[:, p] for p, _ in pairs])
    b = np.concatenate([index[:, q] for _, q in pairs])
    value = np.concatenate([residual[:, p] - residual[:, q] for p, q in pairs])
    keep = np.ones(value.size, bool)
    offsets = np.zeros(16)
    for _ in range(2):
        normal = np.ones((16, 16))  # gauge term: Σ o = 0
        ab = np.bincount((a * 16 + b)[keep], minlength=256).reshape(16, 16)
        normal += np.diag(np.bincount(a[keep], minlength=16) + np.bincount(b[keep], minlength=16))
        normal -= ab + ab.T
        rhs = np.bincount(a[keep], value[keep], 16) - np.bincount(b[keep], value[keep], 16)
        offsets = np.linalg.lstsq(normal, rhs, rcond=None)[0]
        keep = np.abs(value - (offsets[a] - offsets[b])) < 1.0
    return offsets.reshape(4, 4)


def calibrate(
    station: int,
    time_s: np.ndarray,
    channels: np.ndarray,
    z_mm: tuple[float, float, float, float] | np.ndarray,
    config: ReconstructionConfig,
) -> Calibration:
    """Calibration constants from pooled coincidence events of one station.

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
    channels = np.ascontiguousarray(channels, np.float64)
    if channels.ndim != 2 or channels.shape[1] != 64 or len(time_s) != channels.shape[0]:
        raise ValueError(f"channels must be (n, 64) with n times, got {channels.shape}")
    usable = np.isfinite(channels).all(axis=1)
    channels = channels[usable]
    blocks = _column_blocks(channels)
    pedestal = _pedestals(blocks, config)
    tdif = _tdif_offsets(blocks, config)
    z = np.asarray(z_mm, np.float64)
    tsum = _tsum_offsets(channels, pedestal, tdif, z, config, station)
    times = np.asarray(time_s)[usable]
    first = int(times.min()) if times.size else 0
    last = int(times.max()) if times.size else 0
    return make_calibration(
        station, pedestal, tdif, tsum, int(channels.shape[0]), first, last, _z4(z)
    )


class CalibrationPool:
    """Recent coincidence events of one station, bounded by count and age (DOMAIN.md §5.1).

    Parameters
    ----------
    config : ReconstructionConfig
        ``calibration_max_events`` and ``calibration_max_age_s`` bound the pool.
    """

    def __init__(self, config: ReconstructionConfig) -> None:
        self.config = config
        self._parts: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._keys: deque[str | None] = deque()

    def add(self, time_s: np.ndarray, channels: np.ndarray, key: str | None = None) -> None:
        """Add events (times [s, UTC], raw (n, 64) channels) and forget what falls out.

        A ``key`` (the source file) still in the pool is not added again: a replayed file
        leaves the pool as it was.
        """
        if len(time_s) and (key is None or key not in self._keys):
            self._parts.append((np.asarray(time_s, np.int64), np.asarray(channels, np.float64)))
            self._keys.append(key)
        newest = max((int(t.max()) for t, _ in self._parts), default=0)
        limit = newest - self.config.calibration_max_age_s
        while self._parts and int(self._parts[0][0].max()) < limit:
            self._drop_oldest()
        while len(self._parts) > 1 and self.events - len(self._parts[0][0]) >= (
            self.config.calibration_max_events
        ):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        self._parts.popleft()
        self._keys.popleft()

    @property
    def files(self) -> tuple[str, ...]:
        """Keys (source files) of the pooled parts, oldest first."""
        return tuple(k for k in self._keys if k is not None)

    @property
    def events(self) -> int:
        """Events in the pool."""
        return sum(len(t) for t, _ in self._parts)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The pooled times and channels, the most recent ``calibration_max_events``."""
        if not self._parts:
            return np.zeros(0, np.int64), np.zeros((0, 64))
        cap = self.config.calibration_max_events
        time_s = np.concatenate([t for t, _ in self._parts])[-cap:]
        channels = np.concatenate([c for _, c in self._parts])[-cap:]
        return time_s, channels
