"""The ingest service: station files → raw topics, exactly once.

One worker thread per station, each with its own connection and its own transactional producer,
so an unreachable or slow station never holds up the others. Every unit of work (a ``.dat`` file,
an archive member, the new lines of a log, the logbook) is published in ONE Kafka transaction
together with its progress record on the compacted progress topic; a killed ingest therefore
either published a unit completely (and knows it on restart) or not at all (the broker aborts the
open transaction when the restarted producer with the same transactional id initialises).
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from confluent_kafka import Producer
from pydantic import SecretStr

from schemas.dat_format import parse_dat_filename
from schemas.models import IngestProgress, LogbookPeriod, PipelineStatus, StationLogbook
from schemas.station_logs import LogType, log_type_of_file
from schemas.topics import INGEST_PROGRESS, LOGBOOK, STATUS, station_key
from services.common import rejects as rj
from services.common.kafka import make_producer, read_all
from services.common.logbook import parse_logbook
from services.common.rejects import make_reject
from services.common.runtime import RunBounds, StopFlag, run_loop
from services.common.settings import KafkaSettings
from services.common.stations import Station
from services.common.status import Heartbeat, produce_status, status_key, status_message
from services.ingest.archives import ArchiveError, read_dat_archive
from services.ingest.chunking import MAX_CHUNK_EVENTS
from services.ingest.dat_parser import MAX_FILE_SPAN_S, parse_dat_file
from services.ingest.log_parser import parse_log
from services.ingest.names import check_dat_name
from services.ingest.publish import (
    Outgoing,
    event_chunk_messages,
    log_reading_messages,
    progress_key,
    progress_message,
    reject_messages,
    utc,
)
from services.ingest.sources import RemoteFile, Source, SourceUnavailableError, open_source

log = logging.getLogger(__name__)

SERVICE = "ingest"


@dataclass(frozen=True)
class IngestOptions:
    """Tunables of the ingest service."""

    instance: str
    poll_interval_s: float = 30.0
    settle_s: float = 60.0  #: a .dat file is taken once unchanged for this long [s]
    max_chunk_events: int = MAX_CHUNK_EVENTS
    #: events before a file's start or this long after it are rejected [s]
    max_file_span_s: int = MAX_FILE_SPAN_S
    ssh_config: Path | None = None
    ssh_key_passphrase: SecretStr | None = None  #: unlocks an encrypted key; never logged
    backoff_initial_s: float = 5.0
    backoff_max_s: float = 600.0
    heartbeat_s: float = 30.0


class ProgressBook:
    """What has been ingested, by progress key; restored from the compacted progress topic."""

    def __init__(self, records: Iterable[IngestProgress] = ()) -> None:
        self._records: dict[str, IngestProgress] = {}
        self._starts: dict[int, dict[datetime, str]] = {}
        self._lock = threading.Lock()
        for record in records:
            self.put(record)

    @classmethod
    def restore(cls, kafka: KafkaSettings) -> ProgressBook:
        """Read the whole progress topic (committed records only; the latest per key wins)."""
        records = [
            IngestProgress.model_validate_json(m.value())
            for m in read_all(kafka, INGEST_PROGRESS.name)
            if m.value() is not None
        ]
        return cls(records)

    def get(self, station: int, kind: str, file: str) -> IngestProgress | None:
        """The progress of one file, if any."""
        with self._lock:
            return self._records.get(progress_key(station, kind, file))

    def put(self, progress: IngestProgress) -> None:
        """Record progress after its transaction committed."""
        with self._lock:
            self._records[progress_key(progress.station, progress.kind, progress.file)] = progress
            if progress.kind == "dat" and progress.complete and progress.lines_valid:
                # Only files whose events were published count for duplicate detection.
                with contextlib.suppress(ValueError):
                    _, start = parse_dat_filename(progress.file)
                    self._starts.setdefault(progress.station, {}).setdefault(start, progress.file)

    def dat_starts(self, station: int) -> dict[datetime, str]:
        """Acquisition starts of the station's published ``.dat`` files, with their names."""
        with self._lock:
            return dict(self._starts.get(station, {}))

    def __len__(self) -> int:
        return len(self._records)


