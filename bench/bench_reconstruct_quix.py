"""Throughput of the reconstruct service (Quix Streams, exactly-once) on Apache Kafka.

1. Fill (not timed): the raw topic (``schemas.topics.EVENTS_RAW``) is deleted and created afresh,
   then filled with ``bench_reconstruct.simulated_events``' simulated station-day (8 Hz, chunks
   of ingest's size, as ingest publishes them), once per station of ``--stations N`` (stations
   0..N-1, keyed by station as ingest keys them, their chunks interleaved as if the stations
   were ingested together); ``--hours`` keeps only the chunks of the day's first hours.
2. ``plain``: a read_committed confluent-kafka consumer of a fresh group decodes every chunk
   (``chunk_from_message``) until every partition's end: the reading alone, from its first
   message to its last, wall and process CPU time.
3. ``service``: ``python -m services.reconstruct`` as deployed (a subprocess; settings from the
   environment: a fresh instance, consumer group, state folder and calibration folder). The
   bench polls the group's committed offsets on the raw topic (every 50 ms) and the process's
   CPU time (``/proc/<pid>/stat``, all threads). **The end** is the first poll at which the
   committed offset of every partition equals its end: exactly-once commits the offsets in the
   transaction of the records they produced, so at that moment every chunk is consumed and the
   rates records of all minutes are committed (readable by a read_committed consumer). Then the
   service is stopped (SIGTERM). **Start-up**: the time to the service's "reconstruct starting"
   log line (imports, settings, logbook), to its first committed checkpoint, and to the first
   rates record a read_committed consumer receives. **Steady rate**: the events of the chunks
   after the first checkpoint over the wall and CPU time from that checkpoint to the end; the
   first checkpoint (group join, numba cache loads or compilation, first allocations) is left
   out, and its CPU time beyond the steady cost of its events is printed as the warm-up. Also:
   the rates records and distinct station-minutes produced (equal in every run), and the bytes
   the service wrote to its changelog topics (keys + values of every message, and the size of
   their log segments on disk when ``--kafka-data-dir`` is given), per event; the service's peak
   resident memory (VmHWM) at the end.
4. ``--profile``: once more, the service in this process (``run_reconstruct``) under cProfile,
   stopped at the same end; the top 20 functions by own time and by cumulative time.

``--repeat`` runs 2., 3. (and each ``--variant``: the service with other settings) and the domain
path alone (station 0's chunks through ``StoredStation`` on a dict state, in this process)
alternately; the load average is printed with every figure.

    python bench/bench_reconstruct_quix.py --bootstrap 127.0.0.1:33192 --repeat 3
    python bench/bench_reconstruct_quix.py --hours 2 --repeat 1 --profile     # development
    python bench/bench_reconstruct_quix.py --variant \
        big:MINGO_RECONSTRUCT_BATCH_MESSAGES=256,MINGO_RECONSTRUCT_COMMIT_INTERVAL_S=2
"""

from __future__ import annotations

import argparse
import bisect
import cProfile
import io
import itertools
import json
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reconstruct import simulated_events, stored_stream
from confluent_kafka import KafkaError, Message, TopicPartition

from schemas.events import envelope_from_headers
from schemas.topics import EVENTS_RAW, RATES_MINUTE
from services.common.kafka import (
    create_topics,
    delete_topics,
    make_admin,
    make_consumer,
    make_producer,
    read_all,
    watermarks,
)
from services.common.runtime import StopFlag
from services.common.settings import KafkaSettings
from services.common.stations import load_network
from services.ingest.chunking import MAX_CHUNK_EVENTS
from services.ingest.publish import Outgoing
from services.reconstruct.service import ReconstructOptions, run_reconstruct
from services.reconstruct.stream import chunk_from_message

ROOT = Path(__file__).resolve().parents[1]
_POLL_S = 0.05  #: how often the end is looked for [s]
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")  #: unit of /proc/<pid>/stat CPU times [s]


