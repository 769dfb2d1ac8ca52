"""Security on real processes: loopback listeners, a read-only bounded API, InfluxDB auth, secrets.

- Every socket the servers of ``mingo infra up`` (and their child processes) listen on is bound
  to loopback, found by process rather than by the ports we expect, so an extra listener (a JMX
  port, a debug endpoint) is caught too.
- The API process binds loopback by default, answers only GET and refuses unbounded ranges.
- The sink writes to an InfluxDB that requires authentication with the credentials of its
  settings, is refused without them, and never logs them.
(SSH host keys: tests/integration/test_ingest.py and test_infra.py refuse changed and unknown
keys. Secrets of ingest: tests/integration/test_bad_input.py.)
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from infra import manage
from services.common.kafka import create_topics, make_producer
from services.common.settings import KafkaSettings
from services.common.status import produce_status, status_message
from services.sink.influx import InfluxTarget, InfluxV1Writer, InfluxWriteError

pytestmark = pytest.mark.integration

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _descendants(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in found]
        found.update(children)
        frontier += children
    return found


def _socket_inodes(pids: set[int]) -> set[int]:
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue  # gone, or not ours to read
        inodes |= {int(link[8:-1]) for link in links if link.startswith("socket:[")}
    return inodes


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by ``pid`` or its children."""
    inodes = _socket_inodes(_descendants(pid))
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or int(fields[9]) not in inodes:  # 0A = TCP_LISTEN
                continue
            address_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(address_hex)
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((socket.inet_ntop(family, raw), int(port_hex, 16)))
    return found


def test_every_listener_of_the_servers_is_loopback() -> None:
    running = [s for s in manage.status() if s.running and s.pid is not None]
    if not running:
        pytest.skip("no server of this state directory runs; start them with `mingo infra up`")
    for server in running:
        assert server.pid is not None
        sockets = listening_sockets(server.pid)
        assert sockets, f"{server.name} (pid {server.pid}) listens on nothing we can see"
        exposed = [s for s in sockets if s[0] not in LOOPBACK]
        assert not exposed, f"{server.name} listens beyond loopback: {exposed}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server process ended early"
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


def _stop(process: subprocess.Popen[bytes]) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    return out.decode()


def test_api_binds_loopback_answers_only_get_and_bounded_ranges(tmp_path: Path) -> None:
    port, secret = _free_port(), secrets.token_hex(10)
    env = os.environ | {
        "MINGO_API_PORT": str(port),
        "MINGO_SINK_OUT_DIR": str(tmp_path),
        "MINGO_LOG_LEVEL": "DEBUG",
        "MINGO_KAFKA_SASL_PASSWORD": secret,
    }
    env.pop("MINGO_API_HOST", None)  # the default must be loopback
    process = subprocess.Popen(
        [sys.executable, "-m", "services.sink.api"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/health", process)
        assert listening_sockets(process.pid) == [("127.0.0.1", port)]
        with httpx.Client(base_url=base, trust_env=False, timeout=10) as client:
            for path in ("/health", "/api/v1/stations", "/api/v1/unified"):
                for method in ("POST", "PUT", "PATCH", "DELETE"):
                    assert client.request(method, path).status_code == 405, (method, path)
            day = {"station": 1, "start": "2024-03-01", "end": "2024-03-02"}
            assert client.get("/api/v1/unified", params=day).status_code == 200
            year = day | {"end": "2025-03-01"}
            response = client.get("/api/v1/unified", params=year)
            assert response.status_code == 400 and "longer than" in response.json()["detail"]
            assert client.get("/api/v1/unified", params={"station": 1}).status_code == 422
    finally:
        output = _stop(process)
    assert secret not in output


INFLUX_CONFIG = """reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  auth-enabled = true
  log-enabled = false
[logging]
  level = "warn"
"""


@pytest.fixture(scope="module")
def influx_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A private InfluxDB 1.x that requires authentication: (url, admin password)."""
    if not any((Path(p) / "influxd").exists() for p in os.environ["PATH"].split(os.pathsep)):
        pytest.skip("influxd is not installed; `mingo infra up influxdb` installs it")
    root = tmp_path_factory.mktemp("influx-auth")
    http, rpc = _free_port(), _free_port()
    config = root / "influxdb.conf"
    config.write_text(INFLUX_CONFIG.format(root=root, http=http, rpc=rpc))
    process = subprocess.Popen(
        ["influxd", "-config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{http}"
    try:
        _wait_http(f"{url}/ping", process)
        password = secrets.token_hex(12)
        # With no user yet, InfluxDB 1.x accepts exactly this statement without credentials.
        created = httpx.post(
            f"{url}/query",
            params={"q": f"CREATE USER admin WITH PASSWORD '{password}' WITH ALL PRIVILEGES"},
            trust_env=False,
        )
        assert created.status_code == 200, created.text
        yield url, password
    finally:
        _stop(process)


def test_influx_writer_uses_the_credentials_and_is_refused_without(
    influx_with_auth: tuple[str, str],
) -> None:
    url, password = influx_with_auth
    for username, given in (("", None), ("admin", "wrong-" + password)):
        target = InfluxTarget(
            url=url, username=username, password=SecretStr(given) if given else None
        )
        writer = InfluxV1Writer(target)
        with pytest.raises(InfluxWriteError, match="HTTP 401") as info:
            writer.ensure_database()
        assert not info.value.retryable and password not in str(info.value)
        writer.close()
    target = InfluxTarget(url=url, database="sec", username="admin", password=SecretStr(password))
    writer = InfluxV1Writer(target)
    writer.ensure_database()
    writer.write(["probe,station=1 value=1.5 1709251200"])
    writer.close()
    answer = httpx.get(
        f"{url}/query",
        params={"db": "sec", "q": "SELECT value FROM probe WHERE time >= 0 AND time < now()"},
        auth=("admin", password),
        trust_env=False,
    ).json()
    assert answer["results"][0]["series"][0]["values"] == [["2024-03-01T00:00:00Z", 1.5]]


def test_sink_command_writes_with_auth_and_never_logs_the_password(
    influx_with_auth: tuple[str, str],
    kafka_bootstrap: str,
    kafka_admin: AdminClient,
    tmp_path: Path,
) -> None:
    url, password = influx_with_auth
    create_topics(kafka_admin)
    instance = f"sec-{uuid.uuid4().hex[:8]}"
    producer = make_producer(KafkaSettings(bootstrap=kafka_bootstrap))
    produce_status(
        producer, status_message("security-test", instance, "heartbeat", message="probe")
    )
    assert producer.flush(30) == 0
    sasl = secrets.token_hex(10)
    env = os.environ | {
        "MINGO_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "MINGO_KAFKA_SASL_PASSWORD": sasl,
        "MINGO_INFLUX_URL": url,
        "MINGO_INFLUX_DATABASE": "mingo_sec",
        "MINGO_INFLUX_USERNAME": "admin",
        "MINGO_INFLUX_PASSWORD": password,
        "MINGO_SINK_GROUP": f"sec-{uuid.uuid4().hex[:8]}",
        "MINGO_SINK_OUT_DIR": str(tmp_path),
        "MINGO_LOG_LEVEL": "DEBUG",
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "sink", "--once"],
        env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    assert password not in output and sasl not in output
    query = (
        "SELECT count(message) FROM pipeline_status "
        f"WHERE instance = '{instance}' AND time > now() - 1h"
    )
    answer = httpx.get(
        f"{url}/query", params={"db": "mingo_sec", "q": query}, auth=("admin", password),
        trust_env=False,
    ).json()  # fmt: skip
    assert answer["results"][0]["series"][0]["values"][0][1] == 1
