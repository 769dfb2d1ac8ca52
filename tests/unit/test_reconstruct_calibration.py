"""The calibration pool of per-chunk parts gives exactly the quantiles of the pooled events."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.stations import ReconstructionConfig
from services.reconstruct._calibration_kernels import (
    gather_channels,
    kept_pair_system,
    pack_rows,
    pair_differences,
)
from services.reconstruct.calibration import (
    CalibrationPool,
    _gather_reference,
    _pair_system,
    chunk_part,
)
from services.reconstruct.geometry import C_MM_NS

pytestmark = pytest.mark.unit


def _channels(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 64) raw values: times in [-200, -100] ns, charges in [20, 300] ns, a quarter zero."""
    block = np.empty((n, 4, 4, 4))  # plane (file order), quantity T_F T_B Q_F Q_B, strip
    block[:, :, :2] = rng.uniform(-200.0, -100.0, (n, 4, 2, 4))
    block[:, :, 2:] = rng.uniform(20.0, 300.0, (n, 4, 2, 4))
    block[rng.random((n, 4, 4, 4)) < 0.25] = 0.0
    return block.reshape(n, 64)


def _exact(channels: np.ndarray, config: ReconstructionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Pedestals and T_dif centres with np.quantile over all pooled values (the old method)."""
    blocks = channels.T.reshape(4, 4, 4, -1)[::-1]
    pedestal = np.empty((4, 4, 2))
    tdif = np.empty((4, 4))
    q_lo, q_hi = config.tdif_plateau_quantiles
    for p in range(4):
        for s in range(4):
            for side in range(2):
                q = blocks[p, 2 + side, s]
                pedestal[p, s, side] = np.quantile(q[q != 0], config.pedestal_quantile)
            tf, tb, qf, qb = (blocks[p, i, s] for i in range(4))
            hit = (tf != 0) & (tb != 0) & (qf != 0) & (qb != 0)
            d = 0.5 * (tb[hit] - tf[hit])
            tdif[p, s] = 0.5 * (np.quantile(d, q_lo) + np.quantile(d, q_hi))
    return pedestal, tdif


@pytest.mark.parametrize(
    "config",
    [
        ReconstructionConfig(calibration_max_events=6000, pedestal_quantile=0.01),
        # tails longer than the files' values: every part keeps all, sorted in one packed array
        ReconstructionConfig(
            calibration_max_events=6000, pedestal_quantile=0.45, tdif_plateau_quantiles=(0.4, 0.6)
        ),
    ],
)
def test_pool_of_parts_gives_the_exact_quantiles_of_its_events(
    config: ReconstructionConfig,
) -> None:
    """Files of varied sizes through a pool that drops the oldest: the constants equal
    np.quantile over the events of the pooled files, bit for bit (each part keeps only the
    tails a pool of at most ``calibration_max_events`` can need)."""
    rng = np.random.default_rng(5)
    short_tails = config.pedestal_quantile < 0.1
    pool = CalibrationPool(config)
    files = []
    for i, n in enumerate([2500, 900, 1700, 100, 3100, 400, 1200]):
        channels = _channels(rng, n)
        files.append((f"f{i}", channels))
        part = chunk_part(np.arange(n) + 1000 * i, channels, config, key=f"f{i}")
        if n > 2000 and short_tails:
            assert len(part.tdif_low[0]) < part.tdif_count.flat[0] / 4  # only a tail is kept
        if not short_tails:
            assert sum(len(v) for v in part.charge_low) == part.charge_count.sum()
            assert part.charge_low[0].base is part.tdif_low[0].base  # views of one array
        pool.add(part)
        pool.add(part)  # a replayed file is pooled once
        pooled = np.concatenate([c for name, c in files if name in pool.keys])
        assert len(pooled) == pool.events <= config.calibration_max_events
        pedestal, tdif = pool.pedestals_tdif()
        exact_pedestal, exact_tdif = _exact(pooled, config)
        assert np.array_equal(pedestal, exact_pedestal)
        assert np.array_equal(tdif, exact_tdif)
    assert pool.keys == ("f3", "f4", "f5", "f6")  # with f2 the pool would hold 6500 > 6000


def test_gather_kernel_equals_numpy_reference() -> None:
    """The numba gather of the pool's per-file part against its numpy specification, with rows
    holding NaN or inf (left out) and charges outside the valid window."""
    rng = np.random.default_rng(9)
    config = ReconstructionConfig()
    channels = _channels(rng, 3000)
    channels[rng.random(channels.shape) < 0.01] = 1500.0  # out of the charge window (and times)
    channels[[5, 77], [3, 60]] = [np.nan, np.inf]
    time_s = rng.integers(1_700_000_000, 1_700_003_600, 3000)
    time_s[5] = 1  # the first time belongs to a dropped row
    n = len(time_s)
    charges, tdif = np.empty((32, n)), np.empty((16, n))
    charge_count, tdif_count, span = (np.empty(k, np.int64) for k in (32, 16, 2))
    lo, hi = config.charge_valid_ns
    usable = gather_channels(
        time_s, channels, lo, hi, charges, charge_count, tdif, tdif_count, span
    )
    ref_charges, ref_tdif, ref_usable, first, last = _gather_reference(time_s, channels, config)
    assert (usable, int(span[0]), int(span[1])) == (ref_usable, first, last)
    assert usable == 2998 and first > 1  # the two rows with NaN / inf are left out
    for c in range(32):
        assert np.array_equal(charges[c, : charge_count[c]], ref_charges[c])
    for s in range(16):
        assert np.array_equal(tdif[s, : tdif_count[s]], ref_tdif[s])


def test_pack_rows_equals_numpy_concatenation() -> None:
    """The packing kernel gives each row's first values, rows one after another, with empty
    rows."""
    rng = np.random.default_rng(5)
    rows = rng.normal(0.0, 50.0, (48, 300))
    counts = rng.integers(0, 301, 48)
    counts[[0, 7]] = 0
    packed = pack_rows(rows, counts)
    expected = np.concatenate([rows[r, :c] for r, c in enumerate(counts)])
    assert np.array_equal(packed, expected)


def test_tsum_pair_kernels_equal_numpy_specification() -> None:
    """The numba T_sum pair kernels give the floats of their numpy statement: the differences
    per pair of planes (pairs in order, then tracks), the kept pairs' normal equations."""
    rng = np.random.default_rng(4)
    k = 700
    strip = rng.integers(0, 4, (k, 4)).astype(np.int8)
    t = rng.normal(0.0, 2.0, (k, 4))
    secant = 1.0 / np.cos(np.radians(rng.uniform(0.0, 60.0, k)))
    z = np.array([0.0, 103.0, 206.0, 401.0])
    offsets_in = rng.normal(0.0, 0.5, (4, 4))
    a, b, value = pair_differences(strip, t, secant, z, offsets_in, C_MM_NS)

    pairs = [(p, q) for p in range(4) for q in range(p + 1, 4)]
    index = np.arange(4)[None, :] * 4 + strip.astype(np.int64)
    raw_t = t + offsets_in[np.arange(4)[None, :], strip.astype(np.int64)]
    residual = raw_t - (z - z[0])[None, :] * secant[:, None] / C_MM_NS
    assert np.array_equal(a, np.concatenate([index[:, p] for p, _ in pairs]))
    assert np.array_equal(b, np.concatenate([index[:, q] for _, q in pairs]))
    assert np.array_equal(
        value, np.concatenate([residual[:, p] - residual[:, q] for p, q in pairs])
    )

    reference = rng.normal(0.0, 0.5, 16)
    keep = np.abs(value - (reference[a] - reference[b])) < 1.0
    assert 0 < keep.sum() < len(keep)
    normal, rhs = kept_pair_system(a, b, value, reference, 1.0)
    expected_normal, expected_rhs = _pair_system(a[keep], b[keep], value[keep])
    assert np.array_equal(normal, expected_normal)
    assert np.array_equal(rhs, expected_rhs)
