"""``mingo process``: a directory of station files to the unified table, without any server.

::

    mingo process --input DIR --output OUT [--era5 DIR] [--stations 1,2]
                  [--log-max-gap-min 30] [--network stations.yaml]

Per station ``DIR/mingo0<S>/`` (as ``mingo simulate`` or a station writes it): ``.dat`` files and
daily ``.dat.tar.gz`` archives are parsed (ingest's parser) and reconstructed in time order
(reconstruct's pipeline), logs (``logs/`` and ``logs/done/``) parsed by ingest's log parser, ERA5
files of ``ERA5/mingo0<S>/`` (default ``DIR/era5``) decoded and derived by reanalysis, then joined
(:mod:`services.unify.join`). Output: the sink's daily files ``OUT/mingo0<S>/YYYY/MM/
unified_YYYY_MM_DD.csv`` with their Parquet twins (together the Parquet dataset), merged with what
is already there (changed minutes get a higher revision), and ``OUT/rejects.csv``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pandas as pd
from tqdm import tqdm

from schemas.models import Era5Hour, LogReading, RejectRecord
from schemas.station_logs import log_type_of_file
from services.common import rejects as rj
from services.common.cli_options import network_option, run_bounds, service_run_options
from services.common.coefficients import apply_record, latest_record
from services.common.logbook import LogbookEntry, parse_logbook, z_positions_at
from services.common.rejects import LineReject, make_reject, reject_records
from services.common.stations import DEFAULT_NETWORK_FILE, Station, load_network
from services.ingest.archives import ArchiveError, read_dat_archive
from services.ingest.log_parser import parse_log
from services.ingest.names import check_dat_name
from services.reanalysis.decode import Era5FileError
from services.reanalysis.derive import derive_hours
from services.reanalysis.points import combine
from services.reanalysis.records import hour_records
from services.reanalysis.service import era5_files, station_directory, station_long_table
from services.reconstruct.pipeline import (
    FileEvents,
    rates_rows,
    read_file_events,
    reconstruct_files,
)
from services.sink.files import DailyFiles, read_range
from services.unify.join import JoinSettings, to_rows, unify_frame
from services.unify.revisions import assign_revisions, rows_from_files

log = logging.getLogger(__name__)

__all__ = [
    "process",
    "process_station",
    "station_hours",
    "station_rates",
    "station_readings",
    "unify_service",
]

REJECTS_FILE = "rejects.csv"
_DAT = ".dat"
_ARCHIVE = ".dat.tar.gz"


class _Rejects(list[RejectRecord]):
    """Reject records of one station."""

    def __init__(self, station: int) -> None:
        super().__init__()
        self.station = station

    def add(self, kind: str, source_file: str, found: Any, archive: str | None = None) -> None:
        self.extend(reject_records(self.station, kind, source_file, found, archive))


def _file_events(name: str, data: bytes, rejects: _Rejects, archive: str | None) -> FileEvents:
    events, found = read_file_events(name, data)
    rejects.add("dat", name, found, archive)
    return events


def _archive_members(path: Path) -> list[tuple[str, bytes]] | LineReject:
    """Members of a daily archive, or the reject of the whole archive (all or nothing)."""
    try:
        return read_dat_archive(path.read_bytes())
    except ArchiveError as exc:
        return make_reject(None, rj.CORRUPT_ARCHIVE, str(exc))


def _dat_units(station_id: int, dat_dir: Path, rejects: _Rejects) -> list[tuple[datetime, Path]]:
    """Plain files and archives of a station with a valid name, by acquisition start."""
    units = []
    paths = sorted(dat_dir.iterdir()) if dat_dir.is_dir() else []
    now = datetime.now(UTC)
    plain_starts: dict[datetime, str] = {}
    for path in paths:
        if not path.is_file() or not path.name.endswith((_DAT, _ARCHIVE)):
            continue
        kind = "archive" if path.name.endswith(_ARCHIVE) else "dat"
        # An archive is named after its first member: only plain files can duplicate each other.
        name = check_dat_name(path.name, station_id, now, plain_starts if kind == "dat" else None)
        if name.reject is not None or name.start is None:
            rejects.add(kind, path.name, [name.reject])
            continue
        if kind == "dat":
            plain_starts[name.start] = path.name
        units.append((name.start, path))
    return sorted(units)


def station_rates(
    station: Station, station_dir: Path, rejects: _Rejects, advance: Callable[[], object]
) -> list[dict[str, Any]]:
    """Minute records of the station's ``.dat`` files and archives, reconstructed in time order.

    Parameters
    ----------
    station : Station
        The station (reconstruction settings).
    station_dir : Path
        ``DIR/mingo0<S>`` with ``dat/`` and ``logbook.csv``.
    rejects : list of RejectRecord
        Receives the rejects of the files.
    advance : callable
        Called once per plain file or archive done (progress bar).
    """
    source = station.source
    dat_dir = station_dir / (source.dat_subdir if source else "dat")
    logbook = station_dir / (source.logbook if source else "logbook.csv")
    entries: list[LogbookEntry] = []
    if logbook.is_file():
        entries, bad_rows = parse_logbook(logbook.read_text(encoding="utf-8"), source=logbook.name)
        rejects.add("logbook", logbook.name, bad_rows)

    def z_of_time(time_s: int) -> tuple[float, float, float, float]:
        return z_positions_at(entries, station.id, datetime.fromtimestamp(time_s, UTC))

    def inputs() -> Iterator[FileEvents]:
        for _, path in _dat_units(station.id, dat_dir, rejects):
            if path.name.endswith(_DAT):
                yield _file_events(path.name, path.read_bytes(), rejects, None)
            else:
                members = _archive_members(path)
                if isinstance(members, LineReject):
                    rejects.add("archive", path.name, [members])
                for name, data in [] if isinstance(members, LineReject) else sorted(members):
                    yield _file_events(name, data, rejects, path.name)
            advance()

    results = reconstruct_files(
        station.id, inputs(), z_of_time, station.reconstruction, per_event=False
    )
    return rates_rows(station.id, results)


def count_dat_units(station_dir: Path) -> int:
    """Plain ``.dat`` files and archives below ``station_dir/dat`` (for the progress bar)."""
    dat_dir = station_dir / "dat"
    if not dat_dir.is_dir():
        return 0
    return sum(1 for p in dat_dir.iterdir() if p.name.endswith((_DAT, _ARCHIVE)))


def station_readings(station: Station, station_dir: Path, rejects: _Rejects) -> list[LogReading]:
    """Log readings of the station's logs (``logs/`` and ``logs/done/``)."""
    log_dir = station_dir / (station.source.log_subdir if station.source else "logs")
    readings: list[LogReading] = []
    for folder in (log_dir, log_dir / "done"):
        for path in sorted(folder.glob("*.log")) if folder.is_dir() else []:
            log_type = log_type_of_file(path.name)
            if log_type is None:
                continue
            units = {c.name: c.unit for c in log_type.columns}
            result = parse_log(path.read_bytes(), log_type)
            rejects.add("log", path.name, result.rejects)
            readings += [
                LogReading(
                    station=station.id,
                    source=log_type.source,
                    time=row.time,
                    values=row.values,
                    units=units,
                    out_of_range=list(row.out_of_range),
                    source_file=path.name,
                    line=row.line,
                    reading_id=f"{station.id}/{path.name}/{row.line}",
                )
                for row in result.rows
            ]
    return readings


