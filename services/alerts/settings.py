"""Settings of the alerts service: `MINGO_ALERTS_*`, and InfluxDB as the sink (`MINGO_INFLUX_*`)."""

from __future__ import annotations

from pydantic import Field

from schemas.topics import ALERTS, UNIFIED_MINUTE
from services.alerts.service import AlertsOptions
from services.common.stations import load_network
from services.sink.settings import SinkSettings


class AlertsSettings(SinkSettings):
    """The sink's InfluxDB settings plus the alerts service's own."""

    alerts_group: str = Field("mingo-alerts", description="Kafka consumer group.")
    alerts_unified_topic: str = Field(UNIFIED_MINUTE.name, description="Topic of unified minutes.")
    alerts_topic: str = Field(ALERTS.name, description="Topic the alerts go to.")
    alerts_buffer_h: float = Field(30.0, gt=0, description="Minutes kept per station. [h]")
    alerts_wall_clock: bool = Field(
        True, description="Take the wall clock as now (data_stopped for silent stations)."
    )

    def alerts_options(self) -> AlertsOptions:
        """The service options these settings describe (per-station bands from the network)."""
        network = load_network(self.network_file)
        return AlertsOptions(
            group_id=self.alerts_group,
            unified_topic=self.alerts_unified_topic,
            alerts_topic=self.alerts_topic,
            buffer_h=self.alerts_buffer_h,
            wall_clock=self.alerts_wall_clock,
            thresholds={s.id: s.alerts for s in network.stations},
        )
