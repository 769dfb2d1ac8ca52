"""The reanalysis service: ERA5 files (fetched or found on disk) → ``mingo.era5.hourly.v1``.

Each station has a directory ``<era5_dir>/mingo0<S>/`` (the simulator's layout). A step

1. when a fetcher is configured (CDS credentials), makes at most ONE planned CDS request (one in
   flight per account) into the first station directory that needs one;
2. decodes every station's files (decoded tables are cached by path, size and mtime), combines
   them per hour (final ERA5 over ERA5T), derives the hourly quantities;
3. publishes the records that are new or changed (``records.to_publish``) keyed by station id and
   flushes; what is published is restored from the topic itself at start, so a restart publishes
   nothing twice.

Without credentials the service logs so once and keeps publishing what is on disk. A file that
cannot be decoded is reported (log and status topic) and skipped; the others go on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from schemas.models import Era5Hour
from schemas.topics import ERA5_HOURLY, station_key
from services.common.kafka import make_producer, read_all
from services.common.runtime import RunBounds, StopFlag, run_loop
from services.common.settings import KafkaSettings
from services.common.stations import Station
from services.common.status import produce_status, status_message
from services.reanalysis.cds import NO_CREDENTIALS, CdsError, Era5Fetcher
from services.reanalysis.decode import EXPVER_ERA5T, Era5FileError, open_era5
from services.reanalysis.derive import derive_hours
from services.reanalysis.planner import plan_requests
from services.reanalysis.points import combine, point_values
from services.reanalysis.records import HourKey, hour_records, latest_by_hour, to_publish

log = logging.getLogger(__name__)

SERVICE = "reanalysis"
#: File suffixes taken as ERA5 files in a station directory.
ERA5_SUFFIXES = (".nc", ".grib", ".grib2", ".grb", ".zip")


@dataclass(frozen=True)
class ReanalysisOptions:
    """Tunables of the reanalysis service."""

    instance: str
    era5_dir: Path
    topic: str = ERA5_HOURLY.name
    poll_interval_s: float = 3600.0
    heartbeat_s: float = 30.0
    fetch_start: date | None = None  #: first day to fetch; None = fetch nothing


def station_directory(era5_dir: Path, station: int) -> Path:
    """``<era5_dir>/mingo0<S>``, as the simulator writes it."""
    return era5_dir / f"mingo0{station}"


def era5_files(directory: Path) -> list[Path]:
    """ERA5 files of a directory, sorted by name (partial downloads excluded)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in ERA5_SUFFIXES)


#: The ERA5 variables the derived quantities use, with the range their values must lie in, in
#: ERA5's units (K, Pa, m² s⁻²). A file in other units (°C, hPa) or of other variables would
#: otherwise pass unnoticed: wrong values in the first case, silently nothing in the second.
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "t2m": (150.0, 350.0),
    "sp": (30_000.0, 120_000.0),
    "t": (150.0, 350.0),
    "z": (-5_000.0, 600_000.0),
}


def _check_values(long: pd.DataFrame, name: str) -> None:
    """Refuse a file without any needed variable, or with one outside its plausible range."""
    variables = long["column"].str.split("_", n=1).str[0]
    if not variables.isin(list(PLAUSIBLE_RANGES)).any():
        found = ", ".join(sorted(set(variables))) or "none"
        raise Era5FileError(
            f"{name}: none of the variables {', '.join(PLAUSIBLE_RANGES)} (found: {found})"
        )
    for variable, (low, high) in PLAUSIBLE_RANGES.items():
        values = long.loc[variables == variable, "value"].dropna()
        if len(values) and not values.between(low, high).all():
            raise Era5FileError(
                f"{name}: {variable} values {values.min():g}..{values.max():g} are outside "
                f"{low:g}..{high:g} (wrong units?)"
            )


def station_long_table(path: Path, station: Station) -> pd.DataFrame:
    """Long table of a file's values at a station (``points.point_values`` of each dataset).

    Raises
    ------
    Era5FileError
        If the file cannot be decoded, holds none of the needed variables or implausible values.
    ValueError
        If the station has no coordinates or lies outside the file's grid.
    """
    if station.latitude is None or station.longitude is None:
        raise ValueError(f"station {station.id} has no coordinates in the network file")
    try:
        tables = [point_values(ds, station.latitude, station.longitude) for ds in open_era5(path)]
    except ValueError as exc:
        if isinstance(exc, Era5FileError):
            raise
        raise ValueError(f"{path.name}: {exc}") from None  # e.g. station outside the grid
    long = pd.concat(tables, ignore_index=True)
    _check_values(long, path.name)
    return long


def derive_files(paths: list[Path], station: Station) -> pd.DataFrame:
    """Derived hourly table of a station from files (``mingo era5 derive``)."""
    return derive_hours(combine(station_long_table(p, station) for p in paths))


class _DecodedCache:
    """Long tables per file, redone only when a file's size or mtime changes."""

    def __init__(self) -> None:
        self._tables: dict[Path, tuple[tuple[int, int], pd.DataFrame]] = {}

    def table(self, path: Path, station: Station) -> pd.DataFrame:
        stat = path.stat()
        signature = (stat.st_size, stat.st_mtime_ns)
        cached = self._tables.get(path)
        if cached is None or cached[0] != signature:
            cached = (signature, station_long_table(path, station))
            self._tables[path] = cached
        return cached[1]


