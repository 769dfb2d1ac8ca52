"""A station's :class:`StationStream` in a key-value state store (the Quix state, no Kafka here).

The reconstruct service keeps each station's stream in its Quix state store, whose changelog
topic lets a restarted or reassigned instance resume. Keys (bytes, under the station's prefix):

* ``seq``: the sequence number, one per chunk (the only key read per chunk);
* ``meta``: JSON: the newest event time, the held chunks, the recent files, the pooled chunks
  (with the pieces of their parts), the events pooled since the current calibration, the kept
  minutes (as runs);
* ``file/<name>``: JSON: a recent file's cover and the chunk indices counted;
* ``calibration``: the current calibration's record (JSON), written when it changes;
* ``chunk/<file>/<index>``: a chunk held for the first calibration (envelope JSON and Arrow
  payload);
* ``part/<chunk id>/<piece>``: a pooled chunk's calibration part (charge and T_dif tails), in
  pieces of at most 512 KiB, so that every value stays well under a changelog message limit of
  1 MB (the broker default) whatever the chunk size;
* ``eq/<chunk id>``: its T_sum normal equations and per-second count histogram (written with
  the part: a chunk is pooled and given its equations in the same step);
* ``minute/<minute start>``: a kept minute's summed tally and calibration versions.

Arrays are stored as their raw bytes behind a JSON index of dtypes and shapes, numbers only
(never pickles: the store is read back from a Kafka topic); ``np.save`` per array cost more than
the chunk's reconstruction (bench/README.md, "State encoding"). The in-memory stream is reused
while its sequence number equals the store's; otherwise (another instance worked on the station
meanwhile, or a checkpoint was lost) it is rebuilt from the store. While they are equal, the
in-memory stream before a chunk is what the store holds, so the keys to delete are found from
it, without reading ``meta``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

import numpy as np

from schemas.events import envelope_from_headers, envelope_headers
from schemas.models import Calibration as CalibrationRecord
from schemas.models import RawEventChunkEnvelope
from services.common.stations import ReconstructionConfig
from services.reconstruct.calibration import ChunkPart, TsumEquations
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

#: Largest value of a part's piece [bytes] (a changelog message must stay under 1 MB).
_PIECE_BYTES = 512 * 1024
#: Layout of the stored values (``meta["format"]``); a store of another layout is refused.
_FORMAT = 2
#: Array kinds a stored value may hold (signed and unsigned integers, floats, booleans).
_KINDS = frozenset("iufb")


class KeyValueState(Protocol):
    """The part of Quix's ``State`` used here (bytes keys and values)."""

    def get(self, key: bytes, default: Any = None) -> Any: ...
    def set(self, key: bytes, value: Any) -> None: ...
    def delete(self, key: bytes) -> None: ...


def _arrays(*arrays: np.ndarray) -> bytes:
    """Arrays as one value: a JSON index (dtype, shape of each) and their raw bytes, each
    padded to 8 bytes so that the arrays read back are aligned."""
    contiguous = [np.ascontiguousarray(a) for a in arrays]
    index = json.dumps([[a.dtype.str, list(a.shape)] for a in contiguous]).encode()
    blobs = [len(index).to_bytes(4, "big"), index, bytes(-(4 + len(index)) % 8)]
    for array in contiguous:
        blobs += [array.tobytes(), bytes(-array.nbytes % 8)]
    return b"".join(blobs)


def _load(data: bytes) -> list[np.ndarray]:
    """The arrays of :func:`_arrays` (read-only views of ``data``)."""
    size = int.from_bytes(data[:4], "big")
    at = 4 + size
    at += -at % 8
    arrays = []
    for dtype_str, shape in json.loads(data[4 : 4 + size]):
        dtype = np.dtype(dtype_str)
        if dtype.kind not in _KINDS:
            raise ValueError(f"stored array of dtype {dtype_str} (numbers only)")
        count = math.prod(shape)
        arrays.append(np.frombuffer(data, dtype, count, at).reshape(shape))
        at += count * dtype.itemsize
        at += -at % 8
    return arrays


def _part_value(part: ChunkPart) -> bytes:
    """A part as one value: an int64 header (events, time span, counts, tail sizes; -1 for a
    T_dif high tail that is the low one) and the tails' values one after the other."""
    shared = [high is low for low, high in zip(part.tdif_low, part.tdif_high, strict=True)]
    highs = [high for high, same in zip(part.tdif_high, shared, strict=True) if not same]
    header = np.concatenate(
        [
            [part.events, part.first_time_s, part.last_time_s],
            np.ravel(part.charge_count),
            np.ravel(part.tdif_count),
            [len(v) for v in part.charge_low],
            [len(v) for v in part.tdif_low],
            [-1 if same else len(high) for high, same in zip(part.tdif_high, shared, strict=True)],
        ]
    ).astype(np.int64)
    return _arrays(header, np.concatenate([*part.charge_low, *part.tdif_low, *highs]))


