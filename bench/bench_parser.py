"""Throughput of the ``.dat`` parser on realistic content, against physical limits.

Run: ``python bench/bench_parser.py [--events 200000] [--repeat 5]``

The content imitates a station file (DOMAIN.md §3 and §8): one event per line, 6-10 Hz, about
three planes hit per event with times of -200..-100 ns and charges of 80-300 ns, zeros elsewhere,
printed ``%09.4f``; a line is about 660 bytes. The parser runs single-threaded, so the result is
per core. For scale the script also times, on the same bytes:

* a ``np.frombuffer(...).sum()`` pass: reading every byte once, vectorised;
* ``np.copyto`` of the bytes: memory bandwidth (read + write) of one core;
* ``wc -l``: the fastest text tool of the system, when available.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.ingest.dat_parser import parse_dat


def realistic_dat(n_events: int, seed: int = 1) -> bytes:
    """Bytes of a synthetic station file with ``n_events`` lines (a comment line first)."""
    rng = np.random.default_rng(seed)
    start = int(dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC).timestamp())
    times = start + np.cumsum(rng.exponential(1 / 8.0, n_events)).astype(np.int64)
    values = np.zeros((n_events, 64))
    for plane in range(4):
        hit = rng.random(n_events) < 0.8
        strip = rng.integers(0, 4, n_events)
        rows = np.flatnonzero(hit)
        base = plane * 16 + strip[rows]
        t = rng.uniform(-200, -100, rows.size)
        q = rng.uniform(80, 300, rows.size)
        values[rows, base] = t  # T front
        values[rows, base + 4] = t + rng.normal(0, 0.3, rows.size)  # T back
        values[rows, base + 8] = q  # Q front
        values[rows, base + 12] = q + rng.normal(0, 5, rows.size)  # Q back
    trigger = np.where(rng.random(n_events) < 0.01, 2, 1)
    stamps = times.astype("datetime64[s]").astype(str)
    lines = ["# param_hash=benchmark"]
    for i in range(n_events):
        d = stamps[i]
        head = f"{d[0:4]} {d[5:7]} {d[8:10]} {d[11:13]} {d[14:16]} {d[17:19]} {trigger[i]}"
        lines.append(head + " " + " ".join(f"{v:09.4f}" for v in values[i]))
    return ("\n".join(lines) + "\n").encode()


def best_seconds(func: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls (the least disturbed one)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return best


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or the platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def wc_seconds(data: bytes, repeat: int) -> float | None:
    """Best time of ``wc -l`` on the bytes written to a file (None without ``wc``)."""
    wc = shutil.which("wc")
    if wc is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".dat") as tmp:
        tmp.write(data)
        tmp.flush()
        subprocess.run([wc, "-l", tmp.name], check=True, capture_output=True)  # warm page cache
        return best_seconds(
            lambda: subprocess.run([wc, "-l", tmp.name], check=True, capture_output=True), repeat
        )


def main() -> None:
    """Run the benchmark and print a summary (markdown-ready)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="event lines in the file")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best counts")
    args = parser.parse_args()

    data = realistic_dat(args.events)
    size_mb = len(data) / 1e6
    t0 = time.perf_counter()
    result = parse_dat(data)  # first call: loads (or compiles) the kernels
    first = time.perf_counter() - t0
    if result.lines_valid != args.events or result.rejects:
        raise SystemExit(f"benchmark data did not parse cleanly: {result.rejects[:3]}")

    t_parse = best_seconds(lambda: parse_dat(data), args.repeat)
    buf = np.frombuffer(data, np.uint8)
    t_sum = best_seconds(lambda: buf.sum(dtype=np.uint64), args.repeat)
    dst = np.empty_like(buf)
    t_copy = best_seconds(lambda: np.copyto(dst, buf), args.repeat)
    t_wc = wc_seconds(data, args.repeat)

    print(f"machine   : {cpu_model()} ({platform.machine()}), Python {platform.python_version()}")
    print(f"date      : {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC")
    per_line = len(data) / args.events
    print(f"input     : {args.events} lines, {size_mb:.1f} MB, {per_line:.0f} B/line")
    print(f"first call: {first:.2f} s (kernel load or compile + parse)")
    print(
        f"parse_dat : {size_mb / t_parse:8.0f} MB/s  {args.events / t_parse / 1e6:6.2f} M lines/s"
    )
    print(f"sum pass  : {size_mb / t_sum:8.0f} MB/s  (np.frombuffer(...).sum())")
    print(f"copy      : {size_mb / t_copy:8.0f} MB/s  (np.copyto, read + write)")
    if t_wc is not None:
        print(f"wc -l     : {size_mb / t_wc:8.0f} MB/s  (includes process start)")


if __name__ == "__main__":
    main()
