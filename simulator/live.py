"""``--live``: the same station network, written as (scaled) time passes, for demos.

Simulated time starts at the first day's midnight and runs ``speed`` times faster than the wall
clock. Like a station:

- an hourly ``.dat`` file grows under a temporary name (``.<name>.part``, which no ``*.dat`` glob
  matches) and is renamed when its hour completes, so readers never see a partial ``.dat`` file;
- log lines are appended to ``logs/<prefix>YYYY-MM-DD.log`` at their cadence; when a day is over its
  logs move to ``logs/done/`` and its ``.dat`` files are packed into ``<first file>.dat.tar.gz``;
- the ERA5 files of a day appear when the day starts; ``truth.json`` is rewritten (atomically) as
  files complete.

The content is byte-identical to the batch run of the same request. SIGINT/SIGTERM (or the
``stop`` event) end the run cleanly: the open file is closed as a shorter acquisition and the truth
describes exactly what was written.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from simulator.damage import CATEGORY
from simulator.datfiles import (
    RenderedFile,
    tar_end_gz,
    tar_member_gz,
    tar_member_size,
    truth_table,
    write_truth_table,
)
from simulator.events import HourEvents, simulate_hour
from simulator.logs import DayCounts, LogFile, generate_day_logs
from simulator.run import (
    FileTask,
    SimulationRequest,
    StationPlan,
    build_sims,
    day_string,
    file_truth,
    finish_totals,
    init_station,
    iso,
    plan_station,
    prepare_output,
    record_logs,
    render_task,
    station_dirs,
    truth_header,
    write_era5,
)

logger = logging.getLogger(__name__)


@dataclass
class _OpenFile:
    """An hourly file being written."""

    task: FileTask
    events: HourEvents
    rendered: RenderedFile
    content: bytes
    line_end: np.ndarray  #: byte offset after each physical line
    line_time: np.ndarray  #: UTC second of each physical line (header: acquisition start)
    part: Path
    handle: Any
    written: int = 0  #: physical lines written


def _line_index(
    rendered: RenderedFile, events: HourEvents, content: bytes
) -> tuple[np.ndarray, np.ndarray]:
    raw = np.frombuffer(content, np.uint8)
    ends = np.flatnonzero(raw == 10) + 1
    if ends.size < rendered.lines:
        ends = np.append(ends, raw.size)  # a truncated last line has no newline
    times = np.full(rendered.lines, events.window.acq_start_s, np.int64)
    # the time of a line is that of its (first) event
    order = np.argsort(rendered.event_line, kind="stable")[::-1]
    times[rendered.event_line[order] - 1] = events.epoch_s[order]
    return ends.astype(np.int64), times


@dataclass
class _LiveStation:
    plan: StationPlan
    request: SimulationRequest
    entry: dict[str, Any]
    next_task: int = 0
    current: _OpenFile | None = None
    day_s: int | None = None
    logs: list[LogFile] = field(default_factory=list)
    log_written: dict[str, int] = field(default_factory=dict)
    log_handles: dict[str, Any] = field(default_factory=dict)
    empty_done: bool = False

    @property
    def dirs(self) -> dict[str, Path]:
        return station_dirs(self.request.out, self.plan.sim)

    @property
    def finished(self) -> bool:
        return self.next_task >= len(self.plan.tasks) and self.current is None

    # ------------------------------------------------------------------------------------- days
    def _start_day(self, day_s: int) -> None:
        sim = self.plan.sim
        if self.day_s is not None:
            self._close_logs(move_to_done=True)
        self.day_s = day_s
        write_era5(self.plan, self.request.out, self.dirs["era5"], day_s, self.entry)
        counts = DayCounts(day_s, len(sim.detector.trigger_pairs))
        for hour in range(day_s - 3600, day_s + 86400, 3600):
            if self.request.start_s <= hour < self.request.end_s:
                window = next(t.window for t in self.plan.tasks if t.window.hour_s == hour)
                h = simulate_hour(sim, window, self.plan.weather, with_electronics=False)
                counts.add(h.seconds, h.per_second)
        self.logs = generate_day_logs(
            sim, day_s, self.plan.weather, counts, damage=self.request.damage > 0
        )
        self.log_written = {f.name: 0 for f in self.logs}
        self.dirs["logs"].mkdir(parents=True, exist_ok=True)
        self.log_handles = {}
        for f in self.logs:  # kept open for the day, closed by _close_logs
            self.log_handles[f.name] = open(self.dirs["logs"] / f.name, "a", encoding="ascii")  # noqa: SIM115

    def _append_logs(self, now_s: int) -> None:
        for f in self.logs:
            n = self.log_written[f.name]
            upto = int(np.searchsorted(f.times, now_s, side="left"))
            if upto > n:
                handle = self.log_handles[f.name]
                handle.write("".join(line + "\n" for line in f.lines[n:upto]))
                handle.flush()
                self.log_written[f.name] = upto

    def _close_logs(self, move_to_done: bool) -> None:
        for handle in self.log_handles.values():
            handle.close()
        self.log_handles = {}
        log_dir = self.dirs["logs"]
        if move_to_done:
            self.dirs["done"].mkdir(parents=True, exist_ok=True)
            for f in self.logs:
                (log_dir / f.name).replace(self.dirs["done"] / f.name)
                key = f"{log_dir.relative_to(self.request.out).as_posix()}/{f.name}"
                self.entry["logs"]["files"].pop(key, None)
                self.entry["logs"]["damaged_lines"] = [
                    d for d in self.entry["logs"]["damaged_lines"] if d["file"] != key
                ]
            log_dir = self.dirs["done"]
        record_logs(self.entry, self.request.out, log_dir, self.logs, self.log_written)

    # ------------------------------------------------------------------------------------ files
    def _open(self, task: FileTask) -> None:
        events, rendered = render_task(self.plan, task, self.request.damage)
        content = rendered.content()
        ends, times = _line_index(rendered, events, content)
        part = self.dirs["dat"] / f".{rendered.name}.part"
        handle = open(part, "wb")  # noqa: SIM115  (kept open for the hour, closed by _close)
        self.current = _OpenFile(task, events, rendered, content, ends, times, part, handle)

    def _write_until(self, now_s: int) -> None:
        f = self.current
        assert f is not None
        upto = int(np.searchsorted(f.line_time, now_s, side="left"))
        if upto > f.written:
            start = int(f.line_end[f.written - 1]) if f.written else 0
            f.handle.write(f.content[start : int(f.line_end[upto - 1])])
            f.handle.flush()
            f.written = upto

    def _close(self, partial_end_s: int | None = None) -> None:
        f = self.current
        assert f is not None
        if partial_end_s is None:
            f.handle.write(f.content[int(f.line_end[f.written - 1]) if f.written else 0 :])
            f.written = f.rendered.lines
        f.handle.close()
        final = self.dirs["dat"] / f.rendered.name
        f.part.replace(final)
        sim = self.plan.sim
        truth = file_truth(sim, f.task.window, f.events, f.rendered)
        table = truth_table(f.events, f.rendered)
        if partial_end_s is not None:
            truth, table = _partial(truth, table, f, partial_end_s)
        write_truth_table(self.dirs["truth"] / f"{f.task.window.base}.parquet", table)
        name = f.rendered.name
        self.entry["files"][name] = {
            "path": f"{sim.dirname}/dat/{name}",
            "archive": None,
            "readable": True,
            **truth,
            "empty": False,
        }
        for line, kind in f.rendered.damaged:
            if line <= f.written:
                self.entry["damaged_lines"].append(
                    {"file": name, "archive": None, "line": line, "kind": kind,
                     "category": CATEGORY[kind], "readable": True}
                )  # fmt: skip
                if kind == "truncated_line":
                    self.entry["truncated_lines"].append(
                        {"file": name, "archive": None, "line": line}
                    )
        self.current = None
        if partial_end_s is None and f.task.window.hour_s % 86400 == 23 * 3600 and f.task.archived:
            self._archive_day(f.task.day_index)

    def _archive_day(self, day_index: int) -> None:
        """Pack a finished day's files into its archive, as the station's daily job does."""
        sim = self.plan.sim
        tasks = [t for t in self.plan.tasks if t.day_index == day_index]
        name = self.plan.archive_name(day_index)
        path = self.dirs["dat"] / name
        tmp = path.with_name(f".{name}.part")
        uncompressed = 0
        with open(tmp, "wb") as out:
            for t in tasks:
                data = (self.dirs["dat"] / t.window.name).read_bytes()
                out.write(tar_member_gz(t.window.name, [data], len(data), t.window.acq_end_s))
                uncompressed += tar_member_size(len(data))
            out.write(tar_end_gz(uncompressed))
        tmp.replace(path)
        for t in tasks:
            (self.dirs["dat"] / t.window.name).unlink()
        corrupt = self.plan.corrupt_archive_day == day_index
        members = [t.window.name for t in tasks]
        size = path.stat().st_size
        archive_entry: dict[str, Any] = {
            "path": f"{sim.dirname}/dat/{name}",
            "day": day_string(tasks[0].window.hour_s),
            "members": members,
        }
        if corrupt:
            keep = min(4096, size // 2)
            with open(path, "r+b") as handle:
                handle.truncate(keep)
            archive_entry.update(corrupt=True, bytes_before=size, bytes=keep)
            self.entry["corrupt_archives"].append(
                {
                    "archive": name,
                    "path": archive_entry["path"],
                    "kind": "truncated_gzip",
                    "day": archive_entry["day"],
                    "members": members,
                    "bytes": keep,
                    "bytes_before": size,
                    "note": "cut inside the first member: no member can be read completely",
                }
            )
        else:
            archive_entry.update(corrupt=False, bytes=size)
        self.entry["archives"][name] = archive_entry
        for member in members:
            self.entry["files"][member].update(path=None, archive=name, readable=not corrupt)
        for d in self.entry["damaged_lines"]:
            if d["file"] in members:
                d.update(archive=name, readable=not corrupt)
        for d in self.entry["truncated_lines"]:
            if d["file"] in members:
                d["archive"] = name

    def advance(self, now_s: int) -> None:
        """Write everything that happened before ``now_s`` (UTC seconds)."""
        while True:
            if self.day_s is not None:
                self._append_logs(min(now_s, self.day_s + 86400))
            next_day = self.request.start_s if self.day_s is None else self.day_s + 86400
            if not (next_day <= now_s and next_day < self.request.end_s):
                break
            self._start_day(next_day)
        empty = self.plan.empty_file
        if empty is not None and not self.empty_done and now_s > empty.name_s:
            (self.dirs["dat"] / empty.name).write_bytes(b"")
            self.empty_done = True
        while True:
            if self.current is None:
                if self.next_task >= len(self.plan.tasks):
                    return
                task = self.plan.tasks[self.next_task]
                if now_s < task.window.acq_start_s:
                    return
                self._open(task)
                self.next_task += 1
            assert self.current is not None
            if now_s >= self.current.task.window.acq_end_s:
                self._close()
                continue
            self._write_until(now_s)
            return

    def record_current_logs(self) -> None:
        """List the lines written so far of the current day's logs in the truth."""
        if self.log_handles:
            record_logs(
                self.entry, self.request.out, self.dirs["logs"], self.logs, self.log_written
            )

    def stop(self, now_s: int) -> None:
        """End cleanly at ``now_s``: close the open file as a shorter acquisition."""
        # a late stop (a starved thread) first writes what happened before it, so that the
        # closed file's acquisition never extends past its hour or beyond its events
        self.advance(now_s)
        if self.current is not None:
            self._write_until(now_s)
            self._close(partial_end_s=now_s)
        if self.log_handles:
            self._close_logs(move_to_done=False)

    def complete(self) -> None:
        """The span is over: the last day's logs stay in logs/."""
        if self.log_handles:
            self._close_logs(move_to_done=False)


