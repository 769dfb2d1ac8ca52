"""Cutting the events of one file into raw-event chunks: pure functions, no Kafka.

A chunk holds whole minutes of one trigger type, at most ``max_events`` events; a single minute
with more events (a noise burst) is cut into parts of ``max_events``. The cut depends only on the
file's content, so a replay produces the same chunks with the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChunkSlice:
    """Rows (indices into the parse result) of one chunk, all of one trigger type."""

    trigger_type: int
    rows: np.ndarray  #: int64 indices, in time order


def plan_chunks(time_s: np.ndarray, trigger_type: np.ndarray, max_events: int) -> list[ChunkSlice]:
    """Group events into chunks of whole minutes per trigger type.

    Parameters
    ----------
    time_s : ndarray of int64
        Event times. [s since epoch, UTC]
    trigger_type : ndarray of int
        Trigger type of each event (1 coincidence, 2 self-trigger).
    max_events : int
        Upper bound of events per chunk (> 0).

    Returns
    -------
    list of ChunkSlice
        Coincidence chunks first, then self-trigger chunks, each in time order.
    """
    if max_events <= 0:
        raise ValueError("max_events must be positive")
    chunks: list[ChunkSlice] = []
    for trigger in sorted(int(t) for t in np.unique(trigger_type)):
        rows = np.flatnonzero(trigger_type == trigger)
        rows = rows[np.argsort(time_s[rows], kind="stable")]
        minutes = time_s[rows] // 60
        # start index of each minute within `rows`
        starts = np.flatnonzero(np.r_[True, minutes[1:] != minutes[:-1]])
        ends = np.r_[starts[1:], len(rows)]
        current: list[np.ndarray] = []
        current_size = 0
        for start, end in zip(starts, ends, strict=True):
            size = end - start
            if current and current_size + size > max_events:
                chunks.append(ChunkSlice(trigger, np.concatenate(current)))
                current, current_size = [], 0
            if size > max_events:
                for part in range(start, end, max_events):
                    chunks.append(ChunkSlice(trigger, rows[part : min(part + max_events, end)]))
                continue
            current.append(rows[start:end])
            current_size += size
        if current:
            chunks.append(ChunkSlice(trigger, np.concatenate(current)))
    return chunks