def _part_of(key: str, source_file: str, value: bytes) -> ChunkPart:
    header, values = _load(value)
    events, first, last = (int(v) for v in header[:3])
    charge_count, tdif_count = header[3:35].reshape(4, 4, 2), header[35:51].reshape(4, 4)
    sizes = header[51:].tolist()
    ends = np.cumsum([max(s, 0) for s in sizes]).tolist()
    tails = [values[end - max(s, 0) : end] for s, end in zip(sizes, ends, strict=True)]
    charge_low, tdif_low = tails[:32], tails[32:48]
    highs = zip(tdif_low, sizes[48:], tails[48:], strict=True)
    tdif_high = [low if size < 0 else high for low, size, high in highs]
    return ChunkPart(
        key,
        events,
        first,
        last,
        charge_count,
        charge_low,
        tdif_count,
        tdif_low,
        tdif_high,
        source_file,
    )


def _minute_value(total: MinuteSum) -> bytes:
    versions = np.frombuffer("+".join(total.versions).encode(), np.uint8)
    return _arrays(total.ints, total.floats, versions)


def _minute_of(value: bytes) -> MinuteSum:
    ints, floats, versions = _load(value)
    text = versions.tobytes().decode()
    return MinuteSum(ints.copy(), floats.copy(), text.split("+") if text else [])


def _runs(values: list[int], step: int) -> list[list[int]]:
    """The values as sorted [first, last] runs of consecutive multiples of ``step``."""
    if not values:
        return []
    ordered = np.sort(np.array(values, np.int64))
    breaks = np.flatnonzero(np.diff(ordered) != step) + 1
    firsts = ordered[np.concatenate([[0], breaks])]
    lasts = ordered[np.concatenate([breaks - 1, [len(ordered) - 1]])]
    return np.column_stack([firsts, lasts]).tolist()


def _unrun(runs: list[list[int]], step: int) -> list[int]:
    return [v for first, last in runs for v in range(first, last + step, step)]


def _chunk_value(envelope: RawEventChunkEnvelope, payload: bytes) -> bytes:
    header = envelope_headers(envelope)[0][1]
    return len(header).to_bytes(4, "big") + header + payload


def _chunk_of(value: bytes) -> Chunk:
    size = int.from_bytes(value[:4], "big")
    envelope = RawEventChunkEnvelope.model_validate_json(value[4 : 4 + size])
    return chunk_from_message(envelope, value[4 + size :])


def _chunk_key(name: str, index: int) -> bytes:
    return f"chunk/{name}/{index}".encode()


def _piece_key(key: str, piece: int) -> bytes:
    return f"part/{key}/{piece}".encode()


class _Snapshot:
    """What the store holds of a stream, as far as deletions need it (taken before a chunk)."""

    def __init__(self, stream: StationStream) -> None:
        self.held = _held(stream)
        self.pooled = set(stream.pool.keys)
        self.files = set(stream.files)
        self.minutes = set(stream.minutes)
        self.current = stream.pool.current


def _held(stream: StationStream) -> set[tuple[str, int]]:
    return {(c.envelope.source_file, c.envelope.chunk_index) for c in stream.held}


def _file_value(progress: FileProgress) -> bytes:
    cover = progress.cover
    fields = [cover.start_s, cover.end_s, cover.covered_s, list(cover.dropped_s)]
    return json.dumps([*fields, progress.chunk_count, list(progress.done)]).encode()