def _partial(
    truth: dict[str, Any], table: Any, f: _OpenFile, end_s: int
) -> tuple[dict[str, Any], Any]:
    """Truth of a file closed early: only its first ``f.written`` lines exist."""
    import pyarrow.compute as pc

    k = f.written
    on_disk = f.rendered.event_line <= k
    damaged_events = np.zeros(on_disk.size, bool)
    damaged_events[list(f.rendered.event_damage)] = True
    trig = f.events.trigger
    share = (end_s - f.task.window.acq_start_s) / max(1, f.task.window.live_s)
    truth = dict(truth)
    truth.update(
        acq_end=iso(end_s),
        live_s=end_s - f.task.window.acq_start_s,
        bytes=int(f.line_end[k - 1]) if k else 0,
        lines=k,
        events=int(on_disk.sum()),
        valid_events={
            str(t): int(np.count_nonzero(on_disk & ~damaged_events & (trig == t))) for t in (1, 2)
        },
        damaged_lines=sum(1 for line, _ in f.rendered.damaged if line <= k),
        truncated=any(kind == "truncated_line" and line <= k for line, kind in f.rendered.damaged),
        generated_muons=round(f.events.generated_muons * share),
        candidates=round(f.events.candidates * share),
        triggered=int(np.count_nonzero(on_disk & (trig == 1))),
        self_trigger_events=int(np.count_nonzero(on_disk & (trig == 2))),
        expected_triggered=round(f.events.expected_triggered * share, 3),
        partial=True,
    )
    return truth, table.filter(pc.less_equal(table["line"], k))


