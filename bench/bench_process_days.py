"""Benchmark of ``mingo process`` (the whole computation, batch): events per second.

Simulates station-days with ``mingo simulate`` (not timed), then times a fresh ``mingo process``
process on them: parsing, reconstruction, logs, ERA5 and the join, daily CSV + Parquet files
written. Reports wall and CPU time, peak memory (max RSS of the process), events per second, and
the extrapolation to a station-year (365 days at the same rate, one process). The machine may be
shared: the load average before and after is printed; CPU seconds are the steadier figure.

    python bench/bench_process_days.py  # 1 station x 7 days at 8 Hz
    python bench/bench_process_days.py --days 2 --json  # machine-readable line for bench/report.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    """CPU model, CPU count, memory and Python version."""
    model = platform.processor() or "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} CPUs, {memory_gb:.0f} GB, Python {platform.python_version()}"


def report(figures: dict[str, object], as_json: bool) -> None:
    """Print the figures: one JSON line (for bench/report.py) or one aligned line each."""
    if as_json:
        print(json.dumps(figures))
        return
    width = max(map(len, figures)) + 1
    for key, value in figures.items():
        print(f"{key:{width}}: {value}")


def run(args: argparse.Namespace) -> dict[str, object]:
    """Simulate, then time ``mingo process``; returns the figures."""
    work = Path(tempfile.mkdtemp(prefix="bench_process_", dir=args.tmp))
    try:
        data, out = work / "data", work / "out"
        mingo = [sys.executable, "-m", "services.cli"]
        subprocess.run(
            [*mingo, "simulate", "--stations", args.station, "--start", args.start,
             "--days", str(args.days), "--rate-hz", str(args.rate_hz), "--seed", "3",
             "--damage", str(args.damage), "--out", str(data)],
            check=True, cwd=ROOT, capture_output=True,
        )  # fmt: skip
        truth = json.loads((data / "truth.json").read_text())
        totals = truth["stations"][args.station]["totals"]["valid_events"]
        events = sum(int(v) for v in totals.values())
        size = sum(p.stat().st_size for p in (data / f"mingo0{args.station}").rglob("*"))
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        process = subprocess.Popen(
            [*mingo, "process", "--input", str(data), "--output", str(out),
             "--stations", args.station],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _, status, usage = os.wait4(process.pid, 0)  # this child's own CPU time and peak RSS
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"mingo process failed with status {status}")
        rows = sum(1 for p in out.rglob("unified_*.csv") for _ in p.open()) - sum(
            1 for _ in out.rglob("unified_*.csv")
        )
        return {
            "benchmark": "mingo process",
            "command": "python " + " ".join(sys.argv),
            "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": machine(),
            "station_days": args.days,
            "events": events,
            "input_mb": round(size / 1e6),
            "rows": rows,
            "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "events_per_s": round(events / wall),
            "max_rss_mb": round(usage.ru_maxrss / 1024),
            "station_year_h": round(wall * 365 / args.days / 3600, 2),  # one process, same rate
            "load_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    """Run and print the figures (markdown-ready, or one JSON line with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--station", default="1", help="Station id.")
    parser.add_argument("--days", type=int, default=7, help="Station-days to process.")
    parser.add_argument("--start", default="2024-03-01", help="First day (UTC).")
    parser.add_argument("--rate-hz", type=float, default=8.0, help="Simulated accepted rate.")
    parser.add_argument(
        "--damage",
        type=float,
        default=0.0,
        help="Damaged-line fraction; > 0 also corrupts a whole archive (a day less to process).",
    )
    parser.add_argument("--tmp", default=None, help="Where to write the data (default: /tmp).")
    parser.add_argument("--keep", action="store_true", help="Keep the simulated data.")
    parser.add_argument("--json", action="store_true", help="Print one JSON line.")
    args = parser.parse_args()
    report(run(args), args.json)


if __name__ == "__main__":
    main()
