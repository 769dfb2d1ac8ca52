"""Detector response, trigger and electronics of simulated events (DOMAIN.md §2, §8).

Public wrappers validate shapes/dtypes and call the numba kernels of :mod:`simulator._kernels`;
``*_reference`` functions are plain-numpy versions of the same computation used by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.dat_format import N_CHANNELS, N_PLANES, N_STRIPS
from simulator import _kernels
from simulator.model import C_MM_NS, DetectorModel
from simulator.muons import Tracks


@dataclass(frozen=True)
class Response:
    """What the gas and the strips did for each track.

    Attributes
    ----------
    x_at, y_at : numpy.ndarray [n, 4]
        Track position at each plane. [mm]
    avalanche : numpy.ndarray of uint8 [n]
        Bit k set when plane k+1 had an avalanche.
    hit_mask : numpy.ndarray of uint8 [n]
        Bit k set when plane k+1 has a strip with charge ≥ threshold (a "hit" plane).
    q_strip : numpy.ndarray [n, 4, 4]
        Induced charge per plane and strip, 0 below the time threshold (nothing is written for
        such a strip). [fC]
    """

    x_at: np.ndarray
    y_at: np.ndarray
    avalanche: np.ndarray
    hit_mask: np.ndarray
    q_strip: np.ndarray

    def take(self, index: np.ndarray) -> Response:
        """A subset of the events."""
        return Response(
            *(a[index] for a in (self.x_at, self.y_at, self.avalanche, self.hit_mask, self.q_strip))
        )


def detector_response(tracks: Tracks, model: DetectorModel, rng: np.random.Generator) -> Response:
    """Avalanches and strip charges of tracks (numba ``avalanche_kernel``, ``charge_kernel``).

    Random numbers, in this order: ``u_detect [n, 4]`` uniforms (detection per plane), then for the
    ``m`` avalanches (track, plane order) ``m`` uniforms (streamer or not) and ``m`` standard
    normals (log-normal charge).

    Parameters
    ----------
    tracks : Tracks
        Positions at the top plane [mm] and directions.
    model : DetectorModel
        Geometry, efficiencies, charge model, footprint and thresholds.
    rng : numpy.random.Generator
        The random stream.
    """
    n = len(tracks)
    g = model.geometry
    lo, hi = g.conductor_edges_mm()
    f64 = np.float64
    x_at = np.empty((n, N_PLANES), f64)
    y_at = np.empty((n, N_PLANES), f64)
    avalanche = np.empty(n, np.uint8)
    hit_mask = np.empty(n, np.uint8)
    q_strip = np.empty((n, N_PLANES, N_STRIPS), f64)
    x0, y0, tx, ty, cos_theta = (
        np.ascontiguousarray(a, f64)
        for a in (tracks.x0, tracks.y0, tracks.tx, tracks.ty, tracks.cos_theta)
    )
    u_detect = rng.random((n, N_PLANES))
    m = _kernels.avalanche_kernel(
        x0,
        y0,
        tx,
        ty,
        cos_theta,
        u_detect,
        np.ascontiguousarray(g.z_rel_mm, f64),
        np.asarray(model.efficiency, f64),
        float(g.x_half_mm),
        float(g.y_half_mm),
        x_at,
        y_at,
        avalanche,
    )
    u_streamer = rng.random(m)
    normal = rng.standard_normal(m)
    _kernels.charge_kernel(
        y_at,
        avalanche,
        u_streamer,
        normal,
        float(model.streamer_probability),
        float(np.log(model.avalanche_median_fc)),
        float(model.avalanche_sigma_ln),
        float(np.log(model.streamer_median_fc)),
        float(model.streamer_sigma_ln),
        lo,
        hi,
        float(model.lorentz_hwhm_mm),
        float(model.q_threshold_fc),
        float(model.q_time_threshold_fc),
        q_strip,
        hit_mask,
    )
    return Response(x_at, y_at, avalanche, hit_mask, q_strip)


def detector_response_reference(
    tracks: Tracks, model: DetectorModel, rng: np.random.Generator
) -> Response:
    """Plain-numpy reference of :func:`detector_response` (same random numbers, same order)."""
    n = len(tracks)
    g = model.geometry
    lo, hi = g.conductor_edges_mm()
    z = g.z_rel_mm
    x_at = tracks.x0[:, None] + tracks.tx[:, None] * z[None, :]
    y_at = tracks.y0[:, None] + tracks.ty[:, None] * z[None, :]
    inside = (np.abs(x_at) <= g.x_half_mm) & (np.abs(y_at) <= g.y_half_mm)
    p_detect = 1.0 - (1.0 - np.asarray(model.efficiency))[None, :] ** (
        1.0 / tracks.cos_theta[:, None]
    )
    u_detect = rng.random((n, N_PLANES))
    aval = inside & (u_detect < p_detect)
    m = int(aval.sum())
    streamer = rng.random(m) < model.streamer_probability
    normal = rng.standard_normal(m)
    log_q = np.where(
        streamer,
        np.log(model.streamer_median_fc) + model.streamer_sigma_ln * normal,
        np.log(model.avalanche_median_fc) + model.avalanche_sigma_ln * normal,
    )
    q_total = np.zeros((n, N_PLANES))
    q_total[aval] = np.exp(log_q)  # boolean indexing is in C order: track, plane
    gamma = model.lorentz_hwhm_mm
    frac = (
        np.arctan((hi[None] - y_at[:, :, None]) / gamma)
        - np.arctan((lo[None] - y_at[:, :, None]) / gamma)
    ) / np.pi
    q_strip = np.where(aval[:, :, None], q_total[:, :, None] * frac, 0.0)
    q_strip = np.where(q_strip >= model.q_time_threshold_fc, q_strip, 0.0)
    hit = (q_strip >= model.q_threshold_fc).any(axis=2)
    bits = (1 << np.arange(N_PLANES)).astype(np.uint8)
    return Response(
        x_at,
        y_at,
        (aval * bits).sum(axis=1).astype(np.uint8),
        (hit * bits).sum(axis=1).astype(np.uint8),
        q_strip,
    )


def fired_pairs(hit_mask: np.ndarray, model: DetectorModel) -> np.ndarray:
    """Bit j set when trigger pair ``model.trigger_pairs[j]`` fired (both its planes hit)."""
    out = np.zeros(hit_mask.shape, np.uint8)
    mask = hit_mask.astype(np.uint8)
    for j, (a, b) in enumerate(model.pair_plane_indices()):
        need = np.uint8((1 << a) | (1 << b))
        out |= np.where((mask & need) == need, np.uint8(1 << j), np.uint8(0))
    return out


def time_of_flight_ns(cos_theta: np.ndarray, model: DetectorModel) -> np.ndarray:
    """Time of flight from the top plane to each plane at the speed of light, [n, 4]. [ns]"""
    return model.geometry.z_rel_mm[None, :] / (C_MM_NS * cos_theta[:, None])


def timed_strips(response: Response, model: DetectorModel) -> int:
    """Number of strips whose times are written (charge ≥ the time threshold)."""
    return int(np.count_nonzero(response.q_strip >= model.q_time_threshold_fc))


def electronics(
    response: Response,
    cos_theta: np.ndarray,
    t_event_ns: np.ndarray,
    noise: np.ndarray,
    model: DetectorModel,
) -> np.ndarray:
    """The 64 raw channel values of events in ticks of 1e-4 ns (numba kernel).

    Parameters
    ----------
    response : Response
        Strip charges and positions of the events.
    cos_theta : numpy.ndarray [n]
        Track directions (time of flight between planes).
    t_event_ns : numpy.ndarray [n]
        Event time common to all channels (the event-time jitter). [ns]
    noise : numpy.ndarray [4 * timed_strips(response, model)]
        Standard normals: T_F, T_B, Q_F, Q_B of each strip above the time threshold, in event,
        plane, strip order.
    model : DetectorModel
        Offsets, pedestals, thresholds, jitters.

    Returns
    -------
    numpy.ndarray of int64 [n, 64]
        File columns (plane 4 first), 0 = no hit. [1e-4 ns]
    """
    n = response.q_strip.shape[0]
    need = 4 * timed_strips(response, model)
    if noise.shape != (need,):
        raise ValueError(f"noise must have shape ({need},), got {noise.shape}")
    if t_event_ns.shape != (n,) or cos_theta.shape != (n,):
        raise ValueError("t_event_ns and cos_theta must have one value per event")
    ticks = np.empty((n, N_CHANNELS), np.int64)
    f64 = np.float64
    _kernels.electronics_kernel(
        np.ascontiguousarray(response.q_strip, f64),
        np.ascontiguousarray(response.x_at, f64),
        np.ascontiguousarray(time_of_flight_ns(cos_theta, model), f64),
        np.ascontiguousarray(t_event_ns, f64),
        np.ascontiguousarray(noise, f64),
        model.columns,
        np.ascontiguousarray(model.t_offset_ns, f64),
        np.ascontiguousarray(model.q_pedestal_ns, f64),
        float(model.q_threshold_fc),
        float(model.q_time_threshold_fc),
        float(model.signal_speed_mm_ns),
        model.time_jitter_ns,
        float(model.q_jitter_ns),
        float(model.tot_scale_ns),
        float(model.tot_q0_fc),
        ticks,
    )
    return ticks


def electronics_reference(
    response: Response,
    cos_theta: np.ndarray,
    t_event_ns: np.ndarray,
    noise: np.ndarray,
    model: DetectorModel,
) -> np.ndarray:
    """Plain-numpy reference of :func:`electronics`."""
    n = response.q_strip.shape[0]
    q = response.q_strip
    timed = q >= model.q_time_threshold_fc
    full = np.zeros((*q.shape, 4))
    full[timed] = noise.reshape(-1, 4)  # boolean indexing is in C order: event, plane, strip
    noise = full
    t0 = t_event_ns[:, None] + time_of_flight_ns(cos_theta, model)  # [n, k]
    half = response.x_at / model.signal_speed_mm_ns
    sig_t = model.time_jitter_ns
    tf = (
        t0[:, :, None] + model.t_offset_ns[None, :, 0, :] - half[:, :, None] + sig_t * noise[..., 0]
    )
    tb = (
        t0[:, :, None] + model.t_offset_ns[None, :, 1, :] + half[:, :, None] + sig_t * noise[..., 1]
    )
    width = model.tot_scale_ns * np.log1p(q / model.tot_q0_fc)
    qf = model.q_pedestal_ns[None, :, 0, :] + width + model.q_jitter_ns * noise[..., 2]
    qb = model.q_pedestal_ns[None, :, 1, :] + width + model.q_jitter_ns * noise[..., 3]
    charged = q >= model.q_threshold_fc
    ticks = np.zeros((n, N_CHANNELS), np.int64)
    cols = model.columns
    for f, (values, ok) in enumerate(((tf, timed), (tb, timed), (qf, charged), (qb, charged))):
        v = np.where(ok, np.rint(values * 1e4), 0).astype(np.int64)
        for k in range(N_PLANES):
            ticks[:, cols[k, f, :]] = v[:, k, :]
    return ticks


def self_trigger_ticks(
    rng: np.random.Generator, n: int, model: DetectorModel
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-like content of self-trigger events (trigger type 2).

    Each plane fires with probability 0.3 on one random strip: times uniform in [-200, -60] ns
    with |T_B - T_F| < 3 ns, charge written with probability 0.5 (pedestal + 0..40 ns).

    Returns
    -------
    ticks : numpy.ndarray of int64 [n, 64]
        File columns. [1e-4 ns]
    hit_mask : numpy.ndarray of uint8 [n]
        Planes with a charge written (bit k = plane k+1).
    """
    ticks = np.zeros((n, N_CHANNELS), np.int64)
    hit_mask = np.zeros(n, np.uint8)
    cols = model.columns
    fires = rng.random((n, N_PLANES)) < 0.3
    strip = rng.integers(0, N_STRIPS, size=(n, N_PLANES))
    t = rng.uniform(-200.0, -60.0, size=(n, N_PLANES))
    dt = rng.uniform(-1.5, 1.5, size=(n, N_PLANES))
    charged = rng.random((n, N_PLANES)) < 0.5
    width = rng.uniform(0.0, 40.0, size=(n, N_PLANES, 2))
    rows = np.arange(n)
    for k in range(N_PLANES):
        sel = fires[:, k]
        r, s = rows[sel], strip[sel, k]
        ticks[r, cols[k, 0, s]] = np.rint((t[sel, k] - dt[sel, k]) * 1e4).astype(np.int64)
        ticks[r, cols[k, 1, s]] = np.rint((t[sel, k] + dt[sel, k]) * 1e4).astype(np.int64)
        selq = sel & charged[:, k]
        rq, sq = rows[selq], strip[selq, k]
        ticks[rq, cols[k, 2, sq]] = np.rint(
            (model.q_pedestal_ns[k, 0, sq] + width[selq, k, 0]) * 1e4
        ).astype(np.int64)
        ticks[rq, cols[k, 3, sq]] = np.rint(
            (model.q_pedestal_ns[k, 1, sq] + width[selq, k, 1]) * 1e4
        ).astype(np.int64)
        hit_mask[selq] |= np.uint8(1 << k)
    return ticks, hit_mask
