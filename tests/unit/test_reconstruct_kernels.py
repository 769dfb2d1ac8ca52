"""Kernel vs numpy reference, damaged events, minute tallies and the CLI of reconstruct."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from schemas.models import MinuteRates
from services.common.stations import ReconstructionConfig
from services.reconstruct import _kernels as k
from services.reconstruct.calibration import make_calibration
from services.reconstruct.cli import reconstruct
from services.reconstruct.events import (
    reconstruct_events,
    reconstruct_events_reference,
    reconstruct_rates,
    reconstruct_rates_reference,
    tracks_of,
)
from services.reconstruct.minutes import (
    FileCover,
    MinuteTally,
    merge_tallies,
    minute_records,
    outlier_band,
    second_counts,
    tally_chunk,
)

pytestmark = pytest.mark.unit

CONFIG = ReconstructionConfig()
Z = (0.0, 150.0, 300.0, 450.0)


def _events(n: int, seed: int) -> np.ndarray:
    """Plausible raw events (random hits) with damaged rows mixed in."""
    rng = np.random.default_rng(seed)
    blocks = np.zeros((n, 4, 4, 4))  # file order: plane 4 first; quantity; strip
    hit = rng.random((n, 4, 4)) < 0.4
    t0 = rng.uniform(-130, -110, (n, 1, 1))
    x = rng.uniform(-0.8, 0.8, (n, 4, 4))
    blocks[:, :, 0] = np.where(hit, t0 - x, 0)
    blocks[:, :, 1] = np.where(hit, t0 + x, 0)
    q = rng.uniform(80, 250, (n, 4, 4))
    blocks[:, :, 2] = np.where(hit, q, 0)
    blocks[:, :, 3] = np.where(hit, q + rng.normal(0, 1, (n, 4, 4)), 0)
    channels = blocks.reshape(n, 64)
    channels[::50] = 0.0  # all-zero
    channels[1::50, 3] = np.nan
    channels[2::50, 7] = np.inf
    channels[3::50, 0] = -900.0  # time out of window
    channels[4::50, 40] = 5000.0  # charge out of window
    return channels


def _tally(time_s: np.ndarray, events: Any, start: int, end: int, config: Any) -> MinuteTally:
    """A whole block as one chunk covering [start, end), judged with the band of its seconds."""
    cover = FileCover.new(start, end)
    counts = second_counts(time_s, events.status == 0, start, end)
    band = outlier_band(np.bincount(counts), config)
    return tally_chunk(time_s, events, cover, end, counts, band)[0]


def _calibration() -> object:
    rng = np.random.default_rng(5)
    return make_calibration(
        0,
        rng.uniform(85, 95, (4, 4, 2)),
        rng.normal(0, 0.05, (4, 4)),
        rng.normal(0, 1, (4, 4)),
        0,
        0,
        0,
    )


def test_kernel_equals_reference_to_1e9() -> None:
    channels, cal = _events(5000, 1), _calibration()
    fast = reconstruct_events(channels, cal, Z, CONFIG)  # type: ignore[arg-type]
    slow = reconstruct_events_reference(channels, cal, Z, CONFIG)  # type: ignore[arg-type]
    for field in dataclasses.fields(fast):
        a, b = getattr(fast, field.name), getattr(slow, field.name)
        assert a.dtype == b.dtype and a.shape == b.shape, field.name
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, equal_nan=True, err_msg=field.name)
    assert (fast.topology >= 0).sum() > 1000 and (fast.region >= 0).sum() > 100


def test_rates_kernel_equals_reference_and_full_kernel() -> None:
    channels, cal = _events(5000, 4), _calibration()
    fast = reconstruct_rates(channels, cal, Z, CONFIG)  # type: ignore[arg-type]
    slow = reconstruct_rates_reference(channels, cal, Z, CONFIG)  # type: ignore[arg-type]
    full = reconstruct_events(channels, cal, Z, CONFIG)  # type: ignore[arg-type]
    for field in dataclasses.fields(fast):
        if field.name == "tracks":
            continue
        a, b = getattr(fast, field.name), getattr(slow, field.name)
        assert a.dtype == b.dtype and a.shape == b.shape, field.name
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, err_msg=field.name)
        np.testing.assert_array_equal(a, getattr(full, field.name), err_msg=field.name)
    assert (fast.region >= 0).sum() > 100 and len(set(fast.region.tolist())) == 14
    # the T_sum calibration's tracks: the full kernel's numbers exactly, the reference's to 1e-9
    by_full = tracks_of(full)
    assert len(fast.tracks) > 20
    for name in ("strip", "t", "theta"):
        a = getattr(fast.tracks, name)
        np.testing.assert_array_equal(a, getattr(by_full, name), err_msg=name)
        b = getattr(slow.tracks, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, err_msg=name)
    time_s = 60 * 1000 + np.arange(5000) // 9
    end = int(time_s.max()) + 1
    by_rates = _tally(time_s, fast, 60 * 1000, end, CONFIG)
    by_events = _tally(time_s, full, 60 * 1000, end, CONFIG)
    for name, array in by_rates.to_arrays().items():
        np.testing.assert_array_equal(array, getattr(by_events, name), err_msg=name)


# a T_dif window wide enough that a strip missing a time would pass the cuts if counted
@pytest.mark.parametrize("config", [CONFIG, ReconstructionConfig(tdif_cut_ns=1e3)])
def test_strips_with_some_values_missing_are_no_hits(config: ReconstructionConfig) -> None:
    # every value zeroed on its own: strips with one to three of their four values, which the
    # kernels' bit mask of written strips must leave out; column 63 (plane 1, Q_B of strip 4)
    # is the mask's sign bit
    channels, cal = _events(4000, 9), _calibration()
    rng = np.random.default_rng(10)
    channels[rng.random(channels.shape) < 0.12] = 0.0
    written = (channels.reshape(-1, 4, 4, 4) != 0).sum(axis=2)  # (event, plane, strip)
    assert ((written > 0) & (written < 4)).sum() > 5000
    assert (channels[:, 63] != 0).sum() > 500 and (channels[:, 63] == 0).sum() > 500
    fast = reconstruct_events(channels, cal, Z, config)  # type: ignore[arg-type]
    slow = reconstruct_events_reference(channels, cal, Z, config)  # type: ignore[arg-type]
    rates = reconstruct_rates(channels, cal, Z, config)  # type: ignore[arg-type]
    for field in dataclasses.fields(fast):
        a, b = getattr(fast, field.name), getattr(slow, field.name)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, equal_nan=True, err_msg=field.name)
    for name in ("status", "mask", "q_event", "topology", "region", "fiducial"):
        np.testing.assert_array_equal(getattr(rates, name), getattr(fast, name), err_msg=name)
    assert (fast.mask > 0).sum() > 1000 and (fast.region >= 0).sum() > 100


def _region_by_angles(sx: float, sy: float, th_hi: float, th_lo: float) -> int:
    """The region definition, θ and φ with libm's atan/atan2 as the kernels compute them."""
    rad = 180.0 / math.pi
    th = math.atan(math.sqrt(sx * sx + sy * sy)) * rad
    ph = math.atan2(sy, sx) * rad
    if th < th_hi:
        return 0
    if th < th_lo:
        return 1 + min(int((ph + 180.0) / 45.0), 7)
    return 9 + min(int((ph + 180.0) / 90.0), 3)


