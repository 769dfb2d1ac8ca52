"""Numba kernels of the reconstruction; call them through :mod:`services.reconstruct.events`.

The public wrappers validate dtypes and shapes; these functions trust their arguments. Every
kernel has a plain-numpy reference in ``events.py`` that the tests compare against.

Two kernels share the event status, the hit search and the track fit: ``reconstruct_kernel``
writes every per-event quantity (``mingo reconstruct --events``), ``rates_kernel`` only what the
per-minute tally and the T_sum calibration (the good 4-plane tracks) need, and decides the
angular region from the fitted slopes without atan/atan2 (see :func:`_region_of_slopes`). Rows
are indexed as ``channels[i, c]``, and every helper called per event is inlined: a row view
(``channels[i]``) or a call that is not inlined makes numba count references to the arrays, two
to four ``NRT_incref``/``NRT_decref`` calls per event.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

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


#: Relative distance of tan²θ or of the slopes to a region boundary within which
#: :func:`_region_of_slopes` decides with θ and φ themselves. [1]
REGION_GUARD = 1e-9
_RAD = 180.0 / math.pi
_BIG = float(np.finfo(np.float64).max)


@nb.njit(cache=True, inline="always")
def _column(plane: int, quantity: int, strip: int) -> int:
    # plane 0 = plane 1; the file holds plane 4 first (schemas.dat_format.PLANE_ORDER)
    return (3 - plane) * 16 + quantity * 4 + strip


@nb.njit(cache=True)
def _windows(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid interval of each of the 64 columns; infinite bounds become the largest finite
    float, so that ±inf fails the fast status test like NaN does."""
    lo = np.empty(64)
    hi = np.empty(64)
    for c in range(64):
        is_time = c % 16 < 8  # per plane block: 8 times, then 8 charges
        lo[c] = max(params[P_TMIN] if is_time else params[P_QMIN], -_BIG)
        hi[c] = min(params[P_TMAX] if is_time else params[P_QMAX], _BIG)
    return lo, hi


@nb.njit(cache=True, inline="always")
def _event_status(
    channels: np.ndarray, i: int, lo: np.ndarray, hi: np.ndarray, params: np.ndarray
) -> tuple[int, int]:
    """Status of event i and its written strips: bit 4·plane + strip set when all four values
    (T_F, T_B, Q_F, Q_B) are non-zero; no strips unless the status is OK."""
    # Fast path, one branch-free pass over the row that vectorises (stride-1 over the columns
    # with per-column bounds): an event with a non-zero value and every value, zeros included,
    # inside its window is OK. Anything else (NaN fails both comparisons; a window without 0
    # fails on zeros) goes to the exact scan, which decides the status. The same pass collects
    # which columns are non-zero (compare + mask in the vector registers), so the hit search
    # needs no branch per strip.
    inside = True
    columns = 0
    for c in range(64):
        v = channels[i, c]
        columns |= (v != 0.0) << c
        inside &= (v >= lo[c]) & (v <= hi[c])
    # a plane's block holds 4 nibbles (T_F, T_B, Q_F, Q_B; bit = strip): a strip is written
    # where all four nibbles have its bit (the arithmetic shift of bit 63 is masked off)
    strips = 0
    for p in range(_N):
        b = columns >> ((3 - p) * 16)
        strips |= (b & (b >> 4) & (b >> 8) & (b >> 12) & 15) << (4 * p)
    if (columns != 0) & inside:
        return OK, strips
    code = _event_status_exact(channels, i, params)
    return code, strips if code == OK else 0


@nb.njit(cache=True, inline="always")
def _event_status_exact(channels: np.ndarray, i: int, params: np.ndarray) -> int:
    # inlined although rarely run: as a call, it kept numba's reference counting of the
    # arrays in the event loop (two NRT_incref and two NRT_decref calls per event)
    nonzero = False
    for c in range(64):
        if not math.isfinite(channels[i, c]):
            return NOT_FINITE
        if channels[i, c] != 0.0:
            nonzero = True
    if not nonzero:
        return ALL_ZERO
    for p in range(_N):
        for q in range(_N):
            for s in range(_N):
                v = channels[i, _column(p, q, s)]
                if v == 0.0:
                    continue
                if q < 2 and (v < params[P_TMIN] or v > params[P_TMAX]):
                    return TIME_OUT_OF_WINDOW
                if q >= 2 and (v < params[P_QMIN] or v > params[P_QMAX]):
                    return CHARGE_OUT_OF_WINDOW
    return OK


