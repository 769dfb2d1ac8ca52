"""The station network configuration (``config/stations.yaml``).

New stations are added here, by configuration alone. Libraries receive a :class:`Network` (or a
:class:`Station`) as an argument; only the CLI and service entry points read the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.yamlfile import load_yaml_model

#: The network file shipped with the project.
DEFAULT_NETWORK_FILE = Path(__file__).resolve().parents[2] / "config" / "stations.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AtmosphereCoefficients(_Frozen):
    """Atmospheric correction coefficients of one station (DOMAIN.md §6)."""

    beta_pct_per_hpa: float = Field(-0.162, description="Barometric coefficient β. [%/hPa]")
    beta_err_pct_per_hpa: float = Field(0.013, description="Uncertainty of β. [%/hPa]")
    p0_hpa: float = Field(940.0, description="Reference pressure P0. [hPa]")
    alpha_t_pct_per_k: float = Field(-0.28, description="Temperature coefficient α_T. [%/K]")
    alpha_t_err_pct_per_k: float = Field(0.05, description="Uncertainty of α_T. [%/K]")
    teff_ref_k: float = Field(220.0, description="Reference effective temperature. [K]")


class AlertThresholds(_Frozen):
    """Limits of the anomaly detectors (``services/alerts``) that depend on a station's hardware.

    The statistical thresholds (σ, sustain times) are the same for every station and live in
    ``services.alerts.detectors.AlertSettings``; these are the operating bands of the station.
    """

    hv_band_kv: tuple[float, float] = Field(
        (5.0, 6.0), description="Band of |HV| (both polarities) outside which HV alarms. [kV]"
    )
    current_band_ua: tuple[float, float] = Field(
        (0.05, 3.0), description="Band of each HV current outside which it alarms. [µA]"
    )
    flow_alarm: float = Field(
        500.0, ge=0, description="A gas flow below this alarms. [arbitrary flow-meter units]"
    )

    @model_validator(mode="after")
    def _ordered_bands(self) -> AlertThresholds:
        for name in ("hv_band_kv", "current_band_ua"):
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(
                    f"{name}: the low limit must be below the high one, got {low, high}"
                )
        return self


class StationSource(_Frozen):
    """Where the station's files are read from.

    ``kind="sftp"``: ``host`` is a host name or an alias of ``~/.ssh/config`` (``mingo01``); port,
    user and key then default to that entry. ``kind="local"``: ``root`` is a local directory with
    the same layout (used by ``mingo process``, the demo and tests).
    """

    kind: Literal["local", "sftp"] = "sftp"
    root: str = Field(description="Station directory holding dat/, logs/ and the logbook.")
    host: str | None = Field(None, description="SSH host name or ~/.ssh/config alias (sftp).")
    port: int | None = Field(None, description="SSH port; default from ssh config or 22.")
    user: str | None = Field(None, description="SSH user; default from ssh config.")
    key_file: str | None = Field(None, description="Private key file; default from ssh config.")
    known_hosts: str | None = Field(
        None, description="known_hosts file; default ~/.ssh/known_hosts (host keys are verified)."
    )
    dat_subdir: str = Field("dat", description="Event files and daily archives, below root.")
    log_subdir: str = Field("logs", description="Slow-control logs (and done/), below root.")
    logbook: str = Field("logbook.csv", description="Mechanical logbook CSV, below root.")

    @model_validator(mode="after")
    def _sftp_needs_host(self) -> StationSource:
        if self.kind == "sftp" and not self.host:
            raise ValueError("an sftp source needs a host (name or ~/.ssh/config alias)")
        return self


class ReconstructionConfig(_Frozen):
    """How raw events of one station become calibrated tracks and minute rates (DOMAIN.md §5).

    Every threshold, window and pooling size of ``services/reconstruct`` comes from here.
    """

    signal_speed_mm_ns: float = Field(199.86, gt=0, description="Signal speed in a strip. [mm/ns]")
    time_valid_ns: tuple[float, float] = Field(
        (-300.0, 0.0),
        description="Raw times outside this window make an event impossible (rejected). [ns]",
    )
    charge_valid_ns: tuple[float, float] = Field(
        (0.0, 1000.0),
        description="Raw charges outside this window make an event impossible (rejected). [ns]",
    )
    q_threshold_ns: float = Field(
        -5.0, description="A strip is hit when its calibrated Q_sum exceeds this. [ns]"
    )
    streamer_q_ns: float = Field(
        100.0, description="Calibrated event plane charge above which a hit is a streamer. [ns]"
    )
    tdif_cut_ns: float = Field(
        0.79, gt=0, description="|calibrated T_dif| above this is outside the strip. [ns]"
    )
    sigma_x_mm: float = Field(10.0, gt=0, description="Resolution of x from T_dif in fits. [mm]")
    fiducial_half_mm: tuple[float, float] = Field(
        (120.0, 80.0),
        description="Half-sizes (x, y) of the area where a track counts for efficiencies. [mm]",
    )
    theta_high_deg: float = Field(10.0, description="Zenith below which a track is 'high'. [deg]")
    theta_low_deg: float = Field(40.0, description="Zenith from which a track is 'low'. [deg]")
    pedestal_quantile: float = Field(
        0.005,
        gt=0,
        lt=0.5,
        description="Quantile of a channel's charges taken as its pedestal edge. [1]",
    )
    tdif_plateau_quantiles: tuple[float, float] = Field(
        (0.02, 0.98), description="Quantiles whose midpoint is the T_dif plateau centre. [1]"
    )
    calibration_min_events: int = Field(
        20_000,
        ge=100,
        description=(
            "A station's first chunks are held until they have this many events (or a file is "
            "complete), then calibrated together. [events]"
        ),
    )
    calibration_max_events: int = Field(
        200_000,
        ge=100,
        description="The pool holds the newest whole chunks up to this many events. [events]",
    )
    calibration_max_age_s: float = Field(
        86_400.0, gt=0, description="Pooled events older than this are forgotten. [s]"
    )
    calibration_refresh_events: int = Field(
        100_000,
        ge=1,
        description=(
            "Chunks reuse the calibration in force until the pool has gained this many events "
            "since it, or as many as it was made from if fewer. [events]"
        ),
    )
    outlier_quantiles: tuple[float, float] = Field(
        (0.005, 0.995),
        description="Quantiles of the pooled seconds' event counts (outlier band). [1]",
    )
    outlier_margin_sigma: float = Field(
        3.0,
        ge=0,
        description="Band widened by this many sqrt(median) so Poisson tails stay. [sigma]",
    )


class Station(_Frozen):
    """One telescope of the network."""

    id: int = Field(ge=0, le=9, description="Station id, the digit in mi0<S> file names.")
    name: str = Field(description="Station name, e.g. mingo01.")
    city: str = ""
    latitude: float | None = Field(None, ge=-90, le=90, description="Latitude. [deg]")
    longitude: float | None = Field(None, ge=-180, le=180, description="Longitude. [deg]")
    altitude_m: float | None = Field(None, description="Altitude above sea level. [m]")
    trigger_pairs: tuple[int, ...] = Field(
        (12, 23, 34, 13), description="Plane pairs whose coincidence triggers the hardware."
    )
    tsum_window_ns: tuple[float, float] = Field(
        (-130.0, -100.0), description="Coincidence window on raw T_sum. [ns]"
    )
    atmosphere: AtmosphereCoefficients = AtmosphereCoefficients()
    reconstruction: ReconstructionConfig = ReconstructionConfig()
    alerts: AlertThresholds = AlertThresholds()
    source: StationSource | None = None


class Network(_Frozen):
    """All stations, by id."""

    stations: tuple[Station, ...]

    @model_validator(mode="after")
    def _unique_ids(self) -> Network:
        ids = [s.id for s in self.stations]
        if len(ids) != len(set(ids)):
            raise ValueError(f"station ids must be unique, got {ids}")
        return self

    def select(self, ids: str, default: Callable[[Station], bool]) -> list[Station]:
        """Stations named by a comma-separated id list (``"1,3"``), or those ``default`` accepts.

        Raises
        ------
        KeyError
            For an id that is not in the network.
        ValueError
            For a list that is not made of integers.
        """
        if ids.strip():
            return [self.station(int(s)) for s in ids.split(",") if s.strip()]
        return [s for s in self.stations if default(s)]

    def station(self, station_id: int) -> Station:
        """The station with this id; KeyError naming the known ids otherwise."""
        for station in self.stations:
            if station.id == station_id:
                return station
        known = ", ".join(str(s.id) for s in self.stations)
        raise KeyError(f"station {station_id} is not in the network (known: {known})")


class NetworkConfigError(ValueError):
    """The network file is missing or invalid; the message names the file and the reason."""


def load_network(path: str | Path = DEFAULT_NETWORK_FILE) -> Network:
    """Read and validate a network file.

    Raises
    ------
    NetworkConfigError
        Naming the file and what is wrong with it.
    """
    return load_yaml_model(path, Network, "network file", "a 'stations' list", NetworkConfigError)
