"""The one-command demo: simulated stations, live, through all five services, to files and a plot.

The stations are simulated in accelerated live mode (files grow and complete as simulated time
passes) and read through the same ingest code path as a real station (a local source instead of
SFTP). Ingest, reanalysis (publishing the simulator's ERA5 files), reconstruct, unify and the sink
run as child processes (:mod:`services.pipeline`). Without servers the broker is the embedded
tansu (no Docker, no Java) and the sink writes the files only; with ``mingo infra up`` running,
the same runs against Apache Kafka and InfluxDB.

Output folder::

    OUT/stations/        what the station PCs hold (mingo0S/), ERA5 files (era5/), truth.json
    OUT/unified/         the unified table: mingo0S/YYYY/MM/unified_YYYY_MM_DD.csv and .parquet
    OUT/rates.png        raw and corrected rate with pressure, per station (hourly means)
    OUT/logs/            one log per service
    OUT/network.yaml     the stations as the services saw them
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from infra import manage
from schemas.topics import TOPICS
from services.common.inspect import TopicSummary, summarise_topics
from services.common.kafka import create_topics, delete_topics, make_admin
from services.common.settings import KafkaSettings
from services.common.stations import Network
from services.pipeline import Pipeline, PipelineConfig, Progress, write_local_network
from services.sink.files import station_dir_name

log = logging.getLogger(__name__)

#: Simulated hours of a demo run without --hours/--days: short on a small machine, long enough
#: for hourly points and a calibrated reconstruction.
DEFAULT_HOURS = 12.0


@dataclass(frozen=True)
class DemoRequest:
    """What to simulate and how fast.

    Attributes
    ----------
    stations : list of int
        Station ids of the network file.
    start : date
        First simulated UTC day.
    days : int
        Simulated days.
    hours : float or None
        Stop the simulation after this many simulated hours (None = the whole span).
    rate_hz : float
        Accepted coincidence rate at reference conditions. [Hz]
    speed : float
        Simulated seconds per wall-clock second.
    seed, damage
        Simulator seed and fraction of damaged event lines.
    out : Path
        Output folder (replaced).
    """

    stations: list[int]
    start: date
    days: int
    hours: float | None
    rate_hz: float
    speed: float
    seed: int
    damage: float
    out: Path


@dataclass(frozen=True)
class Backend:
    """The servers the demo runs on."""

    name: str  #: "tansu" or "kafka"
    kafka: KafkaSettings
    influx_url: str | None


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced."""

    truth: dict[str, Any]
    summaries: list[TopicSummary]
    backend: Backend
    rows: dict[int, int]  #: station -> minutes in the unified files
    files: list[Path]
    plot: Path | None
    influx_points: dict[int, int]  #: station -> points of measurement ``unified`` (InfluxDB only)


def choose_backend() -> Backend:
    """Apache Kafka and InfluxDB when ``mingo infra up`` runs them, else tansu (restarted empty)."""
    running = {s.name for s in manage.status() if s.running}
    if "kafka" in running:
        env = manage.env_vars()
        influx = env.get("MINGO_INFLUX_URL") if "influxdb" in running else None
        return Backend("kafka", KafkaSettings(bootstrap=env["MINGO_KAFKA_BOOTSTRAP"]), influx)
    # tansu keeps everything in memory: a restart gives every demo run empty topics.
    manage.down(["tansu"])
    manage.up(["tansu"])
    return Backend(
        "tansu", KafkaSettings(bootstrap=manage.env_vars()["MINGO_TANSU_BOOTSTRAP"]), None
    )


