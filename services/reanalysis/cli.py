"""``mingo era5``: look into ERA5 files, derive station tables, fetch from the CDS, publish."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import click
import pandas as pd

from services.common.stations import NetworkConfigError, Station, load_network

_NETWORK = click.option(
    "--network",
    "network_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Network file (default: MINGO_NETWORK_FILE or config/stations.yaml).",
)


@click.group()
def era5() -> None:
    """ERA5 reanalysis: decode, interpolate at stations, derive, fetch, publish."""


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Turn the domain's errors (they name the file) into one-line CLI errors."""
    from services.reanalysis.cds import CdsError
    from services.reanalysis.decode import Era5FileError

    try:
        yield
    except (Era5FileError, CdsError, NetworkConfigError, KeyError, ValueError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None


def _station(network_file: Path | None, station_id: int) -> Station:
    from services.reanalysis.settings import ReanalysisSettings

    with _clear_errors():
        network = load_network(network_file or ReanalysisSettings().network_file)
        return network.station(station_id)


def _write_csv(table: pd.DataFrame, out: Path | None) -> None:
    """CSV with ISO 8601 UTC times (``2024-03-01T00:00:00Z``) to a file or stdout."""
    table = table.copy()
    table["time"] = pd.to_datetime(table["time"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if out is None:
        table.to_csv(sys.stdout, index=False, float_format="%.10g")
    else:
        table.to_csv(out, index=False, float_format="%.10g")


@era5.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--lat", "latitude", type=float, required=True, help="Latitude. [deg]")
@click.option("--lon", "longitude", type=float, required=True, help="Longitude. [deg]")
def point(file: Path, latitude: float, longitude: float) -> None:
    """Values of every variable and level of FILE at a point, bilinear, as CSV.

    Columns: time (ISO 8601 UTC), then ERA5 short names (t2m, sp, t_850hPa, z_500hPa, ...) in the
    file's units. FILE may be GRIB, NetCDF (any CDS layout) or a ZIP of them.
    """
    from services.reanalysis.decode import open_era5
    from services.reanalysis.points import point_table

    with _clear_errors():
        datasets = open_era5(file)
        try:
            table = point_table(datasets, latitude, longitude)
        except ValueError as exc:
            raise click.ClickException(f"{file.name}: {exc}") from None
        _write_csv(table, None)


@era5.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--station", "station_id", type=int, required=True, help="Station id.")
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), default=None, help="CSV file."
)
@_NETWORK
def derive(
    files: tuple[Path, ...], station_id: int, out: Path | None, network_file: Path | None
) -> None:
    """Hourly derived table of a station from ERA5 FILES on disk, as CSV.

    Columns: time (UTC, instantaneous values at the hour), temp_ground_c [degC],
    surface_pressure_hpa [hPa], temp_100hpa_c [degC], height_100hpa_m [m], t_mw_k [K],
    t_eff_k [K] (empty without a complete profile), expver, source_file.
    """
    from services.reanalysis.service import derive_files

    station = _station(network_file, station_id)
    with _clear_errors():
        _write_csv(derive_files(sorted(files), station), out)


def _day(value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from None


@era5.command()
@click.option("--station", "station_id", type=int, required=True, help="Station id.")
@click.option("--start", required=True, help="First day, YYYY-MM-DD (UTC).")
@click.option("--end", required=True, help="Last day, YYYY-MM-DD (UTC), inclusive.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@_NETWORK
def fetch(station_id: int, start: str, end: str, out: Path, network_file: Path | None) -> None:
    """Download ERA5 for a station into OUT (needs CDS credentials).

    Requests are planned per day span (single and pressure levels), days newer than the ERA5T
    delay are left out, files already in OUT are not downloaded again.
    """
    from tqdm import tqdm

    from services.common.logging import redact_secrets
    from services.reanalysis.cds import NO_CREDENTIALS, make_fetcher
    from services.reanalysis.planner import plan_requests
    from services.reanalysis.settings import CdsSettings

    station = _station(network_file, station_id)
    if station.latitude is None or station.longitude is None:
        raise click.ClickException(f"station {station_id} has no coordinates")
    credentials = CdsSettings().credentials()
    redact_secrets([credentials.key] if credentials else [])
    fetcher = make_fetcher(credentials)
    if fetcher is None:
        raise click.ClickException(NO_CREDENTIALS)
    present = {p.name for p in out.glob("*")} if out.is_dir() else set()
    with _clear_errors():
        plan = plan_requests(
            station.id,
            station.latitude,
            station.longitude,
            _day(start),
            _day(end),
            datetime.now(UTC).date(),
            present=present,
        )
        for request in tqdm(plan, desc="CDS requests", unit="request"):
            click.echo(str(fetcher.fetch(request, out)))


@era5.command()
@click.argument("era5_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--station", "station_ids", type=int, multiple=True, help="Station id (repeatable).")
@click.option("--topic", default=None, help="Topic (default mingo.era5.hourly.v1).")
@_NETWORK
def publish(
    era5_dir: Path, station_ids: tuple[int, ...], topic: str | None, network_file: Path | None
) -> None:
    """Publish the hours of the files in ERA5_DIR/mingo0S/ to Kafka once, then exit.

    Only new or changed hours are published (final ERA5 replaces ERA5T as a new revision);
    Kafka from MINGO_KAFKA_*.
    """
    from dataclasses import replace

    from services.common.logging import redact_secrets
    from services.common.runtime import RunBounds, StopFlag
    from services.reanalysis.service import run_reanalysis
    from services.reanalysis.settings import ReanalysisSettings

    settings = ReanalysisSettings(era5_dir=era5_dir)
    redact_secrets(settings.secret_values())
    with _clear_errors():
        network = load_network(network_file or settings.network_file)
        stations = (
            [network.station(s) for s in station_ids] if station_ids else settings.stations(network)
        )
    options = replace(settings.options(), fetch_start=None)
    if topic:
        options = replace(options, topic=topic)
    run_reanalysis(
        stations, settings.kafka, options, StopFlag(), None, RunBounds(stop_when_idle=True)
    )
