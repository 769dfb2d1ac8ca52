"""Parameters of a simulated station: geometry, detector response, electronics (DOMAIN.md §2, §8).

Numbers that are per-station settings come from the network configuration or are drawn once per
station from the run's seed; all of them are recorded in ``truth.json``
(:meth:`DetectorModel.to_dict`).
Planes are indexed 0..3 for planes 1..4 in arrays. Coordinates: x along the strips, y across them
(strip centres), z downward from the top plane (plane 1 at the smallest z), in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas.dat_format import N_PLANES, N_STRIPS, QUANTITY_ORDER, channel_index, channel_name
from simulator.seeds import Stream, rng_for

#: Strip widths across the strips (y), planes 1 and 3. [mm]
WIDTHS_ODD_MM = (63.0, 63.0, 63.0, 98.0)
#: Strip widths, planes 2 and 4. [mm]
WIDTHS_EVEN_MM = (98.0, 63.0, 63.0, 63.0)
#: Strip centres in y, planes 1 and 3. [mm]
CENTRES_ODD_MM = (-112.0, -49.0, 14.0, 94.5)
#: Strip centres in y, planes 2 and 4. [mm]
CENTRES_EVEN_MM = (-94.5, -14.0, 49.0, 112.0)
#: Default plane positions when no logbook row matches. [mm]
DEFAULT_Z_MM = (0.0, 150.0, 300.0, 450.0)
#: Default trigger pairs (plane a, plane b written as 10a+b).
DEFAULT_TRIGGER_PAIRS = (12, 23, 34, 13)
#: Signal speed along a strip, 2/3 c. [mm/ns]
SIGNAL_SPEED_MM_NS = 199.86
#: Speed of light. [mm/ns]
C_MM_NS = 299.792458


@dataclass(frozen=True)
class Geometry:
    """Mechanics of the 4-plane stack.

    Attributes
    ----------
    z_mm : tuple of 4 float
        Plane positions P1..P4 along z (downward). [mm]
    x_half_mm : float
        Half-length of the active area along the strips. [mm]
    gap_mm : float
        Insulating gap between neighbouring strip conductors (charge induced there is lost). [mm]
    """

    z_mm: tuple[float, float, float, float] = DEFAULT_Z_MM
    x_half_mm: float = 150.0
    gap_mm: float = 1.0

    @property
    def widths_mm(self) -> np.ndarray:
        """Strip widths [plane, strip]. [mm]"""
        return np.array([WIDTHS_ODD_MM, WIDTHS_EVEN_MM, WIDTHS_ODD_MM, WIDTHS_EVEN_MM])

    @property
    def centres_mm(self) -> np.ndarray:
        """Strip centres in y [plane, strip]. [mm]"""
        return np.array([CENTRES_ODD_MM, CENTRES_EVEN_MM, CENTRES_ODD_MM, CENTRES_EVEN_MM])

    @property
    def y_half_mm(self) -> float:
        """Half-width of the active area across the strips (143.5 mm). [mm]"""
        return float(self.widths_mm[0].sum() / 2)

    def conductor_edges_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper y of each strip's conductor [plane, strip]: the strip cell minus half a
        gap at every inner boundary (the outer edges are the active-area edges). [mm]"""
        lo = self.centres_mm - self.widths_mm / 2
        hi = self.centres_mm + self.widths_mm / 2
        lo[:, 1:] += self.gap_mm / 2
        hi[:, :-1] -= self.gap_mm / 2
        return lo, hi

    @property
    def z_rel_mm(self) -> np.ndarray:
        """Depth of each plane below the top plane. [mm]"""
        z = np.asarray(self.z_mm, dtype=np.float64)
        return z - z.min()

    @property
    def depth_mm(self) -> float:
        """Distance between the outermost planes. [mm]"""
        return float(np.ptp(np.asarray(self.z_mm)))


def pair_planes(pair: int) -> tuple[int, int]:
    """Planes (1-based) of a trigger pair written as ``12``, ``34``, ..."""
    a, b = divmod(int(pair), 10)
    if not (1 <= a <= N_PLANES and 1 <= b <= N_PLANES and a != b):
        raise ValueError(f"invalid trigger pair {pair!r}: expected two different planes 1..4")
    return a, b


