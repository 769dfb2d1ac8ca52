"""Settings of the reanalysis service (environment prefix ``MINGO_``; CDS: ``CDSAPI_``)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import ServiceSettings
from services.common.stations import Network, Station
from services.reanalysis.cds import DEFAULT_CDSAPIRC, CdsCredentials, resolve_credentials
from services.reanalysis.service import ReanalysisOptions


class CdsSettings(BaseSettings):
    """The CDS API credentials in cdsapi's own variables (``CDSAPI_URL``, ``CDSAPI_KEY``)."""

    model_config = SettingsConfigDict(
        env_prefix="CDSAPI_", env_file=".env", extra="ignore", frozen=True
    )

    url: str | None = Field(None, description="CDS API URL.")
    key: SecretStr | None = Field(None, description="CDS personal access token.")
    rc: Path = Field(DEFAULT_CDSAPIRC, description="cdsapi configuration file.")

    def credentials(self) -> CdsCredentials | None:
        """From the variables, else from the rc file; None without a key."""
        key = self.key.get_secret_value() if self.key else None
        return resolve_credentials(self.url, key, self.rc)


class ReanalysisSettings(ServiceSettings):
    """What the reanalysis service reads from the environment, on top of the common settings."""

    era5_dir: Path = Field(Path("era5"), description="Directory with one mingo0S/ per station.")
    era5_stations: str = Field(
        "", description="Comma-separated station ids; empty = all with coordinates."
    )
    era5_poll_interval_s: float = Field(3600.0, gt=0, description="Interval between steps. [s]")
    era5_fetch_start: date | None = Field(
        None, description="First UTC day to fetch from the CDS; unset = fetch nothing."
    )
    era5_timeout_s: float = Field(
        12 * 3600.0, gt=0, description="Hard timeout of one CDS request. [s]"
    )
    cds: CdsSettings = Field(default_factory=CdsSettings)

    def options(self) -> ReanalysisOptions:
        """The service options these settings describe."""
        return ReanalysisOptions(
            instance=self.instance,
            era5_dir=self.era5_dir,
            poll_interval_s=self.era5_poll_interval_s,
            heartbeat_s=self.heartbeat_s,
            fetch_start=self.era5_fetch_start,
        )

    def stations(self, network: Network) -> list[Station]:
        """The stations this instance serves."""
        return network.select(
            self.era5_stations, lambda s: s.latitude is not None and s.longitude is not None
        )

    def secret_values(self) -> list[str]:
        """Secret strings that must never reach a log line (Kafka password, CDS key)."""
        credentials = self.cds.credentials()
        return super().secret_values() + ([credentials.key] if credentials else [])
