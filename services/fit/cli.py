"""``mingo fit``: atmospheric coefficients of a station from the unified table."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
import pandas as pd

from services.common.cli_options import network_option
from services.common.coefficients import next_version, write_record
from services.common.stations import DEFAULT_NETWORK_FILE, NetworkConfigError, load_network
from services.fit.model import METHODS, FitResult, Method, Window, alert_windows, fit_all
from services.fit.records import build_record


def _day(text: str) -> datetime:
    stamp = pd.Timestamp(text)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def _format(result: FitResult) -> str:
    terms = "".join(
        f"  {name} = {value:+.4f} ± {result.errors[name]:.4f}"
        for name, value in result.coefficients.items()
    )
    return (
        f"{result.column:8s} β = {result.beta:+.4f} ± {result.beta_err:.4f} %/hPa{terms}"
        f"  I0 = {result.i0_hz:.4f} Hz  χ²/ndf = {result.chi2:.1f}/{result.ndf}"
        f" = {result.chi2_ndf:.2f}  hours {result.hours_used} used,"
        f" {result.hours_excluded} excluded"
    )


@click.command("fit")
@click.option("--station", type=int, required=True, help="Station id.")
@click.option("--start", required=True, help="First day (or date-time) of the span, UTC.")
@click.option("--end", required=True, help="End of the span (exclusive), UTC.")
@click.option("--exclude", multiple=True, help="START/END window kept out of the fit (repeatable).")
@click.option(
    "--method", type=click.Choice(METHODS), default="teff", show_default=True, help="Model."
)
@click.option(
    "--source",
    type=click.Choice(["files", "influx"]),
    default="files",
    show_default=True,
    help="files: the sink's daily files under --input; influx: InfluxDB (MINGO_INFLUX_*).",
)
@click.option(
    "--input",
    "input_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Root of the unified daily files (mingo process --output, the sink's folder).",
)
@click.option(
    "--exclude-alerts",
    is_flag=True,
    help="Also keep out the periods the station's anomaly detectors flag (docs/alerts.md).",
)
@click.option("--write", is_flag=True, help="Store the result as a new coefficients record.")
@click.option(
    "--publish",
    is_flag=True,
    help="With --write: also produce the record to mingo.coefficients.v1 (MINGO_KAFKA_*).",
)
@click.option(
    "--topic",
    default="mingo.coefficients.v1",
    show_default=True,
    help="Topic of --publish.",
)
@click.option(
    "--records",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("coefficients"),
    show_default=True,
    help="Folder of the coefficients records (mingo0<S>/coefficients_v<N>.json).",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Figure of the total-rate fit. Default: fit_mingo0<S>_<method>.png here.",
)
@network_option(DEFAULT_NETWORK_FILE, "Network file.")
def fit(
    station: int,
    start: str,
    end: str,
    exclude: tuple[str, ...],
    exclude_alerts: bool,
    method: Method,
    source: str,
    input_dir: Path,
    write: bool,
    publish: bool,
    topic: str,
    records: Path,
    png: Path | None,
    network_file: Path,
) -> None:
    """Fit β (with P0 fixed) and the temperature coefficients on hourly aggregates, per rate
    column (total and each angular region), with standard errors and χ²/ndf."""
    from services.fit.plot import plot_fit

    try:
        config = load_network(network_file).station(station)
    except (KeyError, NetworkConfigError) as exc:
        raise click.BadParameter(str(exc), param_hint="--station") from None
    try:
        windows = [Window.parse(text) for text in exclude]
        t0, t1 = _day(start), _day(end)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if t1 <= t0:
        raise click.BadParameter("--end must be after --start")
    if source == "files":
        from services.fit.sources import read_files

        frame = read_files(input_dir, station, t0, t1)
    else:
        from services.fit.sources import read_influx
        from services.sink.settings import SinkSettings

        frame = read_influx(SinkSettings().influx_target(), station, t0, t1)
    if frame.empty:
        raise click.ClickException(f"no unified rows of station {station} in [{start}, {end})")
    if exclude_alerts:
        from services.alerts.detectors import AlertSettings, detect_station

        flagged = detect_station(station, frame, AlertSettings().for_station(config.alerts))
        for alert in flagged:
            click.echo(f"excluded: {alert.kind} {alert.start:%Y-%m-%d %H:%M} {alert.message}")
        windows += alert_windows(flagged, pd.Timestamp(t1))
    atm = config.atmosphere
    hours, results = fit_all(frame, method, atm.p0_hpa, atm.teff_ref_k, windows)
    for result in results.values():
        click.echo(_format(result) if isinstance(result, FitResult) else f"failed: {result}")
    total = results["total"]
    if not isinstance(total, FitResult):
        raise click.ClickException(f"the total rate could not be fitted: {total}")
    figure = png or Path(f"fit_mingo0{station}_{method}.png")
    plot_fit(total, hours, figure, station, windows)
    click.echo(f"figure: {figure}")
    if write:
        record = build_record(
            station,
            next_version(records, station),
            datetime.now(UTC),
            method,
            t0,
            t1,
            windows,
            results,
        )
        click.echo(f"record: {write_record(records, record)}")
        if publish:
            from schemas.topics import station_key
            from services.common.kafka import make_producer
            from services.common.settings import KafkaSettings

            producer = make_producer(KafkaSettings())
            producer.produce(topic, key=station_key(station), value=record.to_json_bytes())
            if producer.flush(30):
                raise click.ClickException(f"the record was not delivered to {topic}")
            click.echo(f"published to {topic}")