@dataclass(frozen=True)
class Filled:
    """The raw topic after the fill: its partitions' ends and the events below each offset."""

    chunks: int
    events: int
    first_station: list[Outgoing]  #: the chunk messages of station 0
    ends: dict[int, int]  #: partition → offset after its last chunk
    #: partition → (offsets, events of the chunks before each offset, cumulative)
    cumulative: dict[int, tuple[list[int], list[int]]]

    def events_below(self, offsets: dict[int, int]) -> int:
        """Events of the chunks below the given offsets (committed offsets: the next to read)."""
        total = 0
        for partition, offset in offsets.items():
            starts, sums = self.cumulative.get(partition, ([], []))
            below = bisect.bisect_right(starts, offset)  # chunks whose next offset ≤ offset
            total += sums[below - 1] if below else 0
        return total


def fill(kafka: KafkaSettings, stations: int, hours: float, rate_hz: float, chunk: int) -> Filled:
    """A fresh raw topic holding the simulated day of each station (not timed)."""
    messages = simulated_events(rate_hz, chunk, tuple(range(stations)))[3]
    envelopes = [envelope_from_headers(m.headers) for m in messages]
    day_start = min(e.file_start_s for e in envelopes)
    by_station: dict[int, list[tuple[Outgoing, int]]] = {}
    for message, envelope in zip(messages, envelopes, strict=True):
        if envelope.first_time_s < day_start + hours * 3600:
            by_station.setdefault(envelope.station, []).append((message, envelope.event_count))
    admin = make_admin(kafka)
    delete_topics(admin, [EVENTS_RAW.name])
    create_topics(admin)  # every topic, as `mingo topics create` before a deployment
    producer = make_producer(kafka)
    placed: dict[int, list[tuple[int, int]]] = {}  # partition → (offset, events)

    def delivered(error: KafkaError | None, message: Message, events: int) -> None:
        if error is not None:
            raise RuntimeError(f"fill failed: {error}")
        placed.setdefault(message.partition(), []).append((message.offset(), events))

    for row in itertools.zip_longest(*by_station.values()):
        for item in row:
            if item is None:
                continue
            message, events = item
            producer.produce(
                message.topic,
                message.value,
                message.key,
                headers=message.headers,
                on_delivery=lambda e, m, n=events: delivered(e, m, n),
            )
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("fill: messages still unsent after 120 s")
    cumulative = {}
    for partition, rows in placed.items():
        rows.sort()
        sums = list(itertools.accumulate(n for _, n in rows))
        cumulative[partition] = ([offset + 1 for offset, _ in rows], sums)
    ends = {p: rows[-1][0] + 1 for p, rows in placed.items()}
    chunks = sum(len(rows) for rows in placed.values())
    first = [m for m, _ in by_station[0]]
    return Filled(chunks, sum(s[-1] for _, s in cumulative.values()), first, ends, cumulative)


def plain(kafka: KafkaSettings, filled: Filled) -> tuple[int, int, float, float]:
    """(chunks, events, wall s, CPU s) from the first chunk to the last: a read_committed
    consumer of a fresh group decoding every chunk."""
    consumer = make_consumer(
        kafka, f"bench-plain-{uuid.uuid4().hex[:6]}", **{"enable.partition.eof": True}
    )
    consumer.subscribe([EVENTS_RAW.name])
    remaining = set(filled.ends)
    chunks = events = 0
    wall0 = cpu0 = 0.0
    while remaining:
        for message in consumer.consume(64, 1.0):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(message.partition())
                    continue
                raise RuntimeError(str(error))
            if not chunks:
                wall0, cpu0 = time.perf_counter(), time.process_time()
            chunk = chunk_from_message(envelope_from_headers(message.headers()), message.value())
            chunks += 1
            events += len(chunk.time_s)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    consumer.close()
    return chunks, events, wall, cpu


@dataclass
class Progress:
    """What the watcher saw of a service run: ``time.perf_counter`` times [s], the process's
    CPU time since its start [s]."""

    start: float
    first_commit: float = 0.0  #: first poll with committed offsets
    first_commit_events: int = 0  #: events below those offsets
    first_commit_cpu: float = 0.0
    end: float = 0.0  #: first poll with every partition committed to its end
    end_cpu: float = 0.0


