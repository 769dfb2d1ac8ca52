"""The streaming domain: ingest's chunk messages of a simulated day, through StationStream, give
the minute records of ``mingo reconstruct`` (reconstruct_files + rates_rows), replays included."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import pytest

from schemas.events import envelope_from_headers
from services.common.stations import load_network
from services.ingest.dat_parser import parse_dat
from services.ingest.publish import Outgoing, event_chunk_messages
from services.reconstruct.cli import load_dat
from services.reconstruct.pipeline import rates_rows, reconstruct_files
from services.reconstruct.stream import StationStream, chunk_from_message

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
