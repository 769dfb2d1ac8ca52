"""Where ingest's time goes on one station-day: SFTP read, unpack, parse, encode, publish.

Needs the servers of ``mingo infra up`` (``eval "$(mingo infra env)"``): the station's files are
written under the SFTP root and read through the test sshd with a verified host key, and the
publish stage produces into a fresh topic of the broker (deleted afterwards).

Each stage runs on the output of the one before, in one process, ``--repeat`` times (best kept),
with the physical limits beside it: OpenSSH's ``sftp`` and ``scp`` reading the same file through
the same sshd, and a read of the file from the page cache. Then ``run_ingest`` itself on the
station (every stage, as the service runs them), timed from start to the last commit.

    python bench/bench_ingest.py                 # station 1, one day at 8 Hz in its archive
    python bench/bench_ingest.py --repeat 3
    python bench/bench_ingest.py --sftp-variants 6     # paramiko read strategies, interleaved
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka.admin import AdminClient, NewTopic

from schemas.topics import EVENTS_RAW, TOPICS
from services.common.kafka import create_topics, delete_topics, make_producer
from services.common.runtime import RunBounds, StopFlag
from services.common.settings import KafkaSettings
from services.common.stations import StationSource, load_network
from services.ingest.archives import read_dat_archive
from services.ingest.dat_parser import parse_dat
from services.ingest.publish import event_chunk_messages
from services.ingest.service import IngestOptions, run_ingest
from services.ingest.sources import RemoteFile, SftpSource

ROOT = Path(__file__).resolve().parents[1]


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f'{name} is not set: mingo infra up && eval "$(mingo infra env)"')
    return value


def best(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` calls [s] and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def sftp_variants(
    sftp: SftpSource, file: RemoteFile, rounds: int, out: Callable[[str], object]
) -> None:
    """Time paramiko read strategies interleaved (one of each per round) on the same file."""
    client = sftp._connect()

    def whole_prefetch() -> int:  # prefetch of the whole file, then 32 kB reads
        with client.open(file.path, "rb") as handle:
            handle.prefetch(file.size)
            got = bytearray()
            while len(got) < file.size:
                block = handle.read(min(32768, file.size - len(got)))
                if not block:
                    break
                got += block
            return len(got)

    def batches(n: int) -> Callable[[], int]:
        def read() -> int:
            with client.open(file.path, "rb") as handle:
                got = bytearray()
                for start in range(0, file.size, 32768 * n):
                    stop = min(file.size, start + 32768 * n)
                    spans = [(o, min(32768, stop - o)) for o in range(start, stop, 32768)]
                    for block in handle.readv(spans):
                        got += block
                return len(got)

        return read

    variants = {
        "whole-file prefetch": whole_prefetch,
        "readv batches of 64": batches(64),
        "readv batches of 256 (ingest)": batches(256),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, read in variants.items():
            started = time.perf_counter()
            assert read() == file.size
            times[name].append(round(time.perf_counter() - started, 2))
    for name, seconds in times.items():
        out(f"  {name:38s} {seconds} s (load {os.getloadavg()[0]:.1f})\n")


def main() -> None:
    """Run the stages and print one line per stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-hz", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=2048, help="max events per chunk")
    parser.add_argument(
        "--sftp-variants",
        type=int,
        default=0,
        help="also time paramiko read strategies interleaved, this many rounds",
    )
    args = parser.parse_args()
    kafka = KafkaSettings(bootstrap=_env("MINGO_KAFKA_BOOTSTRAP"))
    sftp_root = Path(_env("MINGO_SFTP_ROOT"))
    ssh = ["-i", _env("MINGO_SFTP_KEY"), "-P", _env("MINGO_SFTP_PORT")]
    ssh += ["-o", f"UserKnownHostsFile={_env('MINGO_SFTP_KNOWN_HOSTS')}"]
    ssh += ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
    remote = f"{_env('MINGO_SFTP_USER')}@{_env('MINGO_SFTP_HOST')}"
    root = sftp_root / f"bench-ingest-{uuid.uuid4().hex[:6]}"
    out = sys.stdout.write
    try:
        subprocess.run(
            [sys.executable, "-m", "services.cli", "simulate", "--stations", "1", "--start",
             "2024-03-01", "--days", "2", "--rate-hz", str(args.rate_hz), "--seed", "5",
             "--damage", "0", "--out", str(root)],
            check=True, cwd=ROOT, capture_output=True,
        )  # fmt: skip
        dat = root / "mingo01" / "dat"
        archive = next(dat.glob("*.dat.tar.gz"))
        for later in dat.glob("*.dat"):
            later.unlink()  # only the archived day is ingested below
        size = archive.stat().st_size
        source = StationSource(
            kind="sftp", host=_env("MINGO_SFTP_HOST"), port=int(_env("MINGO_SFTP_PORT")),
            user=_env("MINGO_SFTP_USER"), key_file=_env("MINGO_SFTP_KEY"),
            known_hosts=_env("MINGO_SFTP_KNOWN_HOSTS"), root=str(root / "mingo01"),
        )  # fmt: skip
        sftp = SftpSource(source, None)
        remote_file = RemoteFile(archive.name, str(archive), size, archive.stat().st_mtime)
        out(f"archive {archive.name}: {size / 1e6:.1f} MB; load {os.getloadavg()}\n")

        def mbs(seconds: float) -> str:
            return f"{seconds:7.2f} s  {size / 1e6 / seconds:7.1f} MB/s"

        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "copy"
            t, _ = best(lambda: archive.read_bytes(), args.repeat)
            out(f"page-cache read (Path.read_bytes)       {mbs(t)}\n")
            t, _ = best(
                lambda: subprocess.run(
                    ["scp", "-q", *ssh, f"{remote}:{archive}", str(target)], check=True
                ),
                args.repeat,
            )
            out(f"OpenSSH scp                              {mbs(t)}\n")
            t, _ = best(
                lambda: subprocess.run(
                    ["sftp", "-q", *ssh, "-b", "-", remote],
                    input=f"get {archive} {target}\n".encode(),
                    check=True,
                    capture_output=True,
                ),
                args.repeat,
            )
            out(f"OpenSSH sftp                             {mbs(t)}\n")
        sftp.read(remote_file)  # connect outside the timing
        t, data = best(lambda: sftp.read(remote_file), args.repeat)
        out(f"SftpSource.read (paramiko)               {mbs(t)}\n")
        if args.sftp_variants:
            sftp_variants(sftp, remote_file, args.sftp_variants, out)
        sftp.close()
        assert isinstance(data, bytes) and len(data) == size

        t, members = best(lambda: read_dat_archive(data), args.repeat)
        assert isinstance(members, list)
        text = sum(len(m[1]) for m in members)
        out(f"unpack (gzip + tar)                      {t:7.2f} s  {text / 1e6:.0f} MB of text\n")
        t, parsed = best(lambda: [(n, parse_dat(d)) for n, d in members], args.repeat)
        assert isinstance(parsed, list)
        events = sum(len(p.time_s) for _, p in parsed)
        out(f"parse_dat                                {t:7.2f} s  {events} events\n")
        t, messages = best(
            lambda: [
                event_chunk_messages(1, n, int(p.time_s.min()), p, args.chunk) for n, p in parsed
            ],
            args.repeat,
        )
        assert isinstance(messages, list)
        flat = [m for per_file in messages for m in per_file]
        wire = sum(len(m.value) for m in flat)
        out(
            f"encode (sparse Arrow IPC)               {t:7.2f} s  {len(flat)} chunks, "
            f"{wire / 1e6:.0f} MB\n"
        )
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        topic = f"bench-ingest-{uuid.uuid4().hex[:6]}"
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
        time.sleep(1)

        def publish() -> None:
            producer = make_producer(kafka, transactional_id=f"bench-{uuid.uuid4().hex[:6]}")
            producer.init_transactions(30)
            for per_file in messages:  # one transaction per member, as the service
                producer.begin_transaction()
                for m in per_file:
                    producer.produce(topic, m.value, m.key, headers=m.headers)
                    producer.poll(0)
                producer.commit_transaction(60)

        t, _ = best(publish, args.repeat)
        label = f"publish ({len(messages)} transactions)"
        out(f"{label:41s}{t:7.2f} s  {wire / 1e6 / t:.0f} MB/s\n")
        admin.delete_topics([topic])

        # The whole service on the station, as it runs: a fresh set of topics.
        delete_topics(admin, [t.name for t in TOPICS])
        create_topics(admin)
        network = load_network()
        station = network.station(1).model_copy(update={"source": source})
        options = IngestOptions(instance=f"bench-{uuid.uuid4().hex[:6]}", settle_s=0)
        started = time.perf_counter()
        run_ingest([station], kafka, options, StopFlag(), RunBounds(stop_when_idle=True))
        total = time.perf_counter() - started
        out(
            f"run_ingest, whole station-day            {total:7.2f} s  "
            f"{events / total / 1e3:.0f} k events/s ({EVENTS_RAW.name})\n"
        )
        out(f"load after {os.getloadavg()}\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