def station_hours(station: Station, era5_dir: Path, rejects: _Rejects) -> list[Era5Hour]:
    """ERA5 hours of the station from the files of ``era5_dir/mingo0<S>`` (bad files rejected)."""
    tables = []
    for path in era5_files(station_directory(era5_dir, station.id)):
        try:
            tables.append(station_long_table(path, station))
        except (Era5FileError, ValueError, OSError) as exc:
            problem = make_reject(None, rj.BAD_ERA5_FILE, f"cannot decode: {exc}")
            rejects.add("era5", path.name, [problem])
    if not tables:
        return []
    return hour_records(derive_hours(combine(tables)), station.id)


def process_station(
    station: Station,
    input_dir: Path,
    era5_dir: Path,
    out: Path,
    settings: JoinSettings,
    advance: Callable[[], object] = lambda: None,
) -> tuple[int, list[RejectRecord]]:
    """Unify one station's files into the daily files of ``out``.

    Returns
    -------
    rows : int
        Rows written (new or changed minutes).
    rejects : list of RejectRecord
        What could not be used.
    """
    rejects = _Rejects(station.id)
    station_dir = input_dir / f"mingo0{station.id}"
    rates = station_rates(station, station_dir, rejects, advance)
    readings = station_readings(station, station_dir, rejects)
    hours = station_hours(station, era5_dir, rejects)
    rows: list[Any] = to_rows(unify_frame(rates, readings, hours, station.atmosphere, settings))
    if rows:
        start, end = rows[0].time, rows[-1].time + timedelta(minutes=1)
        previous = rows_from_files(read_range(out, station.id, start, end))
        rows = assign_revisions(rows, previous)
        DailyFiles(out, parquet=True).write(rows)
    return len(rows), list(rejects)