def _file_of(value: bytes) -> FileProgress:
    start, end, covered, dropped, count, done = json.loads(value)
    return FileProgress(FileCover(start, end, covered, tuple(dropped)), count, set(done))


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
        self._pieces: dict[str, int] = {}  #: pieces of each stored part

    def add(self, state: KeyValueState, headers: Any, payload: bytes) -> StreamOutput:
        """One raw chunk message: into the stream and the state; what the stream gave."""
        seq = int(state.get(b"seq") or 0)
        if seq != self.seq:
            self._load(state, seq)
        before = _Snapshot(self.stream)
        envelope = envelope_from_headers(headers)
        output = self.stream.add(chunk_from_message(envelope, payload))
        held = _held(self.stream)
        key = (envelope.source_file, envelope.chunk_index)
        if key not in before.held and key in held:
            state.set(_chunk_key(*key), _chunk_value(envelope, payload))
        for name, index in before.held - held:  # released
            state.delete(_chunk_key(name, index))
        changed = {envelope.source_file} | {result.name for result in output.results}
        self._store(state, before, changed, output.minutes)
        return output

    def _store(
        self, state: KeyValueState, before: _Snapshot, files: set[str], minutes: list[int]
    ) -> None:
        """Write what the chunk changed: the parts pooled and dropped, the ``files`` and
        ``minutes`` it touched, the calibration, ``meta`` and ``seq``."""
        pool, stream = self.stream.pool, self.stream
        for key in before.pooled - set(pool.keys):
            for piece in range(self._pieces.pop(key)):
                state.delete(_piece_key(key, piece))
            state.delete(f"eq/{key}".encode())
        for part in pool.parts:
            key = part.key
            if key is None or key in before.pooled:
                continue
            value = _part_value(part)
            pieces = range(0, len(value), _PIECE_BYTES)
            for piece, at in enumerate(pieces):
                state.set(_piece_key(key, piece), value[at : at + _PIECE_BYTES])
            self._pieces[key] = len(pieces)
            equations, seconds = pool.equations(key), pool.seconds(key)
            if equations is not None:  # (every pooled chunk has them once it is processed)
                counts = np.zeros(0, np.int64) if seconds is None else seconds
                tracks = np.array([equations.tracks])
                value = _arrays(equations.normal, equations.rhs, tracks, counts)
                state.set(f"eq/{key}".encode(), value)
        for name in before.files - set(stream.files):
            state.delete(f"file/{name}".encode())
        for name in files & set(stream.files):
            state.set(f"file/{name}".encode(), _file_value(stream.files[name]))
        for minute in before.minutes - set(stream.minutes):
            state.delete(f"minute/{minute}".encode())
        for minute in minutes:
            if minute in stream.minutes:
                state.set(f"minute/{minute}".encode(), _minute_value(stream.minutes[minute]))
        current = pool.current
        if current is not before.current:
            record = None if current is None else to_record(current).model_dump_json()
            state.set(b"calibration", json.dumps(record).encode())
        meta = {
            "format": _FORMAT,
            "newest": stream.newest_s,
            "held": [[c.envelope.source_file, c.envelope.chunk_index] for c in stream.held],
            "files": list(stream.files),
            "pool": [[p.key, p.source_file, self._pieces[p.key]] for p in pool.parts],
            "added": pool.added_since_current,
            "minutes": _runs(list(stream.minutes), 60),
        }
        state.set(b"meta", json.dumps(meta).encode())
        self.seq += 1
        state.set(b"seq", str(self.seq).encode())

    def _load(self, state: KeyValueState, seq: int) -> None:
        """Rebuild the in-memory stream from the state (at sequence number ``seq``)."""
        meta = json.loads(state.get(b"meta") or b'{"format": %d}' % _FORMAT)
        if meta.get("format") != _FORMAT:
            raise RuntimeError(
                f"station {self.station}: the reconstruct state store holds layout "
                f"{meta.get('format', 1)}, this version reads layout {_FORMAT}: start the "
                "service with a new consumer group and state directory (docs/reconstruct.md)"
            )
        stream = StationStream(self.station, self.z_of_time, self.config)
        pool = meta.get("pool", [])
        parts, equations, seconds = [], {}, {}
        for key, name, pieces in pool:
            value = b"".join(state.get(_piece_key(key, piece)) for piece in range(pieces))
            parts.append(_part_of(key, name, value))
            stored = state.get(f"eq/{key}".encode())
            if stored is not None:
                normal, rhs, tracks, counts = _load(stored)
                equations[key] = TsumEquations(normal, rhs, int(tracks[0]))
                seconds[key] = counts
        self._pieces = {key: pieces for key, _, pieces in pool}
        record = json.loads(state.get(b"calibration") or b"null")
        stream.pool.restore(
            parts,
            equations,
            seconds,
            from_record(CalibrationRecord.model_validate_json(record)) if record else None,
            int(meta.get("added", 0)),
        )
        stream.held = [
            _chunk_of(state.get(_chunk_key(name, index))) for name, index in meta.get("held", [])
        ]
        stream.files = {
            name: _file_of(state.get(f"file/{name}".encode())) for name in meta.get("files", [])
        }
        stream.minutes = {
            minute: _minute_of(state.get(f"minute/{minute}".encode()))
            for minute in _unrun(meta.get("minutes", []), 60)
        }
        stream.newest_s = int(meta.get("newest", 0))
        self.stream = stream
        self.seq = seq
