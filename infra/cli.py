"""``mingo infra``: start, stop and inspect the local development servers.

Usage::

    mingo infra up                # kafka, influxdb, sshd (what the tests need)
    mingo infra up tansu          # the Java-free Kafka-protocol broker
    mingo infra status
    eval "$(mingo infra env)"     # MINGO_KAFKA_BOOTSTRAP, MINGO_INFLUX_URL, MINGO_SFTP_*, ...
    mingo infra down              # all of them

Until the ``mingo`` console script registers this group, run it as ``python -m infra.cli``.
"""

from __future__ import annotations

import logging
import sys

import click

from infra import manage

_NAMES = click.Choice(manage.ALL_SERVERS)


def _setup_logging(verbose: bool) -> None:
    # Progress goes to stderr, so `eval "$(mingo infra env)"` only ever sees export lines.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("infra: %(message)s"))
    logger = logging.getLogger("infra")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False


@click.group("infra")
@click.option("-v", "--verbose", is_flag=True, help="Also log the commands being run.")
def infra(verbose: bool) -> None:
    """Local Kafka, InfluxDB, sshd and tansu for development and tests (no Docker).

    State, logs and pid files live in $MINGO_STATE_DIR (default ./.state); the Kafka jars are
    cached in $MINGO_CACHE_DIR (default ~/.cache/mingo-dataflow).
    """
    _setup_logging(verbose)


@infra.command()
@click.argument("names", nargs=-1, type=_NAMES)
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="Seconds to wait for each server (default per server; Kafka 120).",
)
def up(names: tuple[str, ...], timeout: float | None) -> None:
    """Start NAMES (default: kafka influxdb sshd) and wait until they answer."""
    try:
        results = manage.up(names or None, timeout=timeout)
    except manage.InfraError as exc:
        raise click.ClickException(str(exc)) from exc
    for r in results:
        if r.started:
            click.echo(f"{r.name:9} started on {r.address} in {r.seconds:.1f} s (pid {r.pid})")
        else:
            click.echo(f"{r.name:9} already running on {r.address} (pid {r.pid})")


@infra.command()
@click.argument("names", nargs=-1, type=_NAMES)
def down(names: tuple[str, ...]) -> None:
    """Stop NAMES (default: all servers) and make sure no process is left."""
    try:
        stopped = manage.down(names or None)
    except manage.InfraError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@infra.command()
@click.argument("names", nargs=-1, type=_NAMES)
@click.option(
    "--check",
    is_flag=True,
    help="Exit with status 1 unless NAMES (default: kafka influxdb sshd) all run.",
)
def status(names: tuple[str, ...], check: bool) -> None:
    """Show each server (default: all): running or not, pid, address, log file."""
    statuses = [s for s in manage.status() if not names or s.name in names]
    for s in statuses:
        state = f"running (pid {s.pid})" if s.running else "stopped"
        click.echo(f"{s.name:9} {state:22} {s.address:24} {s.log_file}")
    required = set(names or manage.DEFAULT_SERVERS)
    if check and not all(s.running for s in statuses if s.name in required):
        sys.exit(1)


@infra.command()
def env() -> None:
    """Print `export` lines for the running servers: eval "$(mingo infra env)"."""
    lines = manage.env_exports()
    if not lines:
        click.echo("infra: no server is running; start them with `mingo infra up`", err=True)
        sys.exit(1)
    for line in lines:
        click.echo(line)


if __name__ == "__main__":
    infra()
