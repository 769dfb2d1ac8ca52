"""Event lines exactly as a station writes them (DOMAIN.md §3).

``YYYY MM DD hh mm ss T v1 ... v64``: UTC date and whole seconds, the trigger type, then the 64
channel values (plane 4 first, :data:`schemas.dat_format.CHANNEL_COLUMNS`) printed like ``%09.4f``
(``0000.0000`` for none, ``-152.3125`` for negatives), single spaces, ``\\n`` line ends.

Values are carried as integer *ticks* of 1e-4 (ns), so the fast numba formatter and the plain-Python
reference produce identical bytes by construction: ``format(tick / 1e4, "09.4f")`` of an integer
tick prints that tick's digits exactly (the double nearest ``tick / 1e4`` is far closer than
0.5e-4 to it for any realistic value).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from schemas.dat_format import N_CHANNELS
from simulator import _kernels

#: One value unit of a ``.dat`` line, in the quantity's unit (ns). [ns]
TICK_NS = 1e-4
#: Ticks per unit (ns). [1/ns]
TICKS_PER_NS = 10_000

_local = threading.local()


def _validated(
    epoch_s: npt.ArrayLike, trigger: npt.ArrayLike, ticks: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    epoch = np.ascontiguousarray(epoch_s, dtype=np.int64)
    trig = np.ascontiguousarray(trigger, dtype=np.int64)
    tk = np.ascontiguousarray(ticks, dtype=np.int64)
    if epoch.ndim != 1 or trig.shape != epoch.shape:
        raise ValueError(
            f"epoch_s and trigger must be 1-D of equal length: {epoch.shape}, {trig.shape}"
        )
    if tk.shape != (epoch.size, N_CHANNELS):
        raise ValueError(f"ticks must have shape ({epoch.size}, {N_CHANNELS}), got {tk.shape}")
    if epoch.size and (epoch.min() < 0 or epoch.max() >= 253402300800):  # year 10000
        raise ValueError("event times must lie in years 1970..9999")
    if trig.size and trig.min() < 0:
        raise ValueError("trigger types must be non-negative")
    return epoch, trig, tk


def format_event_lines(
    epoch_s: npt.ArrayLike, trigger: npt.ArrayLike, ticks: npt.ArrayLike, *, reuse: bool = False
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Format event lines with the numba kernel.

    Parameters
    ----------
    epoch_s : array_like of int, shape [n]
        Event time, UTC seconds since 1970-01-01. [s]
    trigger : array_like of int, shape [n]
        Trigger type (1 coincidence, 2 self-trigger).
    ticks : array_like of int, shape [n, 64]
        Channel values in ticks of 1e-4 ns, in file column order (plane 4 first). [1e-4 ns]
    reuse : bool
        Write into a per-thread buffer that is reused by the next call of the same thread (avoids
        page faults on large fresh buffers); the returned array is then only valid until that call.

    Returns
    -------
    buffer : numpy.ndarray of uint8
        The lines, each ending in ``\\n``.
    offsets : numpy.ndarray of int64, shape [n + 1]
        Byte offset of the start of each line in ``buffer``; ``offsets[n]`` is its length.
    """
    epoch, trig, tk = _validated(epoch_s, trigger, ticks)
    n = epoch.size
    lengths = np.empty(n, np.int64)
    _kernels.line_lengths_kernel(trig, tk, lengths)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    size = int(offsets[-1])
    if reuse:
        buf = getattr(_local, "buffer", None)
        if buf is None or buf.size < size:
            buf = np.empty(max(size, 1 << 20) * 5 // 4, np.uint8)
            _local.buffer = buf
        out = buf[:size]
    else:
        out = np.empty(size, np.uint8)
    _kernels.format_lines_kernel(epoch, trig, tk, offsets, out)
    return out, offsets


def format_value_reference(tick: int) -> str:
    """One value as a station prints it: ``%09.4f`` of ``tick`` × 1e-4."""
    return f"{tick / TICKS_PER_NS:09.4f}"


def format_event_lines_reference(
    epoch_s: npt.ArrayLike, trigger: npt.ArrayLike, ticks: npt.ArrayLike
) -> bytes:
    """Plain-Python reference of :func:`format_event_lines` (slow; for tests)."""
    epoch, trig, tk = _validated(epoch_s, trigger, ticks)
    lines = []
    for t, trg, row in zip(epoch.tolist(), trig.tolist(), tk.tolist(), strict=True):
        stamp = datetime.fromtimestamp(t, UTC).strftime("%Y %m %d %H %M %S")
        values = " ".join(format_value_reference(v) for v in row)
        lines.append(f"{stamp} {trg} {values}\n")
    return "".join(lines).encode("ascii")


def to_ticks(values_ns: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Round values to ticks of 1e-4 (ns), the resolution of a ``.dat`` file."""
    return np.rint(np.asarray(values_ns, dtype=np.float64) * TICKS_PER_NS).astype(np.int64)