@click.command("process")
@click.option(
    "--input",
    "input_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder with mingo0<S>/ station folders (as mingo simulate writes).",
)
@click.option("--output", "out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--era5",
    "era5_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="ERA5 folder with mingo0<S>/ subfolders. Default: INPUT/era5.",
)
@click.option("--stations", default="", help="Comma-separated station ids. Default: all found.")
@click.option(
    "--log-max-gap-min",
    default=30.0,
    show_default=True,
    help="Largest gap between two log readings interpolated over. [min]",
)
@network_option(DEFAULT_NETWORK_FILE, "Network file.")
@click.option(
    "--coefficients",
    "coefficients_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of `mingo fit --write` records: each station's newest one replaces its config.",
)
def process(
    input_dir: Path,
    out: Path,
    era5_dir: Path | None,
    stations: str,
    log_max_gap_min: float,
    network_file: Path,
    coefficients_dir: Path | None = None,
) -> None:
    """Turn a folder of station files into the unified table (CSV + Parquet per day, rejects)."""
    network = load_network(network_file)
    try:
        chosen = network.select(stations, lambda s: (input_dir / f"mingo0{s.id}").is_dir())
    except (KeyError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--stations") from None
    settings = JoinSettings(log_max_gap_s=60.0 * log_max_gap_min)
    era5_dir = era5_dir or input_dir / "era5"
    total = sum(count_dat_units(input_dir / f"mingo0{s.id}") for s in chosen)
    all_rejects: list[RejectRecord] = []
    with tqdm(total=total, desc="dat files", unit="file") as bar:
        for station in chosen:
            record = latest_record(coefficients_dir, station.id) if coefficients_dir else None
            if record is not None:
                station = apply_record(station, record)
                click.echo(f"station {station.id}: coefficients record v{record.version}", err=True)
            written, found = process_station(
                station, input_dir, era5_dir, out, settings, lambda: bar.update()
            )
            all_rejects += found
            log.info("station unified", extra={"station": station.id, "rows": written})
            click.echo(f"station {station.id}: {written} rows, {len(found)} rejects", err=True)
    out.mkdir(parents=True, exist_ok=True)
    columns = [n for n in RejectRecord.model_fields if n != "schema_version"]
    frame = pd.DataFrame([r.model_dump() for r in all_rejects], columns=columns)
    frame.to_csv(out / REJECTS_FILE, index=False)


@click.command("unify-service")
@network_option()
@service_run_options("Unify what is on the input topics now, then stop.")
def unify_service(network_file: Path | None, once: bool, max_seconds: float | None) -> None:
    """Run the unify service: rates, logs and ERA5 -> unified minutes, exactly once (MINGO_*)."""
    from services.common.logging import configure_logging
    from services.common.runtime import StopFlag, install_signal_handlers
    from services.unify.service import run_unify
    from services.unify.settings import UnifySettings

    settings = UnifySettings()
    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    stop = StopFlag()
    install_signal_handlers(stop)
    network = load_network(network_file or settings.network_file)
    published = run_unify(
        network, settings.kafka, settings.options(), stop, run_bounds(once, max_seconds)
    )
    click.echo(f"{published} unified rows published", err=True)
