"""Kafka over SASL_SSL (SCRAM over TLS) with the project's client settings, on a real broker.

The broker of ``mingo infra up`` has a second listener, SASL_SSL on loopback, whose certificate
``infra/tls.py`` generated into the state directory (``MINGO_KAFKA_SASL_BOOTSTRAP``,
``MINGO_KAFKA_TLS_CA``). Each test creates its own SCRAM user with a random password through the
PLAINTEXT listener, then talks to the SASL_SSL listener only through ``KafkaSettings`` and the
factories of ``services/common/kafka.py``, as every service does.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from infra.tls import ensure_server_certificate
from services.common.kafka import create_topics, make_admin, make_consumer, make_producer
from services.common.settings import KafkaSettings
from tests.integration.conftest import TopicFactory

ROOT = Path(__file__).resolve().parents[2]


def _require(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.skip(f"{name} is not set; start the servers with `mingo infra up` and eval `env`")
    return value


@pytest.fixture
def sasl(kafka_admin: AdminClient) -> Iterator[tuple[KafkaSettings, str]]:
    """Settings of a fresh SCRAM-SHA-512 user on the SASL_SSL listener, and its password."""
    bootstrap = _require("MINGO_KAFKA_SASL_BOOTSTRAP")
    ca = _require("MINGO_KAFKA_TLS_CA")
    user = f"mingo-test-{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(24)
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    for future in kafka_admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion(user, info, password.encode())]
    ).values():
        future.result()
    settings = KafkaSettings(
        bootstrap=bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=user,
        sasl_password=SecretStr(password),
        ssl_ca_location=Path(ca),
        _env_file=None,
    )
    yield settings, password
    for future in kafka_admin.alter_user_scram_credentials(
        [UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)]
    ).values():
        future.result()


def _wrong(settings: KafkaSettings) -> KafkaSettings:
    return settings.model_copy(update={"sasl_password": SecretStr("not-" + secrets.token_hex(8))})


def test_transactional_producer_and_consumer_work_with_the_right_credentials(
    sasl: tuple[KafkaSettings, str], make_topic: TopicFactory
) -> None:
    settings, _ = sasl
    topic = make_topic(partitions=1)
    producer = make_producer(settings, transactional_id=f"test-sasl-{uuid.uuid4().hex[:6]}")
    producer.init_transactions(30)  # as ingest and reconstruct do
    producer.begin_transaction()
    for value in (b"one", b"two", b"three"):
        producer.produce(topic, value, b"1")
    producer.commit_transaction(30)
    consumer = make_consumer(settings, f"test-sasl-{uuid.uuid4().hex[:6]}")
    try:
        consumer.subscribe([topic])
        got: list[bytes] = []
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                got.append(message.value())
            if len(got) == 3:
                break
        assert got == [b"one", b"two", b"three"]
    finally:
        consumer.close()


def test_a_wrong_password_stops_producer_consumer_and_admin_with_the_reason(
    sasl: tuple[KafkaSettings, str], make_topic: TopicFactory
) -> None:
    settings, password = sasl
    wrong = _wrong(settings)
    topic = make_topic(partitions=1)
    producer = make_producer(wrong)
    producer.produce(topic, b"never")
    with pytest.raises(KafkaException) as refused:
        producer.flush(20)
    error = refused.value.args[0]
    assert error.code() == KafkaError._AUTHENTICATION
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in error.str()
    assert password not in error.str()
    consumer = make_consumer(wrong, f"test-sasl-{uuid.uuid4().hex[:6]}")
    try:
        consumer.subscribe([topic])
        with pytest.raises(KafkaException, match="Authentication failed"):
            for _ in range(20):
                consumer.poll(1.0)
    finally:
        consumer.close()
    with pytest.raises(KafkaException, match="Authentication failed"):
        create_topics(make_admin(wrong), timeout_s=10)


def test_a_broker_certificate_from_another_ca_is_refused(
    sasl: tuple[KafkaSettings, str], tmp_path: Path, make_topic: TopicFactory
) -> None:
    settings, _ = sasl
    other_ca = ensure_server_certificate(tmp_path / "other", "127.0.0.1").ca_cert
    producer = make_producer(settings.model_copy(update={"ssl_ca_location": other_ca}))
    producer.produce(make_topic(partitions=1), b"never")
    with pytest.raises(KafkaException) as refused:
        producer.flush(20)
    assert refused.value.args[0].code() == KafkaError._SSL
    assert "certificate verify failed" in refused.value.args[0].str()


def test_mingo_command_with_sasl_settings_and_debug_logs_never_shows_the_password(
    sasl: tuple[KafkaSettings, str],
) -> None:
    settings, password = sasl
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINGO_KAFKA_")} | {
        "MINGO_KAFKA_BOOTSTRAP": settings.bootstrap,
        "MINGO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "MINGO_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "MINGO_KAFKA_SASL_USERNAME": str(settings.sasl_username),
        "MINGO_KAFKA_SASL_PASSWORD": password,
        "MINGO_KAFKA_SSL_CA_LOCATION": str(settings.ssl_ca_location),
        "MINGO_LOG_LEVEL": "DEBUG",
    }
    command = [sys.executable, "-m", "services.cli", "--log-level", "debug", "topics", "create"]
    right = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert right.returncode == 0, right.stderr[-2000:]
    assert "mingo.events.raw.v2: " in right.stdout
    wrong_password = "wrong-" + secrets.token_hex(8)
    wrong = subprocess.run(
        command,
        env=env | {"MINGO_KAFKA_SASL_PASSWORD": wrong_password},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode != 0
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in wrong.stderr
    for run, secret in ((right, password), (wrong, wrong_password)):
        assert secret not in run.stdout + run.stderr
    # nor in the broker's own logs (the state directory holds the certificate and the logs)
    kafka_dir = Path(str(settings.ssl_ca_location)).parents[1]
    logs = [kafka_dir / "kafka.log", *(kafka_dir / "logs").glob("*.log")]
    assert logs[0].is_file()
    for log_file in logs:
        text = log_file.read_text(errors="replace")
        assert password not in text and wrong_password not in text, log_file
