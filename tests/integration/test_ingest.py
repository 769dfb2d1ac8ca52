"""Ingest end to end on Apache Kafka + sshd: simulated stations over SFTP into the raw topics.

The simulator's truth.json says how many valid events each station wrote per trigger type, and
which lines it damaged; the topics must hold exactly that, and a SIGKILLed ingest that restarts
must leave the topics exactly as an uninterrupted run does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
from confluent_kafka.admin import AdminClient

from schemas.events import envelope_from_headers
from schemas.models import LogReading, PipelineStatus
from schemas.topics import EVENTS_RAW, INGEST_PROGRESS, LOGBOOK, LOGS_RAW, REJECTS, STATUS, TOPICS
from services.common.kafka import create_topics, delete_topics, read_all
from services.common.settings import KafkaSettings
from services.common.stations import StationSource
from services.ingest.sources import HostKeyRejectedError, SftpSource, SourceUnavailableError
from tests.integration.conftest import SftpServer
from tests.simulated import simulate_day

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATIONS = (1, 2)
INGEST_TIMEOUT_S = 600


@dataclass(frozen=True)
class StationTree:
    """Simulated stations below the sshd's served directory, and a network file for them."""

    root: Path
    truth: dict[str, Any]
    network_file: Path


def _network_yaml(path: Path, entries: list[tuple[int, str, str]]) -> Path:
    """A network file whose stations are SFTP sources: (id, host alias, root)."""
    lines = ["stations:"]
    for station, host, root in entries:
        lines += [
            f"  - id: {station}",
            f"    name: mingo0{station}",
            f"    source: {{kind: sftp, host: {host}, root: {root}}}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def tree(sftp_server: SftpServer, tmp_path_factory: pytest.TempPathFactory) -> StationTree:
    root = sftp_server.root / f"ingest-{uuid.uuid4().hex[:8]}"
    truth = simulate_day(root, STATIONS, rate_hz=8.0, seed=7, damage=0.001)
    # Stations are reached through the `mingo-test` alias of the ssh config, as operators do.
    network = _network_yaml(
        tmp_path_factory.mktemp("net") / "stations.yaml",
        [(s, "mingo-test", str(root / f"mingo0{s}")) for s in STATIONS],
    )
    return StationTree(root, truth, network)


@pytest.fixture
def kafka(kafka_bootstrap: str, kafka_admin: AdminClient) -> KafkaSettings:
    """Kafka settings, with every topic of the registry freshly created (empty)."""
    delete_topics(kafka_admin, [t.name for t in TOPICS])
    create_topics(kafka_admin)
    return KafkaSettings(bootstrap=kafka_bootstrap)


def _ingest_process(
    kafka: KafkaSettings, sftp: SftpServer, network_file: Path, instance: str
) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "MINGO_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "MINGO_SSH_CONFIG": str(sftp.ssh_config),
        "MINGO_INGEST_SETTLE_S": "0",
        "MINGO_INSTANCE": instance,
        "MINGO_HEARTBEAT_S": "2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "ingest", "--network", str(network_file), "--once"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _run_ingest(kafka: KafkaSettings, sftp: SftpServer, network_file: Path, instance: str) -> str:
    process = _ingest_process(kafka, sftp, network_file, instance)
    try:
        output, _ = process.communicate(timeout=INGEST_TIMEOUT_S)
    finally:
        process.kill()  # never leave an ingest behind to write into the next test's topics
    assert process.returncode == 0, output.decode()
    return output.decode()


@dataclass
class TopicContents:
    """What ingest left in the topics, as multisets (a duplicate shows as a count of 2)."""

    chunks: Counter[tuple[str, str]]  # (chunk_id, sha256 of the Arrow payload)
    events: Counter[tuple[int, int]]  # (station, trigger type) -> events
    rejects: Counter[tuple[int, str, int | None, str]]  # (station, file, line, reason)
    readings: Counter[str]  # reading ids
    logbooks: Counter[int]  # station


def _contents(kafka: KafkaSettings) -> TopicContents:
    chunks: Counter[tuple[str, str]] = Counter()
    events: Counter[tuple[int, int]] = Counter()
    for message in read_all(kafka, EVENTS_RAW.name, max_wait_s=300):
        envelope = envelope_from_headers(message.headers())
        chunks[(envelope.chunk_id, hashlib.sha256(message.value()).hexdigest())] += 1
        events[(envelope.station, envelope.trigger_type)] += envelope.event_count
    rejects: Counter[tuple[int, str, int | None, str]] = Counter()
    for message in read_all(kafka, REJECTS.name):
        record = json.loads(message.value())
        rejects[(record["station"], record["source_file"], record["line"], record["reason"])] += 1
    readings = Counter(json.loads(m.value())["reading_id"] for m in read_all(kafka, LOGS_RAW.name))
    logbooks = Counter(json.loads(m.value())["station"] for m in read_all(kafka, LOGBOOK.name))
    return TopicContents(chunks, events, rejects, readings, logbooks)


@pytest.fixture(scope="module")
def clean_run() -> dict[str, TopicContents]:
    """Filled by the uninterrupted run, compared against by the interrupted one."""
    return {}


def test_ingest_over_sftp_publishes_exactly_the_valid_lines(
    tree: StationTree,
    kafka: KafkaSettings,
    sftp_server: SftpServer,
    clean_run: dict[str, TopicContents],
) -> None:
    _run_ingest(kafka, sftp_server, tree.network_file, instance=f"clean-{uuid.uuid4().hex[:6]}")
    contents = _contents(kafka)
    clean_run["contents"] = contents

    assert all(n == 1 for n in contents.chunks.values()), "a chunk was published twice"
    for station in STATIONS:
        entry = tree.truth["stations"][str(station)]
        totals = entry["totals"]
        for trigger in (1, 2):
            assert contents.events[(station, trigger)] == totals["valid_events"][str(trigger)], (
                f"station {station} trigger {trigger}"
            )
        line_rejects = {
            (file, line): reason
            for (s, file, line, reason) in contents.rejects
            if s == station and line is not None and file.endswith(".dat")
        }
        damaged = {(d["file"], d["line"]) for d in entry["damaged_lines"] if d["readable"]}
        truncated = {(d["file"], d["line"]) for d in entry["truncated_lines"]}
        # every damaged line rejected, and nothing else
        assert set(line_rejects) == damaged | truncated
        assert all(line_rejects[key] == "TRUNCATED_LINE" for key in truncated)
        whole_file = {
            (f, r) for (s, f, line, r) in contents.rejects if s == station and line is None
        }
        for archive in entry["corrupt_archives"]:
            assert (archive["archive"], "CORRUPT_ARCHIVE") in whole_file
        for empty in entry["empty_files"]:
            assert (empty["file"], "EMPTY_FILE") in whole_file
        log_rejects = {
            (file, line)
            for (s, file, line, _) in contents.rejects
            if s == station and ".log" in file
        }
        for damaged_log in entry["logs"]["damaged_lines"]:
            assert (Path(damaged_log["file"]).name, damaged_log["line"]) in log_rejects
        summaries = {
            s.file: s for s in _statuses(kafka) if s.kind == "file_summary" and s.station == station
        }
        for name, expected in entry["files"].items():
            if not expected["readable"] or expected["empty"]:
                continue
            summary = summaries[name]
            assert summary.lines_valid == sum(expected["valid_events"].values())
            assert summary.lines_rejected == expected["damaged_lines"]  # truncated one included
            assert summary.valid_pct is not None and 99.0 < summary.valid_pct <= 100.0
        readings = sum(1 for rid in contents.readings if rid.startswith(f"{station}/"))
        assert readings == totals["log_lines"] - totals["log_damaged_lines"]
        assert contents.logbooks[station] == 1


def test_kcat_reads_the_logs_topic_as_json(
    tree: StationTree, kafka_bootstrap: str, clean_run: dict[str, TopicContents]
) -> None:
    if "contents" not in clean_run:
        pytest.skip("needs the topics filled by the uninterrupted ingest run above")
    result = subprocess.run(
        ["kcat", "-b", kafka_bootstrap, "-C", "-t", LOGS_RAW.name, "-o", "beginning", "-e", "-q",
         "-X", "isolation.level=read_committed", "-f", "%s\n"],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    readings = [LogReading.model_validate_json(line) for line in result.stdout.splitlines()]
    assert Counter(r.reading_id for r in readings) == clean_run["contents"].readings
    assert {r.source for r in readings} == {
        "sensors_ext", "sensors_int", "hv", "trigger_rates", "gas_flow", "disk",
    }  # fmt: skip


def _statuses(kafka: KafkaSettings) -> list[PipelineStatus]:
    return [PipelineStatus.model_validate_json(m.value()) for m in read_all(kafka, STATUS.name)]


def _committed_progress_records(kafka: KafkaSettings) -> int:
    return sum(1 for _ in read_all(kafka, INGEST_PROGRESS.name, idle_timeout_s=0.5))


def test_sigkill_half_way_then_restart_equals_an_uninterrupted_run(
    tree: StationTree,
    kafka: KafkaSettings,
    sftp_server: SftpServer,
    clean_run: dict[str, TopicContents],
) -> None:
    if "contents" not in clean_run:
        pytest.skip("needs the uninterrupted run above as the reference")
    units = sum(len(tree.truth["stations"][str(s)]["files"]) for s in STATIONS)
    instance = f"killed-{uuid.uuid4().hex[:6]}"
    process = _ingest_process(kafka, sftp_server, tree.network_file, instance)
    try:
        deadline = time.monotonic() + INGEST_TIMEOUT_S
        while _committed_progress_records(kafka) < units // 3:
            assert process.poll() is None, "ingest ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    assert _committed_progress_records(kafka) < units, "killed too late to test anything"

    _run_ingest(kafka, sftp_server, tree.network_file, instance)  # same instance: fences the dead
    contents = _contents(kafka)
    reference = clean_run["contents"]
    assert contents.chunks == reference.chunks
    assert contents.events == reference.events
    assert contents.rejects == reference.rejects
    assert contents.readings == reference.readings


def _source_checking(sftp: SftpServer, known_hosts: Path) -> SftpSource:
    """An SFTP source for the test sshd that trusts only the host keys in ``known_hosts``."""
    station = StationSource(
        kind="sftp", host=sftp.host, port=sftp.port, user=sftp.user, key_file=str(sftp.key),
        known_hosts=str(known_hosts), root=str(sftp.root),
    )  # fmt: skip
    return SftpSource(station, ssh_config=None)


def test_changed_host_key_is_refused_with_a_clear_error(
    sftp_server: SftpServer, tmp_path: Path
) -> None:
    impostor = paramiko.Ed25519Key.from_private_key_file(str(sftp_server.key))  # not the host key
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"[{sftp_server.host}]:{sftp_server.port} {impostor.get_name()} {impostor.get_base64()}\n"
    )
    with pytest.raises(HostKeyRejectedError, match=r"differs from the one in .*known_hosts"):
        _source_checking(sftp_server, known_hosts).list(".")
    unknown = tmp_path / "empty_known_hosts"
    unknown.write_text("")
    with pytest.raises(HostKeyRejectedError, match=r"not in .*refusing"):
        _source_checking(sftp_server, unknown).list(".")


def test_sftp_read_returns_the_exact_bytes_across_batches_and_from_an_offset(
    sftp_server: SftpServer,
) -> None:
    # 2.5 read batches (256 x 32 kB each) plus an odd tail: every batch and block boundary
    data = os.urandom(2 * 256 * 32768 + 256 * 16384 + 12345)
    path = sftp_server.root / f"blob-{uuid.uuid4().hex[:8]}.bin"
    path.write_bytes(data)
    try:
        source = _source_checking(sftp_server, sftp_server.known_hosts)
        (listed,) = [f for f in source.list(".") if f.name == path.name]
        assert listed.size == len(data)
        assert source.read(listed) == data
        assert source.read(listed, offset=32768 * 256 - 7) == data[32768 * 256 - 7 :]
        assert source.read(listed, offset=len(data)) == b""
        source.close()
    finally:
        path.unlink()


class _CuttingRelay:
    """A TCP relay to the test sshd that drops the connection after ``limit`` bytes to the client.

    A real network fault in the middle of a transfer: both sockets close, as when a station's
    link goes down or its sshd is killed.
    """

    def __init__(self, target: tuple[str, int], limit: int) -> None:
        self.target = target
        self.limit = limit
        self.relayed = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self._listener.accept()
        server = socket.create_connection(self.target)
        threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
        self._pump(server, client, self.limit)
        for sock in (client, server, self._listener):
            sock.close()

    def _pump(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
                if limit is not None:
                    self.relayed += len(data)
                    if self.relayed >= limit:
                        break
        with contextlib.suppress(OSError):
            source.shutdown(socket.SHUT_RDWR)
            sink.shutdown(socket.SHUT_RDWR)


def test_a_connection_lost_mid_file_is_an_error_never_a_short_file(
    sftp_server: SftpServer, tmp_path: Path
) -> None:
    size = 8 * 256 * 32768  # 8 read batches
    path = sftp_server.root / f"cut-{uuid.uuid4().hex[:8]}.bin"
    path.write_bytes(os.urandom(size))
    relay = _CuttingRelay((sftp_server.host, sftp_server.port), limit=size // 3)
    known_hosts = tmp_path / "known_hosts"  # the sshd's own host key, at the relay's address
    known_hosts.write_text(
        sftp_server.known_hosts.read_text().replace(f"]:{sftp_server.port} ", f"]:{relay.port} ")
    )
    station = StationSource(
        kind="sftp", host="127.0.0.1", port=relay.port, user=sftp_server.user,
        key_file=str(sftp_server.key), known_hosts=str(known_hosts), root=str(sftp_server.root),
    )  # fmt: skip
    source = SftpSource(station, ssh_config=None, timeout_s=10)
    try:
        (listed,) = [f for f in source.list(".") if f.name == path.name]
        with pytest.raises(SourceUnavailableError, match=path.name):
            source.read(listed)
        assert relay.relayed >= size // 3  # the cut came mid-file, after the listing
    finally:
        source.close()
        path.unlink()


def test_a_file_cut_short_after_listing_is_read_again_not_published_short(
    sftp_server: SftpServer,
) -> None:
    # The fault suite once published a file without its last chunk while the station's sshd was
    # stopped mid-read. paramiko's read turns the server's end-of-file answer into a short result,
    # not an error; a short result taken as the file loses the tail for good, since the progress
    # record then says the file is done.
    size = 3 * 256 * 32768 + 999
    path = sftp_server.root / f"short-{uuid.uuid4().hex[:8]}.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    source = _source_checking(sftp_server, sftp_server.known_hosts)
    try:
        (listed,) = [f for f in source.list(".") if f.name == path.name]
        with open(path, "r+b") as handle:
            handle.truncate(size // 2)
        with pytest.raises(SourceUnavailableError, match=rf"read {size // 2} of {size} bytes"):
            source.read(listed)
        path.write_bytes(data)  # whole again: the next poll reads it all
        (listed,) = [f for f in source.list(".") if f.name == path.name]
        assert source.read(listed) == data
    finally:
        source.close()
        path.unlink()


def test_an_unreachable_station_does_not_block_the_others(
    sftp_server: SftpServer,
    kafka: KafkaSettings,
    tmp_path: Path,
) -> None:
    root = sftp_server.root / f"reach-{uuid.uuid4().hex[:8]}"
    truth = simulate_day(root, (2,), rate_hz=0.5, seed=3, damage=0.001)
    network = _network_yaml(
        tmp_path / "stations.yaml",
        [(1, "127.0.0.1:1", "/nowhere"), (2, "mingo-test", str(root / "mingo02"))],
    )
    # station 1 points at a port where nothing listens (with valid known_hosts, so the failure is
    # the refused connection itself)
    unreachable = f"host: 127.0.0.1, port: 1, known_hosts: {sftp_server.known_hosts},"
    network.write_text(network.read_text().replace("host: 127.0.0.1:1,", unreachable))
    _run_ingest(kafka, sftp_server, network, instance=f"reach-{uuid.uuid4().hex[:6]}")
    contents = _contents(kafka)
    assert contents.events[(2, 1)] == truth["stations"]["2"]["totals"]["valid_events"]["1"]
    assert (1, 1) not in contents.events
    errors = [s for s in _statuses(kafka) if s.kind == "source_error" and s.station == 1]
    assert errors and "127.0.0.1:1" in errors[0].message
    assert "known_hosts" not in errors[0].message and "retry in" in errors[0].message
