"""A station's stream kept in a key-value state: rebuilt from the state at any chunk, it gives
the same minute records and calibrations as the stream that never left memory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from services.common.stations import load_network
from services.reconstruct import state as state_module
from services.reconstruct.state import StoredStation

sys.path.insert(0, str(Path(__file__).parent))
from reconstruct_truth import simulate
from test_reconstruct_stream import Z_MM, _files, _messages

pytestmark = pytest.mark.unit

_LIMIT = 1_000_000  #: a changelog message (broker default max.message.bytes) [bytes]


class DictState:
    """A dict with the get/set/delete of Quix's State; checks every value's size."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: bytes, value: bytes) -> None:
        assert isinstance(key, bytes) and isinstance(value, bytes)
        assert len(value) < _LIMIT, key
        self.data[key] = value

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)


def _keys(state: DictState, prefix: bytes) -> set[bytes]:
    return {k[len(prefix) :] for k in state.data if k.startswith(prefix)}


def test_stream_rebuilt_from_state_gives_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # parts of 4-15 kB: cut into pieces, the last one shorter
    monkeypatch.setattr(state_module, "_PIECE_BYTES", 4096)
    truth = simulate(tmp_path, (0,), 0.5)
    config = (
        load_network()
        .station(0)
        .reconstruction.model_copy(
            update={
                "calibration_min_events": 1000,
                "calibration_max_events": 4000,
                "calibration_refresh_events": 2500,
            }
        )
    )
    messages = [m for path in _files(tmp_path, truth) for m in _messages(path)]
    messages.insert(5, messages[2])  # a replay

    def station() -> StoredStation:  # files and minutes older than 2 h are forgotten
        return StoredStation(0, lambda _: Z_MM, config, horizon_s=7200)

    memory, stored, state = station(), station(), DictState()
    memory_state = DictState()
    held = pieces = forgotten_files = forgotten_minutes = 0
    for number, message in enumerate(messages):
        if number % 3 == 0:
            stored = station()  # a restart: only the state is left
        if number % 4 == 1:  # a checkpoint thrown away: the state as before, the chunk again
            kept = dict(state.data)
            stored.add(state, message.headers, message.value)
            state.data = kept
        expected = memory.add(memory_state, message.headers, message.value)
        forgotten_files += len(expected.forgotten_files)
        forgotten_minutes += len(expected.forgotten_minutes)
        got = stored.add(state, message.headers, message.value)
        assert got.rows == expected.rows
        assert [c.version for c in got.calibrations] == [c.version for c in expected.calibrations]
        held = max(held, sum(k.startswith(b"chunk/") for k in state.data))
        pieces = max(
            pieces, max((int(k.rsplit(b"/", 1)[1]) for k in _keys(state, b"part/")), default=0)
        )
    assert held > 1  # the first chunks were held, in the state too
    assert pieces >= 2  # parts were cut into pieces
    assert forgotten_files and forgotten_minutes > 60  # and left the state
    assert memory.stream.pool.keys == stored.stream.pool.keys
    assert len(memory.stream.pool.files) < 6  # chunks left the pool, and the state
    assert not _keys(state, b"chunk/")  # released
    numbers = {int(k[: k.rindex(b"/")]) for k in _keys(state, b"part/")}
    assert len(numbers) == len(stored.stream.pool.keys)
    assert numbers == set(range(min(numbers), max(numbers) + 1))
    assert _keys(state, b"file/") == {name.encode() for name in stored.stream.files}
    assert {int(m) for m in _keys(state, b"minute/")} == set(stored.stream.minutes)
    assert state.data == memory_state.data  # the same store, however it was reached


def test_a_store_of_another_layout_is_refused() -> None:
    state = DictState()
    state.set(b"meta", json.dumps({"seq": 4, "pool": [["0/f.dat/0", "f.dat"]]}).encode())
    state.set(b"seq", b"4")
    config = load_network().station(0).reconstruction
    with pytest.raises(RuntimeError, match="layout 1, this version reads layout 2"):
        StoredStation(0, lambda _: Z_MM, config).add(state, [], b"")
