"""Simulate a network of stations over whole UTC days and write everything to a directory.

Layout under ``out`` (see simulator/README.md)::

    mingo0S/dat/mi0SYYDDDHHMMSS.dat           hourly files of the last day
    mingo0S/dat/<first file>.dat.tar.gz        one archive per earlier day
    mingo0S/logs/<prefix>YYYY-MM-DD.log        the last day's logs; earlier days in logs/done/
    mingo0S/logbook.csv
    era5/mingo0S/reanalysis-era5-{single,pressure}-levels_YYYY-MM-DD.nc
    truth.json, truth/mingo0S/<base>.parquet, truth/mingo0S/weather_hourly.csv

Station-hours are simulated in a thread pool (the numba kernels release the GIL, so do zlib and
file writes); each worker formats and writes its own file, the main thread assembles archives,
logs and the truth in order, so the output is byte-identical whatever the number of workers.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from schemas.dat_format import dat_filename
from services.common.stations import Station
from simulator.damage import CATEGORY
from simulator.datfiles import (
    RenderedFile,
    corrupt_archive_bytes,
    header_line,
    render_dat_file,
    tar_end_gz,
    tar_member_gz,
    tar_member_size,
    truth_table,
    write_file,
    write_truth_table,
)
from simulator.era5 import write_era5_day
from simulator.events import (
    FileWindow,
    HourEvents,
    cut_window,
    file_offset_s,
    file_window,
    hour_index,
    simulate_hour,
)
from simulator.formatting import format_event_lines
from simulator.logs import DayCounts, LogFile, generate_day_logs
from simulator.scenario import Scenario
from simulator.seeds import Stream, rng_for
from simulator.station import StationSim, build_station_sim
from simulator.weather import WeatherHourly

logger = logging.getLogger(__name__)

TRUTH_SCHEMA = "mingo-simulator-truth/1"
#: Hour (UTC) of the last day whose file is preceded by an empty file when damaging.
EMPTY_FILE_HOUR = 12
#: Acquisition lost after the empty file (the DAQ restarted). [s]
EMPTY_FILE_DEAD_S = 7


class OutputDirectoryError(RuntimeError):
    """The output directory holds something the simulator did not write."""


@dataclass(frozen=True)
class SimulationRequest:
    """What to simulate.

    Attributes
    ----------
    out : Path
        Output directory.
    stations : tuple of Station
        Stations from the network configuration.
    start : date
        First UTC day.
    days : int
        Number of days (≥ 1).
    seed : int
        Run seed (≥ 0).
    rate_hz : float
        Accepted coincidence rate at reference conditions. [Hz]
    beta_pct_per_hpa, alpha_t_pct_per_k : float, optional
        Override the configured coefficients. [%/hPa], [%/K]
    damage : float
        Fraction of event lines to damage (0 disables every kind of damage).
    workers : int
        Threads; 0 means the number of CPUs.
    acceptance_samples : int
        Candidates of the acceptance pre-pass.
    scenario : Scenario, optional
        Injected events (simulator/scenario.py).
    """

    out: Path
    stations: tuple[Station, ...]
    start: date
    days: int = 1
    seed: int = 0
    rate_hz: float = 8.0
    beta_pct_per_hpa: float | None = None
    alpha_t_pct_per_k: float | None = None
    damage: float = 0.0
    workers: int = 0
    acceptance_samples: int = 400_000
    scenario: Scenario | None = None

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if not 0.0 <= self.damage < 0.5:
            raise ValueError("damage must be a fraction in [0, 0.5)")
        if self.seed < 0:
            raise ValueError("seed must be non-negative")
        if not self.stations:
            raise ValueError("no stations to simulate")
        ids = [s.id for s in self.stations]
        if len(set(ids)) != len(ids):
            raise ValueError(f"each station can be simulated once, got {ids}")
        if self.scenario is not None:
            for station in ids:
                self.scenario.for_station(station).event_level_check()

    @property
    def start_s(self) -> int:
        """UTC midnight of the first day. [s]"""
        return int(
            datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp()
        )

    @property
    def end_s(self) -> int:
        """UTC midnight after the last day. [s]"""
        return self.start_s + 86400 * self.days


def iso(t: int) -> str:
    """UTC seconds as ``YYYY-MM-DDThh:mm:ssZ``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_string(t: int) -> str:
    """UTC day of a time as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


# --------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class FileTask:
    """One hourly file to produce."""

    window: FileWindow
    day_index: int
    archived: bool  #: inside a daily archive (an earlier day) rather than plain
    truncate_last: bool


@dataclass
class StationPlan:
    """Files, archives and damage of one station over the span."""

    sim: StationSim
    weather: WeatherHourly
    tasks: list[FileTask]
    empty_file: FileWindow | None
    corrupt_archive_day: int | None  #: day index whose archive is truncated (≥ 2 days)
    extra_corrupt_archive: str | None  #: previous-day archive name (1 day)
    param_hash: str

    def archive_name(self, day_index: int) -> str:
        """Archive of a day: named after the day's first file."""
        first = next(t for t in self.tasks if t.day_index == day_index)
        return first.window.name + ".tar.gz"


