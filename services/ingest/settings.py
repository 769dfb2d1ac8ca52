"""Settings of the ingest service (environment prefix ``MINGO_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from services.common.settings import ServiceSettings
from services.common.stations import Network, Station
from services.ingest.chunking import MAX_CHUNK_EVENTS
from services.ingest.dat_parser import MAX_FILE_SPAN_S
from services.ingest.service import IngestOptions


class IngestSettings(ServiceSettings):
    """What ingest reads from the environment, on top of the common settings."""

    ingest_stations: str = Field(
        "", description="Comma-separated station ids to ingest; empty = all with a source."
    )
    ingest_poll_interval_s: float = Field(30.0, gt=0, description="Polling interval. [s]")
    ingest_settle_s: float = Field(
        60.0, ge=0, description="A .dat file is taken once unchanged this long. [s]"
    )
    ingest_max_chunk_events: int = Field(
        MAX_CHUNK_EVENTS, gt=0, description="Events per chunk at most."
    )
    ingest_max_file_span_s: int = Field(
        MAX_FILE_SPAN_S,
        gt=0,
        description=(
            "Events of a .dat file before the start in its name, or this long after it or more, "
            "are rejected (OUTSIDE_FILE_SPAN). A day: far above the ~1 h of a station file and "
            "above a daily file, while a station clock reset or a misnamed file (days to years "
            "off) cannot stretch the file's live time over the gap. [s]"
        ),
    )
    ssh_config: Path = Field(
        Path("~/.ssh/config").expanduser(), description="ssh client config with station aliases."
    )
    ssh_key_passphrase: SecretStr | None = Field(
        None, description="Passphrase of an encrypted SSH private key (never logged)."
    )

    def options(self) -> IngestOptions:
        """The service options these settings describe."""
        return IngestOptions(
            instance=self.instance,
            poll_interval_s=self.ingest_poll_interval_s,
            settle_s=self.ingest_settle_s,
            max_chunk_events=self.ingest_max_chunk_events,
            max_file_span_s=self.ingest_max_file_span_s,
            ssh_config=self.ssh_config,
            ssh_key_passphrase=self.ssh_key_passphrase,
            heartbeat_s=self.heartbeat_s,
        )

    def secret_values(self) -> list[str]:
        """Secret strings that must never reach a log line (Kafka's and the SSH key's)."""
        extra = [self.ssh_key_passphrase.get_secret_value()] if self.ssh_key_passphrase else []
        return super().secret_values() + extra

    def stations(self, network: Network) -> list[Station]:
        """The stations this instance ingests."""
        return network.select(self.ingest_stations, lambda s: s.source is not None)
