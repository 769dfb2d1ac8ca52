"""A station's :class:`StationStream` in a key-value state store (the Quix state, no Kafka here).

The reconstruct service keeps each station's stream in its Quix state store, whose changelog
topic lets a restarted or reassigned instance resume. Keys (bytes, under the station's prefix):

* ``meta``: JSON: a sequence number (one per chunk), the newest event time, the held chunks, per
  recent file its cover and the chunk indices counted, the pooled chunks, the current
  calibration record and the events pooled since it, the kept minutes (as runs);
* ``chunk/<file>/<index>``: a chunk held for the first calibration (envelope JSON and Arrow
  payload);
* ``part/<chunk id>/q``, ``part/<chunk id>/t<plane>``: a pooled chunk's calibration part,
  charges and the T_dif tails of each plane (each value stays well under a changelog message
  limit of 1 MB, the broker default);
* ``eq/<chunk id>``: its T_sum normal equations and per-second count histogram;
* ``minute/<minute start>``: a kept minute's summed tally and calibration versions (JSON).

Arrays are stored as ``.npy`` data (``allow_pickle=False``), never as pickles: the store is
read back from a Kafka topic. The in-memory stream is reused while its sequence number equals
the store's; otherwise (another instance worked on the station meanwhile, or a checkpoint was
lost) it is rebuilt from the store.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from schemas.events import envelope_from_headers, envelope_headers
from schemas.models import Calibration as CalibrationRecord
from schemas.models import RawEventChunkEnvelope
from services.common.stations import ReconstructionConfig
from services.reconstruct.calibration import Calibration, ChunkPart, TsumEquations
from services.reconstruct.calibration_records import from_record, to_record
from services.reconstruct.minutes import FileCover
from services.reconstruct.stream import (
    Chunk,
    FileProgress,
    MinuteSum,
    StationStream,
    StreamOutput,
    ZOfTime,
    chunk_from_message,
)

__all__ = ["KeyValueState", "StoredStation"]


class KeyValueState(Protocol):
    """The part of Quix's ``State`` used here (bytes keys and values)."""

    def get(self, key: bytes, default: Any = None) -> Any: ...
    def set(self, key: bytes, value: Any) -> None: ...
    def delete(self, key: bytes) -> None: ...


def _arrays(**arrays: np.ndarray) -> bytes:
    """Named arrays as one value: a JSON index (names, byte sizes) and the arrays' ``.npy``
    data one after the other (``np.savez``'s zip cost more than the rest of a chunk's state)."""
    blobs = []
    for array in arrays.values():
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        blobs.append(buffer.getvalue())
    index = json.dumps({"names": list(arrays), "sizes": [len(b) for b in blobs]}).encode()
    return b"".join([len(index).to_bytes(4, "big"), index, *blobs])


def _load(data: bytes) -> dict[str, np.ndarray]:
    size = int.from_bytes(data[:4], "big")
    index = json.loads(data[4 : 4 + size])
    arrays, at = {}, 4 + size
    for name, length in zip(index["names"], index["sizes"], strict=True):
        arrays[name] = np.load(io.BytesIO(data[at : at + length]), allow_pickle=False)
        at += length
    return arrays


def _joined(values: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate(values) if values else np.zeros(0)), np.array([len(v) for v in values])


