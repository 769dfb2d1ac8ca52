"""Event-line formatting of the simulator: numba kernel against reference, and the format."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.dat_format import CHANNEL_COLUMNS, N_FIELDS, channel_index
from simulator.formatting import (
    format_event_lines,
    format_event_lines_reference,
    format_value_reference,
    to_ticks,
)
from simulator.model import column_map

pytestmark = pytest.mark.unit

#: A value as a station prints it (%09.4f): 4+ integer digits, or '-' and 3+ digits; 4 decimals.
VALUE = r"(?:\d{4,}\.\d{4}|-\d{3,}\.\d{4})"
LINE = re.compile(rf"^\d{{4}} \d{{2}} \d{{2}} \d{{2}} \d{{2}} \d{{2}} [12](?: {VALUE}){{64}}$")


def _seeded(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    epoch = np.sort(rng.integers(946684800, 4102444800, n))  # 2000 .. 2100
    trigger = rng.integers(1, 3, n)
    ticks = np.zeros((n, 64), np.int64)
    mask = rng.random((n, 64)) < 0.4
    ticks[mask] = rng.integers(-2_000_000, 3_000_000, mask.sum())
    return epoch, trigger, ticks


def test_kernel_equals_reference_on_seeded_data() -> None:
    epoch, trigger, ticks = _seeded(3000)
    buf, offsets = format_event_lines(epoch, trigger, ticks)
    assert bytes(buf) == format_event_lines_reference(epoch, trigger, ticks)
    assert offsets[0] == 0 and offsets[-1] == buf.size
    assert np.all(buf[offsets[1:] - 1] == ord("\n"))


def test_kernel_equals_reference_on_edge_values() -> None:
    edge = [0, 1, -1, 9999, -9999, 10000, -10000, 99_999_999, 100_000_000, -9_999_999, -10_000_000,
            -1_523_125, 123_456_789_012, -123_456_789_012, 5, -5]  # fmt: skip
    ticks = np.zeros((len(edge), 64), np.int64)
    ticks[:, 0] = edge
    ticks[:, 63] = edge[::-1]
    epoch = np.array(
        [0, 951782400, 951868799, 1709164800, 1709251199, 4102444799, *range(10)]
    )  # leap days
    trigger = np.ones(len(edge), np.int64)
    buf, _ = format_event_lines(epoch, trigger, ticks)
    assert bytes(buf) == format_event_lines_reference(epoch, trigger, ticks)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(-(10**12), 10**12), min_size=64, max_size=64),
    second=st.integers(0, 253402300799),
    trigger=st.integers(0, 99),
)
def test_kernel_equals_reference_property(values: list[int], second: int, trigger: int) -> None:
    ticks = np.array([values], np.int64)
    buf, _ = format_event_lines([second], [trigger], ticks)
    assert bytes(buf) == format_event_lines_reference([second], [trigger], ticks)


def test_value_format_matches_the_station() -> None:
    assert format_value_reference(0) == "0000.0000"
    assert format_value_reference(-1_523_125) == "-152.3125"
    assert format_value_reference(-52_300) == "-005.2300"
    assert format_value_reference(1_704_605) == "0170.4605"
    assert to_ticks([-152.3125, 0.00004, -0.00006]).tolist() == [-1_523_125, 0, -1]


def test_line_layout() -> None:
    epoch, trigger, ticks = _seeded(200, seed=3)
    ticks = np.clip(ticks, -9_999_999, 99_999_999)  # the realistic range of raw values
    buf, _ = format_event_lines(epoch, trigger, ticks)
    lines = bytes(buf).decode().splitlines()
    for line, t, trg, row in zip(lines, epoch, trigger, ticks, strict=True):
        assert LINE.match(line), line
        fields = line.split(" ")
        assert len(fields) == N_FIELDS == 71
        stamp = datetime.fromtimestamp(int(t), UTC)
        assert [int(x) for x in fields[:6]] == [stamp.year, stamp.month, stamp.day,
                                                stamp.hour, stamp.minute, stamp.second]  # fmt: skip
        assert int(fields[6]) == trg
        assert [round(float(x) * 1e4) for x in fields[7:]] == row.tolist()


def test_channel_order_plane_4_first() -> None:
    cols = column_map()
    assert CHANNEL_COLUMNS[0] == "P4_T_F_1" and CHANNEL_COLUMNS[-1] == "P1_Q_B_4"
    # plane index 3 (plane 4) occupies the first 16 columns, plane 1 the last 16
    assert sorted(cols[3].ravel().tolist()) == list(range(16))
    assert sorted(cols[0].ravel().tolist()) == list(range(48, 64))
    assert cols[1, 2, 3] == channel_index(2, "Q_F", 4)


def test_validation() -> None:
    with pytest.raises(ValueError):
        format_event_lines([0], [1], np.zeros((1, 63), np.int64))
    with pytest.raises(ValueError):
        format_event_lines([-1], [1], np.zeros((1, 64), np.int64))
    with pytest.raises(ValueError):
        format_event_lines([0, 1], [1], np.zeros((2, 64), np.int64))
