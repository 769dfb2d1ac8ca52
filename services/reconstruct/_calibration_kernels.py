"""Numba kernel of the calibration pool: one file's channels gathered per channel in one pass.

Called through :func:`services.reconstruct.calibration.chunk_part`, which validates the inputs;
the plain-numpy reference is ``calibration._gather_reference``, which the tests compare with.
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
    # counts in fresh arrays (no aliasing with the outputs: kept in registers), the values
    # written unconditionally and counted by the condition (no branch mispredictions on the
    # random zeros): a third less time than branches per value
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
                strip = p * 4 + s
                tdif[strip, t_count[strip]] = 0.5 * (tb - tf)
                t_count[strip] += (tf != 0.0) & (tb != 0.0) & (qf != 0.0) & (qb != 0.0)
    charge_count[:] = c_count
    tdif_count[:] = t_count
    span[0] = first if usable else 0
    span[1] = last if usable else 0
    return usable
