"""Numba kernels of the reconstruction; call them through :mod:`services.reconstruct.events`.

The public wrappers validate dtypes and shapes; these functions trust their arguments. Every
kernel has a plain-numpy reference in ``events.py`` that the tests compare against.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

#: Event status codes (``status`` output).
OK = 0
NOT_FINITE = 1
ALL_ZERO = 2
TIME_OUT_OF_WINDOW = 3
CHARGE_OUT_OF_WINDOW = 4

#: Indices into the ``params`` vector of :func:`reconstruct_kernel`.
P_SPEED, P_TMIN, P_TMAX, P_QMIN, P_QMAX, P_QTHR, P_STREAMER, P_TDIF_CUT = range(8)
P_SIGMA_X, P_FID_X, P_FID_Y, P_THETA_HIGH, P_THETA_LOW = range(8, 13)
N_PARAMS = 13

_N = 4  # planes, strips, quantities
#: Fitted slopes below this are exactly 0 (rounding noise of equal positions). [1]
SLOPE_ZERO = 1e-9


@nb.njit(cache=True, inline="always")
def _column(plane: int, quantity: int, strip: int) -> int:
    # plane 0 = plane 1; the file holds plane 4 first (schemas.dat_format.PLANE_ORDER)
    return (3 - plane) * 16 + quantity * 4 + strip


@nb.njit(cache=True, inline="always")
def _event_status(row: np.ndarray, params: np.ndarray) -> int:
    # Fast path, one branch-free pass: within each plane's block of 16 columns the first 8 are
    # times and the last 8 charges. A NaN fails both window comparisons, so any non-finite or
    # out-of-window value sends the event to the exact scan, which decides the status.
    t_lo, t_hi, q_lo, q_hi = params[P_TMIN], params[P_TMAX], params[P_QMIN], params[P_QMAX]
    bad = False
    nonzero = False
    for block in range(0, 64, 16):
        for c in range(block, block + 8):
            v = row[c]
            nonzero |= v != 0.0
            bad |= (v != 0.0) & ~((v >= t_lo) & (v <= t_hi))
        for c in range(block + 8, block + 16):
            v = row[c]
            nonzero |= v != 0.0
            bad |= (v != 0.0) & ~((v >= q_lo) & (v <= q_hi))
    if nonzero and not bad:
        return OK
    return _event_status_exact(row, params)


@nb.njit(cache=True)
def _event_status_exact(row: np.ndarray, params: np.ndarray) -> int:
    nonzero = False
    for c in range(64):
        if not math.isfinite(row[c]):
            return NOT_FINITE
        if row[c] != 0.0:
            nonzero = True
    if not nonzero:
        return ALL_ZERO
    for p in range(_N):
        for q in range(_N):
            for s in range(_N):
                v = row[_column(p, q, s)]
                if v == 0.0:
                    continue
                if q < 2 and (v < params[P_TMIN] or v > params[P_TMAX]):
                    return TIME_OUT_OF_WINDOW
                if q >= 2 and (v < params[P_QMIN] or v > params[P_QMAX]):
                    return CHARGE_OUT_OF_WINDOW
    return OK


@nb.njit(cache=True, nogil=True)
def reconstruct_kernel(
    channels: np.ndarray,
    pedestal: np.ndarray,
    tdif_offset: np.ndarray,
    tsum_offset: np.ndarray,
    z: np.ndarray,
    strip_y: np.ndarray,
    strip_w: np.ndarray,
    params: np.ndarray,
    topology_of_mask: np.ndarray,
    status: np.ndarray,
    mask: np.ndarray,
    strip: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    q: np.ndarray,
    theta: np.ndarray,
    phi: np.ndarray,
    chi2: np.ndarray,
    q_event: np.ndarray,
    topology: np.ndarray,
    region: np.ndarray,
    fiducial: np.ndarray,
    streamer: np.ndarray,
) -> None:
    """Hits, topology, straight-line fit, angular region of every event (see events.py)."""
    n = channels.shape[0]
    rad = 180.0 / math.pi
    # per-(plane, strip) y resolution and its weight, and plane z from plane 1, computed once
    sig_y = np.empty((_N, _N))
    w_y = np.empty((_N, _N))
    zr = np.empty(_N)
    for p in range(_N):
        zr[p] = z[p] - z[0]
        for s in range(_N):
            sig_y[p, s] = strip_w[p, s] / math.sqrt(12.0)
            w_y[p, s] = 1.0 / (sig_y[p, s] * sig_y[p, s])
    for i in range(n):
        row = channels[i]
        code = _event_status(row, params)
        status[i] = code
        m = 0
        qe = 0.0
        is_streamer = 0
        for p in range(_N):
            best = -1
            best_q = -np.inf
            plane_q = 0.0
            for s in range(_N):
                tf = row[_column(p, 0, s)]
                tb = row[_column(p, 1, s)]
                qf = row[_column(p, 2, s)]
                qb = row[_column(p, 3, s)]
                if code != OK or tf == 0.0 or tb == 0.0 or qf == 0.0 or qb == 0.0:
                    continue
                qs = 0.5 * ((qf - pedestal[p, s, 0]) + (qb - pedestal[p, s, 1]))
                tdif = 0.5 * (tb - tf) - tdif_offset[p, s]
                if qs <= params[P_QTHR] or abs(tdif) > params[P_TDIF_CUT]:
                    continue
                plane_q += qs
                if qs > best_q:
                    best_q = qs
                    best = s
            strip[i, p] = best
            if best < 0:
                x[i, p] = np.nan
                y[i, p] = np.nan
                t[i, p] = np.nan
                q[i, p] = 0.0
                continue
            tf = row[_column(p, 0, best)]
            tb = row[_column(p, 1, best)]
            x[i, p] = (0.5 * (tb - tf) - tdif_offset[p, best]) * params[P_SPEED]
            y[i, p] = strip_y[p, best]
            t[i, p] = 0.5 * (tf + tb) - tsum_offset[p, best]
            q[i, p] = plane_q
            qe += plane_q
            if plane_q > params[P_STREAMER]:
                is_streamer = 1
            m |= 1 << p
        mask[i] = m
        q_event[i] = qe
        streamer[i] = is_streamer
        topology[i] = topology_of_mask[m]
        # weighted straight-line fits x(z), y(z) through the hit planes
        sw = 0.0
        swz = 0.0
        swzz = 0.0
        swx = 0.0
        swzx = 0.0
        sv = 0.0
        svz = 0.0
        svzz = 0.0
        svy = 0.0
        svzy = 0.0
        hits = 0
        wx = 1.0 / (params[P_SIGMA_X] * params[P_SIGMA_X])
        for p in range(_N):
            if (m >> p) & 1:
                hits += 1
                zp = zr[p]
                sw += wx
                swz += wx * zp
                swzz += wx * zp * zp
                swx += wx * x[i, p]
                swzx += wx * zp * x[i, p]
                wy = w_y[p, strip[i, p]]
                sv += wy
                svz += wy * zp
                svzz += wy * zp * zp
                svy += wy * y[i, p]
                svzy += wy * zp * y[i, p]
        fiducial[i] = 0
        region[i] = -1
        if hits < 2:
            theta[i] = np.nan
            phi[i] = np.nan
            chi2[i] = np.nan
            continue
        dx = sw * swzz - swz * swz
        sx = (sw * swzx - swz * swx) / dx
        ax = (swzz * swx - swz * swzx) / dx
        dy = sv * svzz - svz * svz
        sy = (sv * svzy - svz * svy) / dy
        ay = (svzz * svy - svz * svzy) / dy
        # hits in strips at one y give a y slope that is 0 up to rounding; its sign would put
        # the track on either side of the φ = 0°/180° sector boundary at random
        if abs(sy) < SLOPE_ZERO:
            sy = 0.0
        if abs(sx) < SLOPE_ZERO:
            sx = 0.0
        c2 = 0.0
        for p in range(_N):
            if (m >> p) & 1:
                zp = zr[p]
                rx = x[i, p] - ax - sx * zp
                ry = (y[i, p] - ay - sy * zp) / sig_y[p, strip[i, p]]
                c2 += rx * rx * wx + ry * ry
        chi2[i] = c2
        th = math.atan(math.sqrt(sx * sx + sy * sy)) * rad
        ph = math.atan2(sy, sx) * rad
        theta[i] = th
        phi[i] = ph
        if hits < 3:
            continue
        f = 0
        for p in range(_N):
            zp = zr[p]
            if abs(ax + sx * zp) < params[P_FID_X] and abs(ay + sy * zp) < params[P_FID_Y]:
                f |= 1 << p
        fiducial[i] = f
        if th < params[P_THETA_HIGH]:
            region[i] = 0
        elif th < params[P_THETA_LOW]:
            region[i] = 1 + min(int((ph + 180.0) / 45.0), 7)
        else:
            region[i] = 9 + min(int((ph + 180.0) / 90.0), 3)
