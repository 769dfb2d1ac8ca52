"""Benchmark: unified minutes per second of the unify service's stateful step, in process.

One synthetic station-day is turned (no Kafka) into the input messages the service consumes:
25 ERA5 hours (published beforehand, as in ``bench/bench_e2e.py``), then 1440 minute records and
the day's log readings (the cadences of :data:`schemas.station_logs.LOG_TYPES`, 960 readings) in
time order. They go through :meth:`services.unify.service.Unifier.process` (and ``flush`` every
``--batch`` messages, as the service does once per checkpoint) with a dict store that
keeps values as JSON bytes, as the Quix state store does (``orjson``). The figure is the 1440
minutes of the day over the wall time of the whole feed (each of ``--repeat`` runs), with the rows
emitted and, with ``--profile``, the top of a cProfile of one run.

    python bench/bench_unify.py [--repeat 3] [--batch 1 100 1000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from schemas.models import Era5Hour, LogReading
from schemas.station_logs import LOG_TYPES
from schemas.topics import ERA5_HOURLY, LOGS_RAW, RATES_MINUTE
from services.common.stations import load_network
from services.unify.service import Unifier, UnifyOptions
from tests.unify_records import T0 as DAY
from tests.unify_records import JsonStore, minute_rates

STATION = 1


def _reading(source: str, names: list[str], t: datetime, line: int, rng: random.Random) -> Any:
    values = {name: (940.0 if "pressure" in name else 10.0) + rng.uniform(-1, 1) for name in names}
    name = f"{source}_{t:%Y-%m-%d}.log"
    return LogReading(
        station=STATION,
        source=source,
        time=t,
        values=values,
        units=dict.fromkeys(names, "x"),
        out_of_range=[],
        source_file=name,
        line=line,
        reading_id=f"{STATION}/{name}/{line}",
    )


def _hour(hour: int) -> Era5Hour:
    return Era5Hour(
        station=STATION,
        time=DAY + timedelta(hours=hour),
        temp_ground_c=5.0,
        surface_pressure_hpa=935.0,
        temp_100hpa_c=-55.0,
        height_100hpa_m=16000.0,
        t_eff_k=220.0,
        expver="0001",
        revision=0,
        source_file="era5.nc",
    )


def station_day(seed: int = 1) -> list[tuple[str, bytes]]:
    """The input messages of one station-day: (topic, JSON value), in arrival order."""
    rng = random.Random(seed)
    timed: list[tuple[float, str, bytes]] = []
    for record in minute_rates(range(1440), rng):
        timed.append((record.time.timestamp() + 60, RATES_MINUTE.name, record.to_json_bytes()))
    for log_type in LOG_TYPES:
        names = [column.name for column in log_type.columns]
        for line, start in enumerate(range(0, 86400, log_type.cadence_s), start=1):
            t = DAY + timedelta(seconds=start + rng.uniform(0, 4))
            reading = _reading(log_type.source, names, t, line, rng)
            timed.append((t.timestamp(), LOGS_RAW.name, reading.to_json_bytes()))
    timed.sort(key=lambda item: item[0])
    era5 = [(ERA5_HOURLY.name, _hour(h).to_json_bytes()) for h in range(25)]
    return era5 + [(topic, value) for _, topic, value in timed]


def run(messages: list[tuple[str, bytes]], batch: int) -> tuple[float, int]:
    """Feed the messages to a fresh Unifier, flushing every ``batch`` messages (as the service
    does once per checkpoint); (wall time [s], rows emitted)."""
    unifier = Unifier(load_network(), UnifyOptions(instance="bench"))
    store = JsonStore()
    key = str(STATION)
    start = time.perf_counter()
    for i, (topic, value) in enumerate(messages, start=1):
        unifier.process((topic, value), key, store)
        if i % batch == 0:
            unifier.flush()
    unifier.flush()
    return time.perf_counter() - start, unifier.rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=[1, 100, 1000],
        help="messages per flush (the service: per checkpoint); 1 = per record",
    )
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run")
    args = parser.parse_args()
    messages = station_day()
    print(f"load average {os.getloadavg()[0]:.1f}; {len(messages)} messages")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(messages, args.batch[-1])
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        return
    for _ in range(args.repeat):
        for batch in args.batch:  # interleaved, so the load affects every batch size alike
            seconds, rows = run(messages, batch)
            print(
                f"batch {batch:5d}: {seconds:.2f} s, {1440 / seconds:.0f} unified minutes/s, "
                f"{rows} rows emitted (load {os.getloadavg()[0]:.1f})"
            )


if __name__ == "__main__":
    main()