def plan_station(sim: StationSim, request: SimulationRequest) -> StationPlan:
    """Decide every file of a station and where damage goes."""
    start, end = request.start_s, request.end_s
    hours = np.arange(start - 3600, end + 3 * 3600, 3600)
    weather = sim.weather.hourly(hours, sim.coefficients)
    damage = request.damage > 0
    last_day = request.days - 1
    empty_hour = start + last_day * 86400 + EMPTY_FILE_HOUR * 3600
    tasks = []
    empty: FileWindow | None = None
    gaps = sim.scenario.gaps()
    for h in range(start, end, 3600):
        day_index = (h - start) // 86400
        dead = EMPTY_FILE_DEAD_S if damage and h == empty_hour else 0
        window = cut_window(file_window(sim.seed, sim.id, h, dead_start_s=dead), gaps)
        if dead:
            original = file_window(sim.seed, sim.id, h)
            empty = FileWindow(
                sim.id, h, original.name_s, original.acq_start_s, original.acq_start_s
            )
        tasks.append(FileTask(window, day_index, day_index < last_day, damage and h == end - 3600))
    extra = None
    if damage and request.days == 1:
        prev = start - 86400
        first = prev + file_offset_s(sim.seed, sim.id, prev)
        extra = dat_filename(sim.id, datetime.fromtimestamp(first, UTC)) + ".tar.gz"
    return StationPlan(
        sim=sim,
        weather=weather,
        tasks=tasks,
        empty_file=empty,
        corrupt_archive_day=0 if damage and request.days >= 2 else None,
        extra_corrupt_archive=extra,
        param_hash=sim.param_hash(),
    )


# ------------------------------------------------------------------------------------ per hour


@dataclass
class FileResult:
    """What a worker reports about one file."""

    task: FileTask
    truth: dict[str, Any]
    damaged: list[tuple[int, str]]
    seconds: np.ndarray
    per_second: dict[str, np.ndarray]
    member: bytes | None = None
    member_size: int = 0


def station_dirs(out: Path, sim: StationSim) -> dict[str, Path]:
    """The directories of one station."""
    root = out / sim.dirname
    return {
        "root": root,
        "dat": root / "dat",
        "logs": root / "logs",
        "done": root / "logs" / "done",
        "era5": out / "era5" / sim.dirname,
        "truth": out / "truth" / sim.dirname,
    }


def render_task(
    plan: StationPlan, task: FileTask, damage: float
) -> tuple[HourEvents, RenderedFile]:
    """Simulate and render one hourly file (damage from the file's own random stream)."""
    sim = plan.sim
    events = simulate_hour(sim, task.window, plan.weather)
    rng = rng_for(sim.seed, sim.id, Stream.DAT_DAMAGE, hour_index(task.window.hour_s))
    rendered = render_dat_file(
        events, plan.param_hash, damage_fraction=damage, rng=rng, truncate_last=task.truncate_last
    )
    return events, rendered


def file_truth(
    sim: StationSim, window: FileWindow, events: HourEvents, rendered: RenderedFile
) -> dict[str, Any]:
    """The per-file truth entry (without path/archive/readable)."""
    return {
        "acq_start": iso(window.acq_start_s),
        "acq_end": iso(window.acq_end_s),
        "live_s": window.live_s,
        "bytes": rendered.size,
        "lines": rendered.lines,
        "events": len(events),
        "valid_events": rendered.valid_events,
        "damaged_lines": len(rendered.damaged),
        "truncated": rendered.truncated,
        "generated_muons": events.generated_muons,
        "candidates": events.candidates,
        "triggered": events.triggered,
        "self_trigger_events": events.self_events,
        "expected_triggered": round(events.expected_triggered, 3),
        "truth_parquet": f"truth/{sim.dirname}/{window.base}.parquet",
    }


