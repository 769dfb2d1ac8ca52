"""Benchmark: throughput and peak memory of every stage on 4 stations; 1 vs 2 reconstruct instances.

On Apache Kafka (a PRIVATE development cluster: every topic is DELETED and recreated). One day of
``--stations`` is simulated, then each service runs as its own process, as in production, with
``--once`` (stop when idle), one stage after the other so that each stage's time is its own:

1. ``mingo ingest`` (local station directories) -> raw events, logs, logbook;
2. ``mingo era5 publish`` of the simulated ERA5 files (not timed: a one-off);
3. ``mingo reconstruct-service`` as 1 process, then as 2 processes of a fresh group, each on a
   fresh rates topic: events per second over the time from the start of the processes to the
   last growth of the rates topic (its end offsets, sampled every 0.1 s), and until every
   instance has exited (with
   ``--once`` the first idle instance leaves the group, and the other rebuilds the state of the
   partitions it takes over by replaying them, which costs as much as the work itself);
4. ``mingo unify-service`` on the rates of the 2-instance run -> unified minutes;
5. ``mingo sink`` (files only, ``MINGO_SINK_INFLUX=false``) -> CSV/Parquet rows.

The peak RSS of each process is its ``VmHWM`` (/proc), sampled every 0.1 s until it exits.

    python bench/bench_reconstruct_scaling.py --bootstrap 127.0.0.1:32092 --stations 1,2,3,4
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.bench_e2e import proc_status_mb
from bench.bench_process_days import machine, report
from schemas.events import envelope_from_headers
from schemas.topics import CALIBRATION, EVENTS_RAW, RATES_MINUTE, TOPICS, UNIFIED_MINUTE
from services.common.kafka import (
    client_config,
    create_topics,
    delete_topics,
    read_all,
    watermarks,
)
from services.common.settings import KafkaSettings
from services.common.stations import StationSource, load_network
from simulator.run import SimulationRequest, run_batch

ROOT = Path(__file__).resolve().parents[1]
MINGO = [sys.executable, "-m", "services.cli"]


@dataclass(frozen=True)
class Stage:
    """One stage's figures: wall time [s], items, peak RSS of each process [MB]."""

    name: str
    seconds: float
    items: int
    unit: str
    rss_mb: tuple[float, ...]
    exited_s: float | None = None

    def line(self) -> str:
        """One printed line."""
        rate = self.items / self.seconds if self.seconds > 0 else float("nan")
        rss = " + ".join(f"{r:.0f}" for r in self.rss_mb)
        exited = f"; all exited after {self.exited_s:6.1f} s" if self.exited_s else ""
        return (
            f"  {self.name:24s} {self.seconds:7.1f} s  {self.items:9d} {self.unit:8s} "
            f"{rate:10.0f} {self.unit}/s  peak RSS {rss} MB{exited}\n"
        )


def run_processes(
    runs: list[tuple[list[str], dict[str, str]]],
    output: Callable[[], int] | None = None,
) -> tuple[float, list[float], float]:
    """Run the (command, environment) pairs at once.

    Returns the seconds until all exited, the peak RSS of each [MB], and the seconds until
    ``output()`` (e.g. the messages in the output topic) last grew (0 without ``output``).

    The peak is ``VmHWM`` read every 0.1 s until the process exits (it misses only growth in
    its last 0.1 s). Not ``ru_maxrss``: that also counts the image of this (large) benchmark
    process that the child was forked from before its exec.
    """
    started = time.time()
    processes = [subprocess.Popen(command, cwd=ROOT, env=env) for command, env in runs]
    peaks = [0.0] * len(processes)
    produced, last_growth = 0, 0.0
    while any(process.returncode is None for process in processes):
        if output is not None and (now := output()) > produced:
            produced, last_growth = now, time.time() - started
        for index, process in enumerate(processes):
            if process.returncode is None:
                # read before poll() reaps it; a zombie has no VmHWM line (0)
                peaks[index] = max(peaks[index], proc_status_mb(process.pid, "VmHWM"))
                process.poll()
        time.sleep(0.1)
    for process in processes:
        if process.returncode != 0:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
    return time.time() - started, peaks, last_growth


def simulate(out: Path, stations: list[int], rate: float) -> Path:
    """One simulated day of the stations under ``out``; a network file reading them locally."""
    network = load_network()
    run_batch(
        SimulationRequest(
            out=out,
            stations=tuple(network.station(s) for s in stations),
            start=date(2024, 3, 1),
            days=1,
            seed=7,
            rate_hz=rate,
            workers=2,
        )
    )
    entries = []
    for s in stations:
        station = network.station(s).model_copy(
            update={"source": StationSource(kind="local", root=str(out / f"mingo0{s}"))}
        )
        entries.append(station.model_dump(mode="json", exclude_none=True))
    path = out / "stations.yaml"
    path.write_text(yaml.safe_dump({"stations": entries}))
    return path


def count(kafka: KafkaSettings, topic: str) -> int:
    """Messages of a topic (committed)."""
    return sum(1 for _ in read_all(kafka, topic, max_wait_s=300))


