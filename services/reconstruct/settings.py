"""Settings of the reconstruct service (environment prefix ``MINGO_``)."""

from __future__ import annotations

from pydantic import Field

from services.common.settings import ServiceSettings
from services.reconstruct.service import ReconstructOptions


class ReconstructSettings(ServiceSettings):
    """What reconstruct reads from the environment, on top of the common settings."""

    reconstruct_batch_messages: int = Field(
        64, gt=0, description="Raw chunks consumed per transaction at most."
    )
    reconstruct_poll_timeout_s: float = Field(
        1.0, gt=0, description="How long one step waits for chunks. [s]"
    )

    def options(self) -> ReconstructOptions:
        """The service options these settings describe."""
        return ReconstructOptions(
            instance=self.instance,
            batch_messages=self.reconstruct_batch_messages,
            poll_timeout_s=self.reconstruct_poll_timeout_s,
            heartbeat_s=self.heartbeat_s,
        )
