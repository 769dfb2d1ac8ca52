"""From the events of station files to minute records: calibration, kernel, tallies (no Kafka).

``mingo reconstruct`` (and ``mingo process``) cut each file into the chunks ingest would publish
(``services.ingest.chunking``) and run them through the service's
:class:`~services.reconstruct.stream.StationStream`, so the command and the service compute the
same minute records for the same files. :func:`recompute_chunks` recomputes a file's tallies
from its raw events and the stored calibration records alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.dat_format import parse_dat_filename
from services.common.rejects import LineReject
from services.common.stations import ReconstructionConfig
from services.ingest.chunking import MAX_CHUNK_EVENTS, chunk_envelopes, plan_chunks
from services.ingest.dat_parser import MAX_FILE_SPAN_S, DatParseResult, parse_dat_file
from services.reconstruct.calibration import Calibration
from services.reconstruct.events import reconstruct_rates
from services.reconstruct.minutes import (
    FileCover,
    MinuteTally,
    chunk_end,
    merge_tallies,
    minute_records,
    second_counts,
    tally_chunk,
)
from services.reconstruct.stream import Chunk, ChunkResult, StationStream, ZOfTime

__all__ = [
    "FileEvents",
    "file_chunks",
    "parsed_file_events",
    "rates_rows",
    "read_file_events",
    "recompute_chunks",
    "reconstruct_files",
    "tally_rows",
]


@dataclass(frozen=True, eq=False)
class FileEvents:
    """The valid events of one ``.dat`` file.

    Attributes
    ----------
    name : str
        File name.
    start_s, end_s : int
        Acquisition interval, end exclusive (last event second + 1). [s since epoch, UTC]
    time_s : int64 (n,)
        Event times. [s since epoch, UTC]
    trigger_type : int8 (n,)
        1 coincidence, 2 self-trigger; events in file order.
    line : int32 (n,)
        Line numbers in the file.
    channels : float64 (n, 64)
        Raw channels, file order. [ns]
    """

    name: str
    start_s: int
    end_s: int
    time_s: np.ndarray
    trigger_type: np.ndarray
    line: np.ndarray
    channels: np.ndarray


def parsed_file_events(name: str, result: DatParseResult) -> FileEvents:
    """The events of a parsed ``.dat`` file, its acquisition from the name to the last event."""
    start_s = int(parse_dat_filename(name)[1].timestamp())
    end_s = int(result.time_s.max()) + 1 if result.lines_valid else start_s
    return FileEvents(
        name,
        start_s,
        end_s,
        result.time_s,
        result.trigger_type,
        result.line_number,
        result.channels,
    )


def read_file_events(
    name: str, data: bytes, max_file_span_s: int = MAX_FILE_SPAN_S
) -> tuple[FileEvents, tuple[LineReject, ...]]:
    """Parse a station file as ingest does (the file-span rule from its name) into its events.

    Parameters
    ----------
    name : str
        File name in the station convention (gives the acquisition start).
    data : bytes
        The file content.
    max_file_span_s : int
        Ingest's ``MINGO_INGEST_MAX_FILE_SPAN_S``, for the events ingest would publish. [s]

    Returns
    -------
    events : FileEvents
        The valid events inside the file's span.
    rejects : tuple of LineReject
        The file's bad lines and out-of-span events, for the user to see.
    """
    start_s = int(parse_dat_filename(name)[1].timestamp())
    result = parse_dat_file(data, start_s, max_file_span_s)
    return parsed_file_events(name, result), result.rejects


def file_chunks(station: int, file: FileEvents, max_events: int = MAX_CHUNK_EVENTS) -> list[Chunk]:
    """The file cut into the chunks ingest publishes for it (same cut, same envelopes)."""
    if not len(file.time_s):
        return []
    slices = plan_chunks(file.time_s, file.trigger_type, max_events)
    envelopes = chunk_envelopes(station, file.name, file.start_s, file.time_s, slices)
    return [
        Chunk(envelope, file.time_s[s.rows], file.line[s.rows], file.channels[s.rows])
        for s, envelope in zip(slices, envelopes, strict=True)
    ]


def reconstruct_files(
    station: int,
    files: Iterable[FileEvents],
    z_of_time: ZOfTime,
    config: ReconstructionConfig,
    per_event: bool = True,
    max_chunk_events: int = MAX_CHUNK_EVENTS,
) -> Iterator[ChunkResult]:
    """Calibrate and reconstruct the files of one station chunk by chunk, as the service does.

    Parameters
    ----------
    station : int
        Station id.
    files : iterable of FileEvents
        The station's files, oldest first.
    z_of_time : callable
        Plane z positions [mm] in force at a time [s since epoch, UTC] (the logbook).
    config : ReconstructionConfig
        The station's reconstruction settings.
    per_event : bool
        Whether the results carry the per-event table (else only what the tally reads).
    max_chunk_events : int
        Events per chunk at most: ingest's setting, for records equal to the service's.

    Yields
    ------
    ChunkResult
        Each chunk as it is reconstructed (the first ones once the first calibration is made).
    """
    stream = StationStream(station, z_of_time, config, per_event=per_event)
    for file in files:
        for chunk in file_chunks(station, file, max_chunk_events):
            yield from stream.add(chunk).results


def recompute_chunks(
    station: int,
    file: FileEvents,
    calibration_of: Callable[[str, int], Calibration],
    config: ReconstructionConfig,
    max_chunk_events: int = MAX_CHUNK_EVENTS,
) -> list[tuple[MinuteTally, str]]:
    """A file's chunk tallies again, from its raw events and stored calibrations alone.

    Parameters
    ----------
    station : int
        Station id.
    file : FileEvents
        The file.
    calibration_of : callable
        ``calibration_of(file name, chunk index)`` → the :class:`Calibration` the chunk was
        reconstructed with: the stored record with the latest (``source_file``,
        ``source_chunk``) not after the chunk in the station's order (the first calibration
        also for the chunks held before it).
    config, max_chunk_events
        As for :func:`reconstruct_files`.

    Returns
    -------
    list of (MinuteTally, version)
        For :func:`tally_rows`, with the tallies of a neighbouring file for shared minutes.
    """
    cover = FileCover.new(file.start_s, file.end_s)
    tallies = []
    for chunk in file_chunks(station, file, max_chunk_events):
        env = chunk.envelope
        calibration = calibration_of(env.source_file, env.chunk_index)
        time_s, _, channels = chunk.coincident()
        events = reconstruct_rates(channels, calibration, calibration.z_mm, config)
        hi = chunk_end(cover, env.last_time_s, chunk.closes_file)
        counts = second_counts(time_s, events.status == 0, cover.covered_s, hi)
        tally, cover = tally_chunk(time_s, events, cover, hi, counts, calibration.outlier_band)
        tallies.append((tally, calibration.version))
    return tallies


def rates_rows(station: int, results: Iterable[ChunkResult]) -> list[dict[str, Any]]:
    """Minute records of the chunks together: a minute covered by two chunks gets both.

    The calibration version of a minute is that of its chunks, or the versions of the chunks
    that share it joined by ``+`` (in chunk order).
    """
    return tally_rows(station, [(r.tally, r.calibration.version) for r in results])


def tally_rows(station: int, tallies: Sequence[tuple[MinuteTally, str]]) -> list[dict[str, Any]]:
    """Minute records of per-chunk (tally, calibration version) pairs in chunk order (see
    :func:`rates_rows`)."""
    merged = merge_tallies(tally for tally, _ in tallies)
    versions: list[list[str]] = [[] for _ in merged.minute_s]
    for tally, version in tallies:
        for i in np.searchsorted(merged.minute_s, tally.minute_s):
            if version not in versions[i]:
                versions[i].append(version)
    return minute_records(merged, station, ["+".join(v) for v in versions])
