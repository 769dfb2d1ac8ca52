"""``mingo alerts`` (list) and ``mingo alerts-service`` (run the detectors on the stream)."""

from __future__ import annotations

import click


@click.command("alerts")
@click.option("--station", type=int, default=None, help="Only this station (and network ones).")
@click.option("--open", "only_open", is_flag=True, help="Only alerts still ongoing.")
def alerts(station: int | None, only_open: bool) -> None:
    """List the alerts on mingo.alerts.v1 (newest state of each), oldest first."""
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
        end = alert.end.strftime("%Y-%m-%d %H:%M") if alert.end else "ongoing"
        who = "network" if alert.station is None else f"station {alert.station}"
        click.echo(
            f"{alert.start:%Y-%m-%d %H:%M} → {end:16s} {alert.severity:8s} {who:10s} "
            f"{alert.kind:20s} {alert.message}"
        )
        shown += 1
    click.echo(f"{shown} alerts", err=True)


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
