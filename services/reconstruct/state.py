"""A station's :class:`StationStream` in a key-value state store (the Quix state, no Kafka here).

The reconstruct service keeps each station's stream in its Quix state store, whose changelog
topic lets a restarted or reassigned instance resume. Keys (bytes, under the station's prefix):

* ``seq``: the sequence number, one per chunk (the only key read per chunk);
* ``meta``: JSON: the layout, the newest event time, the held chunks, the recent files, the
  numbers of the pooled chunks (a range: the pool drops its oldest first), the events pooled
  since the current calibration, the hours with kept minutes;
* ``file/<name>``: JSON: a recent file's cover and the chunk indices counted;
* ``calibration``: the current calibration's record (JSON), written when it changes;
* ``chunk/<file>/<index>/<piece>``: a chunk held for the first calibration (envelope JSON and
  Arrow payload);
* ``part/<number>/<piece>``: a pooled chunk: its calibration part (charge and T_dif tails),
  T_sum normal equations, per-second count histogram, chunk id and file;
* ``hour/<hour start>``: which minutes of the hour are kept (a 60-bit mask);
* ``minute/<minute start>``: a kept minute's summed tally and calibration versions.

Held chunks and pooled parts are cut into pieces of at most 512 KiB (the first says how many),
so that every value stays well under a changelog message limit of 1 MB (the broker default)
whatever the chunk size. Arrays are stored as their raw bytes behind a small binary index of
dtypes and shapes, numbers only (never pickles: the store is read back from a Kafka topic);
``np.save`` per array cost more than the chunk's reconstruction (bench/README.md, "State
encoding").

The in-memory stream is reused while its sequence number equals the store's; otherwise
(another instance worked on the station meanwhile, a checkpoint was lost, or a chunk raised
midway) it is rebuilt from the store. While they are equal, the in-memory stream before a chunk
is what the store holds, so what to write and delete is found from it and from what the stream
reports, without reading ``meta``.
"""

from __future__ import annotations

import json
import math
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
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
#: Bytes before a value stored in pieces: the number of pieces (in the first piece).
_LEAD = 4
#: Layout of the stored values (``meta["format"]``); a store of another layout is refused.
_FORMAT = 2
#: Array kinds a stored value may hold (signed and unsigned integers, floats, booleans).
_KINDS = frozenset("iufb")
_COUNT = struct.Struct("<I")  #: arrays in a value
_ENTRY = struct.Struct("<4sI")  #: an array's dtype string (e.g. ``<f8``) and dimensions
_MINUTE = struct.Struct("<II")  #: a minute's int64 and float64 sums: their lengths


class KeyValueState(Protocol):
    """The part of Quix's ``State`` used here (bytes keys and values)."""

    def get(self, key: bytes, default: Any = None) -> Any: ...
    def set(self, key: bytes, value: Any) -> None: ...
    def delete(self, key: bytes) -> None: ...


def _encode(arrays: Sequence[np.ndarray | list[np.ndarray]], lead: int) -> np.ndarray:
    """Arrays as one value (uint8): ``lead`` bytes left for the caller, an index (count; per
    array its dtype and shape), then each array's raw bytes padded to 8 so that the arrays read
    back are aligned. A list stands for the concatenation of its 1-D arrays (of one dtype),
    written in place without an intermediate copy."""
    dtypes = [
        (a[0] if a else np.zeros(0)).dtype if isinstance(a, list) else a.dtype for a in arrays
    ]
    shapes = [(sum(len(v) for v in a),) if isinstance(a, list) else a.shape for a in arrays]
    index = [_COUNT.pack(len(arrays))]
    for dtype, shape in zip(dtypes, shapes, strict=True):
        index += [
            _ENTRY.pack(dtype.str.encode(), len(shape)),
            struct.pack(f"<{len(shape)}q", *shape),
        ]
    head = b"".join(index)
    starts, at = [], lead + len(head)
    for dtype, shape in zip(dtypes, shapes, strict=True):
        at += -at % 8
        starts.append(at)
        at += math.prod(shape) * dtype.itemsize
    out = np.zeros(at, np.uint8)
    out[lead : lead + len(head)] = np.frombuffer(head, np.uint8)
    for array, dtype, shape, start in zip(arrays, dtypes, shapes, starts, strict=True):
        size = math.prod(shape)
        target = out[start : start + size * dtype.itemsize].view(dtype)
        if isinstance(array, list):
            if array:
                np.concatenate(array, out=target)
        else:
            target[:] = np.ravel(array)
    return out


