"""The ``mingo`` command line."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click
from pydantic import ValidationError

from infra.cli import infra
from services.alerts.cli import alerts, alerts_service
from services.common.inspect import TopicSummary
from services.common.logging import configure_logging, redact_secrets
from services.common.settings import KafkaSettings, ServiceSettings
from services.fit.cli import fit
from services.reanalysis.cli import era5
from services.reconstruct.cli import reconstruct, reconstruct_service
from services.sink.cli import api, sink
from services.unify.cli import process, unify_service
from simulator.cli import simulate


@click.group()
@click.option("--log-level", default="WARNING", show_default=True, help="Logging level.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def main(log_level: str, log_format: str) -> None:
    """mingo-dataflow: the streaming dataflow of the miniTRASGO cosmic-ray network."""
    configure_logging(log_level.upper(), log_format)
    # Every command may talk to Kafka: its password is redacted from the start. Commands with
    # more secrets add theirs; invalid settings are reported by the command that reads them.
    with contextlib.suppress(ValidationError):
        redact_secrets(ServiceSettings().secret_values())


main.add_command(infra)
main.add_command(simulate)
main.add_command(era5)
main.add_command(reconstruct)
main.add_command(reconstruct_service)
main.add_command(sink)
main.add_command(api)
main.add_command(process)
main.add_command(unify_service)
main.add_command(fit)
main.add_command(alerts)
main.add_command(alerts_service)


@main.group()
def topics() -> None:
    """Create and inspect the project's Kafka topics (MINGO_KAFKA_BOOTSTRAP)."""


@topics.command("create")
def topics_create() -> None:
    """Create every topic of the registry with explicit partitions and configs."""
    from services.common.kafka import create_topics, make_admin

    kafka = KafkaSettings()
    for name, state in create_topics(make_admin(kafka)).items():
        click.echo(f"{name}: {state}")


@topics.command("reset")
@click.confirmation_option(prompt="Delete every mingo topic and its data, then recreate them?")
def topics_reset() -> None:
    """Delete and recreate every topic of the registry (development clusters only)."""
    from schemas.topics import TOPICS
    from services.common.kafka import create_topics, delete_topics, make_admin

    admin = make_admin(KafkaSettings())
    deleted = delete_topics(admin, [t.name for t in TOPICS])
    click.echo(f"deleted {len(deleted)} topics")
    for name, state in create_topics(admin).items():
        click.echo(f"{name}: {state}")


@topics.command("summary")
def topics_summary() -> None:
    """Count the committed messages in every topic, per station."""
    from services.common.inspect import summarise_topics

    _print_summaries(summarise_topics(KafkaSettings()))


def _print_summaries(summaries: list[TopicSummary]) -> None:
    for summary in summaries:
        stations = ", ".join(f"{k or '-'}: {v}" for k, v in sorted(summary.by_station.items()))
        click.echo(f"{summary.topic:28s} {summary.messages:7d} messages  ({stations})")
        for label, counts in sorted(summary.detail.items()):
            items = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            click.echo(f"{'':30s}{label}: {items}")
        if summary.example:
            click.echo(f"{'':30s}e.g. {summary.example[:160]}...")


@main.command()
def status() -> None:
    """Every station and source: newest data, lag, lines and rejects, last error; services."""
    from datetime import UTC, datetime

    from schemas.models import PipelineStatus
    from schemas.topics import STATUS
    from services.common.health import render_health, summarise_status
    from services.common.kafka import read_all

    records = (
        PipelineStatus.model_validate_json(m.value())
        for m in read_all(KafkaSettings(), STATUS.name)
    )
    for line in render_health(summarise_status(records), datetime.now(UTC)):
        click.echo(line)


