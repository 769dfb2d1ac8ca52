"""Slow-control log parser: every log type, timestamp styles, nan, growth, damage, limits."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.station_logs import LOG_TYPES, LOG_TYPES_BY_SOURCE, LogType
from services.common import rejects as rj
from services.ingest.log_parser import LogRow, parse_log

pytestmark = pytest.mark.unit

SETTINGS = settings(max_examples=40, deadline=None)
EXT = LOG_TYPES_BY_SOURCE["sensors_ext"]

times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC)
)
stamp_styles = st.sampled_from(("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"))
after_stamp = st.sampled_from((" ", ";", "; ", "\t", ";\t"))
numbers = st.one_of(
    st.floats(-2000, 2000, allow_nan=False).map(repr),
    st.integers(-100, 2000).map(str),
    st.decimals(-1500, 1500, places=2, allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(("nan", "NaN", "-nan", "NAN")),
)


def expected_value(token: str) -> float | None:
    value = float(token)
    return None if math.isnan(value) else value


@st.composite
def log_lines(draw: st.DrawFn, log_type: LogType) -> tuple[str, datetime, list[str]]:
    """A valid line, its time and its value tokens."""
    when = draw(times)
    extra = draw(st.integers(0, 3))
    tokens = draw(
        st.lists(
            numbers,
            min_size=log_type.min_values + extra,
            max_size=log_type.min_values + extra,
        )
    )
    sep = draw(st.sampled_from((" ", "  ", "\t")))
    line = when.strftime(draw(stamp_styles)) + draw(after_stamp) + sep.join(tokens)
    return line, when, tokens


def check_row(row: LogRow, log_type: LogType, when: datetime, tokens: list[str]) -> None:
    assert row.time == when and row.time.tzinfo is not None
    assert list(row.values) == [c.name for c in log_type.columns]
    flagged = []
    for column in log_type.columns:
        value = expected_value(tokens[column.position])
        assert row.values[column.name] == value
        if value is not None and (
            (column.low is not None and value < column.low)
            or (column.high is not None and value > column.high)
        ):
            flagged.append(column.name)
    assert row.out_of_range == tuple(flagged)


@pytest.mark.parametrize("log_type", LOG_TYPES, ids=lambda t: t.source)
@SETTINGS
@given(data=st.data())
def test_valid_lines_of_every_log_type(log_type: LogType, data: st.DataObject) -> None:
    lines = data.draw(st.lists(log_lines(log_type), min_size=1, max_size=6))
    newline = data.draw(st.sampled_from(("\n", "\r\n")))
    blob = "".join(line + newline for line, _, _ in lines).encode()
    result = parse_log(blob, log_type)
    assert result.rejects == ()
    assert result.lines_total == len(lines) == len(result.rows)
    assert result.consumed_bytes == len(blob)
    for number, (row, (_, when, tokens)) in enumerate(zip(result.rows, lines, strict=True), 1):
        assert row.line == number
        check_row(row, log_type, when, tokens)


@SETTINGS
@given(
    lines=st.lists(log_lines(LOG_TYPES_BY_SOURCE["trigger_rates"]), min_size=1, max_size=8),
    cut=st.integers(0, 10_000),
)
def test_growing_file_read_in_two_pieces(
    lines: list[tuple[str, datetime, list[str]]], cut: int
) -> None:
    """Reading up to any byte, then the rest from consumed_bytes, equals one read."""
    log_type = LOG_TYPES_BY_SOURCE["trigger_rates"]
    blob = "".join(line + "\n" for line, _, _ in lines).encode()
    whole = parse_log(blob, log_type)
    head = blob[: cut % (len(blob) + 1)]
    first = parse_log(head, log_type)
    assert first.consumed_bytes == head.rfind(b"\n") + 1
    assert first.rejects == ()  # the partial line is neither parsed nor rejected
    next_line = 1 + head[: first.consumed_bytes].count(b"\n")
    second = parse_log(blob[first.consumed_bytes :], log_type, first_line=next_line)
    assert first.rows + second.rows == whole.rows
    assert first.lines_total + second.lines_total == whole.lines_total
    assert first.consumed_bytes + second.consumed_bytes == len(blob)


def test_partial_last_line_is_not_consumed() -> None:
    data = b"2024-03-01T00:00:00 1 2 3 4 20 50 950\n2024-03-01T00:15:00 1 2 3"
    result = parse_log(data, EXT)
    assert len(result.rows) == 1 and result.rejects == () and result.lines_total == 1
    assert result.consumed_bytes == data.index(b"\n") + 1
    assert parse_log(b"2024-03-01T00:15", EXT).consumed_bytes == 0


def test_first_line_offsets_line_numbers() -> None:
    data = b"2024-03-01T00:00:00 1 2 3 4 20 50 950\n\nbad\n2024-03-01T00:30:00 1 2 3 4 20 50 950\n"
    result = parse_log(data, EXT, first_line=101)
    assert [row.line for row in result.rows] == [101, 104]
    assert [(r.line, r.reason) for r in result.rejects] == [(103, rj.BAD_TIMESTAMP)]
    with pytest.raises(ValueError):
        parse_log(data, EXT, first_line=0)
    with pytest.raises(TypeError):
        parse_log(data.decode(), EXT)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "stamp",
    ["2024-03-01T12:00:00", "2024-03-01 12:00:00", "2024-03-01T12:00:00;", "2024-03-01 12:00:00;"],
)
def test_timestamp_styles(stamp: str) -> None:
    result = parse_log(f"{stamp} 0 0 0 0 21.5 40.2 941.3\n".encode(), EXT)
    (row,) = result.rows
    assert row.time == datetime(2024, 3, 1, 12, tzinfo=UTC)
    assert row.values == {"temperature_ext": 21.5, "rh_ext": 40.2, "pressure_ext": 941.3}


def test_out_of_range_values_are_kept_and_flagged() -> None:
    line = b"2024-03-01T00:00:00 0 0 0 0 -5 100 1400\n"  # rh 100 is on the limit: fine
    (row,) = parse_log(line, EXT).rows
    assert row.values == {"temperature_ext": -5.0, "rh_ext": 100.0, "pressure_ext": 1400.0}
    assert row.out_of_range == ("temperature_ext", "pressure_ext")
    rates = LOG_TYPES_BY_SOURCE["trigger_rates"]
    (row,) = parse_log(b"2024-03-01T00:00:00 61 40 31 1 2 3 4 1 2 3 31\n", rates).rows
    assert row.out_of_range == ("asserted", "accepted", "cm_4")
    hv = LOG_TYPES_BY_SOURCE["hv"]
    values = ["0"] * 6 + ["1.5", "2.5", "-5.5", "5.6"] + ["0"] * 11
    (row,) = parse_log(("2024-03-01T00:00:00 " + " ".join(values) + "\n").encode(), hv).rows
    assert row.values["hv_neg"] == -5.5 and row.out_of_range == ("hv_neg",)


def test_nan_becomes_none_and_unused_columns_are_not_validated() -> None:
    (row,) = parse_log(b"2024-03-01T00:00:00 x y z w nan NaN 950\n", EXT).rows
    assert row.values == {"temperature_ext": None, "rh_ext": None, "pressure_ext": 950.0}
    assert row.out_of_range == ()


@pytest.mark.parametrize(
    ("line", "reason", "detail"),
    [
        ("2024-13-01T00:00:00 0 0 0 0 1 2 950", rj.BAD_TIMESTAMP, "not a real time"),
        ("2024-02-30T00:00:00 0 0 0 0 1 2 950", rj.BAD_TIMESTAMP, "not a real time"),
        ("2023-02-29 00:00:00 0 0 0 0 1 2 950", rj.BAD_TIMESTAMP, "not a real time"),
        ("2024-03-01T24:00:00 0 0 0 0 1 2 950", rj.BAD_TIMESTAMP, "not a real time"),
        ("1970-01-01T00:00:00 0 0 0 0 1 2 950", rj.BAD_TIMESTAMP, "outside 2000-2099"),
        ("24-03-01T00:00:00 0 0 0 0 1 2 950", rj.BAD_TIMESTAMP, "is not a timestamp"),
        ("2024-03-01T12:00 0 0 0 0 1 2 950", rj.BAD_TIMESTAMP, "is not a timestamp"),
        ("2024-03-01X12:00:00 0 0 0 0 1 2 950", rj.BAD_TIMESTAMP, "is not a timestamp"),
        ("2024-03-01T12:00:00.5 0 0 0 0 1 2 950", rj.BAD_TIMESTAMP, "followed by '.'"),
        ("0 0 0 0 1 2 950", rj.BAD_TIMESTAMP, "is not a timestamp"),
        ("2024-03-01T00:00:00 0 0 0 0 1 2", rj.FIELD_COUNT, "6 values after the timestamp"),
        ("2024-03-01T00:00:00;", rj.FIELD_COUNT, "0 values after the timestamp"),
        ("2024-03-01T00:00:00 0 0 0 0 1 abc 950", rj.MALFORMED_NUMBER, "rh_ext (value 6) 'abc'"),
        ("2024-03-01T00:00:00 0 0 0 0 1 2 9.5.0", rj.MALFORMED_NUMBER, "'9.5.0' is not a num"),
        ("2024-03-01T00:00:00 0 0 0 0 1_0 2 950", rj.MALFORMED_NUMBER, "'1_0' is not a number"),
        ("2024-03-01T00:00:00 0 0 0 0 inf 2 950", rj.MALFORMED_NUMBER, "'inf' is not a number"),
        ("2024-03-01T00:00:00 0 0 0 0 1e999 2 950", rj.MALFORMED_NUMBER, "not a finite number"),
        ("2024-03-01T00:00:00 0 0 0 0 1 2\x00 950", rj.BINARY_CONTENT, "0x00 at column 32"),
    ],
)
def test_bad_lines(line: str, reason: str, detail: str) -> None:
    good = "2024-03-01T00:15:00 0 0 0 0 1 2 950"
    data = f"{good}\n{line}\n{good}\n".encode()
    result = parse_log(data, EXT)
    (reject,) = result.rejects
    assert (reject.line, reject.reason, reject.raw) == (2, reason, line)
    assert detail in reject.detail, reject.detail
    assert [row.line for row in result.rows] == [1, 3]
    assert result.lines_total == 3


def test_blank_and_comment_lines_are_skipped_and_crlf_tolerated() -> None:
    data = b"\r\n# header\r\n2024-03-01T00:00:00 1 2 3 4 20 50 950\r\n   \n"
    result = parse_log(data, EXT)
    assert [row.line for row in result.rows] == [3]
    assert result.lines_total == 1 and result.rejects == ()
    assert result.consumed_bytes == len(data)


def test_disk_and_flow_logs() -> None:
    disk = LOG_TYPES_BY_SOURCE["disk"]
    (row,) = parse_log(b"2024-03-01T00:00:00 45 101.5 nan\n", disk).rows
    assert row.values == {"disk_fill_1": 45.0, "disk_fill_2": 101.5, "disk_fill_x": None}
    assert row.out_of_range == ("disk_fill_2",)
    flow = LOG_TYPES_BY_SOURCE["gas_flow"]
    (row,) = parse_log(b"2024-03-01 00:00:00; 1000 1200 1600 0\n", flow).rows
    assert row.out_of_range == ("flow_3",)
    result = parse_log(b"2024-03-01T00:00:00 1000 1200 1600\n", flow)
    assert result.rejects[0].reason == rj.FIELD_COUNT
