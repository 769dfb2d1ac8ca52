"""Benchmark of ``mingo simulate``: events per second end to end, text included.

Runs the batch simulator (the same code as ``mingo simulate``) into a temporary directory and
reports wall time, CPU time, events and bytes written; then the line formatter alone (numba kernel
against the plain-Python reference on the same seeded events). The machine may be shared: the load
average before and after is printed, and CPU seconds are the fairer per-core figure.

    python bench/bench_simulator.py                      # 2 stations x 1 day at 8 Hz, damage 0.001
    python bench/bench_simulator.py --stations 1 --days 2 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.stations import load_network
from simulator.cli import _tune_malloc
from simulator.formatting import format_event_lines, format_event_lines_reference
from simulator.run import SimulationRequest, run_batch


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine() -> str:
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def bench_end_to_end(args: argparse.Namespace) -> None:
    network = load_network()
    stations = tuple(network.station(int(s)) for s in args.stations.split(","))
    base = Path(tempfile.mkdtemp(prefix="bench_sim_", dir=args.tmp))
    try:
        # warm-up: numba kernels compiled and cached, imports done
        warm = SimulationRequest(
            out=base / "warm", stations=stations[:1], start=date(2024, 3, 1), rate_hz=0.05,
            acceptance_samples=10_000,
        )  # fmt: skip
        run_batch(warm)
        for repeat in range(args.repeat):
            out = base / f"run{repeat}"
            request = SimulationRequest(
                out=out,
                stations=stations,
                start=date(2024, 3, 1),
                days=args.days,
                seed=repeat + 1,
                rate_hz=args.rate_hz,
                damage=args.damage,
                workers=args.workers,
            )
            load = os.getloadavg()[0]
            wall, cpu = time.perf_counter(), _cpu()
            truth = run_batch(request)
            wall, cpu = time.perf_counter() - wall, _cpu() - cpu
            events = sum(
                sum(f["events"] for f in e["files"].values()) for e in truth["stations"].values()
            )
            size = sum(p.stat().st_size for p in out.rglob("*.dat*"))
            print(
                f"in process: {len(stations)} station(s) x {args.days} day(s) "
                f"at {args.rate_hz} Hz, "
                f"workers {args.workers or os.cpu_count()}: {events} events, "
                f"{size / 1e6:.0f} MB of .dat/.tar.gz in {wall:.2f} s wall, {cpu:.2f} s CPU -> "
                f"{events / wall / 1e3:.0f} k events/s wall, "
                f"{events / cpu / 1e3:.0f} k events/CPU-s "
                f"(load before {load:.2f}, after {os.getloadavg()[0]:.2f})"
            )
            shutil.rmtree(out)
        # the command itself, process start, imports and numba cache loading included
        out = base / "cli"
        command = [
            sys.executable, "-m", "simulator.cli", "--stations", args.stations,
            "--start", "2024-03-01", "--days", str(args.days), "--out", str(out),
            "--rate-hz", str(args.rate_hz), "--damage", str(args.damage), "--seed", "1",
            "--workers", str(args.workers), "--quiet",
        ]  # fmt: skip
        load = os.getloadavg()[0]
        wall = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[1])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter() - wall
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        truth = json.loads((out / "truth.json").read_text())
        events = sum(
            sum(f["events"] for f in e["files"].values()) for e in truth["stations"].values()
        )
        print(
            f"command: {' '.join(command[1:])}\n  {events} events in {wall:.2f} s wall, "
            f"{cpu:.2f} s CPU -> {events / wall / 1e3:.0f} k events/s wall, "
            f"{events / cpu / 1e3:.0f} k events/CPU-s "
            f"(load before {load:.2f}, after {os.getloadavg()[0]:.2f})"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def bench_formatter(n: int) -> None:
    rng = np.random.default_rng(1)
    epoch = np.sort(rng.integers(1709251200, 1709251200 + 3600, n))
    trigger = np.ones(n, np.int64)
    ticks = np.zeros((n, 64), np.int64)
    mask = rng.random((n, 64)) < 0.3
    ticks[mask] = rng.integers(-1_300_000, 3_000_000, int(mask.sum()))
    format_event_lines(epoch[:10], trigger[:10], ticks[:10], reuse=True)
    best = min(
        _timed(lambda: format_event_lines(epoch, trigger, ticks, reuse=True)) for _ in range(5)
    )
    buf, _ = format_event_lines(epoch, trigger, ticks)
    k = min(n, 20_000)
    ref = _timed(lambda: format_event_lines_reference(epoch[:k], trigger[:k], ticks[:k])) * n / k
    print(
        f"formatter: {n} lines, {buf.nbytes / 1e6:.1f} MB: numba {best * 1e3:.0f} ms "
        f"({buf.nbytes / best / 1e6:.0f} MB/s, {n / best / 1e6:.2f} M lines/s); "
        f"Python reference {ref:.1f} s (extrapolated from {k} lines), x{ref / best:.0f}"
    )


def _timed(func: Callable[[], object]) -> float:
    t = time.perf_counter()
    func()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", default="1,2")
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--rate-hz", type=float, default=8.0)
    parser.add_argument("--damage", type=float, default=0.001)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--format-lines", type=int, default=200_000)
    parser.add_argument(
        "--tmp", default=None, help="Directory for the output (default: system temp)."
    )
    args = parser.parse_args()
    _tune_malloc()
    print(f"machine: {_machine()}; numpy {np.__version__}")
    bench_formatter(args.format_lines)
    bench_end_to_end(args)


if __name__ == "__main__":
    main()