def _load(data: bytes, lead: int) -> list[np.ndarray]:
    """The arrays of :func:`_encode` (read-only views of ``data``)."""
    (count,), at = _COUNT.unpack_from(data, lead), lead + _COUNT.size
    index = []
    for _ in range(count):
        code, ndim = _ENTRY.unpack_from(data, at)
        shape = struct.unpack_from(f"<{ndim}q", data, at + _ENTRY.size)
        index.append((np.dtype(code.rstrip(b"\0").decode()), shape))
        at += _ENTRY.size + 8 * ndim
    arrays = []
    for dtype, shape in index:
        if dtype.kind not in _KINDS:
            raise ValueError(f"stored array of dtype {dtype} (numbers only)")
        at += -at % 8
        size = math.prod(shape)
        arrays.append(np.frombuffer(data, dtype, size, at).reshape(shape))
        at += size * dtype.itemsize
    return arrays


def _text(value: str) -> np.ndarray:
    return np.frombuffer(value.encode(), np.uint8)


def _part_value(
    part: ChunkPart, equations: TsumEquations | None, seconds: np.ndarray | None
) -> np.ndarray:
    """A pooled chunk as one value (:func:`_encode`, :data:`_LEAD` bytes free): an int64
    header (events, time span, counts, tail sizes; -1 for a T_dif high tail that is the low
    one), the tails' values one after the other, the T_sum equations (no tracks: none) and
    seconds histogram, the chunk id and its file."""
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
    if equations is None:
        normal, rhs, tracks = np.zeros((0, 0)), np.zeros(0), np.zeros(0, np.int64)
    else:
        normal, rhs, tracks = equations.normal, equations.rhs, np.array([equations.tracks])
    return _encode(
        [
            header,
            [*part.charge_low, *part.tdif_low, *highs],
            normal,
            rhs,
            tracks,
            np.zeros(0, np.int64) if seconds is None else seconds,
            _text(part.key),
            _text(part.source_file),
        ],
        _LEAD,
    )


def _part_of(value: bytes) -> tuple[ChunkPart, TsumEquations | None, np.ndarray]:
    """The part, equations and seconds histogram of :func:`_part_value`."""
    header, values, normal, rhs, tracks, seconds, key, source_file = _load(value, _LEAD)
    events, first, last = (int(v) for v in header[:3])
    charge_count, tdif_count = header[3:35].reshape(4, 4, 2), header[35:51].reshape(4, 4)
    sizes = header[51:].tolist()
    ends = np.cumsum([max(s, 0) for s in sizes]).tolist()
    tails = [values[end - max(s, 0) : end] for s, end in zip(sizes, ends, strict=True)]
    charge_low, tdif_low = tails[:32], tails[32:48]
    highs = zip(tdif_low, sizes[48:], tails[48:], strict=True)
    tdif_high = [low if size < 0 else high for low, size, high in highs]
    part = ChunkPart(
        key.tobytes().decode(),
        events,
        first,
        last,
        charge_count,
        charge_low,
        tdif_count,
        tdif_low,
        tdif_high,
        source_file.tobytes().decode(),
    )
    equations = TsumEquations(normal, rhs, int(tracks[0])) if tracks.size else None
    return part, equations, seconds


def _minute_value(total: MinuteSum) -> bytes:
    """A minute's sum: its two array lengths, the int64 and float64 sums, the versions (text);
    a layout of its own, as a chunk writes several (the general index costs more)."""
    ints, floats = total.ints, total.floats
    lengths = _MINUTE.pack(len(ints), len(floats))
    text = "+".join(total.versions).encode()
    return b"".join([lengths, ints.astype("<i8").tobytes(), floats.astype("<f8").tobytes(), text])


def _minute_of(value: bytes) -> MinuteSum:
    n_ints, n_floats = _MINUTE.unpack_from(value)
    ints = np.frombuffer(value, "<i8", n_ints, _MINUTE.size).astype(np.int64)
    floats = np.frombuffer(value, "<f8", n_floats, _MINUTE.size + 8 * n_ints).astype(np.float64)
    text = value[_MINUTE.size + 8 * (n_ints + n_floats) :].decode()
    return MinuteSum(ints, floats, text.split("+") if text else [])


def _hour_of(minute: int) -> int:
    return minute // 3600 * 3600


def _minute_mask(minutes: dict[int, MinuteSum], hour: int) -> int:
    """Which minutes of the hour starting at ``hour`` are kept: bit k for minute k."""
    return sum(1 << k for k in range(60) if hour + 60 * k in minutes)


def _chunk_value(envelope: RawEventChunkEnvelope, payload: bytes) -> np.ndarray:
    """A held chunk as a value with :data:`_LEAD` free bytes: the envelope JSON's length, the
    envelope JSON, the payload as received."""
    header = envelope_headers(envelope)[0][1]
    value = np.empty(_LEAD + 4 + len(header) + len(payload), np.uint8)
    value[_LEAD : _LEAD + 4] = np.frombuffer(len(header).to_bytes(4, "big"), np.uint8)
    value[_LEAD + 4 : _LEAD + 4 + len(header)] = np.frombuffer(header, np.uint8)
    value[_LEAD + 4 + len(header) :] = np.frombuffer(payload, np.uint8)
    return value


