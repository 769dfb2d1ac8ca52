"""``mingo alerts`` (list) and ``mingo alerts-service`` (run the detectors on the stream)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from services.common.cli_options import network_option
from services.common.stations import DEFAULT_NETWORK_FILE, NetworkConfigError, load_network

if TYPE_CHECKING:
    from schemas.models import Alert


@click.command("alerts")
@click.option("--station", type=int, default=None, help="Only this station (and network ones).")
@click.option("--open", "only_open", is_flag=True, help="Only alerts still ongoing.")
@click.option(
    "--input",
    "input_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Run the detectors on the unified daily files of this folder (mingo process --output) "
    "instead of reading mingo.alerts.v1; needs --start and --end.",
)
@click.option("--start", default=None, help="With --input: first UTC day (YYYY-MM-DD).")
@click.option("--end", default=None, help="With --input: UTC day after the last (YYYY-MM-DD).")
@network_option(DEFAULT_NETWORK_FILE, "Network file (per-station bands, with --input).")
def alerts(
    station: int | None,
    only_open: bool,
    input_dir: Path | None,
    start: str | None,
    end: str | None,
    network_file: Path,
) -> None:
    """List the alerts on mingo.alerts.v1 (newest state of each), oldest first; or, with
    --input, the alerts the detectors find in unified daily files."""
    if input_dir is not None:
        if start is None or end is None:
            raise click.UsageError("--input needs --start and --end")
        found = _detect_in_files(input_dir, station, start, end, network_file)
    else:
        from services.alerts.service import latest_alerts
        from services.alerts.settings import AlertsSettings
        from services.common.kafka import read_all

        settings = AlertsSettings()
        found = latest_alerts(list(read_all(settings.kafka, settings.alerts_topic)))
    shown = 0
    for alert in found:
        if station is not None and alert.station not in (None, station):
            continue
        if only_open and alert.end is not None:
            continue
        end_text = alert.end.strftime("%Y-%m-%d %H:%M") if alert.end else "ongoing"
        who = "network" if alert.station is None else f"station {alert.station}"
        click.echo(
            f"{alert.start:%Y-%m-%d %H:%M} → {end_text:16s} {alert.severity:8s} {who:10s} "
            f"{alert.kind:20s} {alert.message}"
        )
        shown += 1
    click.echo(f"{shown} alerts", err=True)


def _detect_in_files(
    input_dir: Path, station: int | None, start: str, end: str, network_file: Path
) -> list[Alert]:
    """Station and network detectors on the unified daily files, with the stations' bands."""
    import pandas as pd

    from services.alerts.detectors import AlertSettings, detect_forbush, detect_station
    from services.sink.files import read_range

    try:
        t0, t1 = (pd.Timestamp(text, tz="UTC").to_pydatetime() for text in (start, end))
        network = load_network(network_file)
    except (ValueError, NetworkConfigError) as exc:
        raise click.BadParameter(str(exc)) from None
    ids = (
        [station]
        if station is not None
        else sorted(
            int(p.name[len("mingo0") :]) for p in input_dir.glob("mingo0[0-9]") if p.is_dir()
        )
    )
    frames = {s: read_range(input_dir, s, t0, t1) for s in ids}
    found: list[Alert] = []
    for s, frame in frames.items():
        try:
            settings = AlertSettings().for_station(network.station(s).alerts)
        except KeyError:
            settings = AlertSettings()
        found += detect_station(s, frame, settings)
    found += detect_forbush(frames)
    return sorted(found, key=lambda a: (a.start, a.alert_id))


@click.command("alerts-service")
@click.option("--once", is_flag=True, help="Process what is on the topic now, then stop.")
def alerts_service(once: bool) -> None:
    """Run the anomaly detectors on mingo.unified.minute.v1 → mingo.alerts.v1 and InfluxDB."""
    from services.alerts.service import run_alerts
    from services.alerts.settings import AlertsSettings
    from services.common.logging import configure_logging
    from services.common.runtime import RunBounds, StopFlag, install_signal_handlers
    from services.sink.influx import InfluxWriteError
    from services.sink.service import make_writer

    settings = AlertsSettings()
    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    stop = StopFlag()
    install_signal_handlers(stop)
    try:
        writer = make_writer(
            settings.influx_target(), create_database=settings.influx_create_database
        )
    except InfluxWriteError as exc:
        raise click.ClickException(str(exc)) from None
    bounds = RunBounds(stop_when_idle=True) if once else None
    try:
        service = run_alerts(settings.kafka, writer, settings.alerts_options(), stop, bounds)
    finally:
        writer.close()
    click.echo(f"emitted {service.alerts_emitted} alerts")
