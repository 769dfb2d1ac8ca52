"""``mingo reconstruct``: per-minute rates (and per-event tracks) of station ``.dat`` files.

::

    mingo reconstruct FILE.dat [FILE.dat ...] [--logbook CSV] [--z 0,145,290,435]
                      --out rates.csv [--events events.parquet] [--network stations.yaml]
                      [--calibrations DIR] [--chunk-events N] [--max-file-span S]

Files are read as ingest reads them (``parse_dat_file``: events outside a file's span are
rejected); every rejected line is written to stderr as ``FILE:LINE: REASON: detail``.
Several files of one station are calibrated from their pooled events, in time order, exactly as
the streaming service does, and a minute shared by two files gets both contributions.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
import numpy as np
import pandas as pd

from schemas.columns import REGIONS, TOPOLOGIES
from schemas.dat_format import parse_dat_filename
from schemas.models import MinuteRates
from services.common.cli_options import network_option, run_bounds, service_run_options
from services.common.logbook import LogbookEntry, parse_logbook, z_positions_at
from services.common.stations import DEFAULT_NETWORK_FILE, Station, load_network
from services.ingest.chunking import MAX_CHUNK_EVENTS
from services.ingest.dat_parser import MAX_FILE_SPAN_S
from services.reconstruct.calibration_records import to_record, write_calibration
from services.reconstruct.events import EventResult
from services.reconstruct.pipeline import (
    FileEvents,
    rates_rows,
    read_file_events,
    reconstruct_files,
)
from services.reconstruct.stream import ChunkResult

log = logging.getLogger(__name__)

__all__ = ["events_frame", "load_dat", "rates_frame", "reconstruct", "reconstruct_service"]


def load_dat(
    path: Path, max_file_span_s: int = MAX_FILE_SPAN_S, report: bool = False
) -> FileEvents:
    """Parse a ``.dat`` file into :class:`FileEvents` as ingest does (start from its name).

    With ``report``, each rejected line is written to stderr as ``FILE:LINE: REASON: detail``.
    """
    events, rejects = read_file_events(path.name, path.read_bytes(), max_file_span_s)
    for reject in rejects if report else ():
        where = "" if reject.line is None else f"{reject.line}:"
        click.echo(f"{path.name}:{where} {reject.reason}: {reject.detail}", err=True)
    return events


def rates_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """The per-minute table with the ``MinuteRates`` column names (``time`` as ISO 8601 UTC)."""
    columns = [name for name in MinuteRates.model_fields if name not in ("schema_version",)]
    frame = pd.DataFrame(rows, columns=columns)
    frame["time"] = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in frame["time"]]
    return frame


def events_frame(results: list[ChunkResult]) -> pd.DataFrame:
    """The per-event table: hits, topology, θ, φ, χ², region, charge, streamer flag."""
    frames = []
    topologies = np.array(["", *TOPOLOGIES])
    regions = np.array(["", *REGIONS])
    for r in results:
        ev = r.events
        if not isinstance(ev, EventResult):
            raise TypeError(f"{r.name}: reconstructed without the per-event table")
        data: dict[str, object] = {
            "file": r.name,
            "line": r.line,
            "time": pd.to_datetime(r.time_s, unit="s", utc=True),
            "status": ev.status,
            "topology": topologies[ev.topology.astype(np.int64) + 1],
            "theta_deg": ev.theta,
            "phi_deg": ev.phi,
            "chi2": ev.chi2,
            "region": regions[ev.region.astype(np.int64) + 1],
            "q_event_ns": ev.q_event,
            "streamer": ev.streamer.astype(bool),
            "calibration_version": r.calibration.version,
        }
        for p in range(4):
            data[f"strip_p{p + 1}"] = ev.strip[:, p] + 1
            data[f"x_p{p + 1}_mm"] = ev.x[:, p]
            data[f"y_p{p + 1}_mm"] = ev.y[:, p]
            data[f"t_p{p + 1}_ns"] = ev.t[:, p]
            data[f"q_p{p + 1}_ns"] = ev.q[:, p]
        frames.append(pd.DataFrame(data))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _z_option(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not 4 numbers separated by commas") from None
    if len(values) != 4 or not all(a < b for a, b in itertools.pairwise(values)):
        raise click.BadParameter(f"{text!r}: need 4 strictly increasing z positions [mm]")
    return values[0], values[1], values[2], values[3]


def _station(network_file: Path, station_id: int) -> Station:
    network = load_network(network_file)
    try:
        return network.station(station_id)
    except KeyError:
        log.warning("station not in the network file; defaults used", extra={"station": station_id})
        return Station(id=station_id, name=f"mingo0{station_id}")


@click.command("reconstruct")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--logbook",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Station logbook CSV (plane z by date). Default: z of DOMAIN.md.",
)
@click.option("--z", "z_text", help="Plane z positions, e.g. 0,145,290,435 [mm]; beats --logbook.")
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Rates CSV."
)
@click.option(
    "--events",
    "events_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the per-event table (Parquet).",
)
@network_option(DEFAULT_NETWORK_FILE, "Network file with the station's reconstruction settings.")
@click.option(
    "--calibrations",
    "calibration_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also keep each calibration record here, as <station>/<version>.json.",
)
@click.option(
    "--chunk-events",
    type=click.IntRange(min=1),
    default=MAX_CHUNK_EVENTS,
    show_default=True,
    help="Events per chunk at most: ingest's MINGO_INGEST_MAX_CHUNK_EVENTS (same records).",
)
@click.option(
    "--max-file-span",
    "max_file_span_s",
    type=click.IntRange(min=1),
    default=MAX_FILE_SPAN_S,
    show_default=True,
    help="Events before a file's start or this many seconds after it are rejected: ingest's "
    "MINGO_INGEST_MAX_FILE_SPAN_S (same records).",
)
def reconstruct(
    files: tuple[Path, ...],
    logbook: Path | None,
    z_text: str | None,
    out: Path,
    events_out: Path | None,
    network_file: Path,
    calibration_dir: Path | None,
    chunk_events: int,
    max_file_span_s: int,
) -> None:
    """Per-minute rates of the .dat FILES of one station (calibrated from their events)."""
    names = Counter(f.name for f in files)
    if twice := sorted(name for name, count in names.items() if count > 1):
        # chunk ids are made of the name: the second file's chunks would count as replays
        raise click.BadParameter(f"file names given more than once: {', '.join(twice)}")
    try:
        named = sorted((parse_dat_filename(f.name), f) for f in files)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    stations = {station for (station, _), _ in named}
    if len(stations) != 1:
        raise click.BadParameter(f"files of one station are needed, got stations {stations}")
    station_id = stations.pop()
    station = _station(network_file, station_id)
    z_fixed = _z_option(z_text)
    entries: list[LogbookEntry] = []
    if logbook is not None:
        entries, rejects = parse_logbook(logbook.read_text(encoding="utf-8"), source=logbook.name)
        for reject in rejects:
            click.echo(f"{logbook.name}:{reject.line}: {reject.detail}", err=True)

    def z_of_time(time_s: int) -> tuple[float, float, float, float]:
        if z_fixed is not None:
            return z_fixed
        return z_positions_at(entries, station_id, datetime.fromtimestamp(time_s, UTC))

    def inputs() -> Iterator[FileEvents]:
        for _, path in named:
            yield load_dat(path, max_file_span_s, report=True)

    results = list(
        reconstruct_files(
            station_id,
            inputs(),
            z_of_time,
            station.reconstruction,
            events_out is not None,
            chunk_events,
        )
    )
    rows = rates_rows(station_id, results)
    rates_frame(rows).to_csv(out, index=False)
    if events_out is not None:
        events_frame(results).to_parquet(events_out, index=False)
    if calibration_dir is not None:
        for calibration in {r.calibration.version: r.calibration for r in results}.values():
            write_calibration(calibration_dir, to_record(calibration))
    counted = sum(len(r.time_s) for r in results)
    click.echo(f"{len(rows)} minutes from {counted} coincidence events -> {out}", err=True)


@click.command("reconstruct-service")
@network_option()
@service_run_options("Process what is in the raw topic now, then stop.")
def reconstruct_service(network_file: Path | None, once: bool, max_seconds: float | None) -> None:
    """Run the reconstruct service: raw chunks -> minute records, exactly once (MINGO_* vars)."""
    from services.common.logging import redact_secrets
    from services.common.runtime import StopFlag, install_signal_handlers
    from services.reconstruct.service import run_reconstruct
    from services.reconstruct.settings import ReconstructSettings

    settings = ReconstructSettings()
    redact_secrets(settings.secret_values())
    stop = StopFlag()
    install_signal_handlers(stop)
    network = load_network(network_file or settings.network_file)
    published = run_reconstruct(
        network, settings.kafka, settings.options(), stop, run_bounds(once, max_seconds)
    )
    click.echo(f"{published} minute records published", err=True)