class LiveSimulation:
    """The simulator's live mode in a thread; remembers the simulated time it reached."""

    def __init__(self, request: DemoRequest, network: Network, out: Path) -> None:
        from simulator.run import SimulationRequest

        self.request = SimulationRequest(
            out=out, stations=tuple(network.station(i) for i in request.stations),
            start=request.start, days=request.days, seed=request.seed, rate_hz=request.rate_hz,
            beta_pct_per_hpa=None, alpha_t_pct_per_k=None, damage=request.damage, workers=1,
        )  # fmt: skip
        self.speed = request.speed
        self.limit_s = (
            None if request.hours is None else self.request.start_s + int(request.hours * 3600)
        )
        self.now_s = self.request.start_s
        self.stop = threading.Event()
        self.truth: dict[str, Any] = {}
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-simulation", daemon=True)

    def _tick(self, now_s: int) -> None:
        self.now_s = now_s
        if self.limit_s is not None and now_s >= self.limit_s:
            self.stop.set()

    def _run(self) -> None:
        from simulator.live import run_live

        try:
            self.truth = run_live(
                self.request, self.speed, progress=False, stop=self.stop, on_tick=self._tick
            )
        except BaseException as exc:  # reported by the caller's thread
            self.error = exc

    def start(self) -> None:
        """Start simulating."""
        self._thread.start()

    def finished(self) -> bool:
        """True once the simulation ended (raises what it failed with)."""
        if self.error is not None:
            raise RuntimeError(f"the live simulation failed: {self.error}") from self.error
        return not self._thread.is_alive()

    def close(self) -> None:
        """Stop early if still running, and wait for the thread."""
        self.stop.set()
        self._thread.join()

    def simulated_time(self) -> str:
        """The simulated time reached, ISO UTC."""
        return datetime.fromtimestamp(self.now_s, UTC).strftime("%Y-%m-%d %H:%M")


def run_demo(
    network: Network,
    request: DemoRequest,
    on_progress: Callable[[str], None] = log.info,
    *,
    keep_broker: bool = False,
    progress_every_s: float = 10.0,
) -> DemoResult:
    """Simulate live, run every service until everything reached the files; plot; summarise.

    The embedded broker, when the demo started it, is stopped at the end unless ``keep_broker``.
    """
    backend = choose_backend()
    try:
        return _run(network, request, backend, on_progress, progress_every_s)
    finally:
        if backend.name == "tansu" and not keep_broker:
            manage.down(["tansu"])


def _run(
    network: Network,
    request: DemoRequest,
    backend: Backend,
    on_progress: Callable[[str], None],
    progress_every_s: float,
) -> DemoResult:
    on_progress(
        f"broker: {backend.name} on {backend.kafka.bootstrap}; InfluxDB: "
        f"{backend.influx_url or 'not running (files only)'}"
    )
    admin = make_admin(backend.kafka)
    if backend.name == "kafka":
        # the demo always starts from empty topics: its file names repeat from run to run
        on_progress("resetting the mingo topics on the local Kafka")
        delete_topics(admin, [t.name for t in TOPICS])
    create_topics(admin, timeout_s=60)
    out = request.out
    stations_dir = out / "stations"
    run_id = f"demo-{uuid.uuid4().hex[:8]}"
    network_file = write_local_network(
        out.joinpath("network.yaml"),
        [network.station(i) for i in request.stations],
        {i: stations_dir / station_dir_name(i) for i in request.stations},
    )
    config = PipelineConfig(
        kafka=backend.kafka, network_file=network_file, era5_dir=stations_dir / "era5",
        out_dir=out / "unified", log_dir=out / "logs", run_id=run_id,
        influx_url=backend.influx_url,
    )  # fmt: skip
    simulation = LiveSimulation(request, network, stations_dir)
    span = f"{request.hours} h" if request.hours is not None else f"{request.days} day(s)"
    on_progress(
        f"simulating stations {request.stations} live from {request.start}: {span} at "
        f"{request.rate_hz} Hz, {request.speed:.0f} x real time, into {stations_dir}"
    )
    simulation.start()
    last_report = 0.0

    def report(progress: Progress) -> None:
        nonlocal last_report
        if time.monotonic() - last_report >= progress_every_s:
            last_report = time.monotonic()
            state = "done" if simulation.finished() else simulation.simulated_time()
            on_progress(f"simulated time {state}; {progress}")

    try:
        with Pipeline(config) as pipeline:
            on_progress(
                f"starting ingest, reanalysis, reconstruct, unify, sink (logs in {config.log_dir})"
            )
            pipeline.start_all()
            pipeline.wait_drained(
                ready=lambda: simulation.finished() and pipeline.ingested_all(), on_tick=report
            )
            on_progress("every service caught up; stopping them")
    finally:
        simulation.close()
    truth = simulation.truth
    on_progress("reading back what landed in each topic")
    summaries = summarise_topics(backend.kafka)
    files = sorted(config.out_dir.glob("mingo0*/*/*/unified_*.*"))
    frame = read_unified(config.out_dir)
    rows = dict(Counter(frame["station"].astype(int).tolist())) if not frame.empty else {}
    plot = out / "rates.png" if not frame.empty else None
    if plot is not None:
        plot_rates(frame, plot)
    points = count_influx_points(backend.influx_url, config.influx_database, request.stations)
    return DemoResult(truth, summaries, backend, rows, files, plot, points)


