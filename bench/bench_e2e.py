"""End-to-end benchmark on Apache Kafka: station files on the SFTP server to rows in InfluxDB.

Needs the servers of ``mingo infra up`` (``eval "$(mingo infra env)"``). It DELETES and recreates
every topic of the registry: run it on a development cluster only.

1. Simulates station 1 for two days (day 1 packed into its daily archive as a station does, day
   2 as hourly files held back), writes a network file for the SFTP server and publishes the
   ERA5 hours of the simulated NetCDF files.
2. Starts reconstruct-service, unify-service, sink and ingest as separate processes, as in
   production, with a 1 s polling interval.
3. Throughput: time from the start of ingest until InfluxDB holds a row for every minute of day
   1 (the wall time of one station-day), with the watermarks of the raw, rates and unified topics
   sampled on the way (when each stage finished) and the peak RSS of every service.
4. Latency: the held-back hourly files of day 2 appear one at a time (an atomic rename into the
   station's directory); for each, the time until InfluxDB holds all 60 minutes of its hour.

    python bench/bench_e2e.py                 # one station-day, 6 latency samples
    python bench/bench_e2e.py --json          # one JSON line (bench/report.py)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_process_days import machine, report
from schemas.topics import EVENTS_RAW, RATES_MINUTE, TOPICS, UNIFIED_MINUTE
from services.common.kafka import create_topics, delete_topics, make_admin, make_consumer
from services.common.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
DAY = datetime(2024, 3, 1, tzinfo=UTC)
MINGO = [sys.executable, "-m", "services.cli"]


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f'{name} is not set: mingo infra up && eval "$(mingo infra env)"')
    return value


def proc_status_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory field of /proc/PID/status [MB] (``VmRSS`` now, ``VmHWM`` peak); 0 once gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU time of a process so far [s] (/proc/PID/stat); 0 once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _watermark(consumer: object, topic: str) -> int:
    from confluent_kafka import TopicPartition

    metadata = consumer.list_topics(topic, timeout=10)  # type: ignore[attr-defined]
    total = 0
    for partition in metadata.topics[topic].partitions:
        _, high = consumer.get_watermark_offsets(  # type: ignore[attr-defined]
            TopicPartition(topic, partition), timeout=10
        )
        total += high
    return total


class Influx:
    """Counts of unified rows of station 1 in the benchmark's database."""

    def __init__(self, url: str, database: str) -> None:
        self.client = httpx.Client(base_url=url, trust_env=False, timeout=30)
        self.database = database

    def minutes(self, start: datetime, end: datetime) -> int:
        query = (
            "SELECT count(rate_total_hz) FROM unified WHERE station = '1' "
            f"AND time >= '{start:%Y-%m-%dT%H:%M:%SZ}' AND time < '{end:%Y-%m-%dT%H:%M:%SZ}'"
        )
        answer = self.client.get("/query", params={"db": self.database, "q": query}).json()
        series = answer["results"][0].get("series")
        return int(series[0]["values"][0][1]) if series else 0