def restore_published(kafka: KafkaSettings, topic: str) -> dict[HourKey, Era5Hour]:
    """Latest record per (station, time) already in the topic."""
    return latest_by_hour(Era5Hour.model_validate_json(m.value()) for m in read_all(kafka, topic))


class ReanalysisService:
    """One instance: its stations, producer, fetcher and memory of what is published."""

    def __init__(
        self,
        stations: list[Station],
        kafka: KafkaSettings,
        options: ReanalysisOptions,
        fetcher: Era5Fetcher | None,
    ) -> None:
        self.stations = stations
        self.options = options
        self.fetcher = fetcher
        self.producer = make_producer(kafka)
        self.published = restore_published(kafka, options.topic)
        self._cache = _DecodedCache()
        self._bad_files: set[tuple[Path, int]] = set()
        if fetcher is None and options.fetch_start is not None:
            log.warning("%s; publishing only the files already on disk", NO_CREDENTIALS)

    def step(self) -> bool:
        """Fetch at most one request, publish what changed; True if anything was done."""
        fetched = self._fetch_one()
        published = sum(self._publish_station(s) for s in self.stations)
        return fetched or published > 0

    def _fetch_one(self) -> bool:
        start = self.options.fetch_start
        if self.fetcher is None or start is None:
            return False
        today = datetime.now(UTC).date()
        for station in self.stations:
            if station.latitude is None or station.longitude is None:
                continue
            directory = station_directory(self.options.era5_dir, station.id)
            files = era5_files(directory)
            era5t = self._era5t_days(files, station)
            plan = plan_requests(
                station.id,
                station.latitude,
                station.longitude,
                start,
                today,
                today,
                present={p.name for p in files},
                era5t_days=era5t,
            )
            if not plan:
                continue
            try:
                self.fetcher.fetch(plan[0], directory)
            except CdsError as exc:
                log.error("CDS request failed", extra={"station": station.id, "error": str(exc)})
                self._status(station.id, "source_error", str(exc))
                return False  # wait a poll interval before asking again
            return True
        return False

    def _era5t_days(self, files: list[Path], station: Station) -> set[date]:
        table = combine(self._tables(files, station))
        if table.empty:
            return set()
        era5t = table[table["expver"] == EXPVER_ERA5T]
        return {t.date() for t in era5t["time"]}

    def _tables(self, files: list[Path], station: Station) -> list[pd.DataFrame]:
        tables = []
        for path in files:
            try:
                tables.append(self._cache.table(path, station))
            except (Era5FileError, ValueError) as exc:
                mark = (path, path.stat().st_mtime_ns)
                if mark not in self._bad_files:
                    self._bad_files.add(mark)
                    log.error("unusable ERA5 file", extra={"file": str(path), "error": str(exc)})
                    self._status(station.id, "source_error", str(exc), file=path.name)
        return tables

    def _publish_station(self, station: Station) -> int:
        files = era5_files(station_directory(self.options.era5_dir, station.id))
        derived = derive_hours(combine(self._tables(files, station)))
        records = to_publish(hour_records(derived, station.id), self.published)
        for record in records:
            self.producer.produce(
                self.options.topic, key=station_key(station.id), value=record.to_json_bytes()
            )
        if records:
            remaining = self.producer.flush(30)
            if remaining:
                raise RuntimeError(f"{remaining} ERA5 records not delivered")
            self.published.update(latest_by_hour(records))
            newest = max(r.time for r in records)
            self._status(
                station.id,
                "source_ok",
                f"published {len(records)} hours",
                newest_data_time=newest,
                lag_s=(datetime.now(UTC) - newest) / timedelta(seconds=1),
            )
            log.info("published ERA5 hours", extra={"station": station.id, "hours": len(records)})
        return len(records)

    def _status(self, station: int | None, kind: str, message: str, **fields: object) -> None:
        fields |= {"station": station, "source": "era5", "message": message}
        produce_status(
            self.producer, status_message(SERVICE, self.options.instance, kind, **fields)
        )

    def heartbeat(self) -> None:
        """Queue a heartbeat on the status topic."""
        self._status(None, "heartbeat", f"{len(self.published)} hours published")
        self.producer.poll(0)

    def close(self) -> None:
        """Flush the producer."""
        self.producer.flush(30)


def run_reanalysis(
    stations: list[Station],
    kafka: KafkaSettings,
    options: ReanalysisOptions,
    stop: StopFlag,
    fetcher: Era5Fetcher | None = None,
    bounds: RunBounds | None = None,
) -> int:
    """Run the service until stopped (or ``bounds``); returns the number of steps."""
    service = ReanalysisService(stations, kafka, options, fetcher)
    try:
        return run_loop(
            service.step,
            stop=stop,
            interval_s=options.poll_interval_s,
            bounds=bounds,
            heartbeat=service.heartbeat,
            heartbeat_s=options.heartbeat_s,
        )
    finally:
        service.close()
        produce_status(service.producer, status_message(SERVICE, options.instance, "stopped"))
        service.producer.flush(10)
