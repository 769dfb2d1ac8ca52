"""``mingo simulate``: a realistic miniTRASGO station network on disk.

Only option parsing lives here; the work is done by :mod:`simulator.run` (batch) and
:mod:`simulator.live` (``--live``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from datetime import datetime
from pathlib import Path

import click
from tqdm import tqdm

from services.common.stations import DEFAULT_NETWORK_FILE, NetworkConfigError, load_network


def _tune_malloc() -> None:
    """Keep freed memory in the heap (glibc): the simulator allocates and frees tens of MB per
    station-hour, and returning them to the kernel makes every hour page-fault them back in (this
    halves the system time). A no-op elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        libc.mallopt(m_mmap_threshold, 256 << 20)
        libc.mallopt(m_trim_threshold, 1 << 30)
        libc.mallopt(m_top_pad, 64 << 20)
    except (OSError, AttributeError):
        pass


def _parse_stations(value: str) -> list[int]:
    try:
        ids = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected station ids like 1,2") from None
    if not ids:
        raise click.BadParameter("no station ids given")
    return list(dict.fromkeys(ids))  # each station once, in the order given


@click.command()
@click.option("--stations", required=True, help="Station ids from the network file, e.g. 1,2.")
@click.option("--start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First UTC day.")
@click.option("--days", default=1, show_default=True, type=click.IntRange(min=1), help="Days.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory.",
)
@click.option(
    "--rate-hz",
    default=8.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True, max=30),
    help="Accepted coincidence rate at reference conditions [Hz].",
)
@click.option(
    "--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed."
)
@click.option(
    "--beta", type=float, default=None, help="Barometric coefficient β [%/hPa] (default: config)."
)
@click.option(
    "--alpha-t",
    type=float,
    default=None,
    help="Temperature coefficient α_T [%/K] (default: config).",
)
@click.option(
    "--damage",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 0.5, max_open=True),
    help="Fraction of damaged event lines; > 0 also injects file, archive and log damage.",
)
@click.option(
    "--scenario",
    "scenario_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="YAML file of injected events (Forbush decrease, barometer step, HV trip, gas flow "
    "failure, data gap; simulator/README.md).",
)
@click.option("--live", is_flag=True, help="Write files as (scaled) time passes, for demos.")
@click.option(
    "--speed",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="--live: simulated seconds per wall-clock second.",
)
@click.option(
    "--network",
    "network_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Network file (default: config/stations.yaml).",
)
@click.option(
    "--workers", default=0, show_default=True, type=click.IntRange(min=0), help="Threads (0: CPUs)."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate(
    stations: str,
    start: datetime,
    days: int,
    out: Path,
    rate_hz: float,
    seed: int,
    beta: float | None,
    alpha_t: float | None,
    damage: float,
    scenario_file: Path | None,
    live: bool,
    speed: float,
    network_file: Path | None,
    workers: int,
    quiet: bool,
) -> None:
    """Simulate stations: hourly .dat files, daily archives, slow-control logs, logbook, ERA5
    NetCDF files and the truth (truth.json), under OUT."""
    from simulator.run import OutputDirectoryError, SimulationRequest, run_batch
    from simulator.scenario import ScenarioError, load_scenario

    _tune_malloc()
    try:
        network = load_network(network_file or DEFAULT_NETWORK_FILE)
        selected = tuple(network.station(i) for i in _parse_stations(stations))
        scenario = load_scenario(scenario_file) if scenario_file is not None else None
    except (NetworkConfigError, KeyError, ScenarioError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    try:
        request = SimulationRequest(
            out=out,
            stations=selected,
            start=start.date(),
            days=days,
            seed=seed,
            rate_hz=rate_hz,
            beta_pct_per_hpa=beta,
            alpha_t_pct_per_k=alpha_t,
            damage=damage,
            workers=workers,
            scenario=scenario,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        if live:
            from simulator.live import run_live

            start_s, total = request.start_s, days * 86400
            with tqdm(total=total, unit="sim-s", desc="live", disable=quiet) as bar:

                def tick(now_s: int) -> None:
                    bar.update(max(0, min(now_s - start_s, total) - int(bar.n)))

                run_live(request, speed=speed, progress=False, on_tick=tick)
            return
        with tqdm(
            total=len(selected) * days * 24, unit="station-hour", desc="simulate", disable=quiet
        ) as bar:
            truth = run_batch(request, on_file=bar.update)
    except (OutputDirectoryError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for sid, entry in truth["stations"].items():
        totals = entry["totals"]
        logging.getLogger(__name__).info(
            "station %s: %d valid coincidence events, %d damaged lines",
            sid,
            totals["valid_events"]["1"],
            totals["damaged_lines"],
        )
    click.echo(
        f"wrote {len(selected)} station(s) x {days} day(s) to {out} (truth: {out / 'truth.json'})",
        err=True,
    )


if __name__ == "__main__":
    simulate()
