"""Numba kernels of the calibration: a chunk's channels gathered per channel in one pass, and the
T_sum pair equations.

Called through :func:`services.reconstruct.calibration.chunk_part` and ``tsum_equations``, which
validate the inputs; the plain-numpy reference of the gather is ``calibration._gather_reference``
and the pair kernels' numpy statement is in the tests, which compare them.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def gather_channels(
    time_s: np.ndarray,
    channels: np.ndarray,
    charge_lo: float,
    charge_hi: float,
    charges: np.ndarray,
    charge_count: np.ndarray,
    tdif: np.ndarray,
    tdif_count: np.ndarray,
    span: np.ndarray,
) -> int:
    """Per-channel values of the rows without a NaN or inf, in row order; returns those rows.

    Row-major over ``channels`` (n, 64), file order (plane 4 first), so each event is read once
    from contiguous memory instead of 48 strided column passes.

    Parameters
    ----------
    time_s : int64 (n,)
        Event times. [s since epoch, UTC]
    channels : float64 (n, 64)
        Raw channels. [ns]
    charge_lo, charge_hi : float
        Valid charge window (inclusive). [ns]
    charges : float64 (32, n), out
        Non-zero valid charges of channel (plane 1-4, strip, side) = p * 8 + s * 2 + side. [ns]
    charge_count : int64 (32,), out
        Values written per charge channel.
    tdif : float64 (16, n), out
        (T_B - T_F) / 2 of strip p * 4 + s where both times and charges are non-zero. [ns]
    tdif_count : int64 (16,), out
        Values written per strip.
    span : int64 (2,), out
        First and last time of the usable rows (0, 0 if none). [s since epoch, UTC]
    """
    # counts in fresh arrays (no aliasing with the outputs: kept in registers), the charges
    # written unconditionally and counted by their condition (no branch mispredictions on the
    # random zeros): with the T_dif branch kept, about a third less time than before
    c_count = np.zeros(32, np.int64)
    t_count = np.zeros(16, np.int64)
    usable = 0
    first = np.iinfo(np.int64).max
    last = np.iinfo(np.int64).min
    bits = channels.view(np.uint64)
    exponent = np.uint64(0x7FF0000000000000)  # all ones: NaN or inf
    for i in range(channels.shape[0]):
        row_bits = bits[i]
        finite = True
        for c in range(64):
            finite &= (row_bits[c] & exponent) != exponent
        if not finite:
            continue
        row = channels[i]
        usable += 1
        first = min(first, time_s[i])
        last = max(last, time_s[i])
        for p in range(4):
            base = (3 - p) * 16  # plane 1 is the last block of the file
            for s in range(4):
                tf = row[base + s]
                tb = row[base + 4 + s]
                qf = row[base + 8 + s]
                qb = row[base + 12 + s]
                c = p * 8 + s * 2
                charges[c, c_count[c]] = qf
                c_count[c] += (qf != 0.0) & (qf >= charge_lo) & (qf <= charge_hi)
                charges[c + 1, c_count[c + 1]] = qb
                c_count[c + 1] += (qb != 0.0) & (qb >= charge_lo) & (qb <= charge_hi)
                if tf != 0.0 and tb != 0.0 and qf != 0.0 and qb != 0.0:  # (faster as a branch)
                    strip = p * 4 + s
                    tdif[strip, t_count[strip]] = 0.5 * (tb - tf)
                    t_count[strip] += 1
    charge_count[:] = c_count
    tdif_count[:] = t_count
    span[0] = first if usable else 0
    span[1] = last if usable else 0
    return usable


@nb.njit(cache=True)
def pair_differences(
    strip: np.ndarray,
    t: np.ndarray,
    secant: np.ndarray,
    z: np.ndarray,
    tsum_offset: np.ndarray,
    c_mm_ns: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair of planes (p < q, in order) and track, the unknowns and the time difference of
    the T_sum equations (``calibration.tsum_equations``, which states them).

    Parameters
    ----------
    strip : int8 (k, 4)
        Hit strip per plane.
    t : float64 (k, 4)
        Calibrated T_sum per plane. [ns]
    secant : float64 (k,)
        1 / cos of the track zenith.
    z : float64 (4,)
        Plane z positions. [mm]
    tsum_offset : float64 (4, 4)
        T_sum offsets the events were reconstructed with. [ns]
    c_mm_ns : float
        Speed of light. [mm/ns]

    Returns
    -------
    a, b : int64 (6 k,)
        Unknown (plane * 4 + strip) of the first and the second plane of each pair.
    value : float64 (6 k,)
        (t_p - tof_p) - (t_q - tof_q) with the raw T_sum t. [ns]
    """
    k = t.shape[0]
    a = np.empty(6 * k, np.int64)
    b = np.empty(6 * k, np.int64)
    value = np.empty(6 * k)
    residual = np.empty(4)
    at = 0
    for p in range(4):
        for q in range(p + 1, 4):
            for i in range(k):
                for plane in (p, q):
                    raw = t[i, plane] + tsum_offset[plane, strip[i, plane]]
                    residual[plane] = raw - (z[plane] - z[0]) * secant[i] / c_mm_ns
                a[at] = p * 4 + strip[i, p]
                b[at] = q * 4 + strip[i, q]
                value[at] = residual[p] - residual[q]
                at += 1
    return a, b, value


@nb.njit(cache=True)
def kept_pair_system(
    a: np.ndarray, b: np.ndarray, value: np.ndarray, offsets: np.ndarray, cut: float
) -> tuple[np.ndarray, np.ndarray]:
    """Normal equations (16 x 16, without the gauge term) and right-hand side [ns] of the pairs
    whose residual from ``offsets`` [ns] is below ``cut`` [ns]; the same floats as the numpy
    ``calibration._pair_system`` of those pairs (each side's sum in pair order, then the
    difference)."""
    normal = np.zeros((16, 16))
    plus = np.zeros(16)
    minus = np.zeros(16)
    for i in range(a.size):
        if abs(value[i] - (offsets[a[i]] - offsets[b[i]])) < cut:
            normal[a[i], a[i]] += 1.0
            normal[b[i], b[i]] += 1.0
            normal[a[i], b[i]] -= 1.0
            normal[b[i], a[i]] -= 1.0
            plus[a[i]] += value[i]
            minus[b[i]] += value[i]
    return normal, plus - minus


@nb.njit(cache=True)
def pack_rows(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The first ``counts[r]`` values of each row r, one row after the other in one array."""
    packed = np.empty(counts.sum())
    at = 0
    for r in range(rows.shape[0]):
        packed[at : at + counts[r]] = rows[r, : counts[r]]
        at += counts[r]
    return packed
