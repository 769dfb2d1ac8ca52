"""Numba kernels of the raw event wire format (private: use :mod:`schemas.events`).

The wire carries, per event, a 64-bit mask of the written (non-zero) channels and only their
values. ``compress_kernel`` makes that from the dense (n, 64) matrix, ``expand_kernel`` turns it
back. The wrapper checks shapes and dtypes; ``expand_kernel`` checks what only a pass over the
data can (each event's value count against its mask), so that a malformed payload never reads or
writes out of bounds. ``compress_reference`` and ``expand_reference`` are the plain-numpy
versions the tests compare the kernels with.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

N_CHANNELS = 64


@njit(cache=True, nogil=True)
def compress_kernel(
    channels: np.ndarray, written: np.ndarray, offsets: np.ndarray, values: np.ndarray
) -> int:  # pragma: no cover - compiled
    """The written channels of each event, in event-then-channel order.

    Parameters
    ----------
    channels : float64 (n, 64)
        Dense channels; a value is written when ``!= 0.0`` (NaN yes, -0.0 no). [ns]
    written : uint64 (n,), out
        Bit c set when channel c is written.
    offsets : int32 (n + 1,), out
        Event i's values are ``values[offsets[i]:offsets[i + 1]]``.
    values : float64 (n * 64,), out
        The written values, first ``offsets[n]`` of them. [ns]

    Returns
    -------
    int
        Number of written values.
    """
    k = 0
    offsets[0] = 0
    for i in range(channels.shape[0]):
        m = np.uint64(0)
        for c in range(N_CHANNELS):
            v = channels[i, c]
            bit = v != 0.0
            # branch-free: the slot is overwritten by the next written value when v is 0
            values[k] = v
            k += bit
            m |= np.uint64(bit) << np.uint64(c)
        written[i] = m
        offsets[i + 1] = k
    return k


@njit(cache=True, nogil=True)
def expand_kernel(
    written: np.ndarray, offsets: np.ndarray, values: np.ndarray, out: np.ndarray
) -> int:  # pragma: no cover - compiled
    """Scatter each event's values to its written channels; the other channels become 0.

    Parameters
    ----------
    written : uint64 (n,)
        Bit c set when channel c of the event is written.
    offsets : int32 (n + 1,)
        Event i's values are ``values[offsets[i]:offsets[i + 1]]``, in channel order.
    values : float64 (m,)
        The written values. [ns]
    out : float64 (n, 64), out
        The dense channels (written whole). [ns]

    Returns
    -------
    int
        -1, or the first event whose value count differs from its mask's (or whose values lie
        outside ``values``); ``out`` is then only partly written.
    """
    size = values.shape[0]
    for i in range(written.shape[0]):
        start = offsets[i]
        end = offsets[i + 1]
        if start < 0 or end > size or end < start:
            return i
        row = out[i]
        row[:] = 0.0
        m = written[i]
        k = start
        # one iteration per written channel (~18 of 64 on station data): twice as fast as a
        # branch-free pass over all 64 (bench/README.md, "Sparse raw events")
        while m:
            if k == end:
                return i
            # mypy sees the intrinsic's typing signature (typing context, value), not the call's
            row[trailing_zeros(m)] = values[k]  # type: ignore[call-arg]
            k += 1
            m &= m - np.uint64(1)
        if k != end:
            return i
    return -1


def compress_reference(channels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``compress_kernel`` in plain numpy: (written, offsets, values)."""
    mask = channels != 0.0
    weights = np.uint64(1) << np.arange(N_CHANNELS, dtype=np.uint64)
    written = np.where(mask, weights, np.uint64(0)).sum(axis=1, dtype=np.uint64)
    offsets = np.r_[0, np.cumsum(mask.sum(axis=1))].astype(np.int32)
    return written, offsets, channels[mask]


def expand_reference(written: np.ndarray, offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``expand_kernel`` in plain numpy: the dense (n, 64) matrix (ValueError if the value
    counts differ from the masks)."""
    bits = (written[:, None] >> np.arange(N_CHANNELS, dtype=np.uint64)) & np.uint64(1)
    mask = bits.astype(bool)
    if not np.array_equal(mask.sum(axis=1), np.diff(offsets)):
        raise ValueError("value counts differ from the written masks")
    out = np.zeros((len(written), N_CHANNELS))
    out[mask] = values[offsets[0] : offsets[-1]]
    return out
