"""``mingo simulate``: a realistic miniTRASGO station network on disk (work in progress)."""

from __future__ import annotations

import click


@click.command()
def simulate() -> None:
    """Simulate stations: .dat files, logs, logbook, ERA5 NetCDF and truth (being written)."""
    raise click.ClickException("mingo simulate is not implemented yet")


if __name__ == "__main__":
    simulate()
