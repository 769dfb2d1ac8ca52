"""Settings read once, at the edge, from the environment (prefix ``MINGO_``) or a ``.env`` file.

Libraries never read the environment: services build a settings object in ``__main__`` and pass
explicit values down. Secrets are ``SecretStr`` and never appear in logs or reprs.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.stations import DEFAULT_NETWORK_FILE


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster."""

    model_config = SettingsConfigDict(
        env_prefix="MINGO_KAFKA_", env_file=".env", extra="ignore", frozen=True
    )

    bootstrap: str = Field("127.0.0.1:19092", description="Bootstrap servers host:port[,...].")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = Field(None, description="CA bundle for SSL listeners.")


class ServiceSettings(BaseSettings):
    """What every service reads: identity, logging, network file, Kafka."""

    model_config = SettingsConfigDict(
        env_prefix="MINGO_", env_file=".env", extra="ignore", frozen=True
    )

    instance: str = Field(default_factory=socket.gethostname, description="Instance id.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    network_file: Path = Field(DEFAULT_NETWORK_FILE, description="stations.yaml to use.")
    heartbeat_s: float = Field(30.0, gt=0, description="Interval of status heartbeats. [s]")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)

    def secret_values(self) -> list[str]:
        """Secret strings that must never reach a log line."""
        secret = self.kafka.sasl_password
        return [secret.get_secret_value()] if secret else []