@pytest.mark.parametrize("limits", [(10.0, 40.0), (0.0, 40.0), (10.0, 90.0), (25.0, 25.0)])
def test_region_from_slopes_equals_the_angle_definition_at_boundaries(
    limits: tuple[float, float],
) -> None:
    th_hi, th_lo = limits
    t2_hi, t2_lo = k.tan2_limit(th_hi), k.tan2_limit(th_lo)
    rng = np.random.default_rng(8)
    slopes = [0.0, 1e-300, 1e-12, 0.3, 1.0, 5e4]
    for limit in (th_hi, th_lo):  # tan θ at the zenith limits and their float neighbours
        r = math.tan(math.radians(limit)) if 0 < limit < 90 else 1.0
        slopes += [r, *np.nextafter(r, [0.0, 1.0]), r / math.sqrt(2.0)]
    cases = [(a, b) for a in slopes for b in slopes]  # |x'| = |y'| and zero slopes included
    cases += list(zip(rng.normal(0, 0.6, 3000), rng.normal(0, 0.6, 3000), strict=True))
    checked = set()
    for a, b in cases:
        for sx, sy in ((a, b), (-a, b), (a, -b), (-a, -b), (b, a)):
            got = k._region_of_slopes(sx, sy, t2_hi, t2_lo, th_hi, th_lo)
            assert got == _region_by_angles(sx, sy, th_hi, th_lo), (sx, sy)
            checked.add(got)
    if limits == (10.0, 40.0):
        assert len(checked) == 13