@nb.njit(cache=True)
def _strip_constants(
    pedestal: np.ndarray,
    tdif_offset: np.ndarray,
    tsum_offset: np.ndarray,
    strip_y: np.ndarray,
    strip_w: np.ndarray,
) -> np.ndarray:
    """Per-strip constants, once per call: rows pedestal front, back, T_dif offset, T_sum
    offset, y, σy, weight 1/σy²; column 4·plane + strip."""
    out = np.empty((7, 16))
    for p in range(_N):
        for s in range(_N):
            j = 4 * p + s
            sig = strip_w[p, s] / math.sqrt(12.0)
            out[0, j] = pedestal[p, s, 0]
            out[1, j] = pedestal[p, s, 1]
            out[2, j] = tdif_offset[p, s]
            out[3, j] = tsum_offset[p, s]
            out[4, j] = strip_y[p, s]
            out[5, j] = sig
            out[6, j] = 1.0 / (sig * sig)
    return out


@nb.njit(cache=True, inline="always")
def _lowest_set_bit(w: int) -> int:
    """Index of the lowest set bit of w > 0 (one tzcnt instruction)."""
    # mypy sees the intrinsic's typing signature (typing context, value), not the call's
    return trailing_zeros(w)  # type: ignore[call-arg]


#: Rows of the per-plane scratch of :func:`_hits`.
_BEST_Q, _PLANE_Q, _TDIF, _TSUM = range(4)


@nb.njit(cache=True, inline="always")
def _hits(
    channels: np.ndarray,
    i: int,
    strips: int,
    const: np.ndarray,
    params: np.ndarray,
    best: np.ndarray,
    plane: np.ndarray,
) -> None:
    """Hit search of event i over its written ``strips`` (:func:`_event_status`).

    Per plane p: ``best[p]`` the hit strip (-1 if none); ``plane[_PLANE_Q, p]`` the plane
    charge (0 if none); ``plane[_TDIF, p]`` the calibrated T_dif and ``plane[_TSUM, p]`` the raw
    T_sum of the hit strip (stale if none).
    """
    for p in range(_N):
        best[p] = -1
        plane[_BEST_Q, p] = -np.inf
        plane[_PLANE_Q, p] = 0.0
    # only the written strips, 2-6 per event, in the order of the strip loop they replace
    # (plane, then strip), so that the charge sums are the same floats
    w = strips
    while w:
        j = _lowest_set_bit(w)  # bit 4·plane + strip; also the column of ``const``
        w &= w - 1
        p = j >> 2
        s = j & 3
        c = (3 - p) * 16 + s
        tf = channels[i, c]
        tb = channels[i, c + 4]
        qf = channels[i, c + 8]
        qb = channels[i, c + 12]
        qs = 0.5 * ((qf - const[0, j]) + (qb - const[1, j]))
        tdif = 0.5 * (tb - tf) - const[2, j]
        # which strips pass and which has the most charge are coin flips: written as selects
        # (LLVM still branches on the strongest-strip update; forcing that out was slower)
        good = (qs > params[P_QTHR]) & (abs(tdif) <= params[P_TDIF_CUT])
        plane[_PLANE_Q, p] += qs if good else 0.0
        better = good & (qs > plane[_BEST_Q, p])
        best[p] = s if better else best[p]
        plane[_BEST_Q, p] = qs if better else plane[_BEST_Q, p]
        plane[_TDIF, p] = tdif if better else plane[_TDIF, p]
        plane[_TSUM, p] = 0.5 * (tf + tb) if better else plane[_TSUM, p]


@nb.njit(cache=True)
def _setup(
    params: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray]:
    """Per call: column windows, plane z from plane 1 [mm], x weight [mm⁻²], and the scratch
    of one event's hits (rows x, y, y weight, σy; column plane)."""
    lo, hi = _windows(params)
    return lo, hi, z - z[0], 1.0 / (params[P_SIGMA_X] * params[P_SIGMA_X]), np.empty((4, _N))


@nb.njit(cache=True, inline="always")
def _keep_hit(
    hit: np.ndarray, p: int, best: int, b_tdif: float, const: np.ndarray, params: np.ndarray
) -> int:
    """Store plane p's hit in the scratch; its column in ``const``. Without a hit (best -1),
    strip 0's values: the fit skips the plane, and the kernels select what they write."""
    j = 4 * p + max(best, 0)
    hit[0, p] = b_tdif * params[P_SPEED]
    hit[1, p] = const[4, j]
    hit[2, p] = const[6, j]
    hit[3, p] = const[5, j]
    return j


