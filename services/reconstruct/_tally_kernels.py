"""Numba kernel of the per-minute tally: one chunk's seconds judged and its events counted into
its minutes in one pass.

Called through :func:`services.reconstruct.minutes.tally_chunk`, which computes the minutes; the
plain-numpy reference is ``minutes._count_events_reference``, which the tests compare with. One
pass instead of ~35 numpy calls per chunk (their overhead was most of the tally's time at
2048-event chunks).
"""

from __future__ import annotations

import numba as nb
import numpy as np

_FULL = 15


@nb.njit(cache=True)
def count_seconds(time_s: np.ndarray, valid: np.ndarray, lo: int, out_counts: np.ndarray) -> None:
    """Add each valid event of a second of [lo, lo + len(out_counts)) to that second's count.

    Parameters
    ----------
    time_s : int64 (n,)
        Event times. [s since epoch, UTC]
    valid : bool (n,)
        Which events count.
    lo : int
        The first second. [s since epoch, UTC]
    out_counts : int64 (k,)
        Events per second, added to (zeroed by the caller).
    """
    k = out_counts.shape[0]
    for i in range(time_s.shape[0]):
        second = time_s[i] - lo
        if valid[i] and 0 <= second < k:
            out_counts[second] += 1


@nb.njit(cache=True)
def count_events(
    time_s: np.ndarray,
    status: np.ndarray,
    topology: np.ndarray,
    region: np.ndarray,
    mask: np.ndarray,
    fiducial: np.ndarray,
    q_event: np.ndarray,
    start: int,
    end: int,
    lo: int,
    hi: int,
    counts: np.ndarray,
    band_lo: float,
    band_hi: float,
    memory_lo: int,
    memory_dropped: np.ndarray,
    first_minute: int,
    out_dropped: np.ndarray,
    out_live: np.ndarray,
    out_topology: np.ndarray,
    out_region: np.ndarray,
    out_full: np.ndarray,
    out_missing: np.ndarray,
    out_q_sum: np.ndarray,
    out_q_events: np.ndarray,
    out_rejected: np.ndarray,
) -> None:
    """Judge a chunk's seconds and count its events into per-minute arrays (zeroed by the
    caller).

    A second s of [lo, hi) is dropped (an outlier) when its count ``counts[s - lo]`` lies
    outside [band_lo, band_hi]; the others add 1 s to their minute's live time. An event counts
    when its status is 0, its time lies in the file's [start, end) and its second is judged
    live: in [lo, hi) by that judgement, in [memory_lo, lo) unless listed in
    ``memory_dropped``; any other event is rejected in the minute of its time clipped to the
    file. Counted events add to the topology, region, 3-of-4 efficiency
    counters and, with hits, to the charge sum, in event order (as ``np.bincount`` adds).

    Parameters
    ----------
    time_s : int64 (n,)
        Event times. [s since epoch, UTC]
    status, topology, region, mask, fiducial, q_event : (n,)
        The reconstructed events' fields (``events.EventRates``); q_event [ns].
    start, end : int
        The file's acquisition interval, end exclusive. [s since epoch, UTC]
    lo, hi : int
        The seconds this chunk judges. [s since epoch, UTC]
    counts : int64 (hi - lo,)
        Valid events per judged second.
    band_lo, band_hi : float
        The outlier band. [events]
    memory_lo : int
        Start of the earlier judged seconds remembered (up to lo). [s since epoch, UTC]
    memory_dropped : int64 (k,)
        The outlier seconds among those. [s since epoch, UTC]
    first_minute : int
        Minute index (time // 60) of row 0 of the outputs.
    out_dropped : bool (hi - lo,)
        Whether each judged second is an outlier (written, not added to).
    out_live : float64 (m,)
        [s]
    out_topology, out_region, out_full, out_missing : int64 (m, 15), (m, 13), (m, 4), (m, 4)
    out_q_sum : float64 (m,)
        [ns]
    out_q_events, out_rejected : int64 (m,)
    """
    for s in range(hi - lo):
        dropped = counts[s] < band_lo or counts[s] > band_hi
        out_dropped[s] = dropped
        if not dropped:
            out_live[(lo + s) // 60 - first_minute] += 1.0
    for i in range(time_s.shape[0]):
        t = time_s[i]
        c = min(max(t, start), end - 1)
        m = c // 60 - first_minute
        if lo <= c < hi:
            ok = not out_dropped[c - lo]
        elif memory_lo <= c < lo:
            ok = True
            for s in memory_dropped:
                if s == c:
                    ok = False
        else:
            ok = False
        if not (ok and status[i] == 0 and t == c):
            out_rejected[m] += 1
            continue
        if topology[i] >= 0:
            out_topology[m, topology[i]] += 1
            out_q_sum[m] += q_event[i]
            out_q_events[m] += 1
        if region[i] >= 0:
            out_region[m, region[i]] += 1
        k = mask[i]
        f = fiducial[i]
        if k == _FULL:
            for p in range(4):
                if (f >> p) & 1:
                    out_full[m, p] += 1
        else:
            for p in range(4):
                if k == _FULL ^ (1 << p) and (f >> p) & 1:
                    out_missing[m, p] += 1
