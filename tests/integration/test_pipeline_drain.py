"""The pipeline's drain check on Apache Kafka: a group lags until it has read all its inputs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.topics import (
    COEFFICIENTS,
    ERA5_HOURLY,
    EVENTS_RAW,
    LOGS_RAW,
    RATES_MINUTE,
    UNIFIED_MINUTE,
    station_key,
)
from services.common.kafka import (
    client_config,
    create_topics,
    delete_topics,
    make_producer,
    watermarks,
)
from services.common.settings import KafkaSettings
from services.pipeline import PipelineConfig, _offset_reader
from tests.coefficient_records import teff_record

pytestmark = pytest.mark.integration


def test_a_published_coefficients_record_is_waited_for(
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path: Path
) -> None:
    # mingo fit --publish during a run: the run is not drained until unify has read the record
    specs = [EVENTS_RAW, RATES_MINUTE, LOGS_RAW, ERA5_HOURLY, COEFFICIENTS, UNIFIED_MINUTE]
    delete_topics(kafka_admin, [spec.name for spec in specs])
    create_topics(kafka_admin, specs)
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    config = PipelineConfig(
        kafka=kafka,
        network_file=tmp_path / "network.yaml",
        era5_dir=tmp_path,
        out_dir=tmp_path,
        log_dir=tmp_path,
        run_id=uuid.uuid4().hex[:6],
    )
    producer = make_producer(kafka)
    record = teff_record(1, 1, beta=-0.15, alpha_t=-0.25)
    producer.produce(COEFFICIENTS.name, record.to_json_bytes(), station_key(1))
    assert producer.flush(30) == 0
    with _offset_reader(kafka) as reader:
        progress = reader.progress(config, {"unify"})
        assert dict(progress.lag) == {"unify": 1} and not progress.caught_up
        # unify's group commits past the record (as the service does once it has read it)
        group = Consumer(client_config(kafka) | {"group.id": config.group("unify")})
        try:
            ends = []
            for partition in range(COEFFICIENTS.partitions):
                end = watermarks(group, TopicPartition(COEFFICIENTS.name, partition))[1]
                if end > 0:
                    ends.append(TopicPartition(COEFFICIENTS.name, partition, end))
            group.commit(offsets=ends, asynchronous=False)
        finally:
            group.close()
        assert reader.progress(config, {"unify"}).caught_up