def column_map() -> np.ndarray:
    """``column[k, f, s]``: file column of plane k+1, quantity ``QUANTITY_ORDER[f]``, strip s+1."""
    out = np.empty((N_PLANES, len(QUANTITY_ORDER), N_STRIPS), np.int64)
    for k in range(N_PLANES):
        for f, quantity in enumerate(QUANTITY_ORDER):
            for s in range(N_STRIPS):
                out[k, f, s] = channel_index(k + 1, quantity, s + 1)
    return out


@dataclass(frozen=True, eq=False)
class DetectorModel:
    """Detector response and electronics of one station.

    Charges are in fC, times and time-over-threshold widths in ns.
    """

    geometry: Geometry
    efficiency: tuple[float, float, float, float]  #: vertical-track efficiency per plane
    trigger_pairs: tuple[int, ...]  #: plane pairs that trigger (12, 23, ...)
    t_offset_ns: np.ndarray  #: [plane, end (0 front, 1 back), strip] time offsets [ns]
    q_pedestal_ns: np.ndarray  #: [plane, end, strip] charge pedestals [ns]
    cos_power: float = 2.0  #: n of cosⁿθ; cosθ = U^(1/(n+1))
    lorentz_hwhm_mm: float = 4.7  #: half-width of the induced-charge footprint [mm]
    q_threshold_fc: float = 60.0  #: a strip's charge is written above this [fC]
    q_time_threshold_fc: float = 15.0  #: a strip's times are written above this [fC]
    avalanche_median_fc: float = 800.0  #: log-normal median of an avalanche's charge [fC]
    avalanche_sigma_ln: float = 0.5  #: log-normal sigma of an avalanche's charge
    streamer_probability: float = 0.05  #: fraction of avalanches that are streamers
    streamer_median_fc: float = 8000.0  #: log-normal median of a streamer's charge [fC]
    streamer_sigma_ln: float = 0.3  #: log-normal sigma of a streamer's charge
    tot_scale_ns: float = 28.0  #: width = pedestal + tot_scale * ln(1 + q/q0) [ns]
    tot_q0_fc: float = 40.0  #: [fC]
    q_jitter_ns: float = 1.0  #: Gaussian smearing of each width [ns]
    tdc_jitter_ns: float = 0.016  #: TDC resolution [ns]
    fee_jitter_ns: float = 0.030  #: front-end resolution [ns]
    event_jitter_ns: float = 10.0  #: event time uniform in [0, this) common to the event [ns]
    signal_speed_mm_ns: float = SIGNAL_SPEED_MM_NS
    _columns: np.ndarray = field(default_factory=column_map, repr=False)

    def __post_init__(self) -> None:
        for pair in self.trigger_pairs:
            pair_planes(pair)
        if not self.trigger_pairs:
            raise ValueError("at least one trigger pair is needed")
        if self.t_offset_ns.shape != (N_PLANES, 2, N_STRIPS):
            raise ValueError("t_offset_ns must have shape [4, 2, 4]")
        if self.q_pedestal_ns.shape != (N_PLANES, 2, N_STRIPS):
            raise ValueError("q_pedestal_ns must have shape [4, 2, 4]")
        if not all(0 < e <= 1 for e in self.efficiency):
            raise ValueError("efficiencies must lie in (0, 1]")

    @property
    def time_jitter_ns(self) -> float:
        """Combined per-channel time resolution (TDC ⊕ FEE). [ns]"""
        return float(np.hypot(self.tdc_jitter_ns, self.fee_jitter_ns))

    @property
    def columns(self) -> np.ndarray:
        """File columns ``[plane, quantity, strip]`` (see :func:`column_map`)."""
        return self._columns

    def pair_plane_indices(self) -> np.ndarray:
        """0-based planes of each trigger pair, shape [n_pairs, 2]."""
        return np.array([[a - 1, b - 1] for a, b in map(pair_planes, self.trigger_pairs)])

    def theta_max_trigger_rad(self) -> float:
        """Largest zenith angle that can fire a trigger pair: both planes of a pair must be crossed
        inside their active areas, so tanθ ≤ diagonal / smallest pair distance. [rad]"""
        g = self.geometry
        z = np.asarray(g.z_mm)
        dz = min(abs(z[a] - z[b]) for a, b in self.pair_plane_indices())
        if dz <= 0:
            raise ValueError("the planes of a trigger pair must be at different z")
        diagonal = 2 * np.hypot(g.x_half_mm, g.y_half_mm)
        return float(np.arctan(diagonal / dz))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (for truth.json and the parameter hash)."""
        g = self.geometry
        lo, hi = g.conductor_edges_mm()
        t_off: dict[str, float] = {}
        q_ped: dict[str, float] = {}
        for k in range(N_PLANES):
            for end, (tq, qq) in enumerate((("T_F", "Q_F"), ("T_B", "Q_B"))):
                for s in range(N_STRIPS):
                    t_off[channel_name(k + 1, tq, s + 1)] = round(
                        float(self.t_offset_ns[k, end, s]), 6
                    )
                    q_ped[channel_name(k + 1, qq, s + 1)] = round(
                        float(self.q_pedestal_ns[k, end, s]), 6
                    )
        return {
            "z_mm": list(g.z_mm),
            "active_area_mm": {"x_half": g.x_half_mm, "y_half": g.y_half_mm},
            "strip_widths_mm": g.widths_mm.tolist(),
            "strip_centres_mm": g.centres_mm.tolist(),
            "strip_conductor_lo_mm": lo.tolist(),
            "strip_conductor_hi_mm": hi.tolist(),
            "gap_mm": g.gap_mm,
            "efficiency": [round(e, 6) for e in self.efficiency],
            "trigger_pairs": list(self.trigger_pairs),
            "cos_power": self.cos_power,
            "lorentz_hwhm_mm": self.lorentz_hwhm_mm,
            "q_threshold_fc": self.q_threshold_fc,
            "q_time_threshold_fc": self.q_time_threshold_fc,
            "avalanche_charge": {
                "distribution": "lognormal",
                "median_fc": self.avalanche_median_fc,
                "sigma_ln": self.avalanche_sigma_ln,
            },
            "streamer": {
                "probability": self.streamer_probability,
                "median_fc": self.streamer_median_fc,
                "sigma_ln": self.streamer_sigma_ln,
            },
            "time_over_threshold": {
                "formula": "width_ns = pedestal_ns + scale_ns * ln(1 + q_fc / q0_fc)",
                "scale_ns": self.tot_scale_ns,
                "q0_fc": self.tot_q0_fc,
                "jitter_ns": self.q_jitter_ns,
            },
            "time_jitter_ns": {"tdc": self.tdc_jitter_ns, "fee": self.fee_jitter_ns},
            "event_time_jitter_ns": {
                "distribution": "uniform",
                "low": 0.0,
                "high": self.event_jitter_ns,
            },
            "signal_speed_mm_ns": self.signal_speed_mm_ns,
            "t_offset_ns": t_off,
            "q_pedestal_ns": q_ped,
        }


def draw_detector_model(
    seed: int,
    station: int,
    geometry: Geometry | None = None,
    trigger_pairs: tuple[int, ...] = DEFAULT_TRIGGER_PAIRS,
    efficiency_range: tuple[float, float] = (0.92, 0.96),
) -> DetectorModel:
    """The detector of one station, with per-station numbers drawn from the run's seed.

    Efficiencies uniform in ``efficiency_range`` per plane; time offsets uniform in
    [-131, -121] ns and charge pedestals uniform in [85, 95] ns per channel (DOMAIN.md §8).
    """
    rng = rng_for(seed, station, Stream.PARAMETERS)
    eff = rng.uniform(*efficiency_range, size=N_PLANES)
    t_offset = rng.uniform(-131.0, -121.0, size=(N_PLANES, 2, N_STRIPS))
    q_pedestal = rng.uniform(85.0, 95.0, size=(N_PLANES, 2, N_STRIPS))
    return DetectorModel(
        geometry=geometry or Geometry(),
        efficiency=(float(eff[0]), float(eff[1]), float(eff[2]), float(eff[3])),
        trigger_pairs=tuple(trigger_pairs),
        t_offset_ns=np.round(t_offset, 4),
        q_pedestal_ns=np.round(q_pedestal, 4),
    )