def run_instances(
    kafka: KafkaSettings, admin: AdminClient, count_: int, env: dict[str, str], events: int
) -> Stage:
    """``count_`` reconstruct instances of a fresh group on fresh rates/calibration topics."""
    delete_topics(admin, [RATES_MINUTE.name, CALIBRATION.name])
    create_topics(admin, [RATES_MINUTE, CALIBRATION])
    group = f"bench-{count_}-{uuid.uuid4().hex[:6]}"
    command = [*MINGO, "reconstruct-service", "--once"]
    probe = Consumer(client_config(kafka) | {"group.id": f"{group}-probe"})
    partitions = probe.list_topics(RATES_MINUTE.name, timeout=10).topics[RATES_MINUTE.name]

    def rates_end() -> int:
        # Quix gives an output record its input's timestamp, so the time of the last minute
        # record is when the topic's end offsets last grew, sampled with the RSS
        return sum(
            watermarks(probe, TopicPartition(RATES_MINUTE.name, p))[1]
            for p in partitions.partitions
        )

    try:
        exited, rss, last = run_processes(
            [
                (
                    command,
                    env | {"MINGO_RECONSTRUCT_GROUP_ID": group, "MINGO_INSTANCE": f"{group}-{i}"},
                )
                for i in range(count_)
            ],
            rates_end,
        )
    finally:
        probe.close()
    return Stage(f"reconstruct x{count_}", last, events, "events", tuple(rss), exited)


def main() -> None:
    """Run the benchmark and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("MINGO_KAFKA_BOOTSTRAP"),
        help="a PRIVATE cluster: topics are reset (default: MINGO_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument("--stations", default="1,2,3,4", help="station ids, comma-separated")
    parser.add_argument("--rate", type=float, default=2.0, help="simulated rate [Hz]")
    parser.add_argument("--json", action="store_true", help="Print one JSON line at the end.")
    args = parser.parse_args()
    if not args.bootstrap:
        parser.error("--bootstrap or MINGO_KAFKA_BOOTSTRAP is required")
    # With --json the progress goes to stderr: the last line of stdout is the JSON.
    out = sys.stderr.write if args.json else sys.stdout.write
    load_before = os.getloadavg()[0]
    kafka = KafkaSettings(bootstrap=args.bootstrap)
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    stations = [int(s) for s in args.stations.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        network = simulate(work / "sim", stations, args.rate)
        delete_topics(admin, [t.name for t in TOPICS])
        create_topics(admin)
        tag = uuid.uuid4().hex[:6]
        env = os.environ | {
            "MINGO_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "MINGO_NETWORK_FILE": str(network),
            "MINGO_INSTANCE": f"bench-{tag}",
            "MINGO_LOG_LEVEL": "WARNING",
            "MINGO_INGEST_SETTLE_S": "0",
            "MINGO_RECONSTRUCT_CALIBRATION_DIR": str(work / "calibrations"),
            "MINGO_UNIFY_GROUP_ID": f"bench-unify-{tag}",
            "MINGO_UNIFY_STATE_DIR": str(work / "unify-state"),
            "MINGO_SINK_GROUP": f"bench-sink-{tag}",
            "MINGO_SINK_OUT_DIR": str(work / "out"),
            "MINGO_SINK_INFLUX": "false",
        }
        out(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()}\n")
        seconds, rss, _ = run_processes([([*MINGO, "ingest", "--once"], env)])
        events = sum(
            envelope_from_headers(m.headers()).event_count
            for m in read_all(kafka, EVENTS_RAW.name, max_wait_s=300)
        )
        stages = [Stage("ingest", seconds, events, "events", tuple(rss))]
        out(f"raw events of {len(stations)} station-days at {args.rate} Hz: {events}\n")
        out(stages[-1].line())
        for s in stations:
            subprocess.run(
                [*MINGO, "era5", "publish", str(work / "sim" / "era5"), "--station", str(s),
                 "--network", str(network)],
                check=True, cwd=ROOT, env=env, capture_output=True,
            )  # fmt: skip
        for instances in (1, 2):
            stages.append(run_instances(kafka, admin, instances, env, events))
            out(stages[-1].line())
        records = count(kafka, RATES_MINUTE.name)
        out(f"  ({records} minute records)\n")
        seconds, rss, _ = run_processes([([*MINGO, "unify-service", "--once"], env)])
        stages.append(
            Stage("unify", seconds, count(kafka, UNIFIED_MINUTE.name), "minutes", tuple(rss))
        )
        out(stages[-1].line())
        seconds, rss, _ = run_processes([([*MINGO, "sink", "--once"], env)])
        rows = sum(
            len(f.read_text().splitlines()) - 1 for f in (work / "out").rglob("unified_*.csv")
        )
        stages.append(Stage("sink (files)", seconds, rows, "rows", tuple(rss)))
        out(stages[-1].line())
    out(f"load average after: {os.getloadavg()}\n")
    if args.json:
        figures: dict[str, object] = {
            "benchmark": "every stage on 4 stations, 1 vs 2 reconstruct instances (Apache Kafka)",
            "command": "python " + " ".join(sys.argv),
            "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": machine(),
            "load_1min": f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after",
            "stations": args.stations,
            "rate_hz": args.rate,
            "raw_events": events,
        }
        for stage in stages:
            figures[f"{stage.name} s"] = round(stage.seconds, 1)
            figures[f"{stage.name} {stage.unit}/s"] = round(stage.items / stage.seconds)
            figures[f"{stage.name} peak RSS MB"] = [round(r) for r in stage.rss_mb]
        report(figures, as_json=True)


if __name__ == "__main__":
    main()
