"""The file-span rule: events before a file's start or a day after it are rejected, not counted.

Unit tests of ``limit_to_file_span`` / ``parse_dat_file`` (boundaries, messages, neighbours), and
the reconstruct side: a file named 30 days before its events gives no minute records (its lines
are rejected and reported) instead of a month of zero-rate minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from services.common import rejects as rj
from services.common.stations import load_network
from services.ingest.dat_parser import (
    MAX_FILE_SPAN_S,
    limit_to_file_span,
    parse_dat,
    parse_dat_file,
)
from services.reconstruct.cli import reconstruct
from services.reconstruct.pipeline import rates_rows, read_file_events, reconstruct_files
from tests.data.bad.make_corpus import dat_name, event_line

pytestmark = pytest.mark.unit

START = datetime(2024, 3, 1, 13, tzinfo=UTC)
START_S = int(START.timestamp())
Z_MM = (0.0, 150.0, 300.0, 450.0)


def _file(*offsets_s: int) -> bytes:
    """A comment line, then one valid event line per offset from START. [s]"""
    lines = ["# param_hash=test"]
    lines += [event_line(START + timedelta(seconds=s), 1, i) for i, s in enumerate(offsets_s)]
    return ("\n".join(lines) + "\n").encode()


def test_event_before_the_start_is_rejected_with_file_line_and_reason() -> None:
    data = _file(-1, 0, 5)
    result = parse_dat_file(data, START_S)
    assert result.line_number.tolist() == [3, 4]
    assert result.time_s.tolist() == [START_S, START_S + 5]
    assert result.lines_total == 3 and result.valid_fraction == pytest.approx(200 / 3)
    (reject,) = result.rejects
    assert (reject.line, reason := reject.reason) == (2, rj.OUTSIDE_FILE_SPAN), reason
    assert reject.detail == (
        "event time 2024-03-01T12:59:59Z before the file's start 2024-03-01T13:00:00Z (file name)"
    )
    assert reject.raw == data.decode().splitlines()[1]


def test_span_boundaries_and_valid_neighbours() -> None:
    span = 3600
    data = _file(0, 1, span - 1, span, span + 1, 2)
    parsed = parse_dat(data)
    result = limit_to_file_span(data, parsed, START_S, span)
    # the start and the last second of the span count; the span's end and later do not
    assert result.line_number.tolist() == [2, 3, 4, 7]
    assert result.time_s.tolist() == [START_S, START_S + 1, START_S + span - 1, START_S + 2]
    keep = [0, 1, 2, 5]
    assert np.array_equal(result.channels, parsed.channels[keep])
    assert np.array_equal(result.trigger_type, parsed.trigger_type[keep])
    assert [(r.line, r.reason) for r in result.rejects] == [
        (5, rj.OUTSIDE_FILE_SPAN),
        (6, rj.OUTSIDE_FILE_SPAN),
    ]
    assert result.rejects[0].detail == (
        "event time 2024-03-01T14:00:00Z is 3600 s after the file's start 2024-03-01T13:00:00Z "
        "(file name), at or beyond the longest file span of 3600 s"
    )


def test_default_span_is_a_day_and_a_clean_file_is_returned_as_is() -> None:
    assert MAX_FILE_SPAN_S == 86_400
    data = _file(0, MAX_FILE_SPAN_S - 1)
    parsed = parse_dat(data)
    assert limit_to_file_span(data, parsed, START_S) is parsed
    assert [r.line for r in parse_dat_file(_file(0, MAX_FILE_SPAN_S), START_S).rejects] == [3]


def test_without_a_name_time_the_span_runs_from_the_first_event() -> None:
    result = parse_dat_file(_file(10, 0, 100, 101), None, 101)
    assert result.line_number.tolist() == [2, 3, 4]
    (reject,) = result.rejects
    assert reject.line == 5 and "2024-03-01T13:00:00Z (first event)" in reject.detail


def test_span_rejects_merge_with_parse_rejects_in_line_order() -> None:
    good = _file(-5, 0).decode().splitlines()
    data = "\n".join([*good, "2024 02 30" + good[2][10:], good[2]]).encode() + b"\r\n"
    result = parse_dat_file(data, START_S)
    assert [(r.line, r.reason) for r in result.rejects] == [
        (2, rj.OUTSIDE_FILE_SPAN),
        (4, rj.BAD_DATE),
    ]
    assert result.line_number.tolist() == [3, 5]
    with pytest.raises(ValueError, match="positive"):
        parse_dat_file(data, START_S, 0)


def _blank_dat(start: datetime, seconds: int, extra: list[datetime] | None = None) -> str:
    """One event per second without hits (rejected by the kernel: only live time counts)."""
    zeros = " ".join(["0000.0000"] * 64)
    times = [start + timedelta(seconds=s) for s in range(seconds)] + (extra or [])
    return "".join(f"{t:%Y %m %d %H %M %S} 1 {zeros}\n" for t in times)


def _records(name: str, text: str) -> tuple[list[dict[str, object]], int]:
    config = load_network().station(1).reconstruction
    events, rejects = read_file_events(name, text.encode())
    rows = rates_rows(1, reconstruct_files(1, [events], lambda _: Z_MM, config, False))
    return rows, len(rejects)


def test_misnamed_or_clock_reset_file_gives_no_month_of_empty_minutes(tmp_path: Path) -> None:
    clean, n_clean = _records(dat_name(START), _blank_dat(START, 600))
    assert n_clean == 0 and len(clean) == 10
    # named 30 days before its events: every event is outside the span, no minute record at all
    early = dat_name(START - timedelta(days=30))
    rows, n_rejected = _records(early, _blank_dat(START, 600))
    assert rows == [] and n_rejected == 600
    # one event of a clock 30 days ahead: rejected, the file's minutes are those of the clean file
    glitch = _blank_dat(START, 600, [START + timedelta(days=30)])
    rows, n_rejected = _records(dat_name(START), glitch)
    assert n_rejected == 1 and rows == clean
    # the command reports the rejected line to its user
    path = tmp_path / dat_name(START)
    path.write_text(glitch)
    out = tmp_path / "rates.csv"
    run = CliRunner().invoke(reconstruct, [str(path), "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert f"{path.name}:601: OUTSIDE_FILE_SPAN: event time 2024-03-31T13:00:00Z" in run.output
    assert "10 minutes" in run.output
