"""Settings of the sink and of the HTTP API (environment prefix ``MINGO_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from schemas.topics import STATUS, UNIFIED_MINUTE
from services.common.settings import ServiceSettings
from services.sink.influx import InfluxTarget, InfluxWriter
from services.sink.service import SinkOptions, make_writer

DEFAULT_OUT_DIR = Path("out")


class SinkSettings(ServiceSettings):
    """What the sink reads from the environment, on top of the common settings."""

    sink_influx: bool = Field(
        True, description="Write to InfluxDB; false = the daily files only (no InfluxDB needed)."
    )
    influx_url: str = Field("http://127.0.0.1:18086", description="InfluxDB base URL.")
    influx_api: Literal["v1", "v2"] = Field(
        "v1", description="v1: /write (1.x, and 2.x/3.x compatibility); v2: influxdb-client."
    )
    influx_database: str = Field("mingo", description="v1 database (2.x: the DBRP database).")
    influx_retention_policy: str = Field("", description="v1 retention policy; empty = default.")
    influx_username: str = Field("", description="v1 basic-auth user; empty = no basic auth.")
    influx_password: SecretStr | None = Field(None, description="v1 basic-auth password.")
    influx_token: SecretStr | None = Field(None, description="Token (v2, or v1 compatibility).")
    influx_org: str = Field("", description="v2 organisation.")
    influx_bucket: str = Field("", description="v2 bucket.")
    influx_create_database: bool = Field(
        True, description="v1: CREATE DATABASE at start (InfluxDB 1.x; off for 2.x/3.x)."
    )
    sink_out_dir: Path = Field(DEFAULT_OUT_DIR, description="Root folder of the daily files.")
    sink_parquet: bool = Field(True, description="Write Parquet files beside the CSV files.")
    sink_group: str = Field("mingo-sink", description="Kafka consumer group of the sink.")
    sink_unified_topic: str = Field(UNIFIED_MINUTE.name, description="Topic of unified minutes.")
    sink_status_topic: str = Field(STATUS.name, description="Topic of pipeline status.")
    sink_batch_max: int = Field(2000, gt=0, description="Messages per batch at most.")
    sink_backoff_max_s: float = Field(60.0, gt=0, description="Longest retry wait. [s]")

    def make_writer(self) -> InfluxWriter | None:
        """The InfluxDB writer (database created when asked), or None with ``sink_influx`` off."""
        if not self.sink_influx:
            return None
        return make_writer(self.influx_target(), create_database=self.influx_create_database)

    def influx_target(self) -> InfluxTarget:
        """Where the sink writes."""
        return InfluxTarget(
            url=self.influx_url,
            api=self.influx_api,
            database=self.influx_database,
            retention_policy=self.influx_retention_policy,
            username=self.influx_username,
            password=self.influx_password,
            token=self.influx_token,
            org=self.influx_org,
            bucket=self.influx_bucket,
        )

    def options(self) -> SinkOptions:
        """The service options these settings describe."""
        return SinkOptions(
            instance=self.instance,
            group_id=self.sink_group,
            unified_topic=self.sink_unified_topic,
            status_topic=self.sink_status_topic,
            batch_max=self.sink_batch_max,
            backoff_max_s=self.sink_backoff_max_s,
            heartbeat_s=self.heartbeat_s,
        )

    def secret_values(self) -> list[str]:
        """Secret strings that must never reach a log line (Kafka's and InfluxDB's)."""
        secrets = [s.get_secret_value() for s in (self.influx_password, self.influx_token) if s]
        return super().secret_values() + secrets


class ApiSettings(ServiceSettings):
    """What the HTTP API reads from the environment."""

    api_host: str = Field("127.0.0.1", description="Address to bind; loopback by default.")
    api_port: int = Field(8080, gt=0, lt=65536, description="TCP port.")
    api_max_days: float = Field(31.0, gt=0, description="Longest time range of one request. [d]")
    sink_out_dir: Path = Field(DEFAULT_OUT_DIR, description="Root folder of the daily files.")