def read_unified(out_dir: Path) -> pd.DataFrame:
    """Every Parquet file of the sink under ``out_dir``, as one frame (empty if none)."""
    paths = sorted(out_dir.glob("mingo0*/*/*/unified_*.parquet"))
    if not paths:
        return pd.DataFrame()
    return pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)


def plot_rates(frame: pd.DataFrame, path: Path) -> Path:
    """Hourly raw and corrected total rate with the pressure, one panel per station.

    Parameters
    ----------
    frame : DataFrame
        Unified rows (``station``, ``time``, ``rate_total_hz``, ``rate_p_corr_hz``,
        ``rate_pt_corr_hz``, ``pressure_ext``, ``era5_surface_pressure_hpa``).
    path : Path
        PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    stations = sorted(int(s) for s in frame["station"].unique())
    fig, axes = plt.subplots(len(stations), 1, figsize=(10, 3.2 * len(stations)), squeeze=False)
    for ax, station in zip(axes[:, 0], stations, strict=True):
        rows = frame[frame["station"] == station]
        rows = rows.set_index(pd.to_datetime(rows["time"], utc=True))
        # hours: a minute holds ~500 counts (4.5 % error), an hour ~0.5 %, enough to see weather;
        # rates averaged with live-time weights, hours with under 10 live minutes left out
        numeric = rows.select_dtypes("number")
        weights = numeric.notna().mul(numeric["live_s"], axis=0).resample("1h").sum()
        sums = numeric.mul(numeric["live_s"], axis=0).resample("1h").sum()
        hourly = (sums / weights).where(weights >= 600)
        ax.plot(hourly.index, hourly["rate_total_hz"], label="raw", color="tab:gray")
        ax.plot(
            hourly.index, hourly["rate_p_corr_hz"], label="pressure corrected", color="tab:blue"
        )
        ax.plot(
            hourly.index, hourly["rate_pt_corr_hz"], label="pressure + T_eff corrected",
            color="tab:green",
        )  # fmt: skip
        ax.set_ylabel("rate [Hz]")
        ax.set_title(f"{station_dir_name(station)}: total rate (hourly means)")
        pressure = hourly["pressure_ext"].fillna(hourly["era5_surface_pressure_hpa"])
        twin = ax.twinx()
        twin.plot(hourly.index, pressure, label="pressure", color="tab:red", linestyle="--")
        twin.set_ylabel("pressure [hPa]", color="tab:red")
        lines = ax.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        ax.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize="small")
    axes[-1, 0].set_xlabel("time [UTC]")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def count_influx_points(url: str | None, database: str, stations: list[int]) -> dict[int, int]:
    """Points of measurement ``unified`` per station (empty without InfluxDB)."""
    if url is None:
        return {}
    import httpx

    counts = {}
    for station in stations:
        response = httpx.get(
            f"{url}/query",
            params={
                "db": database,
                "q": f"SELECT count(live_s) FROM unified WHERE station='{station}' "
                "AND time > '2000-01-01T00:00:00Z' AND time < '2100-01-01T00:00:00Z'",
            },
            trust_env=False,
            timeout=30,
        )
        response.raise_for_status()
        series = response.json()["results"][0].get("series") or []
        counts[station] = int(series[0]["values"][0][1]) if series else 0
    return counts
