"""Encoding of raw event chunks: Arrow IPC stream, lz4, plus the JSON envelope header.

The same functions serve the producer (ingest) and every consumer (reconstruct, tools), so the
wire layout of ``mingo.events.raw.v1`` is defined only here.

Layout: ``time_s`` (int64), ``line`` (int32) and ``channels``, a fixed-size list of 64 float64
per event in ``CHANNEL_COLUMNS`` order. The list's values are one contiguous buffer, so a
consumer gets the (n, 64) matrix as a view, without the column-to-row copy 64 separate columns
need; and lz4 decompresses that buffer several times faster than zstd for the same size on
station data (bench/README.md, "Reconstruct").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import pyarrow as pa

from schemas.dat_format import CHANNEL_COLUMNS
from schemas.models import RawEventChunkEnvelope

ENVELOPE_HEADER = "envelope"
#: Arrow IPC buffer compression of the chunks (the envelope's ``compression``).
COMPRESSION: Final = "lz4"

EVENT_SCHEMA = pa.schema(
    [
        pa.field("time_s", pa.int64(), nullable=False),
        pa.field("line", pa.int32(), nullable=False),
        pa.field(
            "channels",
            pa.list_(pa.field("ns", pa.float64(), nullable=False), len(CHANNEL_COLUMNS)),
            nullable=False,
            metadata={"columns": ",".join(CHANNEL_COLUMNS)},
        ),
    ]
)
_WRITE_OPTIONS = pa.ipc.IpcWriteOptions(compression=COMPRESSION)
#: Decompress on the calling thread: a chunk's three buffers are too few for Arrow's thread pool
#: to pay its hand-offs (about a third less CPU per event, bench/README.md, "Reconstruct").
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
        Raw channel values in ``CHANNEL_COLUMNS`` order. [ns]
    """
    n = len(time_s)
    if channels.shape != (n, len(CHANNEL_COLUMNS)) or len(line) != n:
        raise ValueError(f"inconsistent chunk: {n} times, {len(line)} lines, {channels.shape}")
    values = pa.array(np.ascontiguousarray(channels, np.float64).ravel(), pa.float64())
    columns = [
        pa.array(time_s, pa.int64()),
        pa.array(line, pa.int32()),
        pa.FixedSizeListArray.from_arrays(values, type=EVENT_SCHEMA.field("channels").type),
    ]
    batch = pa.RecordBatch.from_arrays(columns, schema=EVENT_SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, EVENT_SCHEMA, options=_WRITE_OPTIONS) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def decode_events(payload: bytes) -> pa.Table:
    """The Arrow table of a chunk (columns of ``EVENT_SCHEMA``)."""
    table = pa.ipc.open_stream(payload, options=_READ_OPTIONS).read_all()
    if not table.schema.equals(EVENT_SCHEMA, check_metadata=True):
        raise ValueError("event chunk does not have the mingo.events.raw.v1 Arrow schema")
    return table


def channel_matrix(table: pa.Table) -> np.ndarray:
    """The (n, 64) float64 channel block of a decoded chunk, in ``CHANNEL_COLUMNS`` order.

    A read-only view of the Arrow buffer when the chunk is one record batch (as encoded).
    """
    chunked = table.column("channels")
    # combine_chunks copies even a single chunk (130 ns per event, bench/README.md)
    column = chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()
    width = len(CHANNEL_COLUMNS)
    values = column.values[column.offset * width : (column.offset + len(column)) * width]
    return values.to_numpy(zero_copy_only=True).reshape(-1, width)


def envelope_headers(envelope: RawEventChunkEnvelope) -> list[tuple[str, bytes]]:
    """Kafka headers carrying the envelope."""
    return [(ENVELOPE_HEADER, envelope.to_json_bytes())]


def envelope_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> RawEventChunkEnvelope:
    """The envelope of a raw event message; ValueError if it is missing."""
    for key, value in headers or ():
        if key == ENVELOPE_HEADER:
            return RawEventChunkEnvelope.model_validate_json(value)
    raise ValueError(f"raw event message without an '{ENVELOPE_HEADER}' header")