@dataclass
class _Unit:
    """Messages of one unit of work and the progress records they account for."""

    messages: list[Outgoing] = field(default_factory=list)
    progress: list[IngestProgress] = field(default_factory=list)


class StationWorker:
    """Polls one station and publishes what is new, one transaction per unit of work."""

    def __init__(
        self,
        station: Station,
        source: Source,
        producer: Producer,
        progress: ProgressBook,
        options: IngestOptions,
        stop: StopFlag,
    ) -> None:
        if station.source is None:
            raise ValueError(f"station {station.id} has no source configured")
        self.station = station
        self.layout = station.source
        self.source = source
        self.producer = producer
        self.progress = progress
        self.options = options
        self.stop = stop
        self.failures = 0
        self.units_done = 0

    # -- the loop ---------------------------------------------------------------------------
    def step(self) -> bool:
        """Poll once; True when something was published. Connection errors back off."""
        try:
            done = self.poll_once()
        except SourceUnavailableError as exc:
            self.failures += 1
            delay = min(
                self.options.backoff_initial_s * 2 ** (self.failures - 1),
                self.options.backoff_max_s,
            )
            log.warning(
                "station unreachable, retrying later",
                extra={"station": self.station.id, "error": str(exc), "retry_in_s": delay},
            )
            self._status("source_error", message=f"{exc}; retry in {delay:.0f} s")
            self.stop.wait(delay)
            return False
        if self.failures:
            self._status("source_ok", message=f"reachable again after {self.failures} failures")
            self.failures = 0
        return done > 0

    def poll_once(self) -> int:
        """List the station and publish every unit of new data; returns units published."""
        done = 0
        for file in self._ready_dat_files():
            if self.stop.is_set:
                return done
            if file.name.endswith(".tar.gz"):
                done += self._archive(file)
            else:
                done += self._commit(self._dat_unit(file, self.source.read(file), None))
        for file, log_type, closed in self._log_files():
            if self.stop.is_set:
                return done
            done += self._log(file, log_type, closed)
        done += self._logbook()
        return done

    # -- listings ---------------------------------------------------------------------------
    def _ready_dat_files(self) -> list[RemoteFile]:
        now = time.time()
        ready = []
        for file in self.source.list(self.layout.dat_subdir):
            if not file.name.endswith((".dat", ".dat.tar.gz")):
                continue
            if now - file.mtime < self.options.settle_s:
                continue  # possibly still being written
            done = self.progress.get(self.station.id, "dat", file.name)
            if done is not None and done.complete:
                if done.size_bytes == file.size:
                    continue
                # Chunk ids are deterministic, so the re-read overwrites rather than adds.
                log.warning(
                    "file changed after it was ingested; reading it again",
                    extra={
                        "station": self.station.id,
                        "file": file.name,
                        "old_size": done.size_bytes,
                        "new_size": file.size,
                    },
                )
            ready.append(file)
        return sorted(ready, key=lambda f: f.name)

    def _log_files(self) -> list[tuple[RemoteFile, LogType, bool]]:
        """Log files with unread bytes: (file, type, closed), closed = moved to done/."""
        by_name: dict[str, tuple[RemoteFile, LogType, bool]] = {}
        for subdir, closed in (
            (self.layout.log_subdir, False),
            (f"{self.layout.log_subdir}/done", True),
        ):
            for file in self.source.list(subdir):
                log_type = log_type_of_file(file.name)
                if log_type is not None and (closed or file.name not in by_name):
                    by_name[file.name] = (file, log_type, closed)
        pending = []
        for name in sorted(by_name):
            file, log_type, closed = by_name[name]
            progress = self.progress.get(self.station.id, "log", name)
            if progress is None or (
                not progress.complete and (file.size > progress.offset_bytes or closed)
            ):
                pending.append((file, log_type, closed))
        return pending

    # -- units of work ----------------------------------------------------------------------
    def _dat_unit(self, file: RemoteFile, data: bytes, archive: str | None) -> _Unit:
        station = self.station.id
        unit = _Unit()
        name = check_dat_name(
            file.name, station, datetime.now(UTC), self.progress.dat_starts(station)
        )
        start = name.start
        if name.reject is not None:
            unit.messages += reject_messages(station, "dat", file.name, [name.reject], archive)
            if name.reject.reason != rj.BAD_FILE_NAME:
                # Wrong station, future or duplicate: nothing of the file is published. (A file
                # that is only misnamed still gives its events, timed by their own lines.)
                unit.progress.append(self._dat_progress(file, archive, 0, 0, 0, 0, None, None))
                unit.messages.append(
                    self._summary("dat", file.name, 0, 0, 0, None, name.reject.detail)
                )
                return unit
        named_start_s = int(start.timestamp()) if start else None
        result = parse_dat_file(data, named_start_s, self.options.max_file_span_s)
        file_start_s = (
            named_start_s if named_start_s is not None else int(result.time_s.min(initial=0))
        )
        chunks = event_chunk_messages(
            station, file.name, file_start_s, result, self.options.max_chunk_events, archive
        )
        unit.messages += chunks
        unit.messages += reject_messages(station, "dat", file.name, result.rejects, archive)
        first = int(result.time_s.min()) if len(result.time_s) else None
        last = int(result.time_s.max()) if len(result.time_s) else None
        rejected = result.lines_total - result.lines_valid
        unit.progress.append(
            self._dat_progress(
                file,
                archive,
                result.lines_total,
                result.lines_valid,
                rejected,
                len(chunks),
                first,
                last,
            )
        )
        unit.messages.append(
            self._summary(
                "dat",
                file.name,
                result.lines_total,
                result.lines_valid,
                rejected,
                last,
                f"{len(chunks)} chunks" + (f" from {archive}" if archive else ""),
            )
        )
        return unit

    def _dat_progress(
        self,
        file: RemoteFile,
        archive: str | None,
        total: int,
        valid: int,
        rejected: int,
        chunks: int,
        first: int | None,
        last: int | None,
    ) -> IngestProgress:
        return IngestProgress(
            station=self.station.id,
            kind="dat",
            file=file.name,
            archive=archive,
            size_bytes=file.size,
            mtime_s=file.mtime,
            offset_bytes=file.size,
            next_line=1,
            complete=True,
            lines_total=total,
            lines_valid=valid,
            lines_rejected=rejected,
            chunks=chunks,
            first_time_s=first,
            last_time_s=last,
        )

    def _archive(self, file: RemoteFile) -> int:
        """Publish the members of a daily archive not yet ingested, one transaction each."""
        station = self.station.id
        members: list[tuple[str, bytes]] = []
        problem: str | None = None
        try:
            members = read_dat_archive(self.source.read(file))
        except ArchiveError as exc:
            problem = str(exc)
        archive_done = self._dat_progress(file, None, 0, 0, 0, 0, None, None)
        if problem is not None:
            # All or nothing: a damaged archive is reported whole, none of its members published.
            unit = _Unit(progress=[archive_done])
            unit.messages += reject_messages(
                station, "archive", file.name, [make_reject(None, rj.CORRUPT_ARCHIVE, problem)]
            )
            unit.messages.append(self._summary("dat", file.name, 0, 0, 0, None, problem))
            return self._commit(unit)
        done = 0
        for name, data in members:
            if self.stop.is_set:
                return done
            previous = self.progress.get(station, "dat", name)
            if previous is not None and previous.complete:
                continue  # already ingested as a plain file or from an earlier attempt
            member_file = RemoteFile(name, f"{file.path}!{name}", len(data), file.mtime)
            done += self._commit(self._dat_unit(member_file, data, file.name))
        return done + self._commit(_Unit(progress=[archive_done]))

    def _log(self, file: RemoteFile, log_type: LogType, closed: bool) -> int:
        station = self.station.id
        previous = self.progress.get(station, "log", file.name)
        offset = previous.offset_bytes if previous else 0
        first_line = previous.next_line if previous else 1
        if file.size < offset:
            self._status("source_error", file=file.name, message="log file shrank; not re-read")
            return 0
        data = self.source.read(file, offset) if file.size > offset else b""
        if closed and data and not data.endswith(b"\n"):
            data += b"\n"  # a closed file will not be completed: its last line is final
        result = parse_log(data, log_type, first_line=first_line)
        if result.consumed_bytes == 0 and not closed:
            return 0  # only a line still being written: nothing to publish yet
        consumed = data[: result.consumed_bytes]
        rejected = sum(1 for r in result.rejects if r.line is not None)
        times = [int(row.time.timestamp()) for row in result.rows]
        if previous is not None:
            times += [t for t in (previous.first_time_s, previous.last_time_s) if t is not None]
        progress = IngestProgress(
            station=station,
            kind="log",
            file=file.name,
            size_bytes=file.size,
            mtime_s=file.mtime,
            offset_bytes=min(offset + result.consumed_bytes, file.size),
            next_line=first_line + consumed.count(b"\n"),
            complete=closed,
            lines_total=(previous.lines_total if previous else 0) + result.lines_total,
            lines_valid=(previous.lines_valid if previous else 0) + len(result.rows),
            lines_rejected=(previous.lines_rejected if previous else 0) + rejected,
            chunks=0,
            first_time_s=min(times, default=None),
            last_time_s=max(times, default=None),
        )
        unit = _Unit(progress=[progress])
        unit.messages += log_reading_messages(station, log_type, file.name, result)
        unit.messages += reject_messages(station, "log", file.name, result.rejects)
        if closed:
            unit.messages.append(
                self._summary(
                    log_type.source,
                    file.name,
                    progress.lines_total,
                    progress.lines_valid,
                    progress.lines_rejected,
                    progress.last_time_s,
                    "closed",
                )
            )
        return self._commit(unit)

    def _logbook(self) -> int:
        station = self.station.id
        name = posixpath.basename(self.layout.logbook)
        directory = posixpath.dirname(self.layout.logbook)
        file = next((f for f in self.source.list(directory) if f.name == name), None)
        if file is None:
            return 0
        previous = self.progress.get(station, "logbook", name)
        if previous and (previous.size_bytes, previous.mtime_s) == (file.size, file.mtime):
            return 0
        entries, rejects = parse_logbook(
            self.source.read(file).decode("utf-8", errors="replace"), source=name
        )
        periods = [
            LogbookPeriod(
                conf=e.conf,
                start=_aware(e.start),
                end=_aware(e.end) if e.end else None,
                z_mm=e.z_mm,
                trigger_pairs=e.trigger_pairs,
            )
            for e in entries
            if e.station == station
        ]
        record = StationLogbook(
            station=station, periods=periods, source_file=name, rejected_rows=len(rejects)
        )
        unit = _Unit()
        unit.messages.append(Outgoing(LOGBOOK.name, station_key(station), record.to_json_bytes()))
        unit.messages += reject_messages(station, "logbook", name, rejects)
        unit.progress.append(
            IngestProgress(
                station=station,
                kind="logbook",
                file=name,
                size_bytes=file.size,
                mtime_s=file.mtime,
                offset_bytes=file.size,
                next_line=1,
                complete=False,
                lines_total=len(entries) + len(rejects),
                lines_valid=len(periods),
                lines_rejected=len(rejects),
                chunks=0,
            )
        )
        return self._commit(unit)

    # -- Kafka ------------------------------------------------------------------------------
    def _commit(self, unit: _Unit) -> int:
        """Publish a unit and its progress in one transaction; returns 1."""
        self.producer.begin_transaction()
        try:
            for message in [*unit.messages, *map(progress_message, unit.progress)]:
                _produce(self.producer, message)
            self.producer.commit_transaction(60)
        except BaseException:
            self.producer.abort_transaction(60)
            raise
        for progress in unit.progress:
            self.progress.put(progress)
            log.info(
                "published",
                extra={
                    "station": progress.station,
                    "kind": progress.kind,
                    "file": progress.file,
                    "bytes": progress.offset_bytes,
                    "chunks": progress.chunks,
                    "lines_valid": progress.lines_valid,
                },
            )
        self.units_done += 1
        return 1

    def _summary(
        self,
        source: str,
        file: str,
        total: int,
        valid: int,
        rejected: int,
        last_time_s: int | None,
        message: str,
    ) -> Outgoing:
        newest = utc(last_time_s)
        status = status_message(
            SERVICE,
            self.options.instance,
            "file_summary",
            station=self.station.id,
            source=source,
            file=file,
            newest_data_time=newest,
            lag_s=(datetime.now(UTC) - newest).total_seconds() if newest else None,
            lines_total=total,
            lines_valid=valid,
            lines_rejected=rejected,
            valid_pct=100.0 * valid / total if total else None,
            message=message,
        )
        return _status_outgoing(status)

    def _status(self, kind: str, file: str | None = None, message: str = "") -> None:
        """A status message outside any transaction (errors, recoveries)."""
        self.producer.begin_transaction()
        produce_status(
            self.producer,
            status_message(
                SERVICE,
                self.options.instance,
                kind,
                station=self.station.id,
                file=file,
                message=message,
            ),
        )
        self.producer.commit_transaction(30)


