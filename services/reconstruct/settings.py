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
        64, gt=0, description="Raw chunks per checkpoint (transaction) at most."
    )
    reconstruct_commit_interval_s: float = Field(
        0.5, gt=0, description="A checkpoint (transaction) at least this often. [s]"
    )
    reconstruct_state_dir: Path | None = Field(
        None, description="Local RocksDB state folder; default <tmp>/mingo-reconstruct/<instance>."
    )

    def options(self) -> ReconstructOptions:
        """The service options these settings describe."""
        return ReconstructOptions(
            instance=self.instance,
            calibration_dir=self.reconstruct_calibration_dir,
            group_id=self.reconstruct_group_id,
            batch_messages=self.reconstruct_batch_messages,
            commit_interval_s=self.reconstruct_commit_interval_s,
            state_dir=self.reconstruct_state_dir,
            heartbeat_s=self.heartbeat_s,
        )
