"""The whole pipeline as child processes: ingest, reconstruct, reanalysis, unify and sink.

Used by ``mingo demo`` and by the end-to-end and fault tests, so that all of them run the
services exactly as a deployment does (``python -m services.<name>``, settings from ``MINGO_*``
variables) and can stop, kill or restart any one of them. Each service writes its log to
``<log_dir>/<service>.log`` (appended across restarts).

A run is *drained* when every consumer group has committed up to the end of its input topics
and nothing moved for a quiet period: the data topics' ends and the groups' offsets are sampled
once a second.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml
from confluent_kafka import Consumer, TopicPartition

from schemas.models import IngestProgress
from schemas.topics import (
    COEFFICIENTS,
    ERA5_HOURLY,
    EVENTS_RAW,
    INGEST_PROGRESS,
    LOGBOOK,
    LOGS_RAW,
    RATES_MINUTE,
    UNIFIED_MINUTE,
)
from services.common.kafka import client_config, read_all, watermarks
from services.common.settings import KafkaSettings
from services.common.stations import Network, Station, StationSource

log = logging.getLogger(__name__)

#: The services, in the order they are started.
SERVICES: tuple[str, ...] = ("ingest", "reanalysis", "reconstruct", "unify", "sink")

#: What each consumer group reads, for the drain check (the sink's status topic is left out:
#: heartbeats keep arriving there).
GROUP_INPUTS: dict[str, tuple[str, ...]] = {
    "reconstruct": (EVENTS_RAW.name,),
    "unify": (RATES_MINUTE.name, LOGS_RAW.name, ERA5_HOURLY.name, COEFFICIENTS.name),
    "sink": (UNIFIED_MINUTE.name,),
}
#: The topics whose ends are sampled: every group's inputs.
_DATA_TOPICS = sorted({topic for topics in GROUP_INPUTS.values() for topic in topics})


class PipelineError(RuntimeError):
    """A service died on its own, or the pipeline did not drain in time."""


@dataclass(frozen=True)
class PipelineConfig:
    """Where the services run and what they read and write.

    Attributes
    ----------
    kafka : KafkaSettings
        The broker every service uses.
    network_file : Path
        ``stations.yaml`` of the stations to ingest (local or SFTP sources).
    era5_dir : Path
        ERA5 files, one ``mingo0S/`` per station (the reanalysis service publishes them).
    out_dir : Path
        Root of the sink's daily CSV/Parquet files.
    log_dir : Path
        One log file per service.
    run_id : str
        Names the instances, transactional ids and consumer groups of this run, so that a run
        never resumes another run's offsets.
    influx_url : str or None
        InfluxDB (v1 API); None = the sink writes the files only.
    influx_database : str
        InfluxDB database.
    poll_interval_s : float
        Polling interval of ingest and reanalysis. [s]
    heartbeat_s : float
        Status heartbeat interval. [s]
    state_dir : Path or None
        Local state of the services (unify's and reconstruct's stores, calibrations); None =
        ``state/`` beside ``log_dir``.
    extra_env : mapping
        More ``MINGO_*`` variables (they win over the ones derived here).
    """

    kafka: KafkaSettings
    network_file: Path
    era5_dir: Path
    out_dir: Path
    log_dir: Path
    run_id: str
    influx_url: str | None = None
    influx_database: str = "mingo"
    poll_interval_s: float = 1.0
    heartbeat_s: float = 5.0
    state_dir: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def local_state(self) -> Path:
        """Folder of the services' local state (unify's and reconstruct's stores, calibrations)."""
        return self.state_dir or self.log_dir.parent / "state"

    def group(self, service: str) -> str:
        """Consumer group of ``service`` in this run."""
        return f"mingo-{service}-{self.run_id}"

    def environment(self) -> dict[str, str]:
        """The ``MINGO_*`` variables of every service (each reads the ones it knows)."""
        env = {
            "MINGO_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "MINGO_NETWORK_FILE": str(self.network_file),
            "MINGO_INSTANCE": self.run_id,
            "MINGO_LOG_LEVEL": "INFO",
            "MINGO_LOG_FORMAT": "text",
            "MINGO_HEARTBEAT_S": str(self.heartbeat_s),
            "MINGO_INGEST_POLL_INTERVAL_S": str(self.poll_interval_s),
            # a station (and the live simulator) writes .dat files under a temporary name and
            # renames them when complete, so a file is taken as soon as it appears
            "MINGO_INGEST_SETTLE_S": "0",
            "MINGO_RECONSTRUCT_GROUP_ID": self.group("reconstruct"),
            "MINGO_ERA5_DIR": str(self.era5_dir),
            "MINGO_ERA5_POLL_INTERVAL_S": str(self.poll_interval_s),
            "MINGO_UNIFY_GROUP_ID": self.group("unify"),
            "MINGO_RECONSTRUCT_CALIBRATION_DIR": str(self.local_state() / "calibrations"),
            "MINGO_RECONSTRUCT_STATE_DIR": str(self.local_state() / "reconstruct"),
            "MINGO_UNIFY_STATE_DIR": str(self.local_state() / "unify"),
            "MINGO_SINK_GROUP": self.group("sink"),
            "MINGO_SINK_OUT_DIR": str(self.out_dir),
            "MINGO_SINK_INFLUX": "true" if self.influx_url else "false",
            "MINGO_SINK_BACKOFF_MAX_S": "5",
        }
        if self.influx_url:
            env |= {
                "MINGO_INFLUX_URL": self.influx_url,
                "MINGO_INFLUX_DATABASE": self.influx_database,
            }
        return env | dict(self.extra_env)


