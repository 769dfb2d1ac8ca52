"""A station's :class:`StationStream` in a key-value state store (the Quix state, no Kafka here).

The reconstruct service keeps each station's stream in its Quix state store, whose changelog
topic lets a restarted or reassigned instance resume. Keys (bytes, under the station's prefix):

* ``meta``: JSON: a sequence number (one per chunk), the pooled files, the kept tallies, the
  pending chunks per file, the current calibration record and the events added since it;
* ``chunk/<file>/<index>``: a chunk of a file still arriving (envelope JSON and Arrow payload);
* ``part/<file>/q``, ``part/<file>/t<plane>``: the file's calibration part, charges and the
  T_dif tails of each plane, apart so that each value stays well under a changelog message
  limit of 1 MB (the broker default);
* ``eq/<file>``: the file's T_sum normal equations; ``tally/<file>``: its minute tally.

Arrays are stored as ``.npy`` data (``allow_pickle=False``), never as pickles: the store is
read back from a Kafka topic. The in-memory stream is reused while its sequence number equals
the store's; otherwise (another instance worked on the station meanwhile, or a checkpoint was
lost) it is rebuilt from the store.
"""

from __future__ import annotations

import io
import json
from typing import Any, Protocol

import numpy as np

from schemas.events import envelope_from_headers, envelope_headers
from schemas.models import Calibration as CalibrationRecord
from schemas.models import RawEventChunkEnvelope
from services.common.stations import ReconstructionConfig
from services.reconstruct.calibration import ChunkPart, TsumEquations
from services.reconstruct.calibration_records import from_record, to_record
from services.reconstruct.minutes import MinuteTally
from services.reconstruct.pipeline import ZOfTime
from services.reconstruct.stream import StationStream, StreamOutput, chunk_from_message

__all__ = ["KeyValueState", "StoredStation"]


class KeyValueState(Protocol):
    """The part of Quix's ``State`` used here (bytes keys and values)."""

    def get(self, key: bytes, default: Any = None) -> Any: ...
    def set(self, key: bytes, value: Any) -> None: ...
    def delete(self, key: bytes) -> None: ...


def _arrays(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def _load(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as loaded:
        return {name: loaded[name] for name in loaded.files}


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


def _tally_value(start_s: int, tally: MinuteTally, version: str) -> bytes:
    return _arrays(start_s=np.array(start_s), version=np.array(version), **tally.to_arrays())


def _tally_of(data: bytes) -> tuple[int, MinuteTally, str]:
    arrays = _load(data)
    start_s, version = int(arrays.pop("start_s")), str(arrays.pop("version"))
    return start_s, MinuteTally(**arrays), version


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

    def add(self, state: KeyValueState, headers: Any, payload: bytes) -> StreamOutput:
        """One raw chunk message: into the stream and the state; what the stream completed."""
        meta = json.loads(state.get(b"meta") or b"{}")
        if meta.get("seq", 0) != self.seq:
            self._load(state, meta)
        envelope = envelope_from_headers(headers)
        output = self.stream.add(chunk_from_message(envelope, payload))
        name = envelope.source_file
        if output.calibration is None:
            state.set(_chunk_key(name, envelope.chunk_index), _chunk_value(envelope, payload))
        else:  # the file is complete: its chunks leave, its results enter
            for index in meta.get("pending", {}).get(name, []):
                state.delete(_chunk_key(name, index))
        self._store(state, meta, name if output.calibration is not None else None)
        return output

    def _store(self, state: KeyValueState, meta: dict[str, Any], completed: str | None) -> None:
        pool, stream = self.stream.pool, self.stream
        files = list(pool.files)
        for name in set(meta.get("pool", [])) - set(files):
            for suffix in _SUFFIXES:
                state.delete(f"part/{name}/".encode() + suffix)
            state.delete(f"eq/{name}".encode())
        for part in pool.parts:
            if part.key is not None and part.key not in meta.get("pool", []):
                for piece, value in _part_values(part).items():
                    state.set(f"part/{part.key}/".encode() + piece, value)
        for name in files:
            equations = pool.equations(name)
            if equations is not None and name not in meta.get("equations", []):
                state.set(
                    f"eq/{name}".encode(),
                    _arrays(
                        normal=equations.normal,
                        rhs=equations.rhs,
                        tracks=np.array(equations.tracks),
                    ),
                )
        tallies = stream.tallies
        for name in set(meta.get("tallies", [])) - set(tallies):
            state.delete(f"tally/{name}".encode())
        if completed is not None and completed in tallies:
            state.set(f"tally/{completed}".encode(), _tally_value(*tallies[completed]))
        current = pool.current
        self.seq = meta.get("seq", 0) + 1
        new_meta = {
            "seq": self.seq,
            "pool": files,
            "equations": [name for name in files if pool.equations(name) is not None],
            "tallies": sorted(tallies),
            "pending": {name: sorted(parts) for name, parts in stream.pending.items()},
            "current": to_record(current).model_dump_json() if current is not None else None,
            "added": pool.added_since_current,
        }
        state.set(b"meta", json.dumps(new_meta).encode())

    def _load(self, state: KeyValueState, meta: dict[str, Any]) -> None:
        """Rebuild the in-memory stream from the state."""
        stream = StationStream(self.station, self.z_of_time, self.config)
        parts = [
            _part_of(name, {s: state.get(f"part/{name}/".encode() + s) for s in _SUFFIXES})
            for name in meta.get("pool", [])
        ]
        equations = {}
        for name in meta.get("equations", []):
            arrays = _load(state.get(f"eq/{name}".encode()))
            equations[name] = TsumEquations(arrays["normal"], arrays["rhs"], int(arrays["tracks"]))
        current = meta.get("current")
        stream.pool.restore(
            parts,
            equations,
            from_record(CalibrationRecord.model_validate_json(current)) if current else None,
            int(meta.get("added", 0)),
        )
        tallies = {
            name: _tally_of(state.get(f"tally/{name}".encode())) for name in meta.get("tallies", [])
        }
        pending = {
            name: [_chunk_of(state.get(_chunk_key(name, index))) for index in indices]
            for name, indices in meta.get("pending", {}).items()
        }
        stream.restore(tallies, pending)
        self.stream = stream
        self.seq = meta.get("seq", 0)


_SUFFIXES = (b"q", b"t0", b"t1", b"t2", b"t3")


def _chunk_of(value: bytes) -> Any:
    size = int.from_bytes(value[:4], "big")
    envelope = RawEventChunkEnvelope.model_validate_json(value[4 : 4 + size])
    return chunk_from_message(envelope, value[4 + size :])
