"""Settings of the unify service (environment prefix ``MINGO_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import ServiceSettings
from services.unify.service import GROUP_ID, UnifyOptions


class UnifySettings(ServiceSettings):
    """What unify reads from the environment, on top of the common settings."""

    unify_group_id: str = Field(
        GROUP_ID, description="Consumer group; instances of one group split the stations."
    )
    unify_retention_days: float = Field(
        100.0, gt=0, description="State kept per station, back from its newest data. [d]"
    )
    unify_log_max_gap_min: float = Field(
        30.0, gt=0, description="Largest gap between two log readings interpolated over. [min]"
    )
    unify_era5_max_gap_min: float = Field(
        60.0, gt=0, description="Largest gap between two ERA5 hours interpolated over. [min]"
    )
    unify_state_dir: Path | None = Field(
        None, description="Local RocksDB state folder (default <tmp>/mingo-unify/<instance>)."
    )
    unify_commit_interval_s: float = Field(
        0.5,
        gt=0,
        description="How often rows, state and offsets are committed (the rows a checkpoint's "
        "records change are computed once, at its commit). [s]",
    )
    unify_batch_records: int = Field(
        2000, gt=0, description="Input records per checkpoint (transaction) at most."
    )
    unify_coefficients_dir: Path | None = Field(
        None, description="mingo fit --write records; a station's newest replaces β (and α_T)."
    )

    def options(self) -> UnifyOptions:
        """The service options these settings describe."""
        return UnifyOptions(
            instance=self.instance,
            group_id=self.unify_group_id,
            retention_days=self.unify_retention_days,
            log_max_gap_s=60.0 * self.unify_log_max_gap_min,
            era5_max_gap_s=60.0 * self.unify_era5_max_gap_min,
            heartbeat_s=self.heartbeat_s,
            state_dir=self.unify_state_dir,
            commit_interval_s=self.unify_commit_interval_s,
            batch_records=self.unify_batch_records,
            coefficients_dir=self.unify_coefficients_dir,
        )