def write_local_network(path: Path, stations: list[Station], roots: Mapping[int, Path]) -> Path:
    """A network file whose stations read local directories (``roots``: station id -> dir)."""
    local = [
        s.model_copy(update={"source": StationSource(kind="local", root=str(roots[s.id]))})
        for s in stations
    ]
    network = Network(stations=tuple(local))
    path.write_text(yaml.safe_dump(network.model_dump(mode="json"), sort_keys=False))
    return path


class Pipeline:
    """The five services as child processes; a context manager that stops them all at exit.

    With ``supervise``, a service that exits on its own is started again (as a container
    runtime's restart policy would); without, that is an error. Safe to drive from several
    threads (a fault injector beside the thread waiting for the drain).
    """

    def __init__(self, config: PipelineConfig, *, supervise: bool = False) -> None:
        self.config = config
        self.supervise = supervise
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}
        self.restarts: dict[str, int] = dict.fromkeys(SERVICES, 0)
        # one service is never started twice by two threads that both saw it dead
        self._lock = threading.RLock()
        config.log_dir.mkdir(parents=True, exist_ok=True)
        config.out_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()

    def log_path(self, service: str) -> Path:
        """The service's log file."""
        return self.config.log_dir / f"{service}.log"

    def start(self, service: str) -> None:
        """Start ``service`` (``python -m services.<service>``) unless it runs."""
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
        with self._lock:
            running = self.processes.get(service)
            if running is not None and running.poll() is None:
                return
            if running is not None:
                self.restarts[service] += 1
            handle = self._logs.get(service) or self.log_path(service).open("ab")
            self._logs[service] = handle
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"],
                env=os.environ | self.config.environment(),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=handle,
            )
            log.info("started %s (pid %d)", service, self.processes[service].pid)

    def start_all(
        self, services: tuple[str, ...] = SERVICES, logbook_timeout_s: float = 60.0
    ) -> None:
        """Start the services; reconstruct only once ingest has published the logbooks.

        Reconstruct reads the logbook topic once, when it starts, for the plane positions.
        """
        for name in ("ingest", "reanalysis"):
            if name in services:
                self.start(name)
        if "ingest" in services:
            self.wait_for_logbooks(logbook_timeout_s)
        for service in services:
            self.start(service)

    def wait_for_logbooks(self, timeout_s: float) -> None:
        """Wait until the logbook topic holds a record of every station of the network file."""
        from services.common.stations import load_network

        wanted = {s.id for s in load_network(self.config.network_file).stations}
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            keys = {m.key() for m in read_all(self.config.kafka, LOGBOOK.name, max_wait_s=30)}
            if {str(s).encode() for s in wanted} <= keys:
                return
            if time.monotonic() > deadline:
                raise PipelineError(f"ingest published no logbook for stations {sorted(wanted)}")
            time.sleep(1.0)

    def ingested_all(self, folders: Mapping[int, Path] | None = None) -> bool:
        """True when every ``.dat`` file and archive in the station folders is ingested.

        ``folders`` maps station ids to their ``dat/`` folders on this machine; by default the
        folders of the network file's local sources. Read from ingest's progress topic (a record
        with ``complete`` per file and archive).
        """
        from services.common.stations import load_network

        if folders is None:
            folders = {
                s.id: Path(s.source.root) / s.source.dat_subdir
                for s in load_network(self.config.network_file).stations
                if s.source is not None and s.source.kind == "local"
            }
        done = set()
        for message in read_all(self.config.kafka, INGEST_PROGRESS.name, max_wait_s=30):
            progress = IngestProgress.model_validate_json(message.value())
            if progress.kind == "dat" and progress.complete:
                done.add((progress.station, progress.file))
        for station, folder in folders.items():
            names = [p.name for p in folder.glob("*.dat")] + [
                p.name for p in folder.glob("*.dat.tar.gz")
            ]
            if any((station, name) not in done for name in names):
                return False
        return True

    def signal(self, service: str, sig: signal.Signals) -> bool:
        """Send ``sig`` to the service if it runs (SIGKILL: wait until it is gone).

        Returns True when the signal was delivered to a running process.
        """
        with self._lock:
            process = self.processes.get(service)
            if process is None or process.poll() is not None:
                return False
            process.send_signal(sig)
            if sig == signal.SIGKILL:
                process.wait()
            return True

    def kill(self, service: str) -> bool:
        """SIGKILL the service and start it again at once, as a supervisor would.

        Returns False (and only starts it) when it was not running.
        """
        with self._lock:
            killed = self.signal(service, signal.SIGKILL)
            self.start(service)
            return killed

    def restart(self, service: str, timeout_s: float = 60.0) -> int | None:
        """Stop the service gracefully and start it again (it re-reads its configuration).

        Returns the exit status of the stopped process.
        """
        with self._lock:
            status = self.stop(service, timeout_s)
            self.start(service)
            return status

    def stop(self, service: str, timeout_s: float = 60.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit status."""
        with self._lock:
            process = self.processes.get(service)
            if process is None:
                return None
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in %.0f s; killing it", service, timeout_s)
                    process.kill()
                    process.wait()
            return process.returncode

    def stop_all(self, timeout_s: float = 60.0) -> dict[str, int | None]:
        """Stop every service, consumers of the end first; returns their exit statuses."""
        with self._lock:
            statuses = {
                s: self.stop(s, timeout_s) for s in reversed(SERVICES) if s in self.processes
            }
            for handle in self._logs.values():
                handle.close()
            self._logs.clear()
            return statuses

    def check_alive(self) -> None:
        """Raise PipelineError naming a service that exited on its own, with its log's tail.

        Under ``supervise`` the service is started again instead.
        """
        with self._lock:
            for service, process in list(self.processes.items()):
                if process.poll() is not None:
                    if self.supervise:
                        log.warning("%s exited with %s; restarting it", service, process.returncode)
                        self.start(service)
                        continue
                    tail = _tail(self.log_path(service))
                    raise PipelineError(
                        f"{service} exited with status {process.returncode}; its log ends:\n{tail}"
                    )

    def wait_drained(
        self,
        *,
        quiet_s: float = 10.0,
        timeout_s: float = 600.0,
        ready: Callable[[], bool] = lambda: True,
        on_tick: Callable[[Progress], None] | None = None,
    ) -> Progress:
        """Wait until ``ready()`` and every group caught up, with nothing moving for ``quiet_s``.

        Raises
        ------
        PipelineError
            When a service died or ``timeout_s`` passed.
        """
        deadline = time.monotonic() + timeout_s
        with _offset_reader(self.config.kafka) as reader:
            previous: Progress | None = None
            quiet_since = time.monotonic()
            while True:
                self.check_alive()
                progress = reader.progress(self.config, set(self.processes))
                if on_tick is not None:
                    on_tick(progress)
                if progress != previous:
                    previous, quiet_since = progress, time.monotonic()
                elif progress.caught_up and ready() and time.monotonic() - quiet_since >= quiet_s:
                    return progress
                if time.monotonic() > deadline:
                    raise PipelineError(
                        f"the pipeline did not drain in {timeout_s:.0f} s: {progress}"
                    )
                time.sleep(1.0)


@dataclass(frozen=True)
class Progress:
    """Ends of the data topics and what each consumer group still has to read."""

    ends: tuple[tuple[str, int], ...]  #: (topic, messages incl. transaction markers)
    lag: tuple[tuple[str, int], ...]  #: (service, offsets left on its inputs)

    @property
    def caught_up(self) -> bool:
        """Every group at the end of its inputs (a transaction marker may remain per partition)."""
        return all(left <= 0 for _, left in self.lag)

    def __str__(self) -> str:
        ends = ", ".join(f"{t} {n}" for t, n in self.ends)
        lag = ", ".join(f"{s} {n}" for s, n in self.lag)
        return f"topic ends: {ends}; lag: {lag}"


class _OffsetReader:
    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.probe = Consumer(client_config(kafka) | {"group.id": "mingo-pipeline-probe"})
        self._partitions: dict[str, list[int]] = {}
        self._groups: dict[str, Consumer] = {}

    def partitions(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            metadata = self.probe.list_topics(topic, timeout=10).topics[topic]
            self._partitions[topic] = sorted(metadata.partitions)
        return self._partitions[topic]

    def ends(self, topic: str) -> dict[int, int]:
        return {
            p: watermarks(self.probe, TopicPartition(topic, p))[1] for p in self.partitions(topic)
        }

    def committed(self, group: str, topic: str) -> dict[int, int]:
        # a consumer that never subscribes only asks the group's coordinator for offsets
        if group not in self._groups:
            self._groups[group] = Consumer(client_config(self.kafka) | {"group.id": group})
        tps = [TopicPartition(topic, p) for p in self.partitions(topic)]
        return {tp.partition: tp.offset for tp in self._groups[group].committed(tps, timeout=10)}

    def progress(self, config: PipelineConfig, services: set[str]) -> Progress:
        ends = {t: self.ends(t) for t in _DATA_TOPICS}
        lag = []
        for service, topics in GROUP_INPUTS.items():
            if service not in services:
                continue
            left = 0
            for topic in topics:
                committed = self.committed(config.group(service), topic)
                for partition, end in ends[topic].items():
                    start = committed.get(partition, -1)
                    # no commit yet: everything is left; a committed transaction ends with a
                    # marker after the last record, which a consumer never commits past
                    left += end if start < 0 else max(0, end - start - 1)
            lag.append((service, left))
        totals = tuple((t, sum(ends[t].values())) for t in sorted(ends))
        return Progress(totals, tuple(lag))

    def close(self) -> None:
        for consumer in self._groups.values():
            consumer.close()
        self.probe.close()


@contextmanager
def _offset_reader(kafka: KafkaSettings) -> Iterator[_OffsetReader]:
    reader = _OffsetReader(kafka)
    try:
        yield reader
    finally:
        reader.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
