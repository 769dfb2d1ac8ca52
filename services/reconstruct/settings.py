"""Settings of the reconstruct service (environment prefix ``MINGO_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import ServiceSettings
from services.reconstruct.service import GROUP_ID, ReconstructOptions


class ReconstructSettings(ServiceSettings):
    """What reconstruct reads from the environment, on top of the common settings."""

    reconstruct_group_id: str = Field(
        GROUP_ID, description="Consumer group; instances of one group split the stations."
    )
    reconstruct_calibration_dir: Path = Field(
        Path("calibrations"),
        description="Where calibrations are kept on disk, as <station>/<version>.json.",
    )
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
            calibration_dir=self.reconstruct_calibration_dir,
            group_id=self.reconstruct_group_id,
            batch_messages=self.reconstruct_batch_messages,
            poll_timeout_s=self.reconstruct_poll_timeout_s,
            heartbeat_s=self.heartbeat_s,
        )