@nb.njit(cache=True, inline="always")
def _fit(m: int, hit: np.ndarray, zr: np.ndarray, wx: float) -> tuple[float, float, float, float]:
    """Weighted straight lines x(z), y(z) through the hit planes of mask m: (x', x0, y', y0)."""
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
    for p in range(_N):
        if (m >> p) & 1:
            zp = zr[p]
            sw += wx
            swz += wx * zp
            swzz += wx * zp * zp
            swx += wx * hit[0, p]
            swzx += wx * zp * hit[0, p]
            wy = hit[2, p]
            sv += wy
            svz += wy * zp
            svzz += wy * zp * zp
            svy += wy * hit[1, p]
            svzy += wy * zp * hit[1, p]
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
    return sx, ax, sy, ay


@nb.njit(cache=True, inline="always")
def _chi2(
    m: int, hit: np.ndarray, zr: np.ndarray, wx: float, sx: float, ax: float, sy: float, ay: float
) -> float:
    """χ² of the x and y fits together through the hit planes of mask m."""
    c2 = 0.0
    for p in range(_N):
        if (m >> p) & 1:
            zp = zr[p]
            rx = hit[0, p] - ax - sx * zp
            ry = (hit[1, p] - ay - sy * zp) / hit[3, p]
            c2 += rx * rx * wx + ry * ry
    return c2


@nb.njit(cache=True, inline="always")
def _fiducial(
    sx: float, ax: float, sy: float, ay: float, zr: np.ndarray, params: np.ndarray
) -> int:
    f = 0
    for p in range(_N):
        zp = zr[p]
        inside = (abs(ax + sx * zp) < params[P_FID_X]) & (abs(ay + sy * zp) < params[P_FID_Y])
        f |= inside << p
    return f


@nb.njit(cache=True, inline="always")
def _region_of_angles(th: float, ph: float, th_hi: float, th_lo: float) -> int:
    """The definition: index into ``REGIONS`` from θ and φ [deg]."""
    if th < th_hi:
        return 0
    if th < th_lo:
        return 1 + min(int((ph + 180.0) / 45.0), 7)
    return 9 + min(int((ph + 180.0) / 90.0), 3)


@nb.njit(cache=True)
def tan2_limit(theta_deg: float) -> float:
    """tan² of a zenith limit in (0°, 90°); -1 outside, which makes every event take the
    θ/φ path of :func:`_region_of_slopes`."""
    if 0.0 < theta_deg < 90.0:
        tn = math.tan(theta_deg * (math.pi / 180.0))
        return tn * tn
    return -1.0


@nb.njit(cache=True, inline="always")
def _region_of_slopes(
    sx: float, sy: float, t2_hi: float, t2_lo: float, th_hi: float, th_lo: float
) -> int:
    """:func:`_region_of_angles` of θ = atan(√(x'² + y'²)), φ = atan2(y', x') without atan.

    θ < limit ⇔ x'² + y'² < tan²(limit); the 45° sectors of φ follow from the signs of x', y'
    and from |y'| < |x'|, the 90° sectors from the signs. Within ``REGION_GUARD`` (relative) of
    a boundary (tan²θ near a limit, a slope 0, |x'| = |y'|), and for limits outside (0°, 90°),
    the region is computed from θ and φ themselves, so the result equals the definition
    exactly, boundary conventions (φ = 180° in the last sector, ...) included.
    """
    g = REGION_GUARD
    t2 = sx * sx + sy * sy
    ax = abs(sx)
    ay = abs(sy)
    big = max(ax, ay)
    near = (
        (t2_hi < 0.0)
        | (t2_lo < 0.0)
        | (abs(t2 - t2_hi) <= g * t2_hi)
        | (abs(t2 - t2_lo) <= g * t2_lo)
        | (min(ax, ay) <= g * big)
        | (abs(ax - ay) <= g * big)
    )
    if near:
        th = math.atan(math.sqrt(t2)) * _RAD
        ph = math.atan2(sy, sx) * _RAD
        return _region_of_angles(th, ph, th_hi, th_lo)
    if t2 < t2_hi:
        return 0
    # quadrant counted from φ = -180°: (-180, -90), (-90, 0), (0, 90), (90, 180)
    upper = sy > 0.0
    quadrant = 2 * upper + ((sx > 0.0) ^ upper)
    if t2 >= t2_lo:
        return 9 + quadrant
    # within a quadrant the 45° half nearer the x axis is the first in φ for quadrants 0 and 2
    nearer_x = ay < ax
    return 1 + 2 * quadrant + (nearer_x ^ (quadrant % 2 == 0))


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
    """Hits, topology, straight-line fit, θ, φ, χ², angular region of every event (events.py)."""
    n = channels.shape[0]
    const = _strip_constants(pedestal, tdif_offset, tsum_offset, strip_y, strip_w)
    lo, hi, zr, wx, hit = _setup(params, z)
    best = np.empty(_N, np.int64)
    plane = np.zeros((4, _N))
    for i in range(n):
        code, strips = _event_status(channels, i, lo, hi, params)
        status[i] = code
        _hits(channels, i, strips, const, params, best, plane)
        m = 0
        qe = 0.0
        is_streamer = 0
        for p in range(_N):
            # which planes are hit is a coin flip: every plane is written, with selects
            has = best[p] >= 0
            plane_q = plane[_PLANE_Q, p]
            j = _keep_hit(hit, p, best[p], plane[_TDIF, p], const, params)
            strip[i, p] = best[p]
            x[i, p] = hit[0, p] if has else np.nan
            y[i, p] = hit[1, p] if has else np.nan
            t[i, p] = plane[_TSUM, p] - const[3, j] if has else np.nan
            q[i, p] = plane_q  # 0 without a hit
            qe += plane_q  # + 0.0 without a hit: the same float
            is_streamer |= has & (plane_q > params[P_STREAMER])
            m |= has << p
        mask[i] = m
        q_event[i] = qe
        streamer[i] = is_streamer
        topology[i] = topology_of_mask[m]
        fiducial[i] = 0
        region[i] = -1
        hits = (m & 1) + ((m >> 1) & 1) + ((m >> 2) & 1) + (m >> 3)
        if hits < 2:
            theta[i] = np.nan
            phi[i] = np.nan
            chi2[i] = np.nan
            continue
        sx, ax, sy, ay = _fit(m, hit, zr, wx)
        chi2[i] = _chi2(m, hit, zr, wx, sx, ax, sy, ay)
        th = math.atan(math.sqrt(sx * sx + sy * sy)) * _RAD
        ph = math.atan2(sy, sx) * _RAD
        theta[i] = th
        phi[i] = ph
        if hits < 3:
            continue
        fiducial[i] = _fiducial(sx, ax, sy, ay, zr, params)
        region[i] = _region_of_angles(th, ph, params[P_THETA_HIGH], params[P_THETA_LOW])


