"""Chunking of parsed events (the codec of the chunks: test_events.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.chunking import plan_chunks

pytestmark = pytest.mark.unit


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.integers(1_700_000_000, 1_700_000_000 + 7200), min_size=1, max_size=400),
    triggers=st.lists(st.sampled_from([1, 2]), min_size=400, max_size=400),
    max_events=st.integers(1, 120),
)
def test_chunks_partition_the_events_in_whole_minutes(
    times: list[int], triggers: list[int], max_events: int
) -> None:
    time_s = np.array(times, dtype=np.int64)
    trigger = np.array(triggers[: len(times)], dtype=np.int8)
    chunks = plan_chunks(time_s, trigger, max_events)
    rows = np.concatenate([c.rows for c in chunks])
    assert sorted(rows.tolist()) == list(range(len(times)))  # every event exactly once
    minutes_per_chunk = []
    for chunk in chunks:
        assert len(chunk.rows) <= max_events
        assert set(trigger[chunk.rows].tolist()) == {chunk.trigger_type}
        assert np.all(np.diff(time_s[chunk.rows]) >= 0)
        minutes_per_chunk.append(set((time_s[chunk.rows] // 60).tolist()))
    # a minute is only shared between chunks of one trigger type when it alone exceeds the bound
    for t in (1, 2):
        owners: dict[int, int] = {}
        for i, chunk in enumerate(chunks):
            if chunk.trigger_type != t:
                continue
            for minute in minutes_per_chunk[i]:
                owners[minute] = owners.get(minute, 0) + 1
        for minute, count in owners.items():
            if count > 1:
                in_minute = np.sum((time_s // 60 == minute) & (trigger == t))
                assert in_minute > max_events


def test_chunking_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    time_s = np.sort(rng.integers(0, 3600, 5000))
    trigger = np.where(rng.random(5000) < 0.02, 2, 1)
    a = plan_chunks(time_s, trigger, 500)
    b = plan_chunks(time_s.copy(), trigger.copy(), 500)
    assert [c.rows.tolist() for c in a] == [c.rows.tolist() for c in b]
