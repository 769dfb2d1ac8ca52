"""Benchmark: reconstruct throughput of 1 instance vs 2 instances of one group, on Apache Kafka.

Simulates ``--stations`` for one day, ingests them into the cluster's raw topic, then runs the
service (``python -m services.cli reconstruct-service --once``, each in its own process) first
alone, then as two instances of a fresh group. It reports events per second over the time from
the start of the processes to the producer timestamp of the last minute record. The time until
every instance has exited is also given: with ``--once`` the first idle instance leaves the group,
and the other rebuilds the state of the partitions it takes over by replaying them, which costs
as much as the work itself. The raw, rates and
calibration topics of the cluster are DELETED and recreated: use a private development cluster
(``mingo infra up`` with private ports), never a shared one.

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
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka.admin import AdminClient

from schemas.events import envelope_from_headers
from schemas.topics import CALIBRATION, EVENTS_RAW, RATES_MINUTE, TOPICS
from services.common.kafka import create_topics, delete_topics, read_all
from services.common.runtime import RunBounds, StopFlag
from services.common.settings import KafkaSettings
from services.common.stations import StationSource, load_network
from services.ingest.service import IngestOptions, run_ingest
from simulator.run import SimulationRequest, run_batch


def ingest_day(kafka: KafkaSettings, admin: AdminClient, stations: list[int], rate: float) -> int:
    """Simulate and ingest one day of the stations into fresh topics; raw events published."""
    network = load_network()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
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
        delete_topics(admin, [t.name for t in TOPICS])
        create_topics(admin)
        sources = [
            network.station(s).model_copy(
                update={"source": StationSource(kind="local", root=str(out / f"mingo0{s}"))}
            )
            for s in stations
        ]
        options = IngestOptions(instance=f"bench-{uuid.uuid4().hex[:6]}", settle_s=0)
        run_ingest(sources, kafka, options, StopFlag(), RunBounds(stop_when_idle=True))
    return sum(
        envelope_from_headers(m.headers()).event_count for m in read_all(kafka, EVENTS_RAW.name)
    )


def run_instances(
    kafka: KafkaSettings, admin: AdminClient, count: int, cal_dir: Path
) -> tuple[float, float, int]:
    """``count`` instances of a fresh group: seconds from start to the last record's timestamp,
    seconds until all exited, records."""
    delete_topics(admin, [RATES_MINUTE.name, CALIBRATION.name])
    create_topics(admin, [RATES_MINUTE, CALIBRATION])
    group = f"bench-{count}-{uuid.uuid4().hex[:6]}"
    env = os.environ | {
        "MINGO_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "MINGO_RECONSTRUCT_GROUP_ID": group,
        "MINGO_RECONSTRUCT_CALIBRATION_DIR": str(cal_dir),
        "MINGO_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "services.cli", "reconstruct-service", "--once"]
    started = time.time()
    processes = [
        subprocess.Popen(command, env=env | {"MINGO_INSTANCE": f"{group}-{i}"})
        for i in range(count)
    ]
    for process in processes:
        if process.wait() != 0:
            raise RuntimeError(f"an instance exited with {process.returncode}")
    exited = time.time() - started
    stamps = [m.timestamp()[1] for m in read_all(kafka, RATES_MINUTE.name)]
    return max(stamps) / 1000 - started, exited, len(stamps)


def main() -> None:
    """Run the benchmark and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="a PRIVATE cluster: topics are reset")
    parser.add_argument("--stations", default="1,2,3,4", help="station ids, comma-separated")
    parser.add_argument("--rate", type=float, default=2.0, help="simulated rate [Hz]")
    args = parser.parse_args()
    out = sys.stdout.write
    kafka = KafkaSettings(bootstrap=args.bootstrap)
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    stations = [int(s) for s in args.stations.split(",")]
    events = ingest_day(kafka, admin, stations, args.rate)
    out(f"raw events of {len(stations)} station-days at {args.rate} Hz: {events}\n")
    out(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()}\n")
    with tempfile.TemporaryDirectory() as cal_dir:
        for count in (1, 2):
            seconds, exited, records = run_instances(kafka, admin, count, Path(cal_dir))
            out(f"  {count} instance(s): last record after {seconds:6.1f} s, ")
            out(f"{events / seconds / 1e3:7.1f} k events/s; all exited after {exited:6.1f} s")
            out(f" ({records} minute records)\n")
    out(f"load average after: {os.getloadavg()}\n")


if __name__ == "__main__":
    main()