def _aware(value: datetime | date) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _status_outgoing(status: PipelineStatus) -> Outgoing:
    return Outgoing(STATUS.name, status_key(status), status.to_json_bytes())


def _produce(producer: Producer, message: Outgoing) -> None:
    while True:
        try:
            producer.produce(message.topic, message.value, message.key, headers=message.headers)
            return
        except BufferError:
            producer.poll(0.1)  # local queue full: let deliveries drain


def transactional_id(instance: str, station: int) -> str:
    """Transactional id of a station worker: stable across restarts of the same instance."""
    return f"mingo-ingest-{instance}-station{station}"


def run_ingest(
    stations: list[Station],
    kafka: KafkaSettings,
    options: IngestOptions,
    stop: StopFlag,
    bounds: RunBounds | None = None,
    source_factory: Callable[[Station], Source] | None = None,
) -> dict[int, int]:
    """Run one worker thread per station until stopped (or the bounds end every worker).

    Returns
    -------
    dict
        Station id -> units of work published.
    """
    producers = {}
    for station in stations:
        producers[station.id] = make_producer(
            kafka, transactional_id=transactional_id(options.instance, station.id)
        )
        producers[station.id].init_transactions(60)  # fences a previous incarnation, aborts its
        # open transaction; only then can the progress topic be read to its end (read_committed
        # stops at an open transaction)
    progress = ProgressBook.restore(kafka)
    log.info(
        "ingest starting",
        extra={"stations": [s.id for s in stations], "known_files": len(progress)},
    )
    workers = []
    for station in stations:
        assert station.source is not None
        source = (
            source_factory(station)
            if source_factory
            else open_source(station.source, options.ssh_config, options.ssh_key_passphrase)
        )
        workers.append(
            StationWorker(station, source, producers[station.id], progress, options, stop)
        )

    threads = [
        threading.Thread(
            target=run_loop,
            kwargs={
                "step": w.step,
                "stop": stop,
                "interval_s": options.poll_interval_s,
                "bounds": bounds,
            },
            name=f"ingest-station{w.station.id}",
            daemon=True,
        )
        for w in workers
    ]
    heartbeat = Heartbeat(make_producer(kafka), SERVICE, options.instance)
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            heartbeat.beat(f"{sum(w.units_done for w in workers)} units published")
            for thread in threads:
                thread.join(timeout=options.heartbeat_s / max(len(threads), 1))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        heartbeat.stopped("ingest stopped")
        for worker in workers:
            worker.producer.flush(10)
            worker.source.close()
    return {w.station.id: w.units_done for w in workers}