def test_damaged_events_get_a_status_and_never_count() -> None:
    channels = _events(500, 2)
    ev = reconstruct_events(channels, _calibration(), Z, CONFIG)  # type: ignore[arg-type]
    assert ev.status[0] == k.ALL_ZERO
    assert ev.status[1] == k.NOT_FINITE and ev.status[2] == k.NOT_FINITE
    assert ev.status[3] == k.TIME_OUT_OF_WINDOW and ev.status[4] == k.CHARGE_OUT_OF_WINDOW
    bad = ev.status != k.OK
    assert np.all(ev.mask[bad] == 0) and np.all(ev.region[bad] == -1)
    time_s = 60 * 1000 + np.arange(500) // 9
    tally = _tally(time_s, ev, 60 * 1000, int(time_s.max()) + 1, CONFIG)
    assert tally.rejected.sum() == bad.sum()
    assert tally.topology.sum() == np.count_nonzero(~bad & (ev.topology >= 0))


def test_infinite_value_is_not_finite_even_with_an_open_window() -> None:
    config = ReconstructionConfig(charge_valid_ns=(0.0, float("inf")))
    channels = _events(60, 6)
    channels[5:, 40] = np.inf  # a charge column
    fast = reconstruct_rates(channels, _calibration(), Z, config)  # type: ignore[arg-type]
    slow = reconstruct_rates_reference(channels, _calibration(), Z, config)  # type: ignore[arg-type]
    np.testing.assert_array_equal(fast.status, slow.status)
    assert np.all(fast.status[5:] == k.NOT_FINITE)


def test_wrapper_validates_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        reconstruct_events(np.zeros((3, 63)), _calibration(), Z, CONFIG)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="increasing"):
        reconstruct_events(np.zeros((3, 64)), _calibration(), (0, 1, 1, 2), CONFIG)  # type: ignore[arg-type]


def test_minute_split_by_two_files_gets_both_live_parts() -> None:
    ev = reconstruct_events(_events(200, 3), _calibration(), Z, CONFIG)  # type: ignore[arg-type]
    half = dataclasses.replace
    first = {f.name: getattr(ev, f.name)[:100] for f in dataclasses.fields(ev)}
    second = {f.name: getattr(ev, f.name)[100:] for f in dataclasses.fields(ev)}
    t1 = 6000 + np.arange(100) * 40 // 100  # 6000..6039
    t2 = 6045 + np.arange(100) * 75 // 100  # 6045..6119
    a = _tally(t1, half(ev, **first), 6000, 6040, CONFIG)
    b = _tally(t2, half(ev, **second), 6045, 6120, CONFIG)
    merged = merge_tallies([a, b])
    assert list(merged.minute_s) == [6000, 6060]
    assert list(merged.live_s) == [40 + 15, 60]
    rows = minute_records(merged, 0, "v")
    for row in rows:
        MinuteRates.model_validate(row)
        assert row["rate_total_err_hz"] == pytest.approx(
            np.sqrt(row["rate_total_hz"] * row["live_s"]) / row["live_s"]
        )


