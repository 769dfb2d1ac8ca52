"""``mingo sink`` and ``mingo api``: the sink service and the HTTP API from the command line."""

from __future__ import annotations

from pathlib import Path

import click

_OUT = click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Root folder of the daily files (default MINGO_SINK_OUT_DIR).",
)


@click.command()
@_OUT
@click.option("--once", is_flag=True, help="Store what is on the topics now, then stop.")
def sink(out_dir: Path | None, once: bool) -> None:
    """Run the sink: unified minutes and status into InfluxDB and daily CSV/Parquet files."""
    from services.common.logging import configure_logging
    from services.common.runtime import RunBounds, StopFlag, install_signal_handlers
    from services.sink.files import DailyFiles
    from services.sink.influx import InfluxWriteError
    from services.sink.service import run_sink
    from services.sink.settings import SinkSettings

    settings = SinkSettings()
    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    stop = StopFlag()
    install_signal_handlers(stop)
    try:
        writer = settings.make_writer()
    except InfluxWriteError as exc:
        raise click.ClickException(str(exc)) from None
    files = DailyFiles(out_dir or settings.sink_out_dir, parquet=settings.sink_parquet)
    bounds = RunBounds(stop_when_idle=True) if once else None
    try:
        service = run_sink(settings.kafka, writer, files, settings.options(), stop, bounds)
    finally:
        if writer is not None:
            writer.close()
    click.echo(f"stored {service.rows_written} rows and {service.statuses_written} statuses")


@click.command()
@click.option("--host", default=None, help="Address to bind (default MINGO_API_HOST, loopback).")
@click.option("--port", type=int, default=None, help="TCP port (default MINGO_API_PORT, 8080).")
@_OUT
def api(host: str | None, port: int | None, out_dir: Path | None) -> None:
    """Serve the read-only HTTP API over the sink's files (OpenAPI at /docs)."""
    from services.sink.api import serve
    from services.sink.settings import ApiSettings

    settings = ApiSettings()
    updates: dict[str, object] = {"api_host": host, "api_port": port, "sink_out_dir": out_dir}
    serve(settings.model_copy(update={k: v for k, v in updates.items() if v is not None}))