def produce_file(plan: StationPlan, task: FileTask, out: Path, damage: float) -> FileResult:
    """Simulate, render and write one hourly file (plain, or as a gzip tar member) and its truth."""
    sim = plan.sim
    dirs = station_dirs(out, sim)
    events, rendered = render_task(plan, task, damage)
    member = None
    if task.archived:
        member = tar_member_gz(rendered.name, rendered.chunks, rendered.size, task.window.acq_end_s)
    else:
        write_file(dirs["dat"] / rendered.name, rendered.chunks)
    write_truth_table(dirs["truth"] / f"{task.window.base}.parquet", truth_table(events, rendered))
    return FileResult(
        task,
        file_truth(sim, task.window, events, rendered),
        rendered.damaged,
        events.seconds,
        events.per_second,
        member,
        tar_member_size(rendered.size) if member is not None else 0,
    )


# ---------------------------------------------------------------------------------------- output


def prepare_output(out: Path, station_dirnames: list[str]) -> None:
    """Make ``out`` ready: create it, or clear what an earlier simulation wrote there.

    Raises
    ------
    OutputDirectoryError
        If ``out`` is not empty and holds no ``truth.json`` of the simulator.
    """
    truth_file = out / "truth.json"
    if out.exists() and any(out.iterdir()):
        try:
            old = json.loads(truth_file.read_text(encoding="utf-8"))
            if old.get("schema") != TRUTH_SCHEMA:
                raise ValueError
        except (OSError, ValueError) as exc:
            raise OutputDirectoryError(
                f"{out} is not empty and was not written by the simulator (no {truth_file.name}); "
                "choose an empty or new directory"
            ) from exc
        names = set(station_dirnames) | {f"mingo0{s}" for s in old.get("stations", {})}
        for name in sorted(names):
            for path in (out / name, out / "era5" / name, out / "truth" / name):
                if path.is_dir():
                    shutil.rmtree(path)
        truth_file.unlink()
    out.mkdir(parents=True, exist_ok=True)


def write_logbook(path: Path, sim: StationSim, request: SimulationRequest) -> None:
    """The mechanical logbook: an older configuration (ending the day before the span) and the
    simulated one, still in force (empty end)."""
    pairs = list(sim.detector.trigger_pairs)[:4] + [""] * max(
        0, 4 - len(sim.detector.trigger_pairs)
    )
    first = request.start
    rows: list[list[Any]] = [
        [
            sim.id,
            1,
            first - timedelta(days=365),
            first - timedelta(days=1),
            0,
            145,
            290,
            435,
            12,
            23,
            34,
            13,
        ],
        # the configuration in force: no end date (DOMAIN.md §2, services/common/logbook.py)
        [sim.id, 2, first, "", *[f"{z:g}" for z in sim.detector.geometry.z_mm], *pairs],
    ]
    text = "station,conf,start,end,P1,P2,P3,P4,C1,C2,C3,C4\n"
    text += "".join(",".join(map(str, row)) + "\n" for row in rows)
    path.write_text(text, encoding="ascii")


