"""Numba kernels of the simulator (private: call them through the validating public wrappers).

- :func:`format_lines_kernel` / :func:`line_lengths_kernel`: event lines as a station writes them,
  fixed-point numbers written digit by digit into a ``uint8`` buffer (the bottleneck of the
  simulator is text); reference: ``simulator.formatting.format_event_lines_reference``.
- :func:`avalanche_kernel`, :func:`charge_kernel`: track → avalanche → induced strip charges
  (Lorentzian footprint); reference: ``simulator.detector.detector_response_reference``.
- :func:`candidate_tracks_kernel`: candidate tracks sampled exactly from the thinned flux.
- :func:`electronics_kernel`: strip charges and hit geometry → the 64 raw channel values in ticks of
  1e-4 ns; reference: ``simulator.detector.electronics_reference``.

All kernels are pure: every random number comes in as an array drawn by numpy's ``Generator``, so
results are deterministic and independent of numba's own random state.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_ZERO = 48  # ord("0")
_SPACE = 32
_MINUS = 45
_DOT = 46
_NEWLINE = 10


def _digit_table() -> np.ndarray:
    """``table[v]`` = the 4 ASCII digits of ``v`` zero-padded, for 0 <= v < 10000."""
    values = np.arange(10000)
    table = np.empty((10000, 4), np.uint8)
    for k in range(4):
        table[:, 3 - k] = _ZERO + (values // 10**k) % 10
    return table


_DIGITS4 = _digit_table()


@njit(cache=True, nogil=True)
def _n_digits(value: int) -> int:
    n = 1
    while value >= 10:
        value //= 10
        n += 1
    return n


@njit(cache=True, nogil=True)
def _value_width(tick: int) -> int:
    """Width of ``%09.4f`` of ``tick / 1e4``."""
    if tick >= 0:
        if tick < 100_000_000:
            return 9
        return _n_digits(tick // 10000) + 5
    if tick > -10_000_000:
        return 9
    return _n_digits((-tick) // 10000) + 6


@njit(cache=True, nogil=True)
def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01 (H. Hinnant's civil_from_days)."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return y, m, d


@njit(cache=True, nogil=True)
def line_lengths_kernel(trigger: np.ndarray, ticks: np.ndarray, out: np.ndarray) -> None:
    """Byte length of each line including its newline; ``out`` has one slot per line."""
    n, m = ticks.shape
    for i in range(n):
        # "YYYY MM DD hh mm ss " = 20 bytes, trigger digits, newline
        length = 20 + _n_digits(trigger[i]) + 1
        for j in range(m):
            length += 1 + _value_width(ticks[i, j])
        out[i] = length


@njit(cache=True, nogil=True)
def _put_uint(buf: np.ndarray, pos: int, value: int, width: int) -> int:
    """Write ``value`` zero-padded to ``width`` digits at ``pos``; return the next position."""
    for k in range(width - 1, -1, -1):
        buf[pos + k] = _ZERO + value % 10
        value //= 10
    return pos + width


@njit(cache=True, nogil=True)
def _put4(buf: np.ndarray, pos: int, digits: np.ndarray, value: int) -> None:
    buf[pos] = digits[value, 0]
    buf[pos + 1] = digits[value, 1]
    buf[pos + 2] = digits[value, 2]
    buf[pos + 3] = digits[value, 3]


@njit(cache=True, nogil=True)
def _format_lines(
    epoch_s: np.ndarray,
    trigger: np.ndarray,
    ticks: np.ndarray,
    offsets: np.ndarray,
    buf: np.ndarray,
    digits: np.ndarray,
) -> None:
    n, m = ticks.shape
    last_second = -1
    y = mo = d = 0
    for i in range(n):
        pos = offsets[i]
        t = epoch_s[i]
        days = t // 86400
        sod = t - days * 86400
        if days != last_second:
            y, mo, d = _civil(days)
            last_second = days
        pos = _put_uint(buf, pos, y, 4)
        buf[pos] = _SPACE
        pos = _put_uint(buf, pos + 1, mo, 2)
        buf[pos] = _SPACE
        pos = _put_uint(buf, pos + 1, d, 2)
        buf[pos] = _SPACE
        pos = _put_uint(buf, pos + 1, sod // 3600, 2)
        buf[pos] = _SPACE
        pos = _put_uint(buf, pos + 1, (sod // 60) % 60, 2)
        buf[pos] = _SPACE
        pos = _put_uint(buf, pos + 1, sod % 60, 2)
        buf[pos] = _SPACE
        pos = _put_uint(buf, pos + 1, trigger[i], _n_digits(trigger[i]))
        for j in range(m):
            buf[pos] = _SPACE
            v = ticks[i, j]
            if v == 0:
                buf[pos + 1] = _ZERO
                buf[pos + 2] = _ZERO
                buf[pos + 3] = _ZERO
                buf[pos + 4] = _ZERO
                buf[pos + 5] = _DOT
                buf[pos + 6] = _ZERO
                buf[pos + 7] = _ZERO
                buf[pos + 8] = _ZERO
                buf[pos + 9] = _ZERO
                pos += 10
                continue
            pos += 1
            if v > 0:
                ip = v // 10000
                if ip < 10000:
                    _put4(buf, pos, digits, ip)
                    pos += 4
                else:
                    pos = _put_uint(buf, pos, ip, _n_digits(ip))
            else:
                buf[pos] = _MINUS
                v = -v
                ip = v // 10000
                if ip < 1000:
                    buf[pos + 1] = digits[ip, 1]
                    buf[pos + 2] = digits[ip, 2]
                    buf[pos + 3] = digits[ip, 3]
                    pos += 4
                else:
                    pos = _put_uint(buf, pos + 1, ip, _n_digits(ip))
            buf[pos] = _DOT
            _put4(buf, pos + 1, digits, v % 10000)
            pos += 5
        buf[pos] = _NEWLINE


def format_lines_kernel(
    epoch_s: np.ndarray,
    trigger: np.ndarray,
    ticks: np.ndarray,
    offsets: np.ndarray,
    buf: np.ndarray,
) -> None:
    """Write the lines ``YYYY MM DD hh mm ss T v1 ... v64\\n`` at ``offsets`` into ``buf``.

    ``epoch_s`` are UTC seconds since 1970 (non-negative), ``ticks`` the values in units of
    1e-4 (printed like ``%09.4f``), ``offsets`` the start of each line (``offsets[n]`` = end),
    as computed from :func:`line_lengths_kernel`.
    """
    _format_lines(epoch_s, trigger, ticks, offsets, buf, _DIGITS4)


@njit(cache=True, nogil=True)
def avalanche_kernel(
    x0: np.ndarray,
    y0: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    cos_theta: np.ndarray,
    u_detect: np.ndarray,
    z_rel: np.ndarray,
    efficiency: np.ndarray,
    x_half: float,
    y_half: float,
    x_at: np.ndarray,
    y_at: np.ndarray,
    avalanche: np.ndarray,
) -> int:
    """Straight tracks through the planes and where the gas fires; returns the avalanche count.

    Track ``i`` is at ``(x0, y0)`` on the top plane [mm] with slopes ``tx = dx/dz``, ``ty = dy/dz``;
    plane ``k`` lies ``z_rel[k]`` below [mm]. Inside the active area (|x| ≤ x_half, |y| ≤ y_half)
    plane ``k`` fires when ``u_detect[i, k] < 1 - (1 - efficiency[k])^(1/cosθ)``: bit k of
    ``avalanche[i]``. Positions go to ``x_at, y_at [i, k]``.
    """
    n = x0.shape[0]
    n_planes = z_rel.shape[0]
    total = 0
    for i in range(n):
        inv_cos = 1.0 / cos_theta[i]
        aval = 0
        for k in range(n_planes):
            x = x0[i] + tx[i] * z_rel[k]
            y = y0[i] + ty[i] * z_rel[k]
            x_at[i, k] = x
            y_at[i, k] = y
            if abs(x) > x_half or abs(y) > y_half:
                continue
            if u_detect[i, k] < 1.0 - (1.0 - efficiency[k]) ** inv_cos:
                aval |= 1 << k
                total += 1
        avalanche[i] = aval
    return total


@njit(cache=True, nogil=True)
def charge_kernel(
    y_at: np.ndarray,
    avalanche: np.ndarray,
    u_streamer: np.ndarray,
    normal: np.ndarray,
    streamer_probability: float,
    log_median_avalanche: float,
    sigma_avalanche: float,
    log_median_streamer: float,
    sigma_streamer: float,
    strip_lo: np.ndarray,
    strip_hi: np.ndarray,
    gamma: float,
    q_threshold: float,
    q_time_threshold: float,
    q_strip: np.ndarray,
    hit_mask: np.ndarray,
) -> None:
    """Induced strip charges of the avalanches (Lorentzian footprint), and the hit planes.

    The avalanches are taken in track, plane order; avalanche ``a`` is a streamer when
    ``u_streamer[a] < streamer_probability`` and has the log-normal charge
    ``exp(log_median + sigma * normal[a])`` [fC]. A strip with conductor ``[lo, hi]`` [mm] collects
    ``q (atan((hi - y)/γ) - atan((lo - y)/γ)) / π`` (computed with one arctangent); charge on the
    gaps is lost. Strip charges below
    ``q_time_threshold`` are stored as 0 (nothing is written for them; far strips are skipped with
    the bound ``frac ≤ (w/γ) / (π (1 + (d/γ)²))`` at distance d, which changes no stored value).
    Bit k of ``hit_mask[i]``: a strip of plane k has ≥ ``q_threshold``.
    """
    n = y_at.shape[0]
    n_planes = y_at.shape[1]
    n_strips = strip_lo.shape[1]
    inv_pi = 1.0 / np.pi
    a = 0
    for i in range(n):
        hits = 0
        for k in range(n_planes):
            for s in range(n_strips):
                q_strip[i, k, s] = 0.0
            if not (avalanche[i] >> k) & 1:
                continue
            if u_streamer[a] < streamer_probability:
                q = np.exp(log_median_streamer + sigma_streamer * normal[a])
            else:
                q = np.exp(log_median_avalanche + sigma_avalanche * normal[a])
            a += 1
            y = y_at[i, k]
            for s in range(n_strips):
                lo = strip_lo[k, s]
                hi = strip_hi[k, s]
                d = lo - y if y < lo else (y - hi if y > hi else 0.0)
                if d > 0.0:
                    u = d / gamma
                    if q * (hi - lo) / gamma * inv_pi / (1.0 + u * u) < q_time_threshold:
                        continue
                # atan(a) - atan(b) with one arctangent (a > b): atan((a - b)/(1 + ab)), plus π
                # when 1 + ab < 0 (the track well inside a strip wider than the footprint)
                ua = (hi - y) / gamma
                ub = (lo - y) / gamma
                den = 1.0 + ua * ub
                if den > 0.0:
                    angle = np.arctan((ua - ub) / den)
                elif den < 0.0:
                    angle = np.arctan((ua - ub) / den) + np.pi
                else:
                    angle = 0.5 * np.pi
                qs = q * angle * inv_pi
                if qs >= q_time_threshold:
                    q_strip[i, k, s] = qs
                    if qs >= q_threshold:
                        hits |= 1 << k
        hit_mask[i] = hits


@njit(cache=True, nogil=True)
def electronics_kernel(
    q_strip: np.ndarray,
    x_at: np.ndarray,
    tof_ns: np.ndarray,
    t_event_ns: np.ndarray,
    noise: np.ndarray,
    column: np.ndarray,
    t_offset: np.ndarray,
    q_pedestal: np.ndarray,
    q_threshold: float,
    q_time_threshold: float,
    v_mm_ns: float,
    t_sigma_ns: float,
    q_sigma_ns: float,
    tot_scale_ns: float,
    tot_q0_fc: float,
    ticks: np.ndarray,
) -> None:
    """Raw channel values of triggered events, in ticks of 1e-4 ns.

    Per event ``i`` and plane ``k``, strip ``s``: a strip with charge ≥ ``q_time_threshold`` writes
    its front/back times ``T_F = t0 + off_F - x/v``, ``T_B = t0 + off_B + x/v`` (``t0`` = event time
    + time of flight, plus Gaussian jitter ``t_sigma_ns``), so ``(T_B - T_F)/2 = x/v`` before
    offsets; with charge ≥ ``q_threshold`` it also writes the charges as time-over-threshold widths
    ``pedestal + tot_scale * ln(1 + q/q0)`` (plus Gaussian ``q_sigma_ns``).
    ``column[k, f, s]`` is the column of quantity ``f`` (0 T_F, 1 T_B, 2 Q_F, 3 Q_B). ``noise``
    holds 4 standard normals (T_F, T_B, Q_F, Q_B) per strip above the time threshold, consumed in
    event, plane, strip order.
    Untouched channels stay 0 ("no hit").
    """
    n = q_strip.shape[0]
    n_planes = q_strip.shape[1]
    n_strips = q_strip.shape[2]
    cursor = 0
    for i in range(n):
        for c in range(ticks.shape[1]):
            ticks[i, c] = 0
        for k in range(n_planes):
            t0 = t_event_ns[i] + tof_ns[i, k]
            half = x_at[i, k] / v_mm_ns
            for s in range(n_strips):
                q = q_strip[i, k, s]
                if q < q_time_threshold:
                    continue
                tf = t0 + t_offset[k, 0, s] - half + t_sigma_ns * noise[cursor]
                tb = t0 + t_offset[k, 1, s] + half + t_sigma_ns * noise[cursor + 1]
                ticks[i, column[k, 0, s]] = np.int64(np.rint(tf * 1e4))
                ticks[i, column[k, 1, s]] = np.int64(np.rint(tb * 1e4))
                if q >= q_threshold:
                    width = tot_scale_ns * np.log1p(q / tot_q0_fc)
                    qf = q_pedestal[k, 0, s] + width + q_sigma_ns * noise[cursor + 2]
                    qb = q_pedestal[k, 1, s] + width + q_sigma_ns * noise[cursor + 3]
                    ticks[i, column[k, 2, s]] = np.int64(np.rint(qf * 1e4))
                    ticks[i, column[k, 3, s]] = np.int64(np.rint(qb * 1e4))
                cursor += 4


@njit(cache=True, nogil=True)
def candidate_tracks_kernel(
    u: np.ndarray,
    cos_min: float,
    weights: np.ndarray,
    x_half: float,
    y_half: float,
    depth: float,
    out_cos: np.ndarray,
    out_phi: np.ndarray,
    out_x0: np.ndarray,
    out_y0: np.ndarray,
) -> None:
    """Candidate tracks (n = 2), exactly, from 6 uniforms per track ``u[i, 0:6]``.

    The candidate density of (c = cos θ, φ) is ∝ c² · (2X + |cos φ| t D)(2Y + |sin φ| t D) with
    t = tan θ on c ≥ c_min: the sum of four separable terms, sampled as a mixture (``weights`` are
    their integrals, cumulated by the caller):
    (a) 4XY c², φ uniform; (b) 2XD c² t |sin φ|; (c) 2YD c² t |cos φ|; (d) D² c² t² |sin φ cos φ|.
    c² t = c √(1-c²): s = 1 - c² has density ∝ √s, s = s_max u^(2/3); c² t² = 1 - c²: solve
    c - c³/3 = T by the trigonometric root of the cubic. φ ∝ |sin φ|: ±arccos(1 - 2u); ∝ |cos φ|:
    that ∓ π/2; ∝ |sin 2φ|: arccos(1 - 2u)/2 in a random quadrant. The position at the top plane is
    uniform in the direction's box.
    """
    n = u.shape[0]
    c3 = cos_min**3
    s_max = 1.0 - cos_min * cos_min
    g_min = cos_min - c3 / 3.0
    total = weights[3]
    for i in range(n):
        pick = u[i, 0] * total
        v = u[i, 1]
        a = np.arccos(1.0 - 2.0 * u[i, 2])
        w = u[i, 3]
        if pick < weights[0]:
            c = (c3 + v * (1.0 - c3)) ** (1.0 / 3.0)
            phi = 2.0 * np.pi * u[i, 2] - np.pi
        elif pick < weights[2]:
            c = np.sqrt(1.0 - s_max * v ** (2.0 / 3.0))
            if pick < weights[1]:
                phi = a if w < 0.5 else -a
            else:
                phi = a - 0.5 * np.pi if w < 0.5 else a + 0.5 * np.pi
                if phi >= np.pi:
                    phi -= 2.0 * np.pi
        else:
            target = g_min + v * (2.0 / 3.0 - g_min)
            c = 2.0 * np.cos(np.arccos(-1.5 * target) / 3.0 - 2.0 * np.pi / 3.0)
            c = min(1.0, max(cos_min, c))
            quadrant = min(3.0, np.floor(4.0 * w))
            phi = 0.5 * a + quadrant * 0.5 * np.pi - np.pi
        tan = np.sqrt(max(0.0, 1.0 - c * c)) / c
        tx = tan * np.cos(phi)
        ty = tan * np.sin(phi)
        x_lo = -x_half - max(0.0, tx * depth)
        x_hi = x_half - min(0.0, tx * depth)
        y_lo = -y_half - max(0.0, ty * depth)
        y_hi = y_half - min(0.0, ty * depth)
        out_cos[i] = c
        out_phi[i] = phi
        out_x0[i] = x_lo + u[i, 4] * (x_hi - x_lo)
        out_y0[i] = y_lo + u[i, 5] * (y_hi - y_lo)
