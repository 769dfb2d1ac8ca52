"""Kafka client factories and topic administration (confluent-kafka).

Producers are idempotent (``enable.idempotence=true``, ``acks=all``) and partition with murmur2,
the Java client's partitioner, so every client of any language puts a station on the same partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.topics import MAX_MESSAGE_BYTES, TOPICS, TopicSpec
from services.common.settings import KafkaSettings

log = logging.getLogger(__name__)


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection settings shared by producers, consumers and the admin client."""
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap,
        "security.protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        config["sasl.mechanism"] = kafka.sasl_mechanism
        config["sasl.username"] = kafka.sasl_username or ""
        if kafka.sasl_password is not None:
            config["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.ssl_ca_location:
        config["ssl.ca.location"] = str(kafka.ssl_ca_location)
    return config


def fail_on_refused_login(error: KafkaError) -> None:
    """``error_cb`` of every client: a refused SASL login or TLS handshake stops the caller.

    librdkafka treats both as transient and retries forever, logging to stderr, while the
    service would wait without saying why. Raised here, the error (with librdkafka's reason,
    e.g. "invalid credentials with SASL mechanism SCRAM-SHA-512" or "certificate verify
    failed", never the password) comes out of the ``poll``/``flush``/``consume`` that served
    the callback, so a service with wrong credentials stops at start with that message.
    """
    if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
        raise KafkaException(error)


def make_producer(
    kafka: KafkaSettings, *, transactional_id: str | None = None, **overrides: Any
) -> Producer:
    """An idempotent producer; transactional when ``transactional_id`` is given."""
    config = client_config(kafka) | {
        "error_cb": fail_on_refused_login,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 20,
        "message.max.bytes": MAX_MESSAGE_BYTES,
    }
    if transactional_id:
        config["transactional.id"] = transactional_id
        config["transaction.timeout.ms"] = 120_000
    config.update(overrides)
    return Producer(config)


def make_consumer(kafka: KafkaSettings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer that reads committed data only and commits offsets explicitly."""
    config = client_config(kafka) | {
        "error_cb": fail_on_refused_login,
        "group.id": group_id,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        # how long the broker may hold a fetch that has nothing new (librdkafka: 500 ms); a
        # transaction's records become readable at its commit, which may not end that wait
        "fetch.wait.max.ms": 100,
    }
    config.update(overrides)
    return Consumer(config)


def make_admin(kafka: KafkaSettings) -> AdminClient:
    """An admin client."""
    return AdminClient(client_config(kafka) | {"error_cb": fail_on_refused_login})


def create_topics(
    admin: AdminClient, specs: Iterable[TopicSpec] = TOPICS, timeout_s: float = 30.0
) -> dict[str, str]:
    """Create the topics that do not exist yet, with explicit partitions and configs.

    Returns
    -------
    dict
        Topic name -> ``"created"`` or ``"exists"``.

    Raises
    ------
    KafkaException
        If a topic cannot be created for another reason than existing already.
    """
    specs = list(specs)
    existing = set(_first_metadata(admin, timeout_s).topics)
    result = {spec.name: "exists" for spec in specs if spec.name in existing}
    new = [
        NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=1 if _single_broker(admin, timeout_s) else -1,
            config=spec.broker_config(),
        )
        for spec in specs
        if spec.name not in existing
    ]
    if not new:
        return result
    for name, future in admin.create_topics(new, operation_timeout=timeout_s).items():
        try:
            future.result()
            result[name] = "created"
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            result[name] = "exists"
    _wait_for_leaders(admin, [t.topic for t in new], timeout_s)
    return result


def _first_metadata(admin: AdminClient, timeout_s: float) -> Any:
    """Cluster metadata, asked in 1 s attempts until ``timeout_s``.

    Between attempts ``poll`` serves ``error_cb``, so a refused login or TLS handshake raises
    within about a second with its reason instead of a bare transport failure after the timeout.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin.list_topics(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
        except KafkaException:
            admin.poll(0)
            if time.monotonic() >= deadline:
                raise


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Block until every partition of the topics has a leader (new topics have none at first)."""

    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=timeout_s).topics
        if all(
            name in topics
            and topics[name].partitions
            and all(p.leader >= 0 for p in topics[name].partitions.values())
            for name in names
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without partition leaders after {timeout_s} s: {names}")
        time.sleep(0.1)


def _single_broker(admin: AdminClient, timeout_s: float) -> bool:
    return len(admin.list_topics(timeout=timeout_s).brokers) == 1


def read_all(
    kafka: KafkaSettings,
    topic: str,
    *,
    idle_timeout_s: float = 2.0,
    max_wait_s: float = 60.0,
    isolation: str = "read_committed",
) -> Iterator[Message]:
    """Every message of a topic from the beginning to its current end, without a consumer group.

    Used to restore state from compacted topics and by tools that inspect a topic. The end is the
    high watermark of each partition at the start (last stable offset for read_committed).

    Raises
    ------
    TimeoutError
        If the end is not reached within ``max_wait_s``.
    """

    consumer = Consumer(
        client_config(kafka)
        | {
            "error_cb": fail_on_refused_login,
            "group.id": "mingo-reader-unused",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        if metadata.topics[topic].error is not None:
            raise KafkaException(metadata.topics[topic].error)
        partitions = [TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions]
        remaining = set()
        for tp in partitions:
            low, high = watermarks(consumer, tp, timeout_s=max_wait_s)
            tp.offset = low
            if high > low:
                remaining.add(tp.partition)
        consumer.assign(partitions)
        deadline = time.monotonic() + max_wait_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach its end in {max_wait_s} s")
            message = consumer.poll(min(idle_timeout_s, 1.0))
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(message.partition())
                    continue
                raise KafkaException(error)
            yield message
    finally:
        consumer.close()


#: Errors of a partition whose leadership is still settling (new or recreated topic).
_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


def watermarks(consumer: Consumer, tp: TopicPartition, timeout_s: float = 60.0) -> tuple[int, int]:
    """Low and high offsets of a partition, retrying transient errors for up to ``timeout_s``.

    A new or recreated topic answers NOT_LEADER for a while after its leader was elected.
    """

    deadline_s = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0]
            transient = error.retriable() or error.code() in _SETTLING
            if not transient or time.monotonic() > deadline_s:
                raise
            time.sleep(0.2)


def delete_topics(admin: AdminClient, names: Iterable[str], timeout_s: float = 60.0) -> list[str]:
    """Delete the named topics that exist and wait until the broker has forgotten them.

    Returns the names deleted. Meant for development and test clusters (``mingo topics reset``).
    """

    existing = set(admin.list_topics(timeout=timeout_s).topics)
    doomed = [name for name in names if name in existing]
    if not doomed:
        return []
    for future in admin.delete_topics(doomed, operation_timeout=timeout_s).values():
        future.result()
    deadline = time.monotonic() + timeout_s
    while set(doomed) & set(admin.list_topics(timeout=timeout_s).topics):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics still present {timeout_s} s after deletion: {doomed}")
        time.sleep(0.2)
    return doomed
