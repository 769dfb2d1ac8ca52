"""Cutting the events of one file into raw-event chunks: pure functions, no Kafka.

A chunk holds whole minutes of one trigger type, at most ``max_events`` events; a single minute
with more events (a noise burst) is cut into parts of ``max_events``. The cut depends only on the
file's content, so a replay produces the same chunks with the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.models import RawEventChunkEnvelope

#: Events per chunk at most, unless configured otherwise (ingest's default; ``mingo reconstruct``
#: cuts its files the same way). Reconstruct pays ~0.3-0.5 ms per chunk besides its cost per
#: event, so larger chunks go faster; 4096 keep a station chunk at ~0.7 MB, under the 1 MB
#: that Kafka takes by default (bench/README.md, "Chunk size").
MAX_CHUNK_EVENTS = 4096


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


def chunk_envelopes(
    station: int,
    source_file: str,
    file_start_s: int,
    time_s: np.ndarray,
    slices: list[ChunkSlice],
    archive: str | None = None,
) -> list[RawEventChunkEnvelope]:
    """The envelopes of a file's chunks (``plan_chunks`` of its events, times in ``time_s``)."""
    file_end_s = int(time_s.max()) + 1
    envelopes = []
    for index, chunk in enumerate(slices):
        times = time_s[chunk.rows]
        envelopes.append(
            RawEventChunkEnvelope(
                station=station,
                source_file=source_file,
                archive=archive,
                chunk_id=f"{station}/{source_file}/{index}",
                chunk_index=index,
                chunk_count=len(slices),
                trigger_type=chunk.trigger_type,
                event_count=len(chunk.rows),
                first_time_s=int(times[0]),
                last_time_s=int(times[-1]),
                file_start_s=file_start_s,
                file_end_s=file_end_s,
            )
        )
    return envelopes
