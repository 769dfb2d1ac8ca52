"""ERA5 decoding and station values on real files (cfgrib's samples) and synthetic layouts."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from services.reanalysis.cli import era5
from services.reanalysis.decode import Era5FileError, open_era5
from services.reanalysis.points import combine, interpolate_point, point_table, point_values
from tests.era5_samples import sample_dir

pytestmark = pytest.mark.unit

#: (latitude, longitude) points: Madrid, Warsaw, Puebla, and one across the 0/360 seam.
POINTS = [(40.4168, -3.7038), (52.2297, 21.0122), (19.0413, -98.2062), (10.0, 358.5)]


@pytest.fixture(scope="module")
def samples() -> Path:
    return sample_dir()


def _grid_dataset(
    lats: np.ndarray, lons: np.ndarray, values: np.ndarray, **dims: np.ndarray
) -> xr.Dataset:
    """A new-CDS-layout t2m dataset (valid_time, latitude, longitude)."""
    times = np.array(["2024-03-01T00", "2024-03-01T01"], dtype="datetime64[ns]")
    return xr.Dataset(
        {"t2m": (("valid_time", "latitude", "longitude"), values)},
        coords={"valid_time": times, "latitude": lats, "longitude": lons, **dims},
    )


def test_grib_and_netcdf_of_the_same_data_give_the_same_point_values(samples: Path) -> None:
    grib = open_era5(samples / "era5-levels-members.grib")
    netcdf = open_era5(samples / "era5-levels-members.nc")
    for lat, lon in POINTS:
        a = point_table(grib, lat, lon)
        b = point_table(netcdf, lat, lon)
        assert list(a.columns) == ["time", "t_500hPa", "t_850hPa", "z_500hPa", "z_850hPa"]
        assert len(a) == 4
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6)


def test_member_zero_is_taken_and_values_are_physical(samples: Path) -> None:
    (ds,) = open_era5(samples / "era5-levels-members.grib")
    assert set(ds.dims) == {"time", "level", "latitude", "longitude"}
    assert list(ds["expver"].values) == ["0001"] * 4
    raw = xr.open_dataset(samples / "era5-levels-members.nc")
    lon = float(raw["longitude"][10])
    lat = float(raw["latitude"][20])
    expected = raw["t"].sel(number=0, latitude=lat, longitude=lon).values
    got = interpolate_point(ds, lat, lon)["t"].transpose("time", "level").values
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    table = point_table([ds], *POINTS[0])
    assert table["t_850hPa"].between(230, 310).all()  # K
    assert (table["z_500hPa"] / 9.80665).between(4500, 6200).all()  # m


def test_scalar_time_grib_gets_a_time_dimension(samples: Path) -> None:
    table = point_table(open_era5(samples / "era5-single-level-scalar-time.grib"), 40.4, -3.7)
    assert list(table.columns) == ["time", "t2m"]
    assert table["time"].tolist() == [pd.Timestamp("2017-01-01T12:00", tz="UTC")]
    assert 250 < table["t2m"].iloc[0] < 300  # K


def test_regional_grid_refuses_a_point_outside_it(samples: Path) -> None:
    datasets = open_era5(samples / "era5-single-level-scalar-time.grib")
    with pytest.raises(ValueError, match="outside the grid"):
        point_table(datasets, 19.04, -98.2)
    result = CliRunner().invoke(
        era5,
        ["point", str(samples / "era5-single-level-scalar-time.grib"), "--lat", "19", "--lon", "0"],
    )
    assert result.exit_code == 1
    assert "era5-single-level-scalar-time.grib: latitude 19.0 is outside the grid" in result.output


def test_corrupted_grib_gives_a_clear_error_naming_the_file(samples: Path) -> None:
    with pytest.raises(Era5FileError, match=r"era5-levels-corrupted\.grib: corrupt"):
        open_era5(samples / "era5-levels-corrupted.grib")
    result = CliRunner().invoke(
        era5, ["point", str(samples / "era5-levels-corrupted.grib"), "--lat", "1", "--lon", "2"]
    )
    assert result.exit_code == 1
    assert "era5-levels-corrupted.grib: corrupt or unreadable GRIB" in result.output


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "empty file"), (b"hello world", "unknown format"), (b"CDF\x01junk", "corrupt")],
)
def test_unknown_and_broken_files_are_refused(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "x.nc"
    path.write_bytes(content)
    with pytest.raises(Era5FileError, match=rf"x\.nc: .*{reason}"):
        open_era5(path)
    with pytest.raises(Era5FileError, match="cannot read"):
        open_era5(tmp_path / "missing.nc")


def test_point_cli_prints_iso_times_and_short_names(samples: Path) -> None:
    result = CliRunner().invoke(
        era5, ["point", str(samples / "era5-levels-members.nc"), "--lat", "40.4", "--lon", "-3.7"]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.output))
    assert list(table.columns) == ["time", "t_500hPa", "t_850hPa", "z_500hPa", "z_850hPa"]
    assert table["time"].iloc[0] == "2017-01-01T00:00:00Z"


def test_zip_archive_members_are_unpacked_and_merged(samples: Path, tmp_path: Path) -> None:
    archive = tmp_path / "download.nc"  # the CDS sends ZIPs whatever the name says
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(samples / "era5-levels-members.grib", "levels.grib")
        zf.write(samples / "era5-single-level-scalar-time.grib", "single.grib")
    datasets = open_era5(archive)
    assert [ds.attrs["source_file"] for ds in datasets] == [
        "download.nc:levels.grib",
        "download.nc:single.grib",
    ]
    table = point_table(datasets, 40.4, -3.7)
    assert list(table.columns) == ["time", "t2m", "t_500hPa", "t_850hPa", "z_500hPa", "z_850hPa"]
    assert len(table) == 4  # t2m only at 12:00 of the first day
    assert table["t2m"].notna().sum() == 1


def _roundtrip(ds: xr.Dataset, path: Path) -> list[xr.Dataset]:
    """Write a dataset as NetCDF and decode it, as the service would."""
    ds.to_netcdf(path, engine="netcdf4")
    return open_era5(path)


def test_longitudes_0_360_and_minus180_180_give_the_same_values(tmp_path: Path) -> None:
    lats = np.array([40.0, 40.25, 40.5])
    lons360 = np.arange(0.0, 360.0, 0.25)
    rng = np.random.default_rng(1)
    values = rng.normal(280, 5, (2, lats.size, lons360.size))
    east = _roundtrip(_grid_dataset(lats, lons360, values), tmp_path / "east.nc")
    west_lons = np.where(lons360 >= 180, lons360 - 360, lons360)
    west = _roundtrip(_grid_dataset(lats, west_lons, values), tmp_path / "west.nc")
    for lon in (-3.7038, 356.2962, 0.1, 359.9, 179.9, -179.9):
        pd.testing.assert_frame_equal(
            point_table(east, 40.4168, lon), point_table(west, 40.4168, lon)
        )
    # across the seam: halfway between 359.75 and 0.0
    halfway = point_table(east, 40.0, 359.875)["t2m"].to_numpy()
    np.testing.assert_allclose(halfway, 0.5 * (values[:, 0, -1] + values[:, 0, 0]))


@settings(max_examples=30, deadline=None)
@given(
    lat=st.floats(40.0, 41.0),
    lon=st.floats(-4.0, -3.0),
    gradient=st.tuples(st.floats(-5, 5), st.floats(-5, 5)),
)
def test_bilinear_is_exact_on_linear_fields(
    lat: float, lon: float, gradient: tuple[float, float]
) -> None:
    lats = np.array([41.0, 40.75, 40.5, 40.25, 40.0])  # descending, as ERA5
    lons = np.arange(-4.0, -2.99, 0.25)
    field = 280 + gradient[0] * (lats[:, None] - 40) + gradient[1] * (lons[None, :] + 4)
    ds = xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), field[None])},
        coords={
            "time": [np.datetime64("2024-03-01T00", "ns")],
            "latitude": lats,
            "longitude": lons,
        },
    ).assign_coords(expver=("time", ["0001"]))
    got = float(interpolate_point(ds.sortby("latitude"), lat, lon)["t2m"][0])
    assert got == pytest.approx(280 + gradient[0] * (lat - 40) + gradient[1] * (lon + 4), abs=1e-9)


def test_old_layout_with_expver_dimension_is_merged_final_first(tmp_path: Path) -> None:
    lats = np.array([40.0, 40.5])
    lons = np.array([-4.0, -3.5])
    times = np.array(["2024-03-01T00", "2024-03-01T01", "2024-03-01T02"], dtype="datetime64[ns]")
    final = np.full((3, 2, 2), 280.0)
    final[2] = np.nan  # the last hour is only in ERA5T
    era5t = np.full((3, 2, 2), np.nan)
    era5t[2] = 281.0
    ds = xr.Dataset(
        {"t2m": (("time", "expver", "latitude", "longitude"), np.stack([final, era5t], axis=1))},
        coords={"time": times, "expver": [1, 5], "latitude": lats, "longitude": lons},
    )
    path = tmp_path / "old.nc"
    ds.to_netcdf(path)
    (decoded,) = open_era5(path)
    assert list(decoded["expver"].values) == ["0001", "0001", "0005"]
    table = combine([point_values(decoded, 40.2, -3.8)])
    assert table["t2m"].tolist() == pytest.approx([280.0, 280.0, 281.0])
    assert table["expver"].tolist() == ["0001", "0001", "0005"]


def test_combine_prefers_final_over_era5t_whatever_the_order() -> None:
    def long(value: float, expver: str, source: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "time": [pd.Timestamp("2024-03-01T00", tz="UTC")],
                "column": ["t2m"],
                "value": [value],
                "expver": [expver],
                "source_file": [source],
            }
        )

    a, b = long(281.0, "0005", "z_era5t.nc"), long(280.0, "0001", "a_final.nc")
    for tables in ([a, b], [b, a]):
        merged = combine(tables)
        assert merged["t2m"].tolist() == [280.0]
        assert merged["expver"].tolist() == ["0001"]
        assert merged["source_file"].tolist() == ["a_final.nc"]
