"""Fixtures for integration tests against the real servers that ``infra/`` starts.

The servers' addresses come from the environment, as printed by ``mingo infra env``::

    mingo infra up
    eval "$(mingo infra env)"
    pytest tests/integration

A test whose server is not configured is skipped with the name of the missing variable.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

_HOW_TO = 'start the servers with `mingo infra up` and `eval "$(mingo infra env)"`'


def _require(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.skip(f"{name} is not set; {_HOW_TO}")
    return value


@dataclass(frozen=True)
class SftpServer:
    """The test sshd: where it listens and how to log in with a verified host key."""

    host: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    root: Path
    ssh_config: Path


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port`` of the Kafka broker (``MINGO_KAFKA_BOOTSTRAP``)."""
    return _require("MINGO_KAFKA_BOOTSTRAP")


@pytest.fixture(scope="session")
def influx_url() -> str:
    """Base URL of InfluxDB's HTTP API, without a trailing slash (``MINGO_INFLUX_URL``)."""
    return _require("MINGO_INFLUX_URL").rstrip("/")


@pytest.fixture(scope="session")
def sftp_server() -> SftpServer:
    """The test sshd (``MINGO_SFTP_*`` and ``MINGO_SSH_CONFIG``)."""
    names = (
        "MINGO_SFTP_HOST",
        "MINGO_SFTP_PORT",
        "MINGO_SFTP_USER",
        "MINGO_SFTP_KEY",
        "MINGO_SFTP_KNOWN_HOSTS",
        "MINGO_SFTP_ROOT",
        "MINGO_SSH_CONFIG",
    )
    host, port, user, key, known_hosts, root, ssh_config = (_require(n) for n in names)
    return SftpServer(
        host=host,
        port=int(port),
        user=user,
        key=Path(key),
        known_hosts=Path(known_hosts),
        root=Path(root),
        ssh_config=Path(ssh_config),
    )


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    """An AdminClient on the test broker."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


def _wait_for_leaders(admin: AdminClient, topic: str, partitions: int, timeout: float) -> None:
    # CreateTopics returns before the partitions have leaders; producing earlier can fail.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        if (
            metadata is not None
            and metadata.error is None
            and len(metadata.partitions) == partitions
            and all(p.leader >= 0 for p in metadata.partitions.values())
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic} has no leaders after {timeout} s")


TopicFactory = Callable[..., str]


@pytest.fixture
def make_topic(kafka_admin: AdminClient, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    """Create uniquely named topics for one test, and delete them afterwards.

    Call it as ``make_topic(partitions=1, config={"retention.ms": "-1"}, prefix=None)``; it
    returns the topic name, ``test.<test name>.<random>``.
    """
    created: list[str] = []

    def factory(
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
        prefix: str | None = None,
    ) -> str:
        stem = prefix or re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)[:100]
        name = f"test.{stem}.{uuid.uuid4().hex[:10]}"
        new = NewTopic(
            name, num_partitions=partitions, replication_factor=1, config=dict(config or {})
        )
        kafka_admin.create_topics([new], operation_timeout=30)[name].result(timeout=30)
        created.append(name)
        _wait_for_leaders(kafka_admin, name, partitions, timeout=30)
        return name

    yield factory
    if created:
        for future in kafka_admin.delete_topics(created, operation_timeout=30).values():
            # Already gone is fine; a leftover test topic would be harmless anyway.
            with contextlib.suppress(KafkaException):
                future.result(timeout=30)


@pytest.fixture
def kafka_topic(make_topic: TopicFactory) -> str:
    """A fresh single-partition topic, deleted after the test."""
    return make_topic()