def _write_truth(out: Path, truth: dict[str, Any]) -> None:
    tmp = out / ".truth.json.part"
    tmp.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / "truth.json")


def run_live(
    request: SimulationRequest,
    speed: float = 60.0,
    progress: bool = True,
    stop: threading.Event | None = None,
    on_tick: Callable[[int], object] | None = None,
    tick_s: float = 0.2,
) -> dict[str, Any]:
    """Run the network in scaled real time until the span is over or ``stop`` is set.

    Parameters
    ----------
    request : SimulationRequest
        What to simulate (``out`` must be new or a previous simulator output).
    speed : float
        Simulated seconds per wall-clock second.
    progress : bool
        Log progress once per simulated hour.
    stop : threading.Event, optional
        Set it to end the run; SIGINT/SIGTERM set it when called from the main thread.
    on_tick : callable, optional
        Called with the simulated UTC second after each step.
    tick_s : float
        Wall-clock seconds between steps.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    stop = stop or threading.Event()
    sims = build_sims(request)
    prepare_output(request.out, [s.dirname for s in sims])
    truth = truth_header(request)
    truth["live"] = {"speed": speed, "complete": False}
    stations = []
    for sim in sims:
        plan = plan_station(sim, request)
        entry = init_station(plan, request)
        truth["stations"][str(sim.id)] = entry
        stations.append(_LiveStation(plan, request, entry))

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def _handler(signum: int, frame: FrameType | None) -> None:
            logger.info("signal %d: stopping the live simulation", signum)
            stop.set()

        for wanted in (signal.SIGINT, signal.SIGTERM):
            previous[wanted] = signal.signal(wanted, _handler)
    # the last file ends a few seconds after the span (at the next hour's file start)
    last_end = max(t.window.acq_end_s for s in stations for t in s.plan.tasks)
    t0 = time.monotonic()
    last_truth = 0.0
    last_hour = -1
    try:
        while True:
            now_s = int(request.start_s + (time.monotonic() - t0) * speed)
            if stop.is_set():
                for s in stations:
                    s.stop(now_s)
                break
            for s in stations:
                s.advance(min(now_s, last_end))
            if on_tick is not None:
                on_tick(now_s)
            if progress and now_s // 3600 != last_hour:
                last_hour = now_s // 3600
                logger.info("live: simulated time %s", iso(now_s))
            if all(s.finished for s in stations) and now_s >= request.end_s:
                for s in stations:
                    s.complete()
                truth["live"]["complete"] = True
                break
            if time.monotonic() - last_truth > 1.0:
                for s in stations:
                    s.record_current_logs()
                _write_truth(request.out, _with_totals(truth))
                last_truth = time.monotonic()
            stop.wait(tick_s)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    final = _with_totals(truth)
    _write_truth(request.out, final)
    return final


def _with_totals(truth: dict[str, Any]) -> dict[str, Any]:
    for entry in truth["stations"].values():
        finish_totals(entry)
    return truth