@main.command()
@click.option("--network", "network_file", type=click.Path(path_type=Path), default=None)
@click.option("--once", is_flag=True, help="Publish what is there now, then stop.")
def ingest(network_file: Path | None, once: bool) -> None:
    """Run the ingest service (settings from MINGO_* variables)."""
    from services.common.runtime import RunBounds, StopFlag, install_signal_handlers
    from services.common.stations import load_network
    from services.ingest.service import run_ingest
    from services.ingest.settings import IngestSettings

    settings = IngestSettings()
    redact_secrets(settings.secret_values())
    stop = StopFlag()
    install_signal_handlers(stop)
    network = load_network(network_file or settings.network_file)
    done = run_ingest(
        settings.stations(network),
        settings.kafka,
        settings.options(),
        stop,
        RunBounds(stop_when_idle=once),
    )
    click.echo(f"units published per station: {done}")


@main.command()
@click.option("--stations", default="1,2", show_default=True, help="Station ids to simulate.")
@click.option("--start", default="2024-03-01", show_default=True, help="First UTC day.")
@click.option(
    "--hours",
    type=click.FloatRange(min=1),
    default=None,
    help="Simulated hours from --start (default 12); a whole day took 4.5 min on 2 busy cores.",
)
@click.option(
    "--days", type=click.IntRange(min=1), default=None, help="Whole simulated days instead."
)
@click.option("--rate", "rate_hz", default=8.0, show_default=True, type=float, help="Rate [Hz].")
@click.option(
    "--speed",
    default=1200.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Simulated seconds per second (1200: a day in 72 s).",
)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--damage", default=0.001, show_default=True, type=float, help="Damaged lines.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Output folder (replaced).",
)
@click.option("--keep-broker", is_flag=True, help="Leave tansu running to inspect the topics.")
def demo(
    stations: str, start: str, hours: float | None, days: int | None, rate_hz: float,
    speed: float, seed: int, damage: float, out: Path, keep_broker: bool,
) -> None:  # fmt: skip
    """Simulate stations live and run all five services: unified files, InfluxDB, a plot."""
    import math
    import shutil
    from datetime import date

    from services.common.stations import load_network
    from services.demo import DEFAULT_HOURS, DemoRequest, run_demo

    if days is not None and hours is not None:
        raise click.UsageError("give --hours or --days, not both")
    if days is None:
        hours = hours or DEFAULT_HOURS
        days = math.ceil(hours / 24)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    request = DemoRequest(
        stations=[int(s) for s in stations.split(",")], start=date.fromisoformat(start),
        days=days, hours=hours, rate_hz=rate_hz, speed=speed, seed=seed, damage=damage,
        out=out.resolve(),
    )  # fmt: skip
    result = run_demo(
        load_network(),
        request,
        on_progress=lambda text: click.echo(f"==> {text}", err=True),
        keep_broker=keep_broker,
    )
    click.echo(
        f"\nWhat landed in which topic ({result.backend.name} on {result.backend.kafka.bootstrap}):"
    )
    _print_summaries(result.summaries)
    click.echo("\nWhat the simulator wrote (truth.json):")
    for station, entry in sorted(result.truth["stations"].items()):
        totals = entry["totals"]
        click.echo(
            f"  station {station}: valid events coincidence {totals['valid_events']['1']}, "
            f"self-trigger {totals['valid_events']['2']}; damaged lines "
            f"{totals['damaged_lines']}; corrupt archives {len(entry['corrupt_archives'])}"
        )
    click.echo(f"\nThe unified table ({request.out / 'unified'}):")
    for station in request.stations:
        points = result.influx_points.get(station)
        influx = "" if points is None else f", InfluxDB points {points}"
        click.echo(f"  station {station}: minutes {result.rows.get(station, 0)}{influx}")
    for path in result.files:
        click.echo(f"  {path}")
    if result.plot is not None:
        click.echo(f"\nPlot (raw and corrected rate with pressure): {result.plot}")
    click.echo(f"Everything is in {request.out} (stations/, unified/, logs/, rates.png)")
    click.echo(f"Browse it: mingo api --out {request.out / 'unified'}")


if __name__ == "__main__":
    main()
