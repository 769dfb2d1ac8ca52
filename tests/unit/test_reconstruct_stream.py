"""The streaming domain: ingest's chunk messages of a simulated day, through StationStream, give
the minute records of ``mingo reconstruct`` (reconstruct_files + rates_rows), replays included;
calibrations follow the refresh rule; minutes split over chunks and files are right."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from schemas.events import envelope_from_headers
from services.common.stations import load_network
from services.ingest.dat_parser import parse_dat
from services.ingest.publish import Outgoing, event_chunk_messages
from services.reconstruct.cli import load_dat
from services.reconstruct.pipeline import FileEvents, file_chunks, rates_rows, reconstruct_files
from services.reconstruct.stream import StationStream, chunk_from_message

sys.path.insert(0, str(Path(__file__).parent))
from reconstruct_truth import simulate

pytestmark = pytest.mark.unit

Z_MM = (0.0, 150.0, 300.0, 450.0)
CHUNK = 300  #: events per chunk in these tests (ingest's default is 2048)
_COLUMNS = ("time_s", "trigger_type", "line", "channels")


def _files(out: Path, truth: dict) -> list[Path]:
    entry = truth["stations"]["0"]
    names = sorted(n for n, f in entry["files"].items() if f["path"] and f["readable"])
    return [out / entry["files"][n]["path"] for n in names][:6]


def _messages(path: Path) -> list[Outgoing]:
    start = int(load_dat(path).start_s)
    return event_chunk_messages(0, path.name, start, parse_dat(path.read_bytes()), CHUNK)


def _command(paths: list[Path], config, per_event: bool = False) -> list:  # type: ignore[no-untyped-def]
    files = (load_dat(p) for p in paths)
    return list(reconstruct_files(0, files, lambda _: Z_MM, config, per_event, CHUNK))


def test_stream_equals_command_with_replays(tmp_path: Path) -> None:
    truth = simulate(tmp_path, (0,), 0.5)
    paths = _files(tmp_path, truth)
    config = load_network().station(0).reconstruction
    results = _command(paths, config)
    expected = rates_rows(0, results)
    # the per-event kernel gives the same minutes
    assert rates_rows(0, _command(paths, config, per_event=True)) == expected

    stream = StationStream(0, lambda _: Z_MM, config)
    latest: dict[datetime, dict] = {}
    made = []
    for number, path in enumerate(paths):
        messages = _messages(path)
        assert len(messages) > 1  # several chunks per file
        # the first chunk replayed after the second; the second file published again whole
        order = [messages[0], messages[1], messages[0], *messages[1:]]
        if number == 1:
            order += messages
        for message in order:
            chunk = chunk_from_message(envelope_from_headers(message.headers), message.value)
            output = stream.add(chunk)
            made += output.calibrations
            for row in output.rows:
                latest[row["time"]] = row
    assert [latest[t] for t in sorted(latest)] == expected
    versions = list(dict.fromkeys(r.calibration.version for r in results))
    assert [c.version for c in made] == versions
    assert len(versions) >= 2


def test_calibrations_follow_the_refresh_rule(tmp_path: Path) -> None:
    """The first chunks are held until ``calibration_min_events``, then calibrated together;
    later chunks use the calibration in force, and a new one is made when the pool has gained
    min(``calibration_refresh_events``, the current one's events) events since it."""
    truth = simulate(tmp_path, (0,), 0.5)
    paths = _files(tmp_path, truth)
    base = load_network().station(0).reconstruction
    config = base.model_copy(
        update={"calibration_min_events": 700, "calibration_refresh_events": 3000}
    )
    results = _command(paths, config)
    first = results[0].calibration
    sizes = np.array([len(r.time_s) for r in results])
    held = (
        int(np.searchsorted(np.cumsum(sizes), first.events)) + 1
    )  # the chunks calibrated together
    assert 700 <= first.events == sizes[:held].sum() < 700 + CHUNK
    assert (first.source_file, first.source_chunk) == (results[0].name, 0)
    added, events = 0, first.events
    for before, result in zip(results[held - 1 :], results[held:], strict=False):
        added += len(before.time_s) if before is not results[held - 1] else 0
        cal = result.calibration
        if cal is before.calibration:
            assert added < min(3000, events)  # reused only while the pool gained too few
        else:
            assert added >= min(3000, events)
            assert (cal.source_file, cal.source_chunk) == (result.name, result.chunk_index)
            assert cal.pool_files[-1] == before.name
            added, events = 0, cal.events
    versions = list(dict.fromkeys(r.calibration.version for r in results))
    assert len(versions) >= 4
    # pool bounded by calibration_max_events, in whole chunks
    assert all(r.calibration.events <= config.calibration_max_events for r in results)


def test_outlier_seconds_and_split_minutes(tmp_path: Path) -> None:
    """A burst second is dropped with the band of the calibration in force, whichever chunk
    it falls in; a minute whose events fill several chunks (ingest cuts it) is tallied once,
    its seconds judged by the chunk that covers them."""
    truth = simulate(tmp_path, (0,), 0.5)
    path = _files(tmp_path, truth)[2]
    file = load_dat(path)
    config = load_network().station(0).reconstruction
    # a burst: 3 x CHUNK copies of the file's first coincidence events in one second of the
    # file's middle, so that its minute is cut into several chunks
    first = np.flatnonzero(file.trigger_type == 1)[:10]
    burst_s = int(file.time_s[len(file.time_s) // 2])
    copies = np.tile(first, 3 * CHUNK // 10)
    order = np.argsort(np.concatenate([file.time_s, np.full(len(copies), burst_s)]), kind="stable")

    def stack(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b])[order]

    burst = type(file)(
        file.name,
        file.start_s,
        file.end_s,
        stack(file.time_s, np.full(len(copies), burst_s)),
        stack(file.trigger_type, file.trigger_type[copies]),
        stack(file.line, file.line[copies]),
        stack(file.channels, file.channels[copies]),
    )
    prior = [load_dat(p) for p in _files(tmp_path, truth)[:2]]
    plain = list(reconstruct_files(0, [*prior, file], lambda _: Z_MM, config, False, CHUNK))
    burst_run = list(reconstruct_files(0, [*prior, burst], lambda _: Z_MM, config, False, CHUNK))
    rows = {r["time"]: r for r in rates_rows(0, plain)}
    burst_rows = {r["time"]: r for r in rates_rows(0, burst_run)}
    minute = datetime.fromtimestamp(burst_s // 60 * 60, rows[next(iter(rows))]["time"].tzinfo)
    chunks_in_minute = [
        r
        for r in burst_run
        if r.name == file.name and (r.time_s // 60 * 60 == burst_s // 60 * 60).any()
    ]
    assert len(chunks_in_minute) >= 3  # the minute is cut into several chunks
    # the burst second is dropped: one second less of live time, its events rejected
    assert burst_rows[minute]["live_s"] == rows[minute]["live_s"] - 1
    assert burst_rows[minute]["rejected_events"] >= len(copies)
    # the other minutes are unchanged
    for time, row in rows.items():
        if time != minute:
            assert burst_rows[time] == row


def test_memory_bounded_by_chunk_not_file(tmp_path: Path) -> None:
    """The same events as one file of a day and as one file of three days (the day repeated,
    times shifted): the stream's peak of traced allocations does not grow with the file, and
    stays under what the configuration allows (``bench_reconstruct.memory_bound``'s terms:
    held chunks, pool tails, minute sums of the horizon, the chunk being processed)."""
    import tracemalloc

    truth = simulate(tmp_path, (0,), 0.5)
    day = [load_dat(p) for p in _files(tmp_path, truth)]
    config = (
        load_network()
        .station(0)
        .reconstruction.model_copy(
            update={"calibration_min_events": 1000, "calibration_max_events": 3000}
        )
    )

    def long_file(days: int) -> list:  # type: ignore[type-arg]
        one = type(day[0])(
            "long.dat",
            day[0].start_s,
            day[-1].end_s,
            *(np.concatenate([getattr(f, a) for f in day]) for a in _COLUMNS),
        )
        shift = one.end_s - one.start_s
        stacked = type(one)(
            "long.dat",
            one.start_s,
            one.end_s + (days - 1) * shift,
            np.concatenate([one.time_s + d * shift for d in range(days)]),
            *(np.concatenate([getattr(one, a)] * days) for a in _COLUMNS[1:]),
        )
        return file_chunks(0, stacked, CHUNK)

    peaks = []
    for days in (1, 3):
        chunks = long_file(days)  # made before tracing: the harness's memory, not the stream's
        # minute sums are kept for the horizon: an hour here, shorter than both files
        stream = StationStream(0, lambda _: Z_MM, config, horizon_s=3600)
        tracemalloc.start()
        for chunk in chunks:
            stream.add(chunk)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        del chunks
    per_event = 532 + 384 + 1536  # held row, pooled tails, working set (see memory_bound) [B]
    bound = per_event * (config.calibration_max_events + 2 * CHUNK) + 1024 * 61
    assert peaks[1] < 1.15 * peaks[0] < bound, (peaks, bound)


T0 = 1_699_999_200  #: a whole hour, for the synthetic files [s since epoch, UTC]


def _blank_file(name: str, first_s: int, seconds: int, trigger: int = 1) -> FileEvents:
    """A file of one event per second without hits (status all_zero: rejected, so only the
    live time and the chunking matter), from ``first_s`` on. [s since epoch, UTC]"""
    times = np.arange(first_s, first_s + seconds, dtype=np.int64)
    n = len(times)
    lines = np.arange(1, n + 1, dtype=np.int32)
    channels = np.zeros((n, 64))
    return FileEvents(
        name, first_s, first_s + seconds, times, np.full(n, trigger, np.int8), lines, channels
    )


def test_replay_after_its_file_left_the_horizon_is_not_counted_twice() -> None:
    """A file is forgotten only with its last minute: a chunk replayed after the file left the
    horizon must not add to a minute that still holds its first count. Here the horizon's edge
    falls in file A's last minute (A ends 1 s into it); file B moves the newest event so far
    that A ended before the edge, but its last minute did not; then A's last chunk comes again."""
    config = (
        load_network().station(0).reconstruction.model_copy(update={"calibration_min_events": 50})
    )
    a = _blank_file("a.dat", T0, 601)  # its last minute, T0 + 600, holds 1 s of it
    b = _blank_file("b.dat", T0 + 4000, 230)
    stream = StationStream(0, lambda _: Z_MM, config, horizon_s=3600)
    chunks_a = file_chunks(0, a, CHUNK)
    for chunk in [*chunks_a, *file_chunks(0, b, CHUNK)]:
        stream.add(chunk)
    # the horizon's edge is T0 + 630: A ended before it, its last minute ends after it
    assert stream.newest_s - stream.horizon_s == T0 + 630
    assert T0 + 600 in stream.minutes
    live_before = stream.rows_of([T0 + 600])[0]["live_s"]
    assert stream.add(chunks_a[-1]).rows == []
    assert stream.rows_of([T0 + 600])[0]["live_s"] == live_before == 1.0


def test_no_first_calibration_without_coincidence_events() -> None:
    """A station's first complete file holding only self-trigger events does not release the
    held chunks: a calibration from no events (zero pedestals and offsets) would reconstruct
    the next file's first chunk. They wait for coincidence events to calibrate from."""
    config = load_network().station(0).reconstruction
    noise = _blank_file("noise.dat", T0, 300, trigger=2)
    physics = _blank_file("physics.dat", T0 + 600, 600)
    stream = StationStream(0, lambda _: Z_MM, config)
    results = []
    for chunk in [*file_chunks(0, noise, CHUNK), *file_chunks(0, physics, CHUNK)]:
        results += stream.add(chunk).results
    assert [r.name for r in results] == ["noise.dat", "physics.dat", "physics.dat"]
    assert all(r.calibration.events == len(physics.time_s) for r in results)