def watch(
    kafka: KafkaSettings,
    group: str,
    filled: Filled,
    cpu: Callable[[], float],
    alive: Callable[[], bool],
) -> Progress:
    """Poll the group's committed offsets until they reach the raw topic's ends."""
    progress = Progress(time.perf_counter())
    offsets = make_consumer(kafka, group)  # never subscribes: it only asks for commits
    partitions = [TopicPartition(EVENTS_RAW.name, p) for p in filled.ends]
    while True:
        if not alive():
            raise RuntimeError("the service exited before the end")
        committed = {
            tp.partition: max(tp.offset, 0) for tp in offsets.committed(partitions, timeout=10)
        }
        now, used = time.perf_counter(), cpu()
        if not progress.first_commit and any(committed.values()):
            progress.first_commit, progress.first_commit_cpu = now, used
            progress.first_commit_events = filled.events_below(committed)
        if all(committed[p] >= end for p, end in filled.ends.items()):
            progress.end, progress.end_cpu = now, used
            break
        time.sleep(_POLL_S)
    offsets.close()
    return progress


class RatesWatcher(threading.Thread):
    """A read_committed consumer of the rates topic from its ends at the start: the time of the
    first record, and the records and distinct station-minutes received."""

    def __init__(self, kafka: KafkaSettings) -> None:
        super().__init__(daemon=True)
        self.consumer = make_consumer(kafka, f"bench-rates-{uuid.uuid4().hex[:6]}")
        parts = self.consumer.list_topics(RATES_MINUTE.name, timeout=10).topics[RATES_MINUTE.name]
        self.partitions = [TopicPartition(RATES_MINUTE.name, p) for p in parts.partitions]
        for tp in self.partitions:
            tp.offset = watermarks(self.consumer, tp)[1]
        self.consumer.assign(self.partitions)
        self.first = 0.0
        self.records = 0
        self.minutes: set[tuple[int, str]] = set()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.take(self.consumer.consume(500, 0.05))

    def take(self, messages: list[Message]) -> None:
        for message in messages:
            if message.error() is not None:
                continue
            self.first = self.first or time.perf_counter()
            record = json.loads(message.value())
            self.records += 1
            self.minutes.add((record["station"], record["time"]))

    def finish(self) -> None:
        """Stop, then read what is left (all committed already): until 2 s bring nothing."""
        self.stopping.set()
        self.join()
        while messages := self.consumer.consume(500, 2.0):
            self.take(messages)
        self.consumer.close()


def changelog_bytes(
    kafka: KafkaSettings, group: str, data_dir: Path | None
) -> tuple[int, int, int]:
    """(messages, key + value bytes, bytes of log segments on disk or 0) of the group's
    changelog topics; the topics are deleted afterwards."""
    admin = make_admin(kafka)
    topics = [t for t in admin.list_topics(timeout=10).topics if "changelog" in t and group in t]
    messages = payload = disk = 0
    for topic in topics:
        for message in read_all(kafka, topic):
            messages += 1
            payload += len(message.key() or b"") + len(message.value() or b"")
        if data_dir is not None:
            disk += sum(f.stat().st_size for f in data_dir.glob(f"{topic}-*/*.log"))
    delete_topics(admin, topics)
    return messages, payload, disk


def _process_cpu(pid: int) -> float:
    """User + system CPU time of a process, all threads [s]."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def _peak_rss(pid: int) -> int:
    """Peak resident memory of a process (VmHWM) [bytes]."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def service(
    kafka: KafkaSettings, filled: Filled, data_dir: Path | None, settings: dict[str, str]
) -> dict[str, float]:
    """One run of ``python -m services.reconstruct`` on the filled topic (``settings``: more
    environment variables); its figures."""
    tag = uuid.uuid4().hex[:6]
    group = f"bench-reconstruct-{tag}"
    work = Path(tempfile.mkdtemp(prefix="bench-reconstruct-"))
    env = (
        os.environ
        | {
            "MINGO_KAFKA_BOOTSTRAP": kafka.bootstrap,
            "MINGO_INSTANCE": f"bench-{tag}",
            "MINGO_RECONSTRUCT_GROUP_ID": group,
            "MINGO_RECONSTRUCT_STATE_DIR": str(work / "state"),
            "MINGO_RECONSTRUCT_CALIBRATION_DIR": str(work / "calibrations"),
            "MINGO_LOG_FORMAT": "json",
        }
        | settings
    )
    rates = RatesWatcher(kafka)
    rates.start()
    ready = [0.0]
    tail: list[str] = []  # the service's last log lines, shown if it fails
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.reconstruct"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def read_log() -> None:
        for line in process.stderr or ():
            if "reconstruct starting" in line and not ready[0]:
                ready[0] = time.perf_counter()
            tail[:] = [*tail[-19:], line.rstrip()]

    logs = threading.Thread(target=read_log, daemon=True)
    logs.start()
    try:
        progress = watch(
            kafka, group, filled, lambda: _process_cpu(process.pid), lambda: process.poll() is None
        )
        progress.start = start
        peak_rss = _peak_rss(process.pid)
    except RuntimeError:
        logs.join(10)
        sys.stdout.write("\n".join(["the service's last log lines:", *tail, ""]))
        raise
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        logs.join(10)
        rates.finish()
        shutil.rmtree(work, ignore_errors=True)
    messages, payload, disk = changelog_bytes(kafka, group, data_dir)
    return figures(filled, progress, ready[0], rates, (messages, payload, disk)) | {
        "peak_rss_mb": peak_rss / 2**20
    }