def write_logs(directory: Path, files: list[LogFile]) -> None:
    """Write one day's log files into a directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for f in files:
        write_file(directory / f.name, [f.text().encode("ascii")])


def empty_station_truth(plan: StationPlan, request: SimulationRequest) -> dict[str, Any]:
    """The truth entry of a station before any file is produced."""
    return {
        "parameters": plan.sim.to_dict(),
        "param_hash": plan.param_hash,
        "files": {},
        "archives": {},
        "damaged_lines": [],
        "empty_files": [],
        "corrupt_archives": [],
        "truncated_lines": [],
        "logs": {"files": {}, "damaged_lines": []},
        "era5_files": [],
        "logbook": f"{plan.sim.dirname}/logbook.csv",
        "weather_hourly": f"truth/{plan.sim.dirname}/weather_hourly.csv",
        **({"scenario": scenario_truth(plan)} if plan.sim.scenario else {}),
    }


def scenario_truth(plan: StationPlan) -> dict[str, Any]:
    """The station's injected events and the spans without acquisition they leave (between
    consecutive files; ISO UTC, end exclusive)."""
    windows = sorted(
        (t.window for t in plan.tasks if t.window.live_s > 0), key=lambda w: w.acq_start_s
    )
    gaps = [
        [iso(a.acq_end_s), iso(b.acq_start_s)]
        for a, b in itertools.pairwise(windows)
        if b.acq_start_s > a.acq_end_s
    ]
    return {"events": plan.sim.scenario.to_truth(), "acquisition_gaps": gaps}


def finish_totals(entry: dict[str, Any]) -> None:
    """Per-station totals from the per-file entries."""
    readable = [f for f in entry["files"].values() if f["readable"]]
    unreadable = [f for f in entry["files"].values() if not f["readable"]]
    entry["totals"] = {
        "files": len(entry["files"]),
        "readable_files": len(readable),
        "valid_events": {t: sum(f["valid_events"][t] for f in readable) for t in ("1", "2")},
        "damaged_lines": sum(f["damaged_lines"] for f in readable),
        "damaged_lines_in_unreadable_files": sum(f["damaged_lines"] for f in unreadable),
        "lines": sum(f["lines"] for f in readable),
        "generated_muons": sum(f["generated_muons"] for f in entry["files"].values()),
        "candidates": sum(f["candidates"] for f in entry["files"].values()),
        "triggered_events": sum(f["triggered"] for f in entry["files"].values()),
        "self_trigger_events": sum(f["self_trigger_events"] for f in entry["files"].values()),
        "expected_triggered_events": round(
            sum(f["expected_triggered"] for f in entry["files"].values()), 3
        ),
        "events_in_unreadable_files": sum(f["events"] for f in unreadable),
        "live_s": sum(f["live_s"] for f in entry["files"].values()),
        "readable_live_s": sum(f["live_s"] for f in readable),
        "log_lines": sum(f["lines"] for f in entry["logs"]["files"].values()),
        "log_damaged_lines": len(entry["logs"]["damaged_lines"]),
    }


@dataclass
class _ArchiveState:
    name: str
    path: Path
    handle: Any
    uncompressed: int = 0
    members: list[str] = field(default_factory=list)


def build_sims(request: SimulationRequest) -> list[StationSim]:
    """The stations' simulations (acceptance pre-passes in parallel threads)."""

    def build(station: Station) -> StationSim:
        return build_station_sim(
            station,
            request.seed,
            request.rate_hz,
            request.beta_pct_per_hpa,
            request.alpha_t_pct_per_k,
            acceptance_samples=request.acceptance_samples,
            scenario=request.scenario,
        )

    workers = min(len(request.stations), request.workers or os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(build, request.stations))


