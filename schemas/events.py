"""Encoding of raw event chunks: a sparse Arrow IPC stream, plus the JSON envelope header.

The same functions serve the producer (ingest) and every consumer (reconstruct, tools), so the
wire layout of ``mingo.events.raw.v2`` is defined only here.

Layout, one row per event: ``time_s`` (int64), ``line`` (int32), ``written`` (uint64: bit c set
when channel c of ``CHANNEL_COLUMNS`` is non-zero) and ``values``, a list of the event's written
channel values (float64, in channel order). The lists' values are one contiguous buffer in
event-then-channel order. Written means ``value != 0``: NaN and ±inf are written; -0.0 (what
the parser makes of ``-0000.0000``) is not, so it reads back as 0.0, which reconstruct treats
alike (``!= 0.0`` is its hit test). Every other value reads back bit-identical.
:func:`channel_matrix` expands a chunk to the dense (n, 64) matrix with a numba kernel
(``_events_kernels``) that also checks each event's value count against its mask.

Why sparse and uncompressed (bench/README.md, "Sparse raw events"): 72 % of the channels of
station data are 0 (no hit). The dense layout of v1 (a fixed-size list of 64 float64, lz4) spent
~170 ns per event in lz4 decompression. The sparse layout carries the 28 % written values and
reads zero-copy; lz4 on top of it would save a quarter of the bytes (the written values are
measured times and charges, whose mantissas rarely repeat) and cost about as much again as
the whole uncompressed read and expansion.

Size: a simulated 8 Hz station-day averages 17.8 written channels per event (at most 56), ~167
bytes per event, at most 0.68 MB per chunk of ingest's default 4096 events. The worst case,
every channel of every event written, is 536 bytes per event: 2.2 MB for 4096 events. So a
chunk above ``COMPRESS_ABOVE_BYTES`` (1 MiB: never reached by the simulated day) is written with
lz4 buffers when that is smaller (2048 fully written events of station values, drawn from the
simulated day's, take 0.81 MB then, 74 % of their uncompressed size). Values that do not
compress at all (random bits) keep their uncompressed size: the raw topic is created with, and
the producers allow, 8 MiB messages (``schemas.topics``, ``services.common.kafka``), and
reconstruct's state store cuts the chunks it holds into pieces under the changelog's 1 MB, so
such a chunk is still delivered. :func:`encode_events` raises ValueError for a payload above
that limit (possible only when ``MINGO_INGEST_MAX_CHUNK_EVENTS`` is raised above ~15 000),
rather than leave the producer to fail on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import pyarrow as pa

from schemas._events_kernels import N_CHANNELS, compress_kernel, expand_kernel
from schemas.dat_format import CHANNEL_COLUMNS
from schemas.models import RawEventChunkEnvelope
from schemas.topics import EVENTS_RAW

ENVELOPE_HEADER = "envelope"
#: A chunk larger than this uncompressed is written with lz4 buffers when that is smaller
#: (Arrow IPC marks compressed buffers itself: readers need nothing). Station chunks of 4096
#: events stay below it (at most 0.68 MB on a simulated day). [bytes]
COMPRESS_ABOVE_BYTES: Final = 1024 * 1024
#: Largest payload :func:`encode_events` makes (the raw topic's ``max.message.bytes`` less room
#: for the envelope header and the record's framing). [bytes]
MAX_PAYLOAD_BYTES: Final = EVENTS_RAW.max_message_bytes - 64 * 1024

EVENT_SCHEMA = pa.schema(
    [
        pa.field("time_s", pa.int64(), nullable=False),
        pa.field("line", pa.int32(), nullable=False),
        pa.field("written", pa.uint64(), nullable=False),
        pa.field(
            "values",
            pa.list_(pa.field("ns", pa.float64(), nullable=False)),
            nullable=False,
            metadata={"columns": ",".join(CHANNEL_COLUMNS)},
        ),
    ]
)
#: Read on the calling thread: a chunk's few buffers are too few for Arrow's thread pool to pay
#: its hand-offs (bench/README.md, "Reconstruct").
_READ_OPTIONS = pa.ipc.IpcReadOptions(use_threads=False)


def encode_events(time_s: np.ndarray, line: np.ndarray, channels: np.ndarray) -> bytes:
    """Arrow IPC bytes of a chunk.

    Parameters
    ----------
    time_s : ndarray of int64, shape (n,)
        Event times. [s since epoch, UTC]
    line : ndarray of int32, shape (n,)
        1-based line numbers in the source file.
    channels : ndarray of float64, shape (n, 64)
        Raw channel values in ``CHANNEL_COLUMNS`` order, 0 = not written. [ns]

    Raises
    ------
    ValueError
        If the shapes disagree, or the payload would exceed ``MAX_PAYLOAD_BYTES``.
    """
    n = len(time_s)
    if channels.shape != (n, N_CHANNELS) or len(line) != n:
        raise ValueError(f"inconsistent chunk: {n} times, {len(line)} lines, {channels.shape}")
    channels = np.ascontiguousarray(channels, np.float64)
    written = np.empty(n, np.uint64)
    offsets = np.empty(n + 1, np.int32)
    values = np.empty(n * N_CHANNELS)
    count = compress_kernel(channels, written, offsets, values)
    columns = [
        pa.array(time_s, pa.int64()),
        pa.array(line, pa.int32()),
        pa.array(written, pa.uint64()),
        pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()),
            pa.array(values[:count], pa.float64()),
            type=EVENT_SCHEMA.field("values").type,
        ),
    ]
    batch = pa.RecordBatch.from_arrays(columns, schema=EVENT_SCHEMA)
    payload = _ipc(batch, None)
    if len(payload) > COMPRESS_ABOVE_BYTES:
        payload = min(payload, _ipc(batch, "lz4"), key=len)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"event chunk of {n} events is {len(payload)} bytes, above the "
            f"{MAX_PAYLOAD_BYTES} a {EVENTS_RAW.name} message may carry: lower "
            "MINGO_INGEST_MAX_CHUNK_EVENTS"
        )
    return payload


def _ipc(batch: pa.RecordBatch, compression: str | None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, EVENT_SCHEMA, options=options) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def decode_events(payload: bytes) -> pa.Table:
    """The Arrow table of a chunk (columns of ``EVENT_SCHEMA``); ValueError if it is not one."""
    try:
        table = pa.ipc.open_stream(payload, options=_READ_OPTIONS).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"event chunk is not an Arrow IPC stream: {exc}") from exc
    if not table.schema.equals(EVENT_SCHEMA, check_metadata=True):
        raise ValueError(
            f"event chunk does not have the {EVENTS_RAW.name} Arrow schema: {table.schema}"
        )
    return table


def channel_matrix(table: pa.Table) -> np.ndarray:
    """The dense (n, 64) float64 channels of a decoded chunk, in ``CHANNEL_COLUMNS`` order.

    Unwritten channels are 0.0. A new array (the expansion costs ~20 ns per event at 28 %
    written, bench/README.md). ValueError if an event's value count differs from its mask.
    """
    written = _single(table.column("written"))
    values = _single(table.column("values"))
    if written.null_count or values.null_count or values.values.null_count:
        raise ValueError("event chunk with null masks or values")
    out = np.empty((len(written), N_CHANNELS))
    bad = expand_kernel(
        written.to_numpy(zero_copy_only=True),
        values.offsets.to_numpy(zero_copy_only=True),
        values.values.to_numpy(zero_copy_only=True),
        out,
    )
    if bad >= 0:
        raise ValueError(
            f"event chunk: event {bad} has {len(values[bad])} values but its mask "
            f"marks {int(written[bad].as_py()).bit_count()} written channels"
        )
    return out


def _single(chunked: pa.ChunkedArray) -> pa.Array:
    # combine_chunks copies even a single chunk (130 ns per event, bench/README.md)
    return chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()


def envelope_headers(envelope: RawEventChunkEnvelope) -> list[tuple[str, bytes]]:
    """Kafka headers carrying the envelope."""
    return [(ENVELOPE_HEADER, envelope.to_json_bytes())]


def envelope_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> RawEventChunkEnvelope:
    """The envelope of a raw event message; ValueError if it is missing."""
    for key, value in headers or ():
        if key == ENVELOPE_HEADER:
            return RawEventChunkEnvelope.model_validate_json(value)
    raise ValueError(f"raw event message without an '{ENVELOPE_HEADER}' header")
