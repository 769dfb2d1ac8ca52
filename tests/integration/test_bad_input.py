"""The bad-input corpus beside good files, through the ingest service on Apache Kafka and sshd.

One station directory on the SFTP server holds every ``.dat``, archive, log and logbook file of
tests/data/bad plus clean ``.dat`` files and an open log. The ingest command (a real process,
reading over SFTP with a passphrase-protected key) must end normally, put exactly one reject per
bad input on the rejects topic (file, line, reason as the manifest says), every valid line on
the raw topics, and never write a secret it was given into its log output.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from schemas.events import envelope_from_headers
from schemas.models import StationLogbook
from schemas.topics import EVENTS_RAW, LOGBOOK, LOGS_RAW, REJECTS, TOPICS
from services.common.kafka import create_topics, delete_topics, read_all
from services.common.settings import KafkaSettings
from tests.data.bad.make_corpus import FILES, dat_name, dat_text, read_manifest
from tests.integration.conftest import SftpServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GOOD_FILES = 3
GOOD_EVENTS = 300
OPEN_LOG_LINES = (
    "2024-03-01T00:00:00 0 0 0 0 25.1 30.2 944.8",
    "2024-03-01T00:15:00 0 0 0 0 25.0 30.1 944.9",
)


def _encrypted_copy(key: Path, target: Path, passphrase: str) -> Path:
    """The test client key, re-encrypted with a passphrase (ssh-keygen -p)."""
    shutil.copyfile(key, target)
    target.chmod(0o600)
    subprocess.run(
        ["ssh-keygen", "-q", "-p", "-f", str(target), "-P", "", "-N", passphrase],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return target


@pytest.fixture
def kafka(kafka_bootstrap: str, kafka_admin: AdminClient) -> KafkaSettings:
    """Kafka settings, with every topic of the registry freshly created (empty)."""
    delete_topics(kafka_admin, [t.name for t in TOPICS])
    create_topics(kafka_admin)
    return KafkaSettings(bootstrap=kafka_bootstrap)


def test_corpus_beside_good_files_through_ingest(
    sftp_server: SftpServer, kafka: KafkaSettings, tmp_path: Path
) -> None:
    station_dir = sftp_server.root / f"bad-{uuid.uuid4().hex[:8]}" / "mingo01"
    shutil.copytree(FILES / "mingo01", station_dir)
    good_start = datetime(2024, 3, 2, 12, tzinfo=UTC)
    for i in range(GOOD_FILES):
        start = good_start + timedelta(hours=i)
        (station_dir / "dat" / dat_name(start)).write_text(dat_text(start, GOOD_EVENTS, 1000 * i))
    (station_dir / "logs" / "sensors_bus1_2024-03-01.log").write_text(
        "\n".join(OPEN_LOG_LINES) + "\n"
    )

    passphrase, sasl_password = secrets.token_hex(12), secrets.token_hex(12)
    key = _encrypted_copy(sftp_server.key, tmp_path / "station_key", passphrase)
    network = tmp_path / "stations.yaml"
    network.write_text(
        "stations:\n  - id: 1\n    name: mingo01\n    source: {"
        f"kind: sftp, host: {sftp_server.host}, port: {sftp_server.port}, "
        f"user: {sftp_server.user}, "
        f"key_file: {key}, known_hosts: {sftp_server.known_hosts}, root: {station_dir}}}\n"
    )
    env = os.environ | {
        "MINGO_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "MINGO_INGEST_SETTLE_S": "0",
        "MINGO_INSTANCE": f"bad-{uuid.uuid4().hex[:6]}",
        "MINGO_HEARTBEAT_S": "2",
        # Secrets the service holds: the key's passphrase (needed to connect) and a SASL
        # password (set, unused on this PLAINTEXT listener). Neither may reach the log.
        "MINGO_SSH_KEY_PASSPHRASE": passphrase,
        "MINGO_KAFKA_SASL_PASSWORD": sasl_password,
    }
    command = [sys.executable, "-m", "services.cli", "--log-level", "DEBUG", "--log-format", "json",
               "ingest", "--network", str(network), "--once"]  # fmt: skip
    process = subprocess.run(command, env=env, capture_output=True, timeout=600)
    output = (process.stdout + process.stderr).decode()
    assert process.returncode == 0, output
    assert "units published per station: {1:" in output
    assert passphrase not in output and sasl_password not in output
    assert not any(
        json.loads(line)["level"] in ("ERROR", "CRITICAL")
        for line in process.stderr.decode().splitlines()
        if line.startswith("{")
    ), output

    manifest = [e for e in read_manifest() if e.path.startswith("mingo01/")]
    expected: Counter[tuple[str, str | None, int | None, str]] = Counter()
    for e in manifest:
        if not e.reason:
            continue
        archive, _, member = e.path.rpartition("!")
        expected[(Path(member).name, Path(archive).name or None, e.line, e.reason)] += 1
    found: Counter[tuple[str, str | None, int | None, str]] = Counter()
    for message in read_all(kafka, REJECTS.name):
        record = json.loads(message.value())
        assert record["station"] == 1
        found[(record["source_file"], record["archive"], record["line"], record["reason"])] += 1
    assert found == expected

    first_rows: dict[str, int] = {}
    for e in manifest:
        if e.valid is not None:
            first_rows.setdefault(e.path, e.valid)
    events = Counter[int]()
    for message in read_all(kafka, EVENTS_RAW.name, max_wait_s=120):
        envelope = envelope_from_headers(message.headers())
        events[envelope.station] += envelope.event_count
    dat_valid = sum(v for p, v in first_rows.items() if "/dat/" in p)
    assert events == {1: dat_valid + GOOD_FILES * GOOD_EVENTS}

    readings = Counter(json.loads(m.value())["source_file"] for m in read_all(kafka, LOGS_RAW.name))
    expected_rows = {Path(p).name: v for p, v in first_rows.items() if "/logs/" in p}
    expected_rows["sensors_bus1_2024-03-01.log"] = len(OPEN_LOG_LINES)
    assert dict(readings) == expected_rows

    logbooks = [
        StationLogbook.model_validate_json(m.value()) for m in read_all(kafka, LOGBOOK.name)
    ]
    assert len(logbooks) == 1
    bad_rows = sum(1 for e in manifest if e.kind == "logbook")
    assert logbooks[0].rejected_rows == bad_rows
    assert len(logbooks[0].periods) == first_rows["mingo01/logbook.csv"] - 1  # one is station 2's
