"""Benchmark of ``mingo process``: one station-day of ``.dat`` text to the unified table, 1 core.

1. Data: ``mingo simulate`` of station 1 for one day at ``--rate`` Hz (8 Hz: about 700 000
   events in 24 hourly ``.dat`` files, with the day's logs and ERA5 files).
2. End to end: the ``process`` command (in process, through click), pinned to one CPU
   (``sched_setaffinity``) with numba limited to one thread; a first run compiles or loads the
   numba kernels, then the best of ``--repeat`` runs into fresh output folders is reported.
3. Breakdown, on the same files, stage by stage with the functions the command calls: parse
   (read + ``read_file_events``: ``parse_dat`` and the file-span rule), reconstruct
   (``reconstruct_files`` + ``rates_rows``: calibration, kernels, minute tallies), logs
   (``station_readings``), ERA5 (``station_hours``: decode + derive), join (``unify_frame`` +
   ``to_rows``), write (the daily CSV + Parquet files).

    python bench/bench_process.py                 # 1 day at 8 Hz, best of 3
    python bench/bench_process.py --rate 4 --repeat 1
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba is imported: one core

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from click.testing import CliRunner

from services.common.logbook import parse_logbook, z_positions_at
from services.common.stations import load_network
from services.reconstruct.pipeline import rates_rows, read_file_events, reconstruct_files
from services.sink.files import DailyFiles
from services.unify.cli import _Rejects, process, station_hours, station_readings
from services.unify.join import JoinSettings, to_rows, unify_frame
from simulator.run import SimulationRequest, run_batch

T = TypeVar("T")
STATION = 1


def _timed(what: str, times: dict[str, tuple[float, float]], fn: Callable[[], T]) -> T:
    """Run ``fn``; record (wall, CPU) seconds under ``what``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    times[what] = (time.perf_counter() - wall, time.process_time() - cpu)
    return result


def _command(sim: Path, out: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``mingo process`` run."""
    args = ["--input", str(sim), "--output", str(out), "--stations", str(STATION)]
    times: dict[str, tuple[float, float]] = {}
    result = _timed("run", times, lambda: CliRunner().invoke(process, args, catch_exceptions=False))
    assert result.exit_code == 0, result.output
    return times["run"]


def _breakdown(sim: Path, out: Path) -> tuple[dict[str, tuple[float, float]], dict[str, int]]:
    station = load_network().station(STATION)
    station_dir = sim / f"mingo0{STATION}"
    rejects = _Rejects(STATION)
    times: dict[str, tuple[float, float]] = {}
    paths = sorted((station_dir / "dat").glob("*.dat"))

    def parse() -> list[Any]:
        return [read_file_events(p.name, p.read_bytes())[0] for p in paths]

    files = _timed("parse", times, parse)
    entries, _ = parse_logbook((station_dir / "logbook.csv").read_text(), source="logbook.csv")

    def z_of_time(t: int) -> tuple[float, float, float, float]:
        return z_positions_at(entries, STATION, datetime.fromtimestamp(t, UTC))

    def reconstruct() -> list[dict[str, Any]]:
        results = reconstruct_files(
            STATION, iter(files), z_of_time, station.reconstruction, per_event=False
        )
        return rates_rows(STATION, results)

    rates = _timed("reconstruct", times, reconstruct)
    readings = _timed("logs", times, lambda: station_readings(station, station_dir, rejects))
    hours = _timed("era5", times, lambda: station_hours(station, sim / "era5", rejects))
    settings = JoinSettings()

    def join() -> list[Any]:
        frame = unify_frame(rates, readings, hours, station.atmosphere, settings)
        return to_rows(frame)

    rows = _timed("join", times, join)
    _timed("write", times, lambda: DailyFiles(out, parquet=True).write(rows))
    events = sum(len(f.time_s) for f in files)
    counts = {"events": events, "files": len(files), "minutes": len(rows)}
    counts |= {"readings": len(readings), "era5_hours": len(hours)}
    return times, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=8.0, help="Simulated rate. [Hz]")
    parser.add_argument("--repeat", type=int, default=3, help="Timed runs of the command.")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    print(
        f"pinned to CPU {cpu}; {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-process-") as tmp:
        sim = Path(tmp) / "sim"
        started = time.perf_counter()
        request = SimulationRequest(
            out=sim,
            stations=(load_network().station(STATION),),
            start=date(2024, 3, 1),
            seed=args.seed,
            rate_hz=args.rate,
            workers=1,
        )
        run_batch(request)
        size = sum(p.stat().st_size for p in (sim / f"mingo0{STATION}" / "dat").glob("*.dat"))
        print(f"simulated in {time.perf_counter() - started:.1f} s; .dat text {size / 1e6:.0f} MB")
        warm = _command(sim, Path(tmp) / "warm")
        print(f"first run (numba kernels compiled or loaded): {warm[0]:.2f} s wall")
        runs = [_command(sim, Path(tmp) / f"out{k}") for k in range(args.repeat)]
        wall, cpu = min(runs, key=lambda r: r[1])
        print(
            f"mingo process, one station-day, one core: {wall:.2f} s wall, {cpu:.2f} s CPU "
            f"(runs, wall/CPU: {', '.join(f'{w:.2f}/{c:.2f}' for w, c in runs)})"
        )
        times, counts = _breakdown(sim, Path(tmp) / "breakdown")
        print(", ".join(f"{k} {v}" for k, v in counts.items()))
        total = sum(c for _, c in times.values())
        for stage, (w, c) in times.items():
            print(f"  {stage:12} {w:6.2f} s wall {c:6.2f} s CPU  {100 * c / total:5.1f} % of CPU")
        print(f"  {'sum':12} {sum(w for w, _ in times.values()):6.2f} s wall {total:6.2f} s CPU")


if __name__ == "__main__":
    main()
