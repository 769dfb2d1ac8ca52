"""Damage kinds always produce invalid lines (checked with this test's own strict parser)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.damage import LINE_KINDS, damage_line, is_valid_event_line, truncate_line
from simulator.formatting import format_event_lines
from tests.simulated import strict_valid_line

pytestmark = pytest.mark.unit


def _line(epoch: int, trigger: int, ticks: list[int]) -> str:
    buf, _ = format_event_lines([epoch], [trigger], np.array([ticks], np.int64))
    return bytes(buf).decode().rstrip("\n")


events = st.tuples(
    st.integers(946684800, 4102444799),
    st.sampled_from([1, 2]),
    st.lists(
        st.one_of(st.just(0), st.integers(-2_000_000, -1), st.integers(1, 3_000_000)),
        min_size=64,
        max_size=64,
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    event=events, other=events, kind=st.sampled_from(sorted(LINE_KINDS)), seed=st.integers(0, 2**32)
)
def test_every_kind_makes_an_invalid_line(
    event: tuple[int, int, list[int]], other: tuple[int, int, list[int]], kind: str, seed: int
) -> None:
    line, nxt = _line(*event), _line(*other)
    assert strict_valid_line(line) and is_valid_event_line(line)
    damaged = damage_line(line, kind, np.random.default_rng(seed), next_line=nxt)
    assert not strict_valid_line(damaged)
    assert "\n" not in damaged


@settings(max_examples=60, deadline=None)
@given(event=events, seed=st.integers(0, 2**32))
def test_truncated_lines_are_invalid_prefixes(event: tuple[int, int, list[int]], seed: int) -> None:
    line = _line(*event)
    cut = truncate_line(line, np.random.default_rng(seed))
    assert line.startswith(cut) and len(cut) < len(line)
    assert not strict_valid_line(cut)
    assert not line[len(cut) - 1].isspace() and line[len(cut)] != " "  # cut inside a token


def test_glued_tokens_prefers_a_negative_neighbour() -> None:
    ticks = [0] * 64
    ticks[10] = -1_250_000
    line = _line(1709251200, 1, ticks)
    damaged = damage_line(line, "glued_tokens", np.random.default_rng(0))
    assert "0000.0000-125.0000" in damaged
    assert len(damaged.split(" ")) == 70


def test_glued_lines_and_examples() -> None:
    line = _line(1709251200, 1, [0] * 64)
    nxt = _line(1709251201, 1, [0] * 64)
    glued = damage_line(line, "glued_lines", np.random.default_rng(0), next_line=nxt)
    assert "0000.00002024 03 01 00 00 01" in glued and len(glued.split(" ")) == 141
    ticks = [0] * 64
    ticks[5] = -1_201_440
    malformed = damage_line(
        _line(1709251200, 1, ticks), "malformed_number", np.random.default_rng(0)
    )
    assert "-120.144.0" in malformed
    feb = damage_line(line, "feb_30", np.random.default_rng(0))
    assert feb.startswith("2024 02 30 ")
    with pytest.raises(ValueError):
        damage_line(line, "glued_lines", np.random.default_rng(0))
    with pytest.raises(ValueError):
        damage_line(line, "unknown", np.random.default_rng(0))
