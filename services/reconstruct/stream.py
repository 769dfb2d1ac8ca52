"""One station's raw event chunks to minute records, chunk by chunk (streaming domain; no Kafka).

Ingest cuts each ``.dat`` file into chunks of whole minutes of one trigger type
(``mingo.events.raw.v2``). :class:`StationStream` reconstructs each chunk as it arrives, with
the calibration in force, made from the station's pooled earlier chunks
(:class:`~services.reconstruct.calibration.CalibrationPool`), and adds the chunk's part
(quantile tails, T_sum normal equations, per-second count histogram) to the pool. What it keeps
is bounded by the configuration, not by the file:

* until the station's first calibration, its chunks are held, until they hold
  ``calibration_min_events`` events or a file is complete (and coincidence events are held);
  then they are calibrated together and released;
* the pool, at most ``calibration_max_events`` events of quantile tails;
* per file of the last ``horizon_s``, how far its seconds are judged (:class:`FileCover`) and
  which chunks were counted; per minute of the last ``horizon_s``, the summed tally and the
  calibration versions that contributed.

A chunk id (file, chunk index) is counted once: a replayed chunk changes nothing. After each
chunk, the records of the minutes it touched are emitted from the summed tallies, so the last
record of each minute is the complete one, whichever chunks and files share the minute.
``mingo reconstruct`` cuts its files into the same chunks as ingest and runs them through this
class too (``pipeline.reconstruct_files``): the command and the service compute the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from schemas.dat_format import TRIGGER_COINCIDENCE
from schemas.events import channel_matrix, decode_events
from schemas.models import RawEventChunkEnvelope
from services.common.stations import ReconstructionConfig
from services.reconstruct.calibration import (
    Calibration,
    CalibrationPool,
    chunk_part,
    make_calibration,
    tsum_equations,
)
from services.reconstruct.events import (
    EventRates,
    EventResult,
    reconstruct_events,
    reconstruct_rates,
    tracks_of,
)
from services.reconstruct.minutes import (
    FileCover,
    MinuteTally,
    chunk_end,
    packed_records,
    second_counts,
    tally_chunk,
)

__all__ = [
    "Chunk",
    "ChunkResult",
    "FileProgress",
    "MinuteSum",
    "StationStream",
    "StreamOutput",
    "chunk_from_message",
]

ZOfTime = Callable[[int], tuple[float, float, float, float]]
_FORGET_EVERY_S = 600


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
        Raw channels. [ns]
    """

    envelope: RawEventChunkEnvelope
    time_s: np.ndarray
    line: np.ndarray
    channels: np.ndarray

    @property
    def coincidence(self) -> bool:
        """Whether the chunk holds coincidence (physics) events."""
        return self.envelope.trigger_type == TRIGGER_COINCIDENCE

    @property
    def closes_file(self) -> bool:
        """Whether the chunk's cover runs to its file's end: the file's last chunk, or a
        self-trigger chunk (ingest sends a file's coincidence chunks first)."""
        env = self.envelope
        return not self.coincidence or env.chunk_index == env.chunk_count - 1

    def coincident(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Time, line and channels of the coincidence events (none for self-trigger)."""
        if self.coincidence:
            return self.time_s, self.line, self.channels
        return self.time_s[:0], self.line[:0], self.channels[:0]


def chunk_from_message(envelope: RawEventChunkEnvelope, payload: bytes) -> Chunk:
    """Decode a ``mingo.events.raw.v2`` message value (Arrow IPC) with its envelope."""
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
class ChunkResult:
    """What reconstruct made of one chunk's coincidence events (none for a self-trigger chunk).

    Attributes
    ----------
    name : str
        The chunk's file.
    chunk_index : int
        The chunk's index in its file.
    calibration : Calibration
        The calibration the chunk was reconstructed with (its ``z_mm`` too).
    time_s : int64 (n,)
        Event times. [s since epoch, UTC]
    line : int32 (n,)
        Line numbers in the file.
    events : EventResult or EventRates
        The per-event table or, when it was not asked for, what the tally reads.
    tally : MinuteTally
        The chunk's minutes.
    """

    name: str
    chunk_index: int
    calibration: Calibration
    time_s: np.ndarray
    line: np.ndarray
    events: EventResult | EventRates
    tally: MinuteTally


@dataclass(frozen=True, eq=False)
class StreamOutput:
    """What one chunk gave.

    Attributes
    ----------
    rows : list of dict
        ``MinuteRates`` field dicts of the minutes with live time the chunk (or the held
        chunks it released) touched, as summed so far.
    calibrations : list of Calibration
        Calibrations made for this chunk (or the released ones), in the order made; the rows
        name their versions.
    results : list of ChunkResult
        The chunks reconstructed (none while held).
    minutes : list of int
        Every minute whose sum changed. [s since epoch, UTC]
    forgotten_files : list of str
        Files that left the horizon with this chunk.
    forgotten_minutes : list of int
        Minutes that left the horizon with this chunk. [s since epoch, UTC]
    """

    rows: list[dict[str, Any]]
    calibrations: list[Calibration] = field(default_factory=list)
    results: list[ChunkResult] = field(default_factory=list)
    minutes: list[int] = field(default_factory=list)
    forgotten_files: list[str] = field(default_factory=list)
    forgotten_minutes: list[int] = field(default_factory=list)


@dataclass
class FileProgress:
    """A file's chunks so far: the cover of its seconds and the chunk indices counted."""

    cover: FileCover
    done: set[int]


@dataclass
class MinuteSum:
    """One minute's summed tally (``MinuteTally.packed`` rows) and contributing versions."""

    ints: np.ndarray
    floats: np.ndarray
    versions: list[str]


class StationStream:
    """Reconstructs one station's chunks as they arrive and sums their minute tallies.

    Parameters
    ----------
    station : int
        Station id.
    z_of_time : callable
        Plane z positions [mm] in force at a time [s since epoch, UTC] (the logbook); a
        chunk takes those at its file's start.
    config : ReconstructionConfig
        The station's reconstruction settings.
    horizon_s : int
        Minutes that ended more than this before the newest event are forgotten, and files
        with their last minute (a file seen again after that counts again; its minutes'
        records start from zero). [s]
    per_event : bool
        Whether the results carry the per-event table (the full kernel) or only what the
        tally reads (the rates kernel).
    """

    def __init__(
        self,
        station: int,
        z_of_time: ZOfTime,
        config: ReconstructionConfig,
        horizon_s: int = 86_400,
        per_event: bool = False,
    ) -> None:
        self.station = station
        self.z_of_time = z_of_time
        self.config = config
        self.horizon_s = horizon_s
        self.per_event = per_event
        self.pool = CalibrationPool(config)
        self.held: list[Chunk] = []  #: chunks waiting for the first calibration
        self.files: dict[str, FileProgress] = {}
        self.minutes: dict[int, MinuteSum] = {}
        self.newest_s = 0  #: after the newest event seen [s since epoch, UTC]

    def add(self, chunk: Chunk) -> StreamOutput:
        """Take one chunk; the records of the minutes it touched (see :class:`StreamOutput`)."""
        env = chunk.envelope
        if env.station != self.station:
            raise ValueError(f"chunk of station {env.station} given to station {self.station}")
        progress = self.files.get(env.source_file)
        if progress is None:
            cover = FileCover.new(env.file_start_s, env.file_end_s)
            progress = self.files[env.source_file] = FileProgress(cover, set())
        if env.chunk_index in progress.done:
            return StreamOutput([])  # a replayed chunk counts once
        progress.done.add(env.chunk_index)
        before, self.newest_s = self.newest_s, max(self.newest_s, env.last_time_s + 1)
        if self.pool.current is None:
            self.held.append(chunk)
            held = sum(len(c.time_s) for c in self.held)
            # a complete file releases them only with coincidence events to calibrate from
            complete = len(progress.done) >= env.chunk_count and any(
                c.coincidence for c in self.held
            )
            if held < self.config.calibration_min_events and not complete:
                return StreamOutput([])
            output = self._release()
        else:
            output = self._process(chunk)
        if self.newest_s // _FORGET_EVERY_S != before // _FORGET_EVERY_S:
            # every 10 minutes of data: deterministic, and cheap per chunk
            files, minutes = self._forget()
            output = replace(output, forgotten_files=files, forgotten_minutes=minutes)
        return output

    def _z(self, chunk: Chunk) -> tuple[float, float, float, float]:
        z = self.z_of_time(chunk.envelope.file_start_s)
        return float(z[0]), float(z[1]), float(z[2]), float(z[3])

    def _pool_part(self, chunk: Chunk) -> None:
        if chunk.coincidence:
            env = chunk.envelope
            part = chunk_part(
                chunk.time_s, chunk.channels, self.config, env.chunk_id, env.source_file
            )
            self.pool.add(part)

    def _in_force(self, chunk: Chunk, z: tuple[float, float, float, float]) -> list[Calibration]:
        """Make the calibration this chunk is reconstructed with, if the current one is not:
        a new one when the pool has gained enough events (``CalibrationPool.refresh_due``),
        the current constants with the chunk's plane z when only those differ."""
        pool, env = self.pool, chunk.envelope
        current = pool.current
        assert current is not None
        file, index = env.source_file, env.chunk_index
        if pool.refresh_due():
            made = replace(pool.calibration(self.station, z), source_file=file, source_chunk=index)
            pool.calibrated(made)
        elif current.z_mm != z:
            rezoned = make_calibration(
                self.station,
                current.pedestal_ns,
                current.tdif_offset_ns,
                current.tsum_offset_ns,
                current.events,
                current.first_time_s,
                current.last_time_s,
                z,
                current.outlier_band,
            )
            made = replace(
                rezoned, pool_files=current.pool_files, source_file=file, source_chunk=index
            )
            pool.current = made  # the pool did not change: the refresh count goes on
        else:
            return []
        return [made]

    def _process(self, chunk: Chunk) -> StreamOutput:
        """Reconstruct a chunk with the calibration in force, tally it, pool it."""
        z = self._z(chunk)
        made = self._in_force(chunk, z)
        calibration = self.pool.current
        assert calibration is not None
        time_s, _, channels = chunk.coincident()
        events: EventResult | EventRates
        if self.per_event:
            events = reconstruct_events(channels, calibration, z, self.config)
        else:
            events = reconstruct_rates(channels, calibration, z, self.config)
        cover = self.files[chunk.envelope.source_file].cover
        hi = chunk_end(cover, chunk.envelope.last_time_s, chunk.closes_file)
        counts = second_counts(time_s, events.status == 0, cover.covered_s, hi)
        result = self._tally(chunk, calibration, events, hi, counts)
        if chunk.coincidence:
            self._pool_part(chunk)
            tracks = events.tracks if isinstance(events, EventRates) else tracks_of(events)
            offsets = calibration.tsum_offset_ns
            # residuals from the offsets in force, once fitted (all zero: too few tracks yet)
            reference = offsets if np.any(offsets != 0) else None
            equations = tsum_equations(tracks, z, offsets, reference)
            self.pool.add_equations(chunk.envelope.chunk_id, equations, np.bincount(counts))
        return self._output([result], made)

    def _release(self) -> StreamOutput:
        """Calibrate from the held chunks, then reconstruct and tally them in arrival order.

        Their T_sum equations come from a trial reconstruction with the pool's pedestals and
        T_dif offsets and no T_sum offsets, whose rates are also the chunks' own (T_sum, which
        the rates do not read, is the only thing the T_sum offsets change).
        """
        held, self.held = self.held, []
        for chunk in held:
            self._pool_part(chunk)
        pedestal_tdif = self.pool.pedestals_tdif()
        zero = np.zeros((4, 4))
        trial = make_calibration(self.station, *pedestal_tdif, zero, 0, 0, 0)
        covered: dict[str, int] = {}
        staged = []
        for chunk in held:
            env = chunk.envelope
            z = self._z(chunk)
            time_s, _, channels = chunk.coincident()
            rates = reconstruct_rates(channels, trial, z, self.config)
            cover = self.files[env.source_file].cover
            cover = replace(cover, covered_s=covered.get(env.source_file, cover.covered_s))
            hi = chunk_end(cover, env.last_time_s, chunk.closes_file)
            covered[env.source_file] = hi
            counts = second_counts(time_s, rates.status == 0, cover.covered_s, hi)
            equations = tsum_equations(rates.tracks, z, zero)
            self.pool.add_equations(env.chunk_id, equations, np.bincount(counts))
            staged.append((chunk, z, rates, hi, counts))
        first = held[0].envelope
        calibration = replace(
            self.pool.calibration(self.station, self._z(held[0]), pedestal_tdif),
            source_file=first.source_file,
            source_chunk=first.chunk_index,
        )
        self.pool.calibrated(calibration)
        made = [calibration]
        results = []
        for chunk, z, rates, hi, counts in staged:
            made += self._in_force(chunk, z)
            in_force = self.pool.current
            assert in_force is not None
            events: EventResult | EventRates = rates
            if self.per_event:
                channels = chunk.coincident()[2]
                events = reconstruct_events(channels, in_force, z, self.config)
            results.append(self._tally(chunk, in_force, events, hi, counts))
        return self._output(results, made)

    def _tally(
        self,
        chunk: Chunk,
        calibration: Calibration,
        events: EventResult | EventRates,
        hi: int,
        counts: np.ndarray,
    ) -> ChunkResult:
        """Tally a reconstructed chunk into its file's cover and the minute sums."""
        env = chunk.envelope
        time_s, line, _ = chunk.coincident()
        progress = self.files[env.source_file]
        tally, progress.cover = tally_chunk(
            time_s, events, progress.cover, hi, counts, calibration.outlier_band
        )
        ints, floats = tally.packed()
        for m, i, f in zip(tally.minute_s.tolist(), ints, floats, strict=True):
            total = self.minutes.get(m)
            if total is None:
                total = self.minutes[m] = MinuteSum(np.zeros_like(i), np.zeros_like(f), [])
            total.ints += i
            total.floats += f
            if calibration.version not in total.versions:
                total.versions.append(calibration.version)
        return ChunkResult(
            env.source_file, env.chunk_index, calibration, time_s, line, events, tally
        )

    def _output(self, results: list[ChunkResult], made: list[Calibration]) -> StreamOutput:
        touched = sorted({m for r in results for m in r.tally.minute_s.tolist()})
        return StreamOutput(self.rows_of(touched), made, results, touched)

    def rows_of(self, minutes: list[int]) -> list[dict[str, Any]]:
        """``MinuteRates`` field dicts of these minutes (those with live time), as summed."""
        kept = [m for m in minutes if m in self.minutes]
        sums = [self.minutes[m] for m in kept]
        return packed_records(
            self.station,
            kept,
            [s.ints.tolist() for s in sums],
            [s.floats.tolist() for s in sums],
            ["+".join(s.versions) for s in sums],
        )

    def _forget(self) -> tuple[list[str], list[int]]:
        """Forget the files and minutes past the horizon; their names and starts."""
        limit = self.newest_s - self.horizon_s
        # a file goes with its last minute, not before: a chunk of a forgotten file counts
        # again, so no kept minute may hold its first count
        last_minute = {n: (p.cover.end_s - 1) // 60 * 60 for n, p in self.files.items()}
        files = [n for n, m in last_minute.items() if m + 60 < limit]
        for name in files:
            del self.files[name]
        minutes = []
        if self.minutes and min(self.minutes) + 60 < limit:  # (the scan costs more than min)
            minutes = [m for m in self.minutes if m + 60 < limit]
            for minute in minutes:
                del self.minutes[minute]
        return files, minutes