def test_cli_writes_rates_and_events(tmp_path: Path) -> None:
    from datetime import date

    from services.common.stations import load_network
    from simulator.run import SimulationRequest, run_batch

    run_batch(
        SimulationRequest(
            out=tmp_path / "sim",
            stations=(load_network().station(0),),
            start=date(2024, 3, 1),
            rate_hz=0.5,
            seed=3,
            workers=1,
        )
    )
    files = sorted((tmp_path / "sim" / "mingo00" / "dat").glob("*.dat"))[:3]
    out, events = tmp_path / "rates.csv", tmp_path / "events.parquet"
    options = ["--z", "0,150,300,450", "--out", str(out), "--events", str(events)]
    options += ["--calibrations", str(tmp_path / "cal")]
    # a file name twice (another folder): its chunk ids would collide, the second be skipped
    copy = tmp_path / "copy" / files[0].name
    copy.parent.mkdir()
    copy.write_bytes(files[0].read_bytes())
    result = CliRunner().invoke(reconstruct, [*map(str, [*files, copy]), *options])
    assert result.exit_code == 2 and files[0].name in result.output, result.output
    result = CliRunner().invoke(reconstruct, [*map(str, files), *options])
    assert result.exit_code == 0, result.output
    rates = pd.read_csv(out)
    expected = [n for n in MinuteRates.model_fields if n != "schema_version"]
    assert list(rates.columns) == expected
    assert rates["time"].iloc[0].endswith("Z") and (rates["live_s"] <= 60).all()
    table = pd.read_parquet(events)
    assert {"theta_deg", "phi_deg", "chi2", "topology", "x_p1_mm"} <= set(table.columns)
    # every version the rates or events name is kept on disk
    stored = {p.stem for p in (tmp_path / "cal" / "0").glob("*.json")}
    assert set(table["calibration_version"]) == stored
    assert {v for vs in rates["calibration_version"] for v in vs.split("+")} == stored


def test_second_counts_equal_numpy_reference() -> None:
    """The per-second count kernel against its numpy specification: invalid events and events
    before, after and at the ends of the seconds left out; an empty range."""
    from services.reconstruct.minutes import _second_counts_reference

    rng = np.random.default_rng(13)
    time_s = rng.integers(59_990, 60_130, 4000).astype(np.int64)
    valid = rng.random(4000) < 0.8
    for lo, hi in ((60_000, 60_120), (60_050, 60_050), (60_050, 60_040)):
        got = second_counts(time_s, valid, lo, hi)
        expected = _second_counts_reference(time_s, valid, lo, hi)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    assert second_counts(time_s, valid, 60_000, 60_120).sum() > 0


def test_tally_kernel_equals_numpy_reference() -> None:
    """The numba count of a chunk's events into minutes against its numpy specification, with
    invalid events, events outside the file, outlier seconds and remembered earlier seconds."""
    from services.reconstruct._tally_kernels import count_events
    from services.reconstruct.minutes import _count_events_reference

    rng = np.random.default_rng(12)
    ev = reconstruct_rates(_events(3000, 4), _calibration(), Z, CONFIG)  # type: ignore[arg-type]
    start, end, lo, hi = 60_000, 60_400, 60_100, 60_300
    time_s = rng.integers(start - 20, end + 20, len(ev)).astype(np.int64)
    counts = rng.poisson(8.0, hi - lo)
    band = (3.5, 12.5)  # about a tenth of the seconds dropped
    memory_lo, memory = lo - 60, np.array([lo - 50, lo - 3], np.int64)
    first, n_min = (start - 20) // 60, (end + 20) // 60 - (start - 20) // 60 + 1
    where = (start, end, lo, hi)
    expected = _count_events_reference(
        time_s, ev, *where, counts, band, memory_lo, memory, first, n_min
    )
    got = [
        np.empty(hi - lo, np.bool_),
        np.zeros(n_min),
        np.zeros((n_min, 15), np.int64),
        np.zeros((n_min, 13), np.int64),
        np.zeros((n_min, 4), np.int64),
        np.zeros((n_min, 4), np.int64),
        np.zeros(n_min),
        np.zeros(n_min, np.int64),
        np.zeros(n_min, np.int64),
    ]
    fields = (ev.status, ev.topology, ev.region, ev.mask, ev.fiducial, ev.q_event)
    count_events(time_s, *fields, *where, counts, *band, memory_lo, memory, first, *got)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)  # the charge sums too: same order of additions
    assert 0 < got[0].sum() < len(counts) and 0 < got[1].sum() < hi - lo  # some dropped
    assert got[8].sum() > (ev.status != 0).sum()  # outliers and outside events rejected
    assert got[5].sum() > 0 and got[4].sum() > 0
