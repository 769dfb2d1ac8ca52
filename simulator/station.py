"""One simulated station: configuration, detector, weather, generation rates, parameter hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from services.common.stations import Station
from simulator.detector import detector_response, fired_pairs
from simulator.model import DEFAULT_Z_MM, DetectorModel, Geometry, draw_detector_model
from simulator.muons import candidate_fraction, generation_half_width_mm, sample_candidates
from simulator.scenario import Scenario, StationScenario
from simulator.seeds import Stream, rng_for
from simulator.weather import AtmosphereCoefficients, WeatherModel

#: Version of the simulation model, part of every parameter hash.
MODEL_VERSION = "mingo-simulator/1"
#: Weight function of T_eff used for the truth (services.common.atmosphere).
TEFF_WEIGHT = "production"


@dataclass(frozen=True)
class Acceptance:
    """Result of the acceptance pre-pass: P(trigger | candidate)."""

    value: float
    sigma: float
    samples: int


@dataclass(frozen=True)
class SelfTrigger:
    """The daily self-trigger (noise) run, trigger type 2."""

    start_s_of_day: int = 4 * 3600 + 30  #: 04:00:30 UTC [s after midnight]
    duration_s: int = 300  #: [s]
    rate_hz: float = 5.0  #: [Hz]


@dataclass(frozen=True, eq=False)
class StationSim:
    """Everything needed to simulate one station (see ``to_dict`` for the recorded parameters)."""

    station: Station
    seed: int
    rate_hz: float  #: accepted coincidence rate at reference conditions (f = 1) [Hz]
    coefficients: AtmosphereCoefficients
    detector: DetectorModel
    weather: WeatherModel
    half_width_mm: float  #: generation square half-width [mm]
    candidate_fraction: float  #: p̄
    acceptance: Acceptance
    barometer_offset_hpa: float  #: external barometer - true surface pressure [hPa]
    barometer_noise_hpa: float
    internal_barometer_offset_hpa: float
    self_trigger: SelfTrigger
    #: injected events (simulator/scenario.py); empty: none
    scenario: StationScenario = field(default_factory=StationScenario)

    def with_scenario(self, scenario: Scenario) -> StationSim:
        """The same station with ``scenario``'s events (cheap: nothing is recomputed)."""
        return replace(self, scenario=scenario.for_station(self.id))

    @property
    def id(self) -> int:
        """Station id."""
        return self.station.id

    @property
    def dirname(self) -> str:
        """Directory name of the station (``mingo0S``)."""
        return f"mingo0{self.station.id}"

    @property
    def rate_candidates_hz(self) -> float:
        """Rate of candidate tracks at f = 1. [Hz]"""
        return self.rate_hz / self.acceptance.value

    @property
    def rate_generated_hz(self) -> float:
        """Rate of muons through the generation square at f = 1. [Hz]"""
        return self.rate_candidates_hz / self.candidate_fraction

    def to_dict(self) -> dict[str, Any]:
        """The station's parameters for truth.json."""
        area_cm2 = (2 * self.half_width_mm / 10.0) ** 2
        return {
            "station": self.station.id,
            "name": self.station.name,
            "latitude": self.station.latitude,
            "longitude": self.station.longitude,
            "altitude_m": self.station.altitude_m,
            "model_version": MODEL_VERSION,
            "rate_hz": self.rate_hz,
            "rate_definition": "accepted coincidence (trigger type 1) rate at P = P0, "
            "T_eff = T_eff_ref",
            "rate_candidates_hz": self.rate_candidates_hz,
            "rate_generated_hz": self.rate_generated_hz,
            "generation_plane": {
                "z_mm": float(min(self.detector.geometry.z_mm)),
                "half_width_mm": self.half_width_mm,
                "area_cm2": area_cm2,
                "flux_cm2_min": self.rate_generated_hz * 60.0 / area_cm2,
                "candidate_fraction": self.candidate_fraction,
                "theta_max_trigger_deg": float(np.degrees(self.detector.theta_max_trigger_rad())),
            },
            "acceptance": {
                "value": self.acceptance.value,
                "sigma": self.acceptance.sigma,
                "samples": self.acceptance.samples,
                "definition": "P(trigger | candidate), seeded MC pre-pass",
            },
            "beta_pct_per_hpa": self.coefficients.beta_pct_per_hpa,
            "p0_hpa": self.coefficients.p0_hpa,
            "alpha_t_pct_per_k": self.coefficients.alpha_t_pct_per_k,
            "teff_ref_k": self.coefficients.teff_ref_k,
            "teff_weight": TEFF_WEIGHT,
            "rate_factor": "exp(beta/100*(P-P0)) * (1 + alpha_t/100*(T_eff - teff_ref))",
            "barometer_offset_hpa": self.barometer_offset_hpa,
            "barometer_noise_hpa": self.barometer_noise_hpa,
            "internal_barometer_offset_hpa": self.internal_barometer_offset_hpa,
            "self_trigger": {
                "start_utc": _clock(self.self_trigger.start_s_of_day),
                "duration_s": self.self_trigger.duration_s,
                "rate_hz": self.self_trigger.rate_hz,
            },
            "detector": self.detector.to_dict(),
            "weather_model": self.weather.to_dict(),
            # only with a scenario, so that runs without one keep their parameter hash
            **({"scenario": self.scenario.to_truth()} if self.scenario else {}),
        }

    def param_hash(self) -> str:
        """Hash of the parameters and seed (the ``# param_hash=`` of every file)."""
        blob = json.dumps({"seed": self.seed, **self.to_dict()}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _clock(seconds_of_day: int) -> str:
    """``hh:mm:ss`` of seconds after midnight."""
    return f"{seconds_of_day // 3600:02d}:{seconds_of_day // 60 % 60:02d}:{seconds_of_day % 60:02d}"


def estimate_acceptance(
    seed: int, station: int, model: DetectorModel, samples: int = 400_000
) -> Acceptance:
    """P(trigger | candidate) by a seeded Monte Carlo pre-pass with the same detector code."""
    rng = rng_for(seed, station, Stream.ACCEPTANCE)
    triggered = 0
    done = 0
    while done < samples:
        n = min(100_000, samples - done)
        tracks = sample_candidates(rng, n, model)
        triggered += int(
            np.count_nonzero(fired_pairs(detector_response(tracks, model, rng).hit_mask, model))
        )
        done += n
    value = triggered / samples
    return Acceptance(value, float(np.sqrt(value * (1 - value) / samples)), samples)


def build_station_sim(
    station: Station,
    seed: int,
    rate_hz: float = 8.0,
    beta_pct_per_hpa: float | None = None,
    alpha_t_pct_per_k: float | None = None,
    z_mm: tuple[float, float, float, float] = DEFAULT_Z_MM,
    acceptance_samples: int = 400_000,
    scenario: Scenario | None = None,
) -> StationSim:
    """Derive a station's simulation from its configuration and the run's seed.

    Parameters
    ----------
    station : Station
        Network configuration (coordinates, trigger pairs, atmospheric coefficients).
    seed : int
        Run seed.
    rate_hz : float
        Accepted coincidence rate at reference conditions. [Hz]
    beta_pct_per_hpa, alpha_t_pct_per_k : float, optional
        Override the configured β [%/hPa] and α_T [%/K].
    z_mm : tuple of 4 float
        Plane positions. [mm]
    acceptance_samples : int
        Candidates of the acceptance pre-pass.
    scenario : Scenario, optional
        Injected events (those of this station are kept).
    """
    if station.latitude is None or station.longitude is None:
        raise ValueError(f"station {station.id} needs latitude and longitude to be simulated")
    if rate_hz <= 0:
        raise ValueError("rate_hz must be positive")
    atm = station.atmosphere
    coefficients = AtmosphereCoefficients(
        beta_pct_per_hpa=atm.beta_pct_per_hpa if beta_pct_per_hpa is None else beta_pct_per_hpa,
        p0_hpa=atm.p0_hpa,
        alpha_t_pct_per_k=atm.alpha_t_pct_per_k if alpha_t_pct_per_k is None else alpha_t_pct_per_k,
        teff_ref_k=atm.teff_ref_k,
    )
    detector = draw_detector_model(
        seed, station.id, Geometry(z_mm=z_mm), tuple(station.trigger_pairs)
    )
    weather = WeatherModel.draw(
        seed,
        station.id,
        station.latitude,
        station.longitude,
        float(station.altitude_m or 0.0),
        atm.p0_hpa,
    )
    half_width = generation_half_width_mm(detector)
    rng = rng_for(seed, station.id, Stream.PARAMETERS, 1)
    return StationSim(
        station=station,
        seed=seed,
        rate_hz=float(rate_hz),
        coefficients=coefficients,
        detector=detector,
        weather=weather,
        half_width_mm=half_width,
        candidate_fraction=candidate_fraction(detector, half_width),
        acceptance=estimate_acceptance(seed, station.id, detector, acceptance_samples),
        barometer_offset_hpa=round(float(rng.uniform(-1.5, 1.5)), 3),
        barometer_noise_hpa=0.05,
        internal_barometer_offset_hpa=round(float(rng.uniform(-1.5, 1.5)), 3),
        self_trigger=SelfTrigger(),
        scenario=(scenario or Scenario()).for_station(station.id),
    )