def run(args: argparse.Namespace) -> dict[str, object]:
    kafka = KafkaSettings(bootstrap=_env("MINGO_KAFKA_BOOTSTRAP"))
    influx_url = _env("MINGO_INFLUX_URL")
    sftp_root = Path(_env("MINGO_SFTP_ROOT"))
    tag = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="bench_e2e_", dir=args.tmp))
    station_root = sftp_root / f"bench-{tag}"
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        subprocess.run(
            [*MINGO, "simulate", "--stations", "1", "--start", f"{DAY:%Y-%m-%d}", "--days", "2",
             "--rate-hz", str(args.rate_hz), "--seed", "5", "--damage", "0", "--out",
             str(station_root)],
            check=True, cwd=ROOT, capture_output=True,
        )  # fmt: skip
        dat = station_root / "mingo01" / "dat"
        held = work / "held"
        held.mkdir()

        def start_of(name: str) -> datetime:
            return datetime.strptime(name[4:15], "%y%j%H%M%S").replace(tzinfo=UTC)

        next_day = DAY + timedelta(days=1)
        day2 = sorted(
            p for p in dat.iterdir() if p.name.endswith(".dat") and start_of(p.name) >= next_day
        )
        for path in day2:
            path.rename(held / path.name)
        truth = json.loads((station_root / "truth.json").read_text())
        day1_events = sum(
            sum(f["valid_events"].values())
            for name, f in truth["stations"]["1"]["files"].items()
            if f["readable"] and start_of(name) < next_day
        )
        network = work / "stations.yaml"
        network.write_text(
            "stations:\n  - id: 1\n    name: mingo01\n    latitude: 40.4168\n"
            "    longitude: -3.7038\n    altitude_m: 657\n    source: {kind: sftp, "
            f"host: {_env('MINGO_SFTP_HOST')}, port: {_env('MINGO_SFTP_PORT')}, "
            f"user: {_env('MINGO_SFTP_USER')}, key_file: {_env('MINGO_SFTP_KEY')}, "
            f"known_hosts: {_env('MINGO_SFTP_KNOWN_HOSTS')}, root: {station_root / 'mingo01'}}}\n"
        )
        admin = make_admin(kafka)
        delete_topics(admin, [t.name for t in TOPICS])
        create_topics(admin)
        env = os.environ | {
            "MINGO_INSTANCE": f"bench-{tag}",
            "MINGO_NETWORK_FILE": str(network),
            "MINGO_LOG_LEVEL": "WARNING",
            "MINGO_HEARTBEAT_S": "10",
            "MINGO_INGEST_POLL_INTERVAL_S": str(args.poll_s),
            "MINGO_INGEST_SETTLE_S": "0",
            "MINGO_RECONSTRUCT_GROUP_ID": f"bench-reconstruct-{tag}",
            "MINGO_UNIFY_GROUP_ID": f"bench-unify-{tag}",
            "MINGO_UNIFY_STATE_DIR": str(work / "unify-state"),
            "MINGO_SINK_GROUP": f"bench-sink-{tag}",
            "MINGO_SINK_OUT_DIR": str(work / "out"),
            "MINGO_INFLUX_DATABASE": f"bench_{tag}",
        }
        subprocess.run(
            [*MINGO, "era5", "publish", str(station_root / "era5"), "--station", "1",
             "--network", str(network)],
            check=True, cwd=ROOT, env=env, capture_output=True,
        )  # fmt: skip
        logs = work / "logs"
        logs.mkdir()
        for name, command in (
            ("reconstruct", ["reconstruct-service"]),
            ("unify", ["unify-service"]),
            ("sink", ["sink"]),
        ):
            processes[name] = subprocess.Popen(
                [*MINGO, *command], cwd=ROOT, env=env,
                stdout=subprocess.DEVNULL, stderr=(logs / f"{name}.log").open("wb"),
            )  # fmt: skip
        time.sleep(args.warmup_s)  # imports, numba cache loads, group joins
        load_start = os.getloadavg()[0]
        cpu_before = {name: cpu_s(process.pid) for name, process in processes.items()}
        influx = Influx(influx_url, f"bench_{tag}")
        consumer = make_consumer(kafka, f"bench-watch-{tag}")
        started = time.perf_counter()
        processes["ingest"] = subprocess.Popen(
            [*MINGO, "ingest"], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=(logs / "ingest.log").open("wb"),
        )  # fmt: skip
        peak = dict.fromkeys(processes, 0.0)
        stage_done: dict[str, float] = {}
        last: dict[str, tuple[int, float]] = {}
        day_end = next_day
        while True:
            now = time.perf_counter() - started
            for name, process in processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} ended: see {logs / (name + '.log')}")
                peak[name] = max(peak[name], proc_status_mb(process.pid))
            for topic in (EVENTS_RAW.name, RATES_MINUTE.name, UNIFIED_MINUTE.name):
                mark = _watermark(consumer, topic)
                if topic not in last or mark != last[topic][0]:
                    last[topic] = (mark, now)
            if influx.minutes(DAY, day_end) >= 1440:
                wall = time.perf_counter() - started
                cpu = {
                    name: round(cpu_s(process.pid) - cpu_before.get(name, 0.0), 1)
                    for name, process in processes.items()
                }
                break
            if now > args.timeout_s:
                raise TimeoutError(f"day 1 not in InfluxDB after {args.timeout_s} s")
            time.sleep(0.5)
        for topic, (_, when) in last.items():
            stage_done[topic] = round(when, 1)

        latencies = []
        # per sample, when each topic last grew after the file appeared: the stages' shares
        stage_latency: dict[str, list[float]] = {t: [] for t in last}
        for path in day2[: args.samples]:
            start = start_of(path.name)
            staging = dat / f".{path.name}.part"  # not a .dat name: ingest ignores it
            shutil.copyfile(held / path.name, staging)
            marks = {topic: _watermark(consumer, topic) for topic in stage_latency}
            grew = dict.fromkeys(marks, 0.0)
            appeared = time.perf_counter()
            staging.rename(dat / path.name)
            while influx.minutes(start, start + timedelta(hours=1)) < 60:
                now = time.perf_counter() - appeared
                if now > args.timeout_s:
                    raise TimeoutError(f"{path.name} not in InfluxDB after {args.timeout_s} s")
                for topic in marks:
                    mark = _watermark(consumer, topic)
                    if mark != marks[topic]:
                        marks[topic], grew[topic] = mark, now
                time.sleep(0.05)
            latencies.append(time.perf_counter() - appeared)
            for topic, when in grew.items():
                stage_latency[topic].append(round(when, 2))
            for name, process in processes.items():
                peak[name] = max(peak[name], proc_status_mb(process.pid))
        consumer.close()
        by_file = [round(x, 2) for x in latencies]
        latencies.sort()
        return {
            "benchmark": "end to end (SFTP -> InfluxDB, Apache Kafka)",
            "command": "python " + " ".join(sys.argv),
            "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "machine": machine(),
            "load_1min_start": round(load_start, 1),
            "load_1min": round(os.getloadavg()[0], 1),
            "events_day1": day1_events,
            "wall_s": round(wall, 1),
            "events_per_s": round(day1_events / wall),
            "stage_last_growth_s": stage_done,
            # CPU seconds each service spent from the start of ingest to the day in InfluxDB
            "cpu_s": cpu,
            "poll_interval_s": args.poll_s,
            "latency_samples_s": [round(x, 2) for x in latencies],
            "latency_p50_s": round(statistics.median(latencies), 2),
            # nearest-rank p95: with few samples, the largest
            "latency_p95_s": round(latencies[max(0, -(-95 * len(latencies) // 100) - 1)], 2),
            # per file, in the order they appeared: its latency, and when each topic last
            # grew after it appeared [s]
            "latency_by_file_s": by_file,
            "latency_stage_last_growth_s": stage_latency,
            "peak_rss_mb": {k: round(v) for k, v in peak.items()},
        }
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        if not args.keep:
            shutil.rmtree(station_root, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-hz", type=float, default=8.0, help="Simulated accepted rate.")
    parser.add_argument("--poll-s", type=float, default=1.0, help="Ingest polling interval. [s]")
    parser.add_argument("--samples", type=int, default=6, help="Latency samples (new files).")
    parser.add_argument("--warmup-s", type=float, default=15.0, help="Services' start-up. [s]")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="Give up after. [s]")
    parser.add_argument("--tmp", default=None, help="Scratch folder (default: /tmp).")
    parser.add_argument("--keep", action="store_true", help="Keep data and service logs.")
    parser.add_argument("--json", action="store_true", help="Print one JSON line.")
    args = parser.parse_args()
    report(run(args), args.json)


if __name__ == "__main__":
    main()