def figures(
    filled: Filled,
    progress: Progress,
    ready: float,
    rates: RatesWatcher,
    changelog: tuple[int, int, int],
) -> dict[str, float]:
    """The figures of a run, times relative to its start."""
    steady_events = filled.events - progress.first_commit_events
    steady_wall = progress.end - progress.first_commit
    steady_cpu = progress.end_cpu - progress.first_commit_cpu
    # CPU of the start-up beyond what its events cost at the steady rate
    warmup = progress.first_commit_cpu - progress.first_commit_events * steady_cpu / max(
        steady_events, 1
    )
    return {
        "ready_s": ready - progress.start if ready else float("nan"),
        "first_commit_s": progress.first_commit - progress.start,
        "first_record_s": rates.first - progress.start if rates.first else float("nan"),
        "first_events": progress.first_commit_events,
        "warmup_cpu_s": warmup,
        "steady_events": steady_events,
        "steady_wall_s": steady_wall,
        "steady_cpu_s": steady_cpu,
        "total_wall_s": progress.end - progress.start,
        "total_cpu_s": progress.end_cpu,
        "records": rates.records,
        "minutes": len(rates.minutes),
        "changelog_messages": changelog[0],
        "changelog_bytes": changelog[1],
        "changelog_disk": changelog[2],
    }


def profiled(kafka: KafkaSettings, filled: Filled, dump: Path | None, top: int = 20) -> None:
    """The service in this process under cProfile, stopped at the end; top functions."""
    tag = uuid.uuid4().hex[:6]
    work = Path(tempfile.mkdtemp(prefix="bench-reconstruct-"))
    options = ReconstructOptions(
        instance=f"bench-{tag}",
        group_id=f"bench-reconstruct-{tag}",
        state_dir=work / "state",
        calibration_dir=work / "calibrations",
    )
    stop = StopFlag()
    seen: list[Progress] = []
    cpu0 = time.process_time()

    def stop_at_end() -> None:
        cpu = lambda: time.process_time() - cpu0  # noqa: E731
        seen.append(watch(kafka, options.group_id, filled, cpu, lambda: True))
        stop.set()

    watcher = threading.Thread(target=stop_at_end, daemon=True)
    profile = cProfile.Profile()
    watcher.start()
    profile.runcall(run_reconstruct, load_network(), kafka, options, stop)
    watcher.join()
    changelog_bytes(kafka, options.group_id, None)
    shutil.rmtree(work, ignore_errors=True)
    progress = seen[0]
    if dump is not None:
        profile.dump_stats(dump)
    out = sys.stdout.write
    out(
        f"profiled in process: {filled.events} events to the end in "
        f"{progress.end - progress.start:.2f} s wall, {progress.end_cpu:.2f} s CPU "
        f"(with cProfile; load {os.getloadavg()[0]:.1f})\n"
    )
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats(order).print_stats(top)
        out(text.getvalue().split("\n", 6)[-1])