def _split(values: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    return list(np.split(values, np.cumsum(sizes)[:-1])) if len(sizes) else []


def _part_values(part: ChunkPart) -> dict[bytes, bytes]:
    values = {}
    low, low_sizes = _joined(part.charge_low)
    values[b"q"] = _arrays(
        meta=np.array([part.events, part.first_time_s, part.last_time_s]),
        charge_count=part.charge_count,
        tdif_count=part.tdif_count,
        low=low,
        sizes=low_sizes,
    )
    for plane in range(4):
        strips = range(plane * 4, plane * 4 + 4)
        same = np.array([part.tdif_high[s] is part.tdif_low[s] for s in strips])
        tlow, tlow_sizes = _joined([part.tdif_low[s] for s in strips])
        high = [part.tdif_high[s] for s, shared in zip(strips, same, strict=True) if not shared]
        thigh, thigh_sizes = _joined(high)
        values[f"t{plane}".encode()] = _arrays(
            same=same, low=tlow, low_sizes=tlow_sizes, high=thigh, high_sizes=thigh_sizes
        )
    return values


def _part_of(key: str, values: dict[bytes, bytes]) -> ChunkPart:
    q = _load(values[b"q"])
    events, first, last = (int(v) for v in q["meta"])
    tdif_low: list[np.ndarray] = []
    tdif_high: list[np.ndarray] = []
    for plane in range(4):
        t = _load(values[f"t{plane}".encode()])
        lows = _split(t["low"], t["low_sizes"])
        highs = iter(_split(t["high"], t["high_sizes"]))
        for low, shared in zip(lows, t["same"], strict=True):
            tdif_low.append(low)
            tdif_high.append(low if shared else next(highs))
    return ChunkPart(
        key,
        events,
        first,
        last,
        q["charge_count"],
        _split(q["low"], q["sizes"]),
        q["tdif_count"],
        tdif_low,
        tdif_high,
    )


def _minute_value(total: MinuteSum) -> bytes:
    # Python floats print as their shortest repr: the JSON round trip is exact
    data = {"i": total.ints.tolist(), "f": total.floats.tolist(), "v": total.versions}
    return json.dumps(data).encode()


def _minute_of(data: bytes) -> MinuteSum:
    loaded = json.loads(data)
    return MinuteSum(
        np.array(loaded["i"], np.int64), np.array(loaded["f"], np.float64), loaded["v"]
    )


def _runs(values: list[int], step: int) -> list[list[int]]:
    """Sorted values as [first, last] runs of consecutive multiples of ``step``."""
    runs: list[list[int]] = []
    for v in sorted(values):
        if runs and v == runs[-1][1] + step:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return runs


def _unrun(runs: list[list[int]], step: int) -> list[int]:
    return [v for first, last in runs for v in range(first, last + step, step)]


def _chunk_value(envelope: RawEventChunkEnvelope, payload: bytes) -> bytes:
    header = envelope_headers(envelope)[0][1]
    return len(header).to_bytes(4, "big") + header + payload


def _chunk_key(name: str, index: int) -> bytes:
    return f"chunk/{name}/{index}".encode()


class StoredStation:
    """One station's stream, kept in a key-value state and mirrored in memory.

    The parameters are those of :class:`StationStream` (station id, logbook z positions by
    time, the station's reconstruction settings).
    """

    def __init__(self, station: int, z_of_time: ZOfTime, config: ReconstructionConfig) -> None:
        self.station = station
        self.z_of_time = z_of_time
        self.config = config
        self.stream = StationStream(station, z_of_time, config)
        self.seq = -1  #: sequence number the in-memory stream stands at (-1: not loaded)
        self._record: tuple[Calibration, str] | None = None

    def add(self, state: KeyValueState, headers: Any, payload: bytes) -> StreamOutput:
        """One raw chunk message: into the stream and the state; what the stream gave."""
        meta = json.loads(state.get(b"meta") or b"{}")
        if meta.get("seq", 0) != self.seq:
            self._load(state, meta)
        envelope = envelope_from_headers(headers)
        output = self.stream.add(chunk_from_message(envelope, payload))
        held = {(c.envelope.source_file, c.envelope.chunk_index) for c in self.stream.held}
        if (envelope.source_file, envelope.chunk_index) in held:
            key = _chunk_key(envelope.source_file, envelope.chunk_index)
            state.set(key, _chunk_value(envelope, payload))
        for name, index in meta.get("held", []):
            if (name, index) not in held:  # released
                state.delete(_chunk_key(name, index))
        self._store(state, meta, output)
        return output

    def _store(self, state: KeyValueState, meta: dict[str, Any], output: StreamOutput) -> None:
        pool, stream = self.stream.pool, self.stream
        keys = list(pool.keys)
        was_pooled = set(meta.get("equations", [])) | {k for k, _ in meta.get("pool", [])}
        for key in was_pooled - set(keys):
            for suffix in _SUFFIXES:
                state.delete(f"part/{key}/".encode() + suffix)
            state.delete(f"eq/{key}".encode())
        stored = {k for k, _ in meta.get("pool", [])}
        for part in pool.parts:
            if part.key is not None and part.key not in stored:
                for piece, value in _part_values(part).items():
                    state.set(f"part/{part.key}/".encode() + piece, value)
        with_equations = [key for key in keys if pool.equations(key) is not None]
        for key in set(with_equations) - set(meta.get("equations", [])):
            equations = pool.equations(key)
            seconds = pool.seconds(key)
            assert equations is not None
            state.set(
                f"eq/{key}".encode(),
                _arrays(
                    normal=equations.normal,
                    rhs=equations.rhs,
                    tracks=np.array(equations.tracks),
                    seconds=np.zeros(0, np.int64) if seconds is None else seconds,
                ),
            )
        minutes = sorted(stream.minutes)
        for minute in set(_unrun(meta.get("minutes", []), 60)) - set(minutes):
            state.delete(f"minute/{minute}".encode())
        for minute in output.minutes:
            if minute in stream.minutes:
                state.set(f"minute/{minute}".encode(), _minute_value(stream.minutes[minute]))
        current = pool.current
        self.seq = meta.get("seq", 0) + 1
        new_meta = {
            "seq": self.seq,
            "newest": stream.newest_s,
            "held": [[c.envelope.source_file, c.envelope.chunk_index] for c in stream.held],
            "files": {
                name: [
                    p.cover.start_s,
                    p.cover.end_s,
                    p.cover.covered_s,
                    list(p.cover.dropped_s),
                    p.chunk_count,
                    sorted(p.done),
                ]
                for name, p in stream.files.items()
            },
            "pool": [[part.key, part.source_file] for part in pool.parts],
            "equations": with_equations,
            "current": self._record_json(current),
            "added": pool.added_since_current,
            "minutes": _runs(minutes, 60),
        }
        state.set(b"meta", json.dumps(new_meta).encode())

    def _record_json(self, calibration: Calibration | None) -> str | None:
        """The calibration's record as JSON, made once per version (meta is written per chunk)."""
        if calibration is None:
            return None
        if self._record is None or self._record[0] is not calibration:
            self._record = (calibration, to_record(calibration).model_dump_json())
        return self._record[1]

    def _load(self, state: KeyValueState, meta: dict[str, Any]) -> None:
        """Rebuild the in-memory stream from the state."""
        stream = StationStream(self.station, self.z_of_time, self.config)
        parts = [
            replace(
                _part_of(key, {s: state.get(f"part/{key}/".encode() + s) for s in _SUFFIXES}),
                source_file=name,
            )
            for key, name in meta.get("pool", [])
        ]
        equations, seconds = {}, {}
        for key in meta.get("equations", []):
            arrays = _load(state.get(f"eq/{key}".encode()))
            equations[key] = TsumEquations(arrays["normal"], arrays["rhs"], int(arrays["tracks"]))
            seconds[key] = arrays["seconds"]
        current = meta.get("current")
        stream.pool.restore(
            parts,
            equations,
            seconds,
            from_record(CalibrationRecord.model_validate_json(current)) if current else None,
            int(meta.get("added", 0)),
        )
        stream.held = [
            _chunk_of(state.get(_chunk_key(name, index))) for name, index in meta.get("held", [])
        ]
        stream.files = {
            name: FileProgress(FileCover(start, end, covered, tuple(dropped)), count, set(done))
            for name, (start, end, covered, dropped, count, done) in meta.get("files", {}).items()
        }
        stream.minutes = {
            minute: _minute_of(state.get(f"minute/{minute}".encode()))
            for minute in _unrun(meta.get("minutes", []), 60)
        }
        stream.newest_s = int(meta.get("newest", 0))
        self.stream = stream
        self.seq = meta.get("seq", 0)


_SUFFIXES = (b"q", b"t0", b"t1", b"t2", b"t3")


def _chunk_of(value: bytes) -> Chunk:
    size = int.from_bytes(value[:4], "big")
    envelope = RawEventChunkEnvelope.model_validate_json(value[4 : 4 + size])
    return chunk_from_message(envelope, value[4 + size :])