def _chunk_of(value: bytes) -> Chunk:
    size = int.from_bytes(value[_LEAD : _LEAD + 4], "big")
    envelope = RawEventChunkEnvelope.model_validate_json(value[_LEAD + 4 : _LEAD + 4 + size])
    return chunk_from_message(envelope, value[_LEAD + 4 + size :])


def _chunk_key(name: str, index: int) -> str:
    return f"chunk/{name}/{index}"


def _part_key(number: int) -> str:
    return f"part/{number}"


def _set_pieces(state: KeyValueState, key: str, value: np.ndarray) -> int:
    """Store ``value`` (uint8, its first :data:`_LEAD` bytes free for the count) as
    ``<key>/<piece>`` values of at most :data:`_PIECE_BYTES`; the number of pieces."""
    pieces = -(-len(value) // _PIECE_BYTES)
    value[:_LEAD] = np.frombuffer(pieces.to_bytes(_LEAD, "big"), np.uint8)
    for piece in range(pieces):
        at = piece * _PIECE_BYTES
        state.set(f"{key}/{piece}".encode(), value[at : at + _PIECE_BYTES].tobytes())
    return pieces


def _get_pieces(state: KeyValueState, key: str) -> bytes:
    """The value of :func:`_set_pieces` (with its count)."""
    first = state.get(f"{key}/0".encode())
    pieces = int.from_bytes(first[:_LEAD], "big")
    return b"".join([first, *(state.get(f"{key}/{piece}".encode()) for piece in range(1, pieces))])


def _delete_pieces(state: KeyValueState, key: str, pieces: int | None = None) -> None:
    """Delete the pieces of ``key`` (``pieces`` of them; None: as its first piece says)."""
    if pieces is None:
        pieces = int.from_bytes(state.get(f"{key}/0".encode())[:_LEAD], "big")
    for piece in range(pieces):
        state.delete(f"{key}/{piece}".encode())


@dataclass(frozen=True)
class _StoredPart:
    """A pooled chunk in the store: its number in the pool's order, chunk id, value pieces."""

    number: int
    key: str
    pieces: int


def _held(stream: StationStream) -> set[tuple[str, int]]:
    return {(c.envelope.source_file, c.envelope.chunk_index) for c in stream.held}


def _file_value(progress: FileProgress) -> bytes:
    cover = progress.cover
    fields = [cover.start_s, cover.end_s, cover.covered_s, list(cover.dropped_s)]
    return json.dumps([*fields, list(progress.done)]).encode()


def _file_of(value: bytes) -> FileProgress:
    start, end, covered, dropped, done = json.loads(value)
    return FileProgress(FileCover(start, end, covered, tuple(dropped)), set(done))


class StoredStation:
    """One station's stream, kept in a key-value state and mirrored in memory.

    The parameters are those of :class:`StationStream` (station id, logbook z positions by
    time, the station's reconstruction settings, the horizon [s]).
    """

    def __init__(
        self,
        station: int,
        z_of_time: ZOfTime,
        config: ReconstructionConfig,
        horizon_s: int = 86_400,
    ) -> None:
        self.stream = StationStream(station, z_of_time, config, horizon_s)
        self.seq = -1  #: sequence number the in-memory stream stands at (-1: not loaded)
        #: the pooled chunks as stored, oldest first (the pool drops its oldest first)
        self._stored: deque[_StoredPart] = deque()
        self._next = 0  #: number of the next pooled chunk
        self._hours: set[int] = set()  #: hours with kept minutes [s since epoch, UTC]

    def add(self, state: KeyValueState, headers: Any, payload: bytes) -> StreamOutput:
        """One raw chunk message: into the stream and the state; what the stream gave."""
        seq = int(state.get(b"seq") or 0)
        if seq != self.seq:
            self._load(state, seq)
        held, current = _held(self.stream), self.stream.pool.current
        try:
            envelope = envelope_from_headers(headers)
            output = self.stream.add(chunk_from_message(envelope, payload))
        except Exception:
            self.seq = -1  # the stream may be half changed: the next chunk rebuilds it
            raise
        held_now = _held(self.stream)
        key = (envelope.source_file, envelope.chunk_index)
        if key not in held and key in held_now:
            _set_pieces(state, _chunk_key(*key), _chunk_value(envelope, payload))
        for name, index in held - held_now:  # released
            _delete_pieces(state, _chunk_key(name, index))
        self._store_pool(state)
        files = {envelope.source_file} | {result.name for result in output.results}
        self._store_files(state, files, output.forgotten_files)
        self._store_minutes(state, output.minutes, output.forgotten_minutes)
        if self.stream.pool.current is not current:
            calibration = self.stream.pool.current
            record = None if calibration is None else to_record(calibration).model_dump_json()
            state.set(b"calibration", json.dumps(record).encode())
        self._store_meta(state)
        return output

    def _store_pool(self, state: KeyValueState) -> None:
        """Delete the chunks that left the pool (its oldest), write those that entered it."""
        pool = self.stream.pool
        parts = pool.parts
        oldest = parts[0].key if parts else None
        while self._stored and (not parts or self._stored[0].key != oldest):
            gone = self._stored.popleft()
            _delete_pieces(state, _part_key(gone.number), gone.pieces)
        for part in parts[len(self._stored) :]:
            key = part.key
            value = _part_value(part, pool.equations(key), pool.seconds(key))
            pieces = _set_pieces(state, _part_key(self._next), value)
            self._stored.append(_StoredPart(self._next, part.key, pieces))
            self._next += 1

    def _store_files(self, state: KeyValueState, files: set[str], forgotten: list[str]) -> None:
        for name in forgotten:
            state.delete(f"file/{name}".encode())
        for name in files.intersection(self.stream.files):
            state.set(f"file/{name}".encode(), _file_value(self.stream.files[name]))

    def _store_minutes(
        self, state: KeyValueState, touched: list[int], forgotten: list[int]
    ) -> None:
        """Write the touched minutes, delete the forgotten ones, and write the kept-minute
        masks of the hours of both."""
        kept = self.stream.minutes
        for minute in forgotten:
            state.delete(f"minute/{minute}".encode())
        for minute in touched:
            if minute in kept:
                state.set(f"minute/{minute}".encode(), _minute_value(kept[minute]))
        for hour in {_hour_of(m) for m in touched} | {_hour_of(m) for m in forgotten}:
            mask = _minute_mask(kept, hour)
            if mask:
                state.set(f"hour/{hour}".encode(), str(mask).encode())
                self._hours.add(hour)
            else:
                state.delete(f"hour/{hour}".encode())
                self._hours.discard(hour)

    def _store_meta(self, state: KeyValueState) -> None:
        stream = self.stream
        first = self._stored[0].number if self._stored else self._next
        meta = {
            "format": _FORMAT,
            "newest": stream.newest_s,
            "held": [[c.envelope.source_file, c.envelope.chunk_index] for c in stream.held],
            "files": list(stream.files),
            "pool": [first, self._next],
            "added": stream.pool.added_since_current,
            "hours": sorted(self._hours),
        }
        state.set(b"meta", json.dumps(meta).encode())
        self.seq += 1
        state.set(b"seq", str(self.seq).encode())

    def _load(self, state: KeyValueState, seq: int) -> None:
        """Rebuild the in-memory stream from the state (at sequence number ``seq``)."""
        meta = json.loads(state.get(b"meta") or b'{"format": %d}' % _FORMAT)
        if meta.get("format") != _FORMAT:
            raise RuntimeError(
                f"station {self.stream.station}: the reconstruct state store holds layout "
                f"{meta.get('format', 1)}, this version reads layout {_FORMAT}: start the "
                "service with a new consumer group and state directory (docs/reconstruct.md)"
            )
        old = self.stream
        stream = StationStream(old.station, old.z_of_time, old.config, old.horizon_s)
        first, self._next = meta.get("pool", [0, 0])
        self._stored = deque()
        parts: list[ChunkPart] = []
        equations: dict[str, TsumEquations] = {}
        seconds: dict[str, np.ndarray] = {}
        for number in range(first, self._next):
            value = _get_pieces(state, _part_key(number))
            pieces = int.from_bytes(value[:_LEAD], "big")
            part, part_equations, counts = _part_of(value)
            parts.append(part)
            if part_equations is not None:
                equations[part.key] = part_equations
                seconds[part.key] = counts
            self._stored.append(_StoredPart(number, part.key, pieces))
        record = json.loads(state.get(b"calibration") or b"null")
        stream.pool.restore(
            parts,
            equations,
            seconds,
            from_record(CalibrationRecord.model_validate_json(record)) if record else None,
            int(meta.get("added", 0)),
        )
        stream.held = [
            _chunk_of(_get_pieces(state, _chunk_key(name, index)))
            for name, index in meta.get("held", [])
        ]
        stream.files = {
            name: _file_of(state.get(f"file/{name}".encode())) for name in meta.get("files", [])
        }
        self._hours = set(meta.get("hours", []))
        for hour in sorted(self._hours):
            mask = int(state.get(f"hour/{hour}".encode()))
            for k in range(60):
                if mask >> k & 1:
                    minute = hour + 60 * k
                    stream.minutes[minute] = _minute_of(state.get(f"minute/{minute}".encode()))
        stream.newest_s = int(meta.get("newest", 0))
        self.stream = stream
        self.seq = seq
