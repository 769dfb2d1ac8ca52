"""The streaming domain: ingest's chunk messages of a simulated day, through StationStream, give
the minute records of ``mingo reconstruct`` (reconstruct_files + rates_rows), replays included."""

from __future__ import annotations

import itertools
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
from services.reconstruct.pipeline import coincidence, rates_rows, reconstruct_files
from services.reconstruct.stream import Chunk, StationStream, _assemble, chunk_from_message

sys.path.insert(0, str(Path(__file__).parent))
from reconstruct_truth import simulate

pytestmark = pytest.mark.unit

Z_MM = (0.0, 150.0, 300.0, 450.0)


def _files(out: Path, truth: dict) -> list[Path]:
    entry = truth["stations"]["0"]
    names = sorted(n for n, f in entry["files"].items() if f["path"] and f["readable"])
    return [out / entry["files"][n]["path"] for n in names][:6]


def _messages(path: Path) -> list[Outgoing]:
    start = int(load_dat(path).start_s)
    return event_chunk_messages(0, path.name, start, parse_dat(path.read_bytes()), 300)


def test_stream_equals_command_with_replays(tmp_path: Path) -> None:
    truth = simulate(tmp_path, (0,), 0.5)
    paths = _files(tmp_path, truth)
    config = load_network().station(0).reconstruction
    expected = rates_rows(
        0, reconstruct_files(0, (load_dat(p) for p in paths), lambda _: Z_MM, config)
    )

    stream = StationStream(0, lambda _: Z_MM, config)
    latest: dict[datetime, dict] = {}
    for number, path in enumerate(paths):
        messages = _messages(path)
        assert len(messages) > 1  # several chunks per file
        # the chunks out of order, the first one twice; the second file published again whole
        order = [*messages[1:-1], messages[0], messages[0], messages[-1]]
        if number == 1:
            order += messages
        for message in order:
            chunk = chunk_from_message(envelope_from_headers(message.headers), message.value)
            for row in stream.add(chunk).rows:
                latest[row["time"]] = row
    assert stream.pending_files == []
    assert [latest[t] for t in sorted(latest)] == expected
    # a lone chunk of a finished file waits for the rest of a republication, counting nothing
    lone = _messages(paths[2])[0]
    waiting = stream.add(chunk_from_message(envelope_from_headers(lone.headers), lone.value))
    assert waiting.rows == []
    assert waiting.calibration is None
    assert stream.pending_files == [paths[2].name]


def test_calibration_reused_until_refresh(tmp_path: Path) -> None:
    """With a small ``calibration_refresh_events``, files reuse the last calibration (same
    version) until the pool gained that many events; stream and command still agree."""
    truth = simulate(tmp_path, (0,), 0.5)
    paths = _files(tmp_path, truth)
    base = load_network().station(0).reconstruction
    config = base.model_copy(update={"calibration_refresh_events": 3000})
    results = list(reconstruct_files(0, (load_dat(p) for p in paths), lambda _: Z_MM, config))
    expected = rates_rows(0, results)

    versions = [r.calibration.version for r in results]
    assert len(set(versions)) < len(versions)  # some files reused a calibration
    assert versions[1] != versions[0]  # the first calibration had fewer events than the refresh
    added = 0
    for before, result in itertools.pairwise(results):
        added += len(result.time_s)
        if result.calibration.version == before.calibration.version:
            assert added < 3000  # reused only while the pool gained fewer events
        else:
            assert result.calibration.source_file == result.name
            added = 0
    # the default recalibrates every file of these small pools: a refresh changes the constants
    default = list(reconstruct_files(0, (load_dat(p) for p in paths), lambda _: Z_MM, base))
    assert len({r.calibration.version for r in default}) == len(default)

    stream = StationStream(0, lambda _: Z_MM, config)
    latest: dict[datetime, dict] = {}
    for path in [*paths, paths[-1]]:  # the last file published again: no new calibration
        for message in _messages(path):
            chunk = chunk_from_message(envelope_from_headers(message.headers), message.value)
            output = stream.add(chunk)
            for row in output.rows:
                latest[row["time"]] = row
    assert output.calibration is not None
    assert output.calibration.version == versions[-1]
    assert [latest[t] for t in sorted(latest)] == expected


def test_file_assembled_coincidence_first_in_line_order(tmp_path: Path) -> None:
    """Chunks whose lines are out of order across chunks (times going backwards in the file)
    are sorted by line within each trigger type, coincidence events first, so that
    reconstruction takes them as a view (``coincidence`` gives a slice)."""
    truth = simulate(tmp_path, (0,), 0.5)
    path = _files(tmp_path, truth)[0]
    chunks = [
        chunk_from_message(envelope_from_headers(m.headers), m.value) for m in _messages(path)
    ]
    assert len(chunks) >= 3
    first, second, last = chunks[0], chunks[1], chunks[-1]
    parts = [
        # the first two chunks' rows swapped: lines out of order
        Chunk(first.envelope, second.time_s, second.line, second.channels),
        Chunk(second.envelope, first.time_s, first.line, first.channels),
        *chunks[2:-1],
        # the last chunk as self-trigger events
        Chunk(last.envelope.model_copy(update={"trigger_type": 2}), *_rows(last)),
    ]
    file = _assemble(first.envelope, parts[::-1])
    coincident = np.concatenate([c.line for c in chunks[:-1]])
    n = len(coincident)
    assert coincidence(file) == slice(0, n)
    assert (file.trigger_type[n:] == 2).all()
    assert np.array_equal(file.line, np.concatenate([np.sort(coincident), last.line]))
    by_line = {int(line): row for c in chunks for line, row in zip(c.line, c.channels, strict=True)}
    assert all(
        np.array_equal(by_line[int(x)], row)
        for x, row in zip(file.line, file.channels, strict=True)
    )


def _rows(chunk: Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return chunk.time_s, chunk.line, chunk.channels
