"""What the Quix Streams services share: the application class, the connection, the run loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig

from schemas.topics import TopicSpec
from services.common.kafka import create_topics, make_admin
from services.common.runtime import RunBounds, StopFlag
from services.common.settings import KafkaSettings

__all__ = ["QuietApplication", "connection_config", "exactly_once_application", "run_application"]


class QuietApplication(Application):
    """A Quix application that leaves signals to the service (they set its StopFlag), commits a
    checkpoint as soon as its consumer has caught up, and runs callbacks just before a commit.

    Quix commits a checkpoint every ``commit_interval`` (or ``commit_every`` records). Here a
    checkpoint with records also commits when a poll brings nothing new: the records of a burst
    (a file's chunks, a transaction of minute records) reach the next service when the burst is
    done, not up to ``commit_interval`` later, while a consumer with a backlog still commits on
    the interval. Exactly-once is unchanged: whenever it happens, a commit is one transaction.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._before_commit: list[Callable[[], None]] = []
        self._idle = False
        consumer = self._consumer
        poll_row = consumer.poll_row
        context = self._processing_context
        commit = context.commit_checkpoint

        def polled(*poll_args: Any, **poll_kwargs: Any) -> Any:
            rows = poll_row(*poll_args, **poll_kwargs)
            self._idle = rows is None
            return rows

        def commit_checkpoint(force: bool = False, revoking: bool = False) -> None:
            checkpoint = context.checkpoint
            # decide once: Quix's own expiry test, a moment later, could commit a checkpoint
            # the callbacks have not seen
            if force or checkpoint.expired() or (self._idle and not checkpoint.empty()):
                for callback in self._before_commit:
                    callback()
                commit(force=True, revoking=revoking)

        consumer.poll_row = polled  # type: ignore[method-assign]
        context.commit_checkpoint = commit_checkpoint  # type: ignore[method-assign]

    def _setup_signal_handlers(self) -> None:
        # Quix installs SIGINT/SIGTERM handlers, which fails outside the main thread; the
        # service's own handlers (installed by __main__) set the StopFlag that stops the app.
        return

    def before_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` just before each checkpoint commits (on schedule, when caught up,
        when stopping, on a partition revoke).

        What it produces (:meth:`produce`) and writes to the state stores of the checkpoint
        joins that checkpoint's Kafka transaction, with the consumed offsets: a service can
        batch the work of a checkpoint's records and still commit exactly once. If the process
        dies before the commit, the transaction is aborted and the records are processed again.
        """
        self._before_commit.append(callback)

    def produce(self, topic: str, key: bytes, value: bytes) -> None:
        """Produce a message in the open checkpoint's transaction (from a ``before_commit``)."""
        self._processing_context.producer.produce(topic=topic, key=key, value=value)


def connection_config(kafka: KafkaSettings) -> ConnectionConfig:
    """The Quix connection of the cluster settings."""
    return ConnectionConfig(
        bootstrap_servers=kafka.bootstrap,
        security_protocol=kafka.security_protocol,
        sasl_mechanism=kafka.sasl_mechanism,
        sasl_username=kafka.sasl_username,
        sasl_password=kafka.sasl_password,
        ssl_ca_location=str(kafka.ssl_ca_location) if kafka.ssl_ca_location else None,
    )


def exactly_once_application(
    kafka: KafkaSettings,
    topics: list[TopicSpec],
    group_id: str,
    transactional_id: str,
    commit_interval_s: float,
    state_dir: Path,
    producer_config: dict[str, Any] | None = None,
    **options: Any,
) -> QuietApplication:
    """An exactly-once Quix application of a consumer group, reading from the earliest offset.

    ``topics`` (inputs and outputs) are created first if missing, with explicit partitions and
    configs: tansu reports only explicit configs, and Quix needs them. ``transactional_id`` must
    be stable across restarts of an instance, so that a restart fences its killed predecessor;
    ``options`` go to ``Application`` (e.g. ``commit_every``).
    """
    create_topics(make_admin(kafka), topics)
    return QuietApplication(
        broker_address=connection_config(kafka),
        consumer_group=group_id,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=commit_interval_s,
        state_dir=state_dir,
        # a checkpoint is due only once a poll returns: a short poll keeps an idle app from
        # holding the last records' transaction (and their rows) open for up to a second
        consumer_poll_timeout=0.1,
        consumer_extra_config={
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1500,
            # as services.common.kafka.make_consumer: a transaction's records become readable
            # at its commit, which may not end a fetch the broker holds (librdkafka: 500 ms)
            "fetch.wait.max.ms": 100,
        },
        producer_extra_config={"transactional.id": transactional_id} | (producer_config or {}),
        loglevel=None,
        **options,
    )


def run_application(
    app: Application,
    stop: StopFlag,
    bounds: RunBounds,
    idle_timeout_s: float,
    records_in: Callable[[], int],
    heartbeat: Callable[[], None],
    heartbeat_s: float,
) -> None:
    """Run ``app`` until a stop request, a bound, or (``bounds.stop_when_idle``) idleness.

    A watcher thread stops the app on a stop request or a bound (``max_steps`` counts
    ``records_in()``) and calls ``heartbeat`` every ``heartbeat_s`` meanwhile.
    """
    finished = threading.Event()

    def watch() -> None:
        started = time.monotonic()
        last_beat = float("-inf")
        while not finished.is_set():
            now = time.monotonic()
            if (
                stop.is_set
                or (bounds.max_seconds is not None and now - started >= bounds.max_seconds)
                or (bounds.max_steps is not None and records_in() >= bounds.max_steps)
            ):
                app.stop()
                return
            if now - last_beat >= heartbeat_s:
                heartbeat()
                last_beat = now
            finished.wait(0.2)

    watcher = threading.Thread(target=watch, name="quix-watch", daemon=True)
    watcher.start()
    try:
        app.run(timeout=idle_timeout_s if bounds.stop_when_idle else 0.0, collect=False)
    finally:
        finished.set()
        watcher.join()
