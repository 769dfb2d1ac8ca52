"""The sparse Arrow codec of raw event chunks (``schemas.events``) and its kernels."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from schemas import _events_kernels as kernels
from schemas import events
from schemas.events import EVENT_SCHEMA, channel_matrix, decode_events, encode_events

pytestmark = pytest.mark.unit

_SPECIAL = np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, -1.5, 1234.5678])


def sparse_chunk(n: int, seed: int, written: float = 0.28) -> tuple[np.ndarray, ...]:
    """Times, lines and channels: values at the rate ``written``, special values among them,
    an all-zero row and a fully written row."""
    rng = np.random.default_rng(seed)
    time_s = np.sort(rng.integers(1_709_251_200, 1_709_254_800, n)).astype(np.int64)
    line = np.arange(2, n + 2, dtype=np.int32)
    channels = np.round(rng.uniform(-200, 300, (n, 64)), 4)
    channels[rng.random((n, 64)) >= written] = 0.0
    special = rng.random((n, 64)) < 0.02
    channels[special] = rng.choice(_SPECIAL, int(special.sum()))
    if n >= 2:
        channels[0] = 0.0
        channels[1] = rng.uniform(1, 2, 64)
    return time_s, line, channels


def same_bits_but_negative_zero(decoded: np.ndarray, channels: np.ndarray) -> bool:
    """Bit-identical, except that -0.0 reads back as 0.0."""
    expected = np.where(channels == 0.0, 0.0, channels)  # NaN stays NaN, -0.0 becomes 0.0
    return decoded.shape == channels.shape and np.array_equal(
        decoded.view(np.uint64), expected.view(np.uint64)
    )


@pytest.mark.parametrize(("n", "seed", "written"), [(1000, 5, 0.28), (64, 6, 0.95), (1, 7, 0.5)])
def test_round_trip_is_bit_exact(n: int, seed: int, written: float) -> None:
    time_s, line, channels = sparse_chunk(n, seed, written)
    table = decode_events(encode_events(time_s, line, channels))
    assert table.num_rows == n
    np.testing.assert_array_equal(table.column("time_s").to_numpy(), time_s)
    np.testing.assert_array_equal(table.column("line").to_numpy(), line)
    decoded = channel_matrix(table)
    assert decoded.dtype == np.float64 and decoded.flags.c_contiguous
    assert same_bits_but_negative_zero(decoded, channels)


@settings(max_examples=100, deadline=None)
@given(
    channels=hnp.arrays(
        np.float64,
        st.tuples(st.integers(0, 12), st.just(64)),
        elements=st.one_of(st.just(0.0), st.just(-0.0), st.floats(width=64)),
    )
)
def test_round_trip_of_any_floats(channels: np.ndarray) -> None:
    n = len(channels)
    payload = encode_events(np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int32), channels)
    assert same_bits_but_negative_zero(channel_matrix(decode_events(payload)), channels)


def test_written_mask_counts_nan_and_inf_but_not_negative_zero() -> None:
    channels = np.zeros((1, 64))
    channels[0, [0, 5, 63]] = [np.nan, -np.inf, 7.0]
    channels[0, 9] = -0.0
    table = decode_events(encode_events(np.zeros(1, np.int64), np.ones(1, np.int32), channels))
    assert table.column("written")[0].as_py() == (1 << 0) | (1 << 5) | (1 << 63)
    assert table.column("values")[0].values.to_numpy(zero_copy_only=False)[2] == 7.0
    decoded = channel_matrix(table)
    assert not np.signbit(decoded[0, 9])


def test_empty_chunk() -> None:
    payload = encode_events(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 64)))
    assert channel_matrix(decode_events(payload)).shape == (0, 64)


def test_dense_chunk_is_compressed_and_exact() -> None:
    # every channel written, with values that repeat as station values do (4 decimals)
    rng = np.random.default_rng(8)
    channels = rng.choice(np.round(rng.uniform(0, 300, 20_000), 4), (2048, 64))
    time_s, line = np.zeros(2048, np.int64), np.zeros(2048, np.int32)
    payload = encode_events(time_s, line, channels)
    assert len(payload) < 2048 * 536 * 0.9  # lz4, not the 1.1 MB of the uncompressed layout
    assert len(payload) < 1_000_000
    np.testing.assert_array_equal(channel_matrix(decode_events(payload)), channels)


def test_oversized_payload_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    time_s, line, channels = sparse_chunk(200, 9)
    monkeypatch.setattr(events, "MAX_PAYLOAD_BYTES", 10_000)
    with pytest.raises(ValueError, match="MINGO_INGEST_MAX_CHUNK_EVENTS"):
        encode_events(time_s, line, channels)


def test_inconsistent_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="inconsistent"):
        encode_events(np.zeros(3, np.int64), np.zeros(3, np.int32), np.zeros((2, 64)))


def test_several_record_batches_decode() -> None:
    time_s, line, channels = sparse_chunk(300, 10)
    tables = [
        decode_events(encode_events(time_s[s], line[s], channels[s]))
        for s in (slice(0, 100), slice(100, 300))
    ]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, EVENT_SCHEMA) as writer:
        for table in tables:
            writer.write_table(table)
    decoded = channel_matrix(decode_events(sink.getvalue().to_pybytes()))
    assert same_bits_but_negative_zero(decoded, channels)


def _payload(written: list[int], values: list[list[float]]) -> bytes:
    n = len(written)
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array(np.zeros(n, np.int64)),
            pa.array(np.zeros(n, np.int32)),
            pa.array(written, pa.uint64()),
            pa.array(values, EVENT_SCHEMA.field("values").type),
        ],
        schema=EVENT_SCHEMA,
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, EVENT_SCHEMA) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())


@pytest.mark.parametrize(
    ("written", "values"),
    [
        ([0b111], [[1.0, 2.0]]),  # fewer values than written channels
        ([0b1, 0b1], [[1.0], [2.0, 3.0]]),  # more values in the second event
        ([1 << 63], [[]]),
    ],
)
def test_mask_and_value_count_mismatch_is_refused(
    written: list[int], values: list[list[float]]
) -> None:
    table = decode_events(_payload(written, values))
    with pytest.raises(ValueError, match=r"event \d+ has \d+ values but its mask marks"):
        channel_matrix(table)


def test_wrong_schema_and_garbage_are_refused() -> None:
    v1 = pa.table(
        {
            "time_s": pa.array([1], pa.int64()),
            "line": pa.array([1], pa.int32()),
            "channels": pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(64)), 64),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, v1.schema) as writer:
        writer.write_table(v1)
    with pytest.raises(ValueError, match=r"does not have the mingo\.events\.raw\.v2 Arrow schema"):
        decode_events(sink.getvalue().to_pybytes())
    with pytest.raises(ValueError, match="not an Arrow IPC stream"):
        decode_events(b"not arrow at all")


@pytest.mark.parametrize(("n", "seed", "written"), [(500, 11, 0.28), (40, 12, 1.0), (0, 13, 0.5)])
def test_kernels_match_the_numpy_references(n: int, seed: int, written: float) -> None:
    _, _, channels = sparse_chunk(n, seed, written)
    mask, offsets, values = (
        np.empty(n, np.uint64),
        np.empty(n + 1, np.int32),
        np.empty(n * 64),
    )
    count = kernels.compress_kernel(channels, mask, offsets, values)
    ref_mask, ref_offsets, ref_values = kernels.compress_reference(channels)
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_array_equal(offsets, ref_offsets)
    assert np.array_equal(values[:count].view(np.uint64), ref_values.view(np.uint64))
    out = np.full((n, 64), 99.0)
    assert kernels.expand_kernel(mask, offsets, values[:count], out) == -1
    reference = kernels.expand_reference(mask, offsets, values[:count])
    assert np.array_equal(out.view(np.uint64), reference.view(np.uint64))
    assert same_bits_but_negative_zero(out, channels)


def test_expand_kernel_stops_at_bad_offsets() -> None:
    out = np.empty((2, 64))
    values = np.ones(3)
    mask = np.array([0b11, 0b1], np.uint64)
    assert kernels.expand_kernel(mask, np.array([0, 2, 4], np.int32), values, out) == 1
    assert kernels.expand_kernel(mask, np.array([0, 2, 1], np.int32), values, out) == 1
    assert kernels.expand_kernel(mask, np.array([-1, 2, 3], np.int32), values, out) == 0
    with pytest.raises(ValueError, match="value counts"):
        kernels.expand_reference(mask, np.array([0, 1, 3], np.int32), values)


def test_a_sliced_table_expands_its_own_rows() -> None:
    time_s, line, channels = sparse_chunk(300, 14)
    table = decode_events(encode_events(time_s, line, channels))
    assert same_bits_but_negative_zero(channel_matrix(table.slice(100, 50)), channels[100:150])