def run_batch(
    request: SimulationRequest, on_file: Callable[[], object] | None = None
) -> dict[str, Any]:
    """Simulate and write everything; return the truth (also written to ``out/truth.json``).

    Parameters
    ----------
    request : SimulationRequest
        What to simulate.
    on_file : callable, optional
        Called after each station-hour file (progress bars).
    """
    out = request.out
    sims = build_sims(request)
    prepare_output(out, [s.dirname for s in sims])
    plans = [plan_station(sim, request) for sim in sims]
    truth = truth_header(request)
    for plan in plans:
        sim = plan.sim
        entry = init_station(plan, request)
        truth["stations"][str(sim.id)] = entry
        dirs = station_dirs(out, sim)
        for d in range(request.days):
            write_era5(plan, out, dirs["era5"], request.start_s + 86400 * d, entry)
        if plan.empty_file is not None:
            (dirs["dat"] / plan.empty_file.name).write_bytes(b"")

    # station-hours in (hour, station) order, so days finish together for all stations
    jobs = [
        (plan, task)
        for i in range(len(plans[0].tasks))
        for plan in plans
        for task in [plan.tasks[i]]
    ]
    counts: dict[tuple[int, int], DayCounts] = {}
    archives: dict[tuple[int, int], _ArchiveState] = {}
    workers = request.workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="simulate") as pool:
        pending: deque[Future[FileResult]] = deque()
        queue = iter(jobs)
        for plan, task in queue:
            pending.append(pool.submit(produce_file, plan, task, out, request.damage))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(produce_file, nxt[0], nxt[1], out, request.damage))
            plan = next(p for p in plans if p.sim.id == result.task.window.station)
            _consume(result, plan, request, truth["stations"][str(plan.sim.id)], counts, archives)
            if on_file is not None:
                on_file()
    for entry in truth["stations"].values():
        finish_totals(entry)
    tmp = out / ".truth.json.part"
    tmp.write_text(json.dumps(truth, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(out / "truth.json")
    logger.info("simulated %d stations x %d days into %s", len(plans), request.days, out)
    return truth


def truth_header(request: SimulationRequest) -> dict[str, Any]:
    """The run-level part of truth.json."""
    return {
        "schema": TRUTH_SCHEMA,
        "seed": request.seed,
        "start": request.start.isoformat(),
        "days": request.days,
        "span": {"start": iso(request.start_s), "end": iso(request.end_s)},
        "damage_fraction": request.damage,
        "rate_hz": request.rate_hz,
        "line_numbers": "1-based physical lines of the file; line 1 is the '# param_hash=' comment",
        "stations": {},
    }


def init_station(plan: StationPlan, request: SimulationRequest) -> dict[str, Any]:
    """Create a station's directories, logbook, weather truth, the planned empty file's truth and
    (1-day damage) the lost previous-day archive; return its truth entry."""
    sim = plan.sim
    dirs = station_dirs(request.out, sim)
    for key in ("dat", "logs", "era5", "truth"):
        dirs[key].mkdir(parents=True, exist_ok=True)
    if request.days > 1:
        dirs["done"].mkdir(parents=True, exist_ok=True)
    entry = empty_station_truth(plan, request)
    write_logbook(dirs["root"] / "logbook.csv", sim, request)
    plan.weather.to_frame().to_csv(
        dirs["truth"] / "weather_hourly.csv", index=False, float_format="%.6f"
    )
    if plan.empty_file is not None:
        entry["empty_files"].append(
            {
                "file": plan.empty_file.name,
                "path": f"{sim.dirname}/dat/{plan.empty_file.name}",
                "reason": "DAQ restart: empty file, acquisition resumed "
                f"{EMPTY_FILE_DEAD_S} s later",
            }
        )
        entry["files"][plan.empty_file.name] = _empty_file_entry(plan.empty_file, sim)
    if plan.extra_corrupt_archive is not None:
        _write_extra_corrupt_archive(plan, dirs["dat"], entry)
    return entry


def write_era5(
    plan: StationPlan, out: Path, directory: Path, day_s: int, entry: dict[str, Any]
) -> None:
    """Write a day's ERA5 files of a station and list them in its truth."""
    sim = plan.sim
    assert sim.station.latitude is not None and sim.station.longitude is not None
    for path in write_era5_day(
        directory,
        plan.weather,
        sim.station.latitude,
        sim.station.longitude,
        sim.seed,
        sim.id,
        day_s,
    ):
        entry["era5_files"].append(path.relative_to(out).as_posix())


def _empty_file_entry(window: FileWindow, sim: StationSim) -> dict[str, Any]:
    return {
        "path": f"{sim.dirname}/dat/{window.name}",
        "archive": None,
        "readable": True,
        "acq_start": iso(window.acq_start_s),
        "acq_end": iso(window.acq_end_s),
        "live_s": 0,
        "bytes": 0,
        "lines": 0,
        "events": 0,
        "valid_events": {"1": 0, "2": 0},
        "damaged_lines": 0,
        "truncated": False,
        "empty": True,
        "generated_muons": 0,
        "candidates": 0,
        "triggered": 0,
        "self_trigger_events": 0,
        "expected_triggered": 0.0,
        "truth_parquet": None,
    }


def _write_extra_corrupt_archive(plan: StationPlan, dat_dir: Path, entry: dict[str, Any]) -> None:
    """With one simulated day, a previous-day archive whose content is lost (truncated gzip)."""
    name = plan.extra_corrupt_archive
    assert name is not None
    member = name[: -len(".tar.gz")]
    start = (
        plan.tasks[0].window.hour_s
        - 86400
        + file_offset_s(plan.sim.seed, plan.sim.id, plan.tasks[0].window.hour_s - 86400)
    )
    n = 2000
    epoch = start + np.arange(n) // 8
    buf, _ = format_event_lines(epoch, np.ones(n, np.int64), np.zeros((n, 64), np.int64))
    content = header_line(plan.param_hash) + buf.tobytes()
    data = corrupt_archive_bytes(member, content)
    (dat_dir / name).write_bytes(data)
    entry["corrupt_archives"].append(
        {
            "archive": name,
            "path": f"{plan.sim.dirname}/dat/{name}",
            "kind": "truncated_gzip",
            "day": day_string(start),
            "members": [member],
            "bytes": len(data),
            "note": "previous day, outside the simulated span: content lost, not in the truth",
        }
    )


def _consume(
    result: FileResult,
    plan: StationPlan,
    request: SimulationRequest,
    entry: dict[str, Any],
    counts: dict[tuple[int, int], DayCounts],
    archives: dict[tuple[int, int], _ArchiveState],
) -> None:
    """Main-thread bookkeeping of one produced file: archive, per-second counts, truth, logs."""
    sim = plan.sim
    task = result.task
    dirs = station_dirs(request.out, sim)
    name = task.window.name
    day_index = task.day_index
    archive_name = plan.archive_name(day_index) if task.archived else None
    if result.member is not None:
        key = (sim.id, day_index)
        state = archives.get(key)
        if state is None:
            assert archive_name is not None
            path = dirs["dat"] / archive_name
            handle = open(path.with_name(f".{archive_name}.part"), "wb")  # noqa: SIM115
            state = _ArchiveState(archive_name, path, handle)  # closed when the day is complete
            archives[key] = state
        state.handle.write(result.member)
        state.uncompressed += result.member_size
        state.members.append(name)
    readable = not (task.archived and plan.corrupt_archive_day == day_index)
    entry["files"][name] = {
        "path": None if task.archived else f"{sim.dirname}/dat/{name}",
        "archive": archive_name,
        "readable": readable,
        **result.truth,
        "empty": False,
    }
    for line, kind in result.damaged:
        entry["damaged_lines"].append(
            {
                "file": name,
                "archive": archive_name,
                "line": line,
                "kind": kind,
                "category": CATEGORY[kind],
                "readable": readable,
            }
        )
        if kind == "truncated_line":
            entry["truncated_lines"].append({"file": name, "archive": archive_name, "line": line})
    day_s = request.start_s + 86400 * day_index
    for d in (day_s, day_s + 86400):
        counts.setdefault((sim.id, d), DayCounts(d, len(sim.detector.trigger_pairs))).add(
            result.seconds, result.per_second
        )
    if task.window.hour_s != day_s + 23 * 3600:
        return
    # the day is complete for this station: close its archive, write its logs
    if task.archived:
        state = archives.pop((sim.id, day_index))
        state.handle.write(tar_end_gz(state.uncompressed))
        state.handle.close()
        tmp = state.path.with_name(f".{state.name}.part")
        tmp.replace(state.path)
        archive_entry: dict[str, Any] = {
            "path": f"{sim.dirname}/dat/{state.name}",
            "day": day_string(day_s),
            "members": state.members,
        }
        if plan.corrupt_archive_day == day_index:
            size = state.path.stat().st_size
            keep = min(4096, size // 2)
            with open(state.path, "r+b") as corrupt:
                corrupt.truncate(keep)
            archive_entry.update(corrupt=True, bytes_before=size, bytes=keep)
            entry["corrupt_archives"].append(
                {
                    "archive": state.name,
                    "path": f"{sim.dirname}/dat/{state.name}",
                    "kind": "truncated_gzip",
                    "day": day_string(day_s),
                    "members": state.members,
                    "bytes": keep,
                    "bytes_before": size,
                    "note": "cut inside the first member: no member can be read completely",
                }
            )
        else:
            archive_entry.update(corrupt=False, bytes=state.path.stat().st_size)
        entry["archives"][state.name] = archive_entry
    day_counts = counts.pop((sim.id, day_s))
    logs = generate_day_logs(sim, day_s, plan.weather, day_counts, damage=request.damage > 0)
    last = day_index == request.days - 1
    log_dir = dirs["logs"] if last else dirs["done"]
    write_logs(log_dir, logs)
    record_logs(entry, request.out, log_dir, logs)


def record_logs(
    entry: dict[str, Any],
    out: Path,
    log_dir: Path,
    logs: list[LogFile],
    lines_written: dict[str, int] | None = None,
) -> None:
    """Put a day's log files (or their first ``lines_written`` lines) into the station's truth."""
    rel = log_dir.relative_to(out).as_posix()
    for f in logs:
        n = len(f.lines) if lines_written is None else lines_written.get(f.name, 0)
        key = f"{rel}/{f.name}"
        entry["logs"]["files"][key] = {"type": f.log_type.source, "day": f.day, "lines": n}
        entry["logs"]["damaged_lines"] = [
            d for d in entry["logs"]["damaged_lines"] if d["file"] != key
        ]
        for line, kind in f.damaged:
            if line <= n:
                entry["logs"]["damaged_lines"].append({"file": key, "line": line, "kind": kind})
