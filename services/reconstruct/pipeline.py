"""From the events of station files to minute records: calibration, kernel, tallies (no Kafka).

The same functions serve ``mingo reconstruct`` and the streaming service, so both give the same
minute records for the same files. Files of a station are taken in time order; each file is
calibrated from the station's pool of recent coincidence events, this file included
(``CalibrationPool``), then reconstructed with the plane z in force at the file's start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from schemas.dat_format import TRIGGER_COINCIDENCE, parse_dat_filename
from services.common.stations import ReconstructionConfig
from services.ingest.dat_parser import DatParseResult
from services.reconstruct.calibration import (
    Calibration,
    CalibrationPool,
    file_part,
    tsum_equations,
)
from services.reconstruct.events import (
    EventRates,
    EventResult,
    reconstruct_events,
    reconstruct_rates,
    tracks_of,
)
from services.reconstruct.minutes import MinuteTally, merge_tallies, minute_records, tally_file

log = logging.getLogger(__name__)

__all__ = [
    "FileEvents",
    "FileResult",
    "calibrate_and_reconstruct",
    "coincidence",
    "rates_rows",
    "reconstruct_files",
    "reconstruct_one",
    "tally_rows",
]

ZOfTime = Callable[[int], tuple[float, float, float, float]]


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
        1 coincidence, 2 self-trigger. Events are in file order, or in file order within each
        trigger type (coincidence first) as ``StationStream`` assembles them.
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


@dataclass(frozen=True, eq=False)
class FileResult:
    """What reconstruct made of one file (coincidence events only); ``events`` is the per-event
    table (:class:`EventResult`) or, when it was not asked for, what the tally reads
    (:class:`EventRates`)."""

    name: str
    calibration: Calibration
    z_mm: tuple[float, float, float, float]
    time_s: np.ndarray
    line: np.ndarray
    events: EventResult | EventRates
    tally: MinuteTally
    self_trigger_events: int


def reconstruct_one(
    file: FileEvents,
    calibration: Calibration,
    z_mm: tuple[float, float, float, float],
    config: ReconstructionConfig,
    per_event: bool = True,
    rates: EventRates | None = None,
) -> FileResult:
    """Reconstruct one file's coincidence events with a given calibration and tally them.

    ``per_event=False`` runs the rates kernel only, or takes ``rates`` (the file's rates with
    this calibration's pedestals and T_dif offsets) as they are.
    """
    physics = coincidence(file)
    time_s = file.time_s[physics]
    events: EventResult | EventRates
    if per_event:
        events = reconstruct_events(file.channels[physics], calibration, z_mm, config)
    elif rates is None:
        events = reconstruct_rates(file.channels[physics], calibration, z_mm, config)
    else:
        events = rates
    tally = tally_file(time_s, events, file.start_s, file.end_s, config)
    return FileResult(
        file.name,
        calibration,
        z_mm,
        time_s,
        file.line[physics],
        events,
        tally,
        len(file.time_s) - len(time_s),
    )


def coincidence(file: FileEvents) -> slice | np.ndarray:
    """Index of the file's coincidence events: a slice (views, no copy) when they come first, as
    ``StationStream`` assembles files, else a boolean mask."""
    physics = file.trigger_type == TRIGGER_COINCIDENCE
    n = int(np.count_nonzero(physics))
    return slice(0, n) if physics[:n].all() else physics


def reconstruct_files(
    station: int,
    files: Iterable[FileEvents],
    z_of_time: ZOfTime,
    config: ReconstructionConfig,
    per_event: bool = True,
) -> Iterator[FileResult]:
    """Calibrate and reconstruct the files of one station, in the order given (time order).

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
    """
    pool = CalibrationPool(config)
    for file in files:
        yield calibrate_and_reconstruct(station, pool, file, z_of_time, config, per_event)


def calibrate_and_reconstruct(
    station: int,
    pool: CalibrationPool,
    file: FileEvents,
    z_of_time: ZOfTime,
    config: ReconstructionConfig,
    per_event: bool = True,
) -> FileResult:
    """Add the file's coincidence events to the station's pool, calibrate from it, reconstruct.

    The pool is keyed by file name, so a file seen again does not enter it twice. The file
    reuses the pool's current calibration unless :meth:`CalibrationPool.needs_calibration`
    (``calibration_refresh_events``); a reused calibration keeps its version and its record
    (``source_file`` is the file it was computed for). Without ``per_event`` a file that is
    calibrated is not reconstructed again: the calibration's trial gave its rates.
    """
    physics = coincidence(file)
    channels = file.channels[physics]
    pool.add(file_part(file.time_s[physics], channels, config, key=file.name))
    z_mm = z_of_time(file.start_s)
    calibration = pool.current
    trial = None
    if calibration is None or pool.needs_calibration(z_mm):
        calibration, trial = pool.calibration(station, channels, z_mm, file.name)
        calibration = replace(calibration, source_file=file.name)
        pool.calibrated(calibration)
        log.info(
            "file calibrated",
            extra={"file": file.name, "version": calibration.version, "pool": pool.events},
        )
    result = reconstruct_one(file, calibration, z_mm, config, per_event, trial)
    if not pool.has_equations(file.name):
        # a file that reused a calibration: its T_sum equations from its own reconstruction
        events = result.events
        tracks = events.tracks if isinstance(events, EventRates) else tracks_of(events)
        pool.add_equations(file.name, tsum_equations(tracks, z_mm, calibration.tsum_offset_ns))
    return result


def rates_rows(station: int, results: Iterable[FileResult]) -> list[dict[str, Any]]:
    """Minute records of the files together: a minute covered by two files gets both.

    The calibration version of a minute is that of its file, or the versions of the files that
    share it joined by ``+`` (in file order).
    """
    return tally_rows(station, [(r.tally, r.calibration.version) for r in results])


def tally_rows(station: int, parts: Sequence[tuple[MinuteTally, str]]) -> list[dict[str, Any]]:
    """Minute records of per-file (tally, calibration version) pairs in file order (see
    :func:`rates_rows`)."""
    merged = merge_tallies(tally for tally, _ in parts)
    versions: list[list[str]] = [[] for _ in merged.minute_s]
    for tally, version in parts:
        for i in np.searchsorted(merged.minute_s, tally.minute_s):
            if version not in versions[i]:
                versions[i].append(version)
    return minute_records(merged, station, ["+".join(v) for v in versions])
