"""One station's raw event chunks to minute records: the streaming service's domain (no Kafka).

Ingest cuts each ``.dat`` file into chunks of whole minutes (``mingo.events.raw.v1``). The
per-file steps of ``mingo reconstruct`` need the whole file (calibration pool, outlier seconds
from the file's per-second counts), so :class:`StationStream` gathers a file's chunks, keyed by
chunk index so that a replayed chunk replaces itself, and once all ``chunk_count`` chunks are in,
restores file order from the line numbers and runs the same
:func:`~services.reconstruct.pipeline.calibrate_and_reconstruct` as the command. The file's
tally is kept by file name (a replayed file replaces its contribution), and the records of the
file's minutes are rebuilt from every kept tally covering them, so a minute shared by two files
is emitted again, complete, when the second file arrives: the last record of each minute equals
the command's row for it. A chunk of a file already done starts a new gathering (ingest publishes a
changed file again whole) and counts nothing until that file is complete again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.dat_format import TRIGGER_COINCIDENCE
from schemas.events import channel_matrix, decode_events
from schemas.models import RawEventChunkEnvelope
from services.common.stations import ReconstructionConfig
from services.reconstruct.calibration import Calibration, CalibrationPool
from services.reconstruct.minutes import MinuteTally
from services.reconstruct.pipeline import FileEvents, ZOfTime, calibrate_and_reconstruct, tally_rows

__all__ = ["Chunk", "StationStream", "StreamOutput", "chunk_from_message"]


@dataclass(frozen=True, eq=False)
class Chunk:
    """One decoded raw event chunk.

    Attributes
    ----------
    envelope : RawEventChunkEnvelope
        The message header (file, index, count, acquisition interval).
    time_s : int64 (n,)
        Event times. [s since epoch, UTC]
    line : int32 (n,)
        Line numbers in the source file.
    channels : float64 (n, 64)
        Raw channels, file order. [ns]
    """

    envelope: RawEventChunkEnvelope
    time_s: np.ndarray
    line: np.ndarray
    channels: np.ndarray


def chunk_from_message(envelope: RawEventChunkEnvelope, payload: bytes) -> Chunk:
    """Decode a ``mingo.events.raw.v1`` message value (Arrow IPC) with its envelope."""
    table = decode_events(payload)
    chunk = Chunk(
        envelope,
        table.column("time_s").to_numpy(),
        table.column("line").to_numpy(),
        channel_matrix(table),
    )
    if len(chunk.time_s) != envelope.event_count:
        raise ValueError(
            f"chunk {envelope.chunk_id}: {len(chunk.time_s)} rows, envelope says "
            f"{envelope.event_count}"
        )
    return chunk


@dataclass(frozen=True, eq=False)
class StreamOutput:
    """What one chunk completed: minute records and, when a file completed, its calibration.

    Attributes
    ----------
    rows : list of dict
        ``MinuteRates`` field dicts of the completed file's minutes (empty otherwise).
    calibration : Calibration or None
        The calibration the completed file was reconstructed with; the rows name its version.
    """

    rows: list[dict[str, Any]]
    calibration: Calibration | None = None


class StationStream:
    """Gathers one station's chunks into files and turns each complete file into minute records.

    Parameters
    ----------
    station : int
        Station id.
    z_of_time : callable
        Plane z positions [mm] in force at a time [s since epoch, UTC] (the logbook).
    config : ReconstructionConfig
        The station's reconstruction settings.
    horizon_s : int
        File tallies whose last minute is older than this before the newest file's start are
        forgotten (files only share boundary minutes). [s]
    """

    def __init__(
        self,
        station: int,
        z_of_time: ZOfTime,
        config: ReconstructionConfig,
        horizon_s: int = 86_400,
    ) -> None:
        self.station = station
        self.z_of_time = z_of_time
        self.config = config
        self.horizon_s = horizon_s
        self.pool = CalibrationPool(config)
        self._pending: dict[str, dict[int, Chunk]] = {}
        self._files: dict[str, tuple[int, MinuteTally, str]] = {}

    @property
    def pending_files(self) -> list[str]:
        """Files with chunks still missing."""
        return sorted(self._pending)

    @property
    def pending(self) -> dict[str, dict[int, Chunk]]:
        """The chunks of files still arriving, by file and chunk index."""
        return self._pending

    @property
    def tallies(self) -> dict[str, tuple[int, MinuteTally, str]]:
        """Kept file tallies: file → (file start [s, UTC], tally, calibration version)."""
        return self._files

    def restore(
        self, tallies: dict[str, tuple[int, MinuteTally, str]], pending: dict[str, list[Chunk]]
    ) -> None:
        """Set the kept tallies and pending chunks to a stored state (see ``pool.restore``)."""
        self._files = dict(tallies)
        self._pending = {
            name: {c.envelope.chunk_index: c for c in chunks} for name, chunks in pending.items()
        }

    def add(self, chunk: Chunk) -> StreamOutput:
        """Take one chunk; once its file is complete, the file's minute records and calibration.

        Returns
        -------
        StreamOutput
            No rows and no calibration while chunks of the file are missing.
        """
        env = chunk.envelope
        if env.station != self.station:
            raise ValueError(f"chunk of station {env.station} given to station {self.station}")
        parts = self._pending.setdefault(env.source_file, {})
        parts[env.chunk_index] = chunk
        if len(parts) < env.chunk_count:
            return StreamOutput([])
        del self._pending[env.source_file]
        file = _assemble(env, [parts[i] for i in sorted(parts)])
        result = calibrate_and_reconstruct(
            self.station, self.pool, file, self.z_of_time, self.config, per_event=False
        )
        self._files[file.name] = (file.start_s, result.tally, result.calibration.version)
        self._forget(file.start_s)
        return StreamOutput(self._rows_of(result.tally.minute_s), result.calibration)

    def _forget(self, newest_start_s: int) -> None:
        limit = newest_start_s - self.horizon_s
        old = [n for n, (_, t, _) in self._files.items() if t.minute_s[-1:].max(initial=0) < limit]
        for name in old:
            del self._files[name]

    def _rows_of(self, minutes: np.ndarray) -> list[dict[str, Any]]:
        if not len(minutes):
            return []
        lo, hi = int(minutes[0]), int(minutes[-1])
        parts = [
            (tally, version)
            for _, tally, version in sorted(self._files.values(), key=lambda f: f[0])
            if len(tally.minute_s) and tally.minute_s[0] <= hi and tally.minute_s[-1] >= lo
        ]
        rows = tally_rows(self.station, parts)
        return [r for r in rows if lo <= int(r["time"].timestamp()) <= hi]


def _assemble(envelope: RawEventChunkEnvelope, chunks: list[Chunk]) -> FileEvents:
    """The file's events: coincidence events first, then self-trigger events, each in file order.

    Ingest's chunks of one trigger type follow each other in time order, which is file order
    unless the file's times go backwards; only then are they sorted by line. Coincidence events
    first lets reconstruction take them as views, without copying the (n, 64) channels.
    """
    chunks = sorted(
        chunks,
        key=lambda c: (c.envelope.trigger_type != TRIGGER_COINCIDENCE, c.envelope.chunk_index),
    )
    line = np.concatenate([c.line for c in chunks])
    trigger = np.concatenate(
        [np.full(len(c.line), c.envelope.trigger_type, np.int8) for c in chunks]
    )
    time_s = np.concatenate([c.time_s for c in chunks])
    channels = np.concatenate([c.channels for c in chunks])
    # stable sort by (trigger group, line) only when some group is out of line order
    group = trigger != TRIGGER_COINCIDENCE
    if np.any((line[1:] <= line[:-1]) & (group[1:] == group[:-1])):
        order = np.lexsort((line, group))
        line, trigger, time_s, channels = (
            line[order],
            trigger[order],
            time_s[order],
            channels[order],
        )
    return FileEvents(
        envelope.source_file,
        envelope.file_start_s,
        envelope.file_end_s,
        time_s,
        trigger,
        line,
        channels,
    )
