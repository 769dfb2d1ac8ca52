"""Encoding of raw event chunks: Arrow IPC stream, zstd, plus the JSON envelope header.

The same functions serve the producer (ingest) and every consumer (reconstruct, tools), so the
wire layout of ``mingo.events.raw.v1`` is defined only here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from schemas.dat_format import CHANNEL_COLUMNS
from schemas.models import RawEventChunkEnvelope

ENVELOPE_HEADER = "envelope"

EVENT_SCHEMA = pa.schema(
    [
        pa.field("time_s", pa.int64()),
        pa.field("line", pa.int32()),
        *(pa.field(name, pa.float64()) for name in CHANNEL_COLUMNS),
    ]
)
_WRITE_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


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
    columns = [pa.array(time_s, pa.int64()), pa.array(line, pa.int32())]
    columns += [pa.array(channels[:, i], pa.float64()) for i in range(channels.shape[1])]
    batch = pa.RecordBatch.from_arrays(columns, schema=EVENT_SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, EVENT_SCHEMA, options=_WRITE_OPTIONS) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


def decode_events(payload: bytes) -> pa.Table:
    """The Arrow table of a chunk (columns of ``EVENT_SCHEMA``)."""
    table = pa.ipc.open_stream(payload).read_all()
    if not table.schema.equals(EVENT_SCHEMA):
        raise ValueError("event chunk does not have the mingo.events.raw.v1 Arrow schema")
    return table


def channel_matrix(table: pa.Table) -> np.ndarray:
    """The (n, 64) float64 channel block of a decoded chunk, in ``CHANNEL_COLUMNS`` order."""
    return np.column_stack([table.column(name).to_numpy() for name in CHANNEL_COLUMNS])


def envelope_headers(envelope: RawEventChunkEnvelope) -> list[tuple[str, bytes]]:
    """Kafka headers carrying the envelope."""
    return [(ENVELOPE_HEADER, envelope.to_json_bytes())]


def envelope_from_headers(headers: Sequence[tuple[str, bytes]] | None) -> RawEventChunkEnvelope:
    """The envelope of a raw event message; ValueError if it is missing."""
    for key, value in headers or ():
        if key == ENVELOPE_HEADER:
            return RawEventChunkEnvelope.model_validate_json(value)
    raise ValueError(f"raw event message without an '{ENVELOPE_HEADER}' header")
