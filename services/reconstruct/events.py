"""Per-event reconstruction: hits, topology, straight-line track, angular region (DOMAIN.md §5).

:func:`reconstruct_events` runs the numba kernel of ``_kernels.py`` after validating its inputs;
:func:`reconstruct_events_reference` is the same specification in vectorised numpy, slow and
plain, which the tests compare with the kernel to 1e-9.

Per plane the hit strip is the strip with the largest calibrated charge among those whose both
times and charges are written, whose calibrated Q_sum exceeds ``q_threshold_ns`` and whose
calibrated |T_dif| is within ``tdif_cut_ns``; x = T_dif·v, y = the strip centre, t = calibrated
T_sum of that strip; the plane charge is the sum of the strips above threshold. The track is a
weighted least-squares line x(z), y(z) through the hit planes (σx from config, σy = strip
width/√12); θ = atan(√(x'² + y'²)), φ = atan2(y', x'), z increasing from plane 1 to plane 4.
Slopes below ``SLOPE_ZERO`` are set to 0: a track whose hits are all in strips at one y has
y' = 0 exactly (φ = 0° or 180°), not a rounding-noise sign that picks a φ sector at random.

:func:`reconstruct_rates` is the rates path: the same status, hits, topology, event charge, fit,
fiducial planes and region, but only those (:class:`EventRates`, what
``minutes.tally_chunk`` reads), the fit only for 3- and 4-plane events (the others have no
region), and the region from the slopes without atan/atan2; it equals the corresponding fields
of :func:`reconstruct_events` exactly (``_kernels._region_of_slopes``). It also gives the
4-plane tracks that the T_sum calibration fits (:class:`Tracks`), the same numbers
:func:`tracks_of` takes from :func:`reconstruct_events`, so the streaming service needs one pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from schemas.columns import REGIONS, TOPOLOGIES
from services.common.stations import ReconstructionConfig
from services.reconstruct import _kernels as k
from services.reconstruct.calibration import Calibration
from services.reconstruct.geometry import STRIP_CENTRES_MM, STRIP_WIDTHS_MM

__all__ = [
    "EVENT_STATUS",
    "TRACK_CHI2_MAX",
    "EventRates",
    "EventResult",
    "Tracks",
    "kernel_inputs",
    "kernel_params",
    "rates_outputs",
    "reconstruct_events",
    "reconstruct_events_reference",
    "reconstruct_rates",
    "reconstruct_rates_reference",
    "tracks_of",
]

#: χ² below which a 4-plane track enters the T_sum calibration (χ²/ndf < 4, ndf = 4). [1]
TRACK_CHI2_MAX = 16.0

#: Names of the event status codes.
EVENT_STATUS = {
    k.OK: "ok",
    k.NOT_FINITE: "not_finite",
    k.ALL_ZERO: "all_zero",
    k.TIME_OUT_OF_WINDOW: "time_out_of_window",
    k.CHARGE_OUT_OF_WINDOW: "charge_out_of_window",
}


def _topology_of_mask() -> np.ndarray:
    """Index into ``TOPOLOGIES`` of each 4-bit hit mask (bit k = plane k+1); -1 for no hit."""
    table = np.full(16, -1, np.int8)
    for mask in range(1, 16):
        name = "".join(str(p + 1) for p in range(4) if (mask >> p) & 1)
        table[mask] = TOPOLOGIES.index(name)
    return table


_TOPOLOGY_OF_MASK = _topology_of_mask()
assert len(REGIONS) == 13


@dataclass(frozen=True, eq=False)
class EventResult:
    """Reconstructed events (arrays of length n; plane axis = planes 1-4).

    Attributes
    ----------
    status : int8 (n,)
        0 usable, else the reason the event is impossible (``EVENT_STATUS``).
    mask : uint8 (n,)
        Hit planes, bit k = plane k+1.
    strip : int8 (n, 4)
        Hit strip (0-3) per plane, -1 if none.
    x, y, t : float64 (n, 4)
        Hit position along / across the strips [mm] and calibrated T_sum [ns]; NaN if no hit.
    q : float64 (n, 4)
        Calibrated plane charge (sum of strips above threshold). [ns]
    theta, phi : float64 (n,)
        Zenith and azimuth of the fitted track [deg]; NaN with fewer than 2 planes.
    chi2 : float64 (n,)
        χ² of the x and y fits together; NaN with fewer than 2 planes.
    q_event : float64 (n,)
        Sum of the plane charges. [ns]
    topology : int8 (n,)
        Index into ``schemas.columns.TOPOLOGIES``; -1 without hits.
    region : int8 (n,)
        Index into ``schemas.columns.REGIONS`` for 3- and 4-plane events, else -1.
    fiducial : uint8 (n,)
        Bit k set when the track of a 3- or 4-plane event crosses plane k+1 inside the
        fiducial area (efficiency denominators).
    streamer : uint8 (n,)
        1 when a plane charge exceeds ``streamer_q_ns``.
    """

    status: np.ndarray
    mask: np.ndarray
    strip: np.ndarray
    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    q: np.ndarray
    theta: np.ndarray
    phi: np.ndarray
    chi2: np.ndarray
    q_event: np.ndarray
    topology: np.ndarray
    region: np.ndarray
    fiducial: np.ndarray
    streamer: np.ndarray

    def __len__(self) -> int:
        return int(self.status.shape[0])


@dataclass(frozen=True, eq=False)
class Tracks:
    """The 4-plane tracks with χ² < ``TRACK_CHI2_MAX`` of some events, in event order: the
    input of the T_sum calibration (``calibration.tsum_equations``).

    Attributes
    ----------
    strip : int8 (k, 4)
        Hit strip (0-3) per plane.
    t : float64 (k, 4)
        Calibrated T_sum per plane. [ns]
    theta : float64 (k,)
        Zenith of the fitted track. [deg]
    """

    strip: np.ndarray
    t: np.ndarray
    theta: np.ndarray

    def __len__(self) -> int:
        return int(self.theta.shape[0])


def tracks_of(events: EventResult) -> Tracks:
    """The :class:`Tracks` of reconstructed events."""
    good = (events.mask == 15) & (events.chi2 < TRACK_CHI2_MAX)
    return Tracks(events.strip[good], events.t[good], events.theta[good])


@dataclass(frozen=True, eq=False)
class EventRates:
    """What the per-minute tally needs of each event; the fields mean what they mean in
    :class:`EventResult`.

    Attributes
    ----------
    status : int8 (n,)
    mask : uint8 (n,)
    q_event : float64 (n,)
        [ns]
    topology : int8 (n,)
    region : int8 (n,)
    fiducial : uint8 (n,)
    tracks : Tracks
        The 4-plane tracks for the T_sum calibration.
    """

    status: np.ndarray
    mask: np.ndarray
    q_event: np.ndarray
    topology: np.ndarray
    region: np.ndarray
    fiducial: np.ndarray
    tracks: Tracks

    def __len__(self) -> int:
        return int(self.status.shape[0])


def kernel_params(config: ReconstructionConfig) -> np.ndarray:
    """The float64 parameter vector of the kernel (indices ``_kernels.P_*``)."""
    params = np.empty(k.N_PARAMS)
    params[k.P_SPEED] = config.signal_speed_mm_ns
    params[k.P_TMIN], params[k.P_TMAX] = config.time_valid_ns
    params[k.P_QMIN], params[k.P_QMAX] = config.charge_valid_ns
    params[k.P_QTHR] = config.q_threshold_ns
    params[k.P_STREAMER] = config.streamer_q_ns
    params[k.P_TDIF_CUT] = config.tdif_cut_ns
    params[k.P_SIGMA_X] = config.sigma_x_mm
    params[k.P_FID_X], params[k.P_FID_Y] = config.fiducial_half_mm
    params[k.P_THETA_HIGH] = config.theta_high_deg
    params[k.P_THETA_LOW] = config.theta_low_deg
    return params


def kernel_inputs(
    calibration: Calibration, z: np.ndarray, config: ReconstructionConfig
) -> tuple[np.ndarray, ...]:
    """The arguments both kernels take after the channels, in their order.

    Parameters
    ----------
    calibration : Calibration
        Pedestals [ns], T_dif offsets [ns] and T_sum offsets [ns].
    z : np.ndarray
        Plane z positions [mm], float64, shape (4,).
    config : ReconstructionConfig
        The station's reconstruction settings (thresholds, windows, region limits).
    """
    return (
        np.ascontiguousarray(calibration.pedestal_ns, np.float64),
        np.ascontiguousarray(calibration.tdif_offset_ns, np.float64),
        np.ascontiguousarray(calibration.tsum_offset_ns, np.float64),
        z,
        STRIP_CENTRES_MM,
        STRIP_WIDTHS_MM,
        kernel_params(config),
        _TOPOLOGY_OF_MASK,
    )


def _untyped(kernel: object) -> Callable[..., Any]:
    # mypy rejects a numba dispatcher called with the unpacked tuple of kernel_inputs
    return cast(Callable[..., Any], kernel)


def _empty(n: int) -> EventResult:
    return EventResult(
        status=np.empty(n, np.int8),
        mask=np.empty(n, np.uint8),
        strip=np.empty((n, 4), np.int8),
        x=np.empty((n, 4)),
        y=np.empty((n, 4)),
        t=np.empty((n, 4)),
        q=np.empty((n, 4)),
        theta=np.empty(n),
        phi=np.empty(n),
        chi2=np.empty(n),
        q_event=np.empty(n),
        topology=np.empty(n, np.int8),
        region=np.empty(n, np.int8),
        fiducial=np.empty(n, np.uint8),
        streamer=np.empty(n, np.uint8),
    )


def _validated(
    channels: np.ndarray, z_mm: tuple[float, float, float, float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    channels = np.ascontiguousarray(channels, dtype=np.float64)
    if channels.ndim != 2 or channels.shape[1] != 64:
        raise ValueError(f"channels must have shape (n, 64), got {channels.shape}")
    z = np.ascontiguousarray(z_mm, dtype=np.float64)
    values = z.tolist()  # four numbers: Python's checks cost a tenth of numpy's per chunk
    if z.shape != (4,) or not all(map(math.isfinite, values)) or sorted(set(values)) != values:
        raise ValueError(f"z_mm must be 4 finite, strictly increasing positions, got {z_mm}")
    return channels, z


def reconstruct_events(
    channels: np.ndarray,
    calibration: Calibration,
    z_mm: tuple[float, float, float, float] | np.ndarray,
    config: ReconstructionConfig,
) -> EventResult:
    """Reconstruct events with the numba kernel.

    Parameters
    ----------
    channels : ndarray of float64, shape (n, 64)
        Raw channel values in file order (plane 4 first). [ns]
    calibration : Calibration
        Pedestals and offsets of the station.
    z_mm : sequence of 4 float
        z of planes 1-4, strictly increasing. [mm]
    config : ReconstructionConfig
        Thresholds, windows, resolutions, region limits.

    Returns
    -------
    EventResult
        Never raises on bad event values: impossible events get a non-zero ``status``.
    """
    channels, z = _validated(channels, z_mm)
    out = _empty(channels.shape[0])
    _untyped(k.reconstruct_kernel)(
        channels,
        *kernel_inputs(calibration, z, config),
        out.status,
        out.mask,
        out.strip,
        out.x,
        out.y,
        out.t,
        out.q,
        out.theta,
        out.phi,
        out.chi2,
        out.q_event,
        out.topology,
        out.region,
        out.fiducial,
        out.streamer,
    )
    return out


def reconstruct_rates(
    channels: np.ndarray,
    calibration: Calibration,
    z_mm: tuple[float, float, float, float] | np.ndarray,
    config: ReconstructionConfig,
) -> EventRates:
    """Reconstruct what the per-minute tally needs, with the numba rates kernel.

    Same parameters as :func:`reconstruct_events`; the result equals the corresponding fields
    of :func:`reconstruct_events` (never raises on bad event values either).
    """
    channels, z = _validated(channels, z_mm)
    n = channels.shape[0]
    arrays = rates_outputs(n)
    tracks = Tracks(np.empty((n, 4), np.int8), np.empty((n, 4)), np.empty(n))
    count = _untyped(k.rates_kernel)(
        channels,
        *kernel_inputs(calibration, z, config),
        *arrays,
        tracks.strip,
        tracks.t,
        tracks.theta,
        TRACK_CHI2_MAX,
    )
    # copies, so that the (n, 4) scratch is not kept alive by a view
    packed = Tracks(*(np.array(a[:count]) for a in (tracks.strip, tracks.t, tracks.theta)))
    status, mask, q_event, topology, region, fiducial = arrays
    return EventRates(status, mask, q_event, topology, region, fiducial, packed)


_Six = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def rates_outputs(n: int) -> _Six:
    """Uninitialised per-event outputs of ``rates_kernel``, in the order of its arguments and of
    the :class:`EventRates` fields before ``tracks``."""
    return (
        np.empty(n, np.int8),
        np.empty(n, np.uint8),
        np.empty(n),
        np.empty(n, np.int8),
        np.empty(n, np.int8),
        np.empty(n, np.uint8),
    )


def reconstruct_rates_reference(
    channels: np.ndarray,
    calibration: Calibration,
    z_mm: tuple[float, float, float, float] | np.ndarray,
    config: ReconstructionConfig,
) -> EventRates:
    """Plain-numpy reference of :func:`reconstruct_rates`: those fields of
    :func:`reconstruct_events_reference` (θ and φ from arctan/arctan2, the definition)."""
    full = reconstruct_events_reference(channels, calibration, z_mm, config)
    fields = [name for name in EventRates.__dataclass_fields__ if name != "tracks"]
    return EventRates(**{name: getattr(full, name) for name in fields}, tracks=tracks_of(full))


def _status_reference(channels: np.ndarray, config: ReconstructionConfig) -> np.ndarray:
    """Event status; the first bad value in kernel scan order (plane 1 first) decides."""
    blocks = channels.reshape(-1, 4, 4, 4)[:, ::-1]  # (n, plane 1-4, quantity, strip)
    is_time = (np.arange(4) < 2)[None, None, :, None]
    lo = np.where(is_time, config.time_valid_ns[0], config.charge_valid_ns[0])
    hi = np.where(is_time, config.time_valid_ns[1], config.charge_valid_ns[1])
    with np.errstate(invalid="ignore"):
        bad = ((blocks != 0) & ((blocks < lo) | (blocks > hi))).reshape(len(channels), 64)
    first = bad.argmax(axis=1)
    quantity = (first % 16) // 4
    status = np.where(quantity < 2, k.TIME_OUT_OF_WINDOW, k.CHARGE_OUT_OF_WINDOW)
    status = np.where(bad.any(axis=1), status, k.OK).astype(np.int8)
    status[~(channels != 0).any(axis=1)] = k.ALL_ZERO
    status[~np.isfinite(channels).all(axis=1)] = k.NOT_FINITE
    return status


def reconstruct_events_reference(
    channels: np.ndarray,
    calibration: Calibration,
    z_mm: tuple[float, float, float, float] | np.ndarray,
    config: ReconstructionConfig,
) -> EventResult:
    """Plain-numpy reference of :func:`reconstruct_events` (same inputs and outputs)."""
    channels, z = _validated(channels, z_mm)
    n = channels.shape[0]
    status = _status_reference(channels, config)
    blocks = channels.reshape(n, 4, 4, 4)[:, ::-1]  # (n, plane 1-4, quantity, strip)
    tf, tb, qf, qb = (blocks[:, :, j, :] for j in range(4))
    ped = calibration.pedestal_ns
    qs = 0.5 * ((qf - ped[None, :, :, 0]) + (qb - ped[None, :, :, 1]))
    tdif = 0.5 * (tb - tf) - calibration.tdif_offset_ns[None]
    with np.errstate(invalid="ignore"):
        ok = (
            (status == k.OK)[:, None, None]
            & (tf != 0)
            & (tb != 0)
            & (qf != 0)
            & (qb != 0)
            & (qs > config.q_threshold_ns)
            & (np.abs(tdif) <= config.tdif_cut_ns)
        )
    qm = np.where(ok, qs, -np.inf)
    best = np.argmax(qm, axis=2)  # first maximum, as the kernel's strict '>'
    hit = ok.any(axis=2)
    strip = np.where(hit, best, -1).astype(np.int8)
    take = best[:, :, None]
    tdif_b = np.take_along_axis(tdif, take, 2)[:, :, 0]
    tsum_b = np.take_along_axis(0.5 * (tf + tb), take, 2)[:, :, 0]
    tsum_b = tsum_b - calibration.tsum_offset_ns[np.arange(4)[None, :], best]
    x = np.where(hit, tdif_b * config.signal_speed_mm_ns, np.nan)
    y = np.where(hit, STRIP_CENTRES_MM[np.arange(4)[None, :], best], np.nan)
    t = np.where(hit, tsum_b, np.nan)
    q = np.where(hit, np.where(ok, qs, 0.0).sum(axis=2), 0.0)
    mask = (hit * (1 << np.arange(4))[None, :]).sum(axis=1).astype(np.uint8)
    q_event = q.sum(axis=1)
    streamer = np.asarray((q > config.streamer_q_ns).any(axis=1), np.uint8)
    # weighted straight-line fits
    zr = (z - z[0])[None, :]
    wx = np.where(hit, 1.0 / config.sigma_x_mm**2, 0.0)
    sig_y = STRIP_WIDTHS_MM[np.arange(4)[None, :], best] / np.sqrt(12.0)
    wy = np.where(hit, 1.0 / sig_y**2, 0.0)
    nhit = hit.sum(axis=1)
    fitted = nhit >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        sx, ax = _line(wx, zr, np.where(hit, x, 0.0))
        sy, ay = _line(wy, zr, np.where(hit, y, 0.0))
        sx = np.where(np.abs(sx) < k.SLOPE_ZERO, 0.0, sx)
        sy = np.where(np.abs(sy) < k.SLOPE_ZERO, 0.0, sy)
        rx = np.where(hit, x - ax[:, None] - sx[:, None] * zr, 0.0)
        ry = np.where(hit, (y - ay[:, None] - sy[:, None] * zr) / sig_y, 0.0)
        chi2 = np.where(fitted, (rx**2 / config.sigma_x_mm**2 + ry**2).sum(axis=1), np.nan)
        theta = np.where(fitted, np.degrees(np.arctan(np.sqrt(sx**2 + sy**2))), np.nan)
        phi = np.where(fitted, np.degrees(np.arctan2(sy, sx)), np.nan)
        xf = ax[:, None] + sx[:, None] * zr
        yf = ay[:, None] + sy[:, None] * zr
        fx, fy = config.fiducial_half_mm
        inside = (np.abs(xf) < fx) & (np.abs(yf) < fy)
    three = nhit >= 3
    fiducial = np.where(three, (inside * (1 << np.arange(4))[None, :]).sum(axis=1), 0)
    mid = 1 + np.minimum(np.floor((phi + 180.0) / 45.0), 7)
    low = 9 + np.minimum(np.floor((phi + 180.0) / 90.0), 3)
    region = np.where(
        theta < config.theta_high_deg, 0, np.where(theta < config.theta_low_deg, mid, low)
    )
    region = np.where(three, region, -1).astype(np.int8)
    return EventResult(
        status=status,
        mask=mask,
        strip=strip,
        x=x,
        y=y,
        t=t,
        q=q,
        theta=theta,
        phi=phi,
        chi2=chi2,
        q_event=q_event,
        topology=_TOPOLOGY_OF_MASK[mask],
        region=region,
        fiducial=fiducial.astype(np.uint8),
        streamer=streamer,
    )


def _line(w: np.ndarray, z: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept of weighted least-squares lines v(z), one per row."""
    s, sz, szz = w.sum(axis=1), (w * z).sum(axis=1), (w * z * z).sum(axis=1)
    sv, szv = (w * v).sum(axis=1), (w * z * v).sum(axis=1)
    d = s * szz - sz * sz
    return (s * szv - sz * sv) / d, (szz * sv - sz * szv) / d