@nb.njit(cache=True, nogil=True)
def rates_kernel(
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
    q_event: np.ndarray,
    topology: np.ndarray,
    region: np.ndarray,
    fiducial: np.ndarray,
    track_strip: np.ndarray,
    track_t: np.ndarray,
    track_theta: np.ndarray,
    chi2_cut: float,
) -> int:
    """What the per-minute tally needs of every event: status, hits, topology, charge, and for
    3- and 4-plane events (those with a region) the track fit, fiducial planes and region.

    Also, packed at the front of ``track_*``, the hit strips, calibrated T_sum and θ of the
    4-plane tracks with χ² < ``chi2_cut`` (the T_sum calibration's input), as
    ``reconstruct_kernel`` computes them; returns their number."""
    n = channels.shape[0]
    const = _strip_constants(pedestal, tdif_offset, tsum_offset, strip_y, strip_w)
    lo, hi, zr, wx, hit = _setup(params, z)
    th_hi = params[P_THETA_HIGH]
    th_lo = params[P_THETA_LOW]
    t2_hi = tan2_limit(th_hi)
    t2_lo = tan2_limit(th_lo)
    tracks = 0
    best = np.empty(_N, np.int64)
    plane = np.zeros((4, _N))
    for i in range(n):
        code, strips = _event_status(channels, i, lo, hi, params)
        status[i] = code
        _hits(channels, i, strips, const, params, best, plane)
        m = 0
        qe = 0.0
        for p in range(_N):  # no branch on the hit planes: + 0.0 without a hit
            qe += plane[_PLANE_Q, p]
            m |= (best[p] >= 0) << p
        mask[i] = m
        q_event[i] = qe
        topology[i] = topology_of_mask[m]
        fiducial[i] = 0
        region[i] = -1
        if (m & 1) + ((m >> 1) & 1) + ((m >> 2) & 1) + (m >> 3) < 3:
            continue
        # the fit's inputs only for the events it fits (36 % in simulated data)
        for p in range(_N):
            _keep_hit(hit, p, best[p], plane[_TDIF, p], const, params)
        sx, ax, sy, ay = _fit(m, hit, zr, wx)
        fiducial[i] = _fiducial(sx, ax, sy, ay, zr, params)
        region[i] = _region_of_slopes(sx, sy, t2_hi, t2_lo, th_hi, th_lo)
        if m == 15 and _chi2(m, hit, zr, wx, sx, ax, sy, ay) < chi2_cut:
            for p in range(_N):
                track_strip[tracks, p] = best[p]
                track_t[tracks, p] = plane[_TSUM, p] - const[3, 4 * p + best[p]]
            track_theta[tracks] = math.atan(math.sqrt(sx * sx + sy * sy)) * _RAD
            tracks += 1
    return tracks