def domain(run: int, messages: list[Outgoing]) -> None:
    """The domain path alone: station 0's chunks through ``StoredStation`` on a dict state
    (``bench_reconstruct.stored_stream``: decoding, calibration, reconstruction, minute
    records, the state encoding), in this process, no Kafka; wall and CPU time."""
    config = load_network().station(0).reconstruction
    events = sum(envelope_from_headers(m.headers).event_count for m in messages)
    wall, cpu = time.perf_counter(), time.process_time()
    records, written = stored_stream(messages, config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sys.stdout.write(
        f"run {run} domain: {events} events (station 0) in {wall:.2f} s wall, {cpu:.2f} s CPU: "
        f"{events / wall / 1e6:.3f} M events/s wall, {events / cpu / 1e6:.3f} M per CPU-s; "
        f"{records} records, {written / events:.0f} bytes/event to the state "
        f"(load {os.getloadavg()[0]:.2f})\n"
    )


def report(run: int, label: str, f: dict[str, float], events: int) -> None:
    """Print a service run's figures."""
    out = sys.stdout.write
    mev = 1e-6
    out(
        f"run {run} {label}: start-up: ready {f['ready_s']:.2f} s, first checkpoint "
        f"{f['first_commit_s']:.2f} s ({f['first_events']} events), first record "
        f"{f['first_record_s']:.2f} s, warm-up CPU {f['warmup_cpu_s']:.2f} s\n"
        f"  steady: {f['steady_events']} events in {f['steady_wall_s']:.2f} s wall, "
        f"{f['steady_cpu_s']:.2f} s CPU: {f['steady_events'] / f['steady_wall_s'] * mev:.3f} M "
        f"events/s wall, {f['steady_events'] / max(f['steady_cpu_s'], 1e-9) * mev:.3f} M per "
        f"CPU-s\n  from the start: {events} events in {f['total_wall_s']:.2f} s wall, "
        f"{f['total_cpu_s']:.2f} s CPU: {events / f['total_wall_s'] * mev:.3f} M events/s\n"
        f"  {f['records']} rates records, {f['minutes']} station-minutes; changelog "
        f"{f['changelog_messages']} messages, {f['changelog_bytes'] / events:.0f} bytes/event "
        f"(keys + values), {f['changelog_disk'] / events:.0f} bytes/event on disk; peak RSS "
        f"{f['peak_rss_mb']:.0f} MB "
        f"(load {os.getloadavg()[0]:.2f})\n"
    )


def main() -> None:
    """Fill, then the plain read and the service alternately, ``--repeat`` times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("MINGO_KAFKA_BOOTSTRAP", ""))
    parser.add_argument("--stations", type=int, default=1, help="stations 0..N-1, same day")
    parser.add_argument("--hours", type=float, default=24.0, help="the day's first hours only")
    parser.add_argument("--rate", type=float, default=8.0, help="simulated event rate [Hz]")
    parser.add_argument(
        "--chunk", type=int, default=MAX_CHUNK_EVENTS, help="events per chunk at most (ingest's)"
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="also run the service with these settings (environment), interleaved; repeatable",
    )
    parser.add_argument("--profile", action="store_true", help="then a cProfile run in process")
    parser.add_argument("--profile-out", type=Path, help="write the cProfile stats to this file")
    parser.add_argument(
        "--kafka-data-dir",
        type=Path,
        default=None,
        help="the broker's log.dirs, for the changelog's size on disk (mingo infra: "
        "$MINGO_STATE_DIR/kafka/data)",
    )
    args = parser.parse_args()
    kafka = KafkaSettings(bootstrap=args.bootstrap)
    variants: list[tuple[str, dict[str, str]]] = [("service", {})]
    for variant in args.variant:
        name, _, pairs = variant.partition(":")
        variants.append((name, dict(pair.split("=", 1) for pair in pairs.split(","))))
    out = sys.stdout.write
    out(f"load average before: {os.getloadavg()}\n")
    filled = fill(kafka, args.stations, args.hours, args.rate, args.chunk)
    out(
        f"filled {EVENTS_RAW.name}: {filled.chunks} chunks, {filled.events} events, "
        f"{args.stations} station(s), partitions {sorted(filled.ends)}\n"
    )
    for run in range(1, args.repeat + 1):
        chunks, events, wall, cpu = plain(kafka, filled)
        out(
            f"run {run} plain: {chunks} chunks, {events} events in {wall:.2f} s wall, {cpu:.2f} s "
            f"CPU: {events / wall / 1e6:.3f} M events/s wall, {events / cpu / 1e6:.3f} M per "
            f"CPU-s (load {os.getloadavg()[0]:.2f})\n"
        )
        for label, settings in variants:
            result = service(kafka, filled, args.kafka_data_dir, settings)
            report(run, label, result, filled.events)
        domain(run, filled.first_station)
    if args.profile:
        profiled(kafka, filled, args.profile_out)


if __name__ == "__main__":
    main()
