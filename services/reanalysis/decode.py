"""Decoding ERA5 files (GRIB, NetCDF old and new layouts, ZIP archives) into one normal form.

Whatever the CDS delivered, :func:`open_era5` returns datasets with

- dimension ``time`` (datetime64, UTC, the *valid* time of the instantaneous fields),
- optional dimension ``level`` (pressure level [hPa]) for pressure-level variables,
- ``latitude`` ascending and ``longitude`` ascending in [-180, 180) [deg],
- a coordinate ``expver`` along ``time`` (``"0001"`` final ERA5, ``"0005"`` ERA5T),
- the ERA5 short names as variable names (``t2m``, ``sp``, ``t``, ``z``) in the file's units,
- the attribute ``source_file`` (the file name; ``archive.zip:member`` inside archives),

all loaded in memory (the files are closed). Layouts handled: new CDS NetCDF (``valid_time``,
``pressure_level``), old CDS NetCDF (``time``, ``level``, ``expver`` as a dimension when ERA5 and
ERA5T were mixed), cfgrib (``time`` with ``valid_time``/``step``, ``isobaricInhPa``), ensemble
files (``number``: member 0 is taken), scalar times. A file without any ``expver`` information is
taken as final ERA5 (``"0001"``).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import xarray as xr

log = logging.getLogger(__name__)

#: The expver of final ERA5 and of ERA5T (the near-real-time preliminary data).
EXPVER_FINAL = "0001"
EXPVER_ERA5T = "0005"

_LEVEL_NAMES = ("pressure_level", "isobaricInhPa", "level")
_GRIB_MAGIC = b"GRIB"
_ZIP_MAGIC = b"PK\x03\x04"
_NETCDF_MAGICS = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF")


class Era5FileError(ValueError):
    """A file that is not a readable ERA5 file; the message names the file and the reason."""


def open_era5(path: str | Path) -> list[xr.Dataset]:
    """Decode an ERA5 file (GRIB, NetCDF or a ZIP of them) into normalised datasets.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    list of xarray.Dataset
        One dataset per homogeneous group of fields (a GRIB file mixing level types gives
        several), in the normal form of the module docstring.

    Raises
    ------
    Era5FileError
        If the file is missing, empty, corrupt, of an unknown format or has no gridded field.
    """
    path = Path(path)
    return _open(path, path.name)


def _open(path: Path, label: str) -> list[xr.Dataset]:
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise Era5FileError(f"{label}: cannot read: {exc.strerror}") from None
    if not magic:
        raise Era5FileError(f"{label}: empty file")
    if magic == _ZIP_MAGIC:
        return _open_zip(path, label)
    if magic == _GRIB_MAGIC:
        raw = _read_grib(path, label)
    elif magic in _NETCDF_MAGICS:
        raw = [_read_netcdf(path, label)]
    else:
        raise Era5FileError(f"{label}: unknown format (neither GRIB, NetCDF nor ZIP)")
    datasets = [_normalise(ds, label) for ds in raw]
    datasets = [ds for ds in datasets if ds.data_vars]
    if not datasets:
        raise Era5FileError(f"{label}: no gridded ERA5 field in the file")
    return datasets


def _open_zip(path: Path, label: str) -> list[xr.Dataset]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise Era5FileError(f"{label}: corrupt ZIP archive: {exc}") from None
    datasets: list[xr.Dataset] = []
    with archive, tempfile.TemporaryDirectory(prefix="era5-zip-") as tmp:
        for member in sorted(archive.namelist()):
            if member.endswith("/"):
                continue
            try:
                extracted = Path(archive.extract(member, tmp))
            except (zipfile.BadZipFile, OSError) as exc:
                raise Era5FileError(f"{label}:{member}: cannot unpack: {exc}") from None
            datasets.extend(_open(extracted, f"{label}:{member}"))
    if not datasets:
        raise Era5FileError(f"{label}: empty ZIP archive")
    return datasets


def _read_grib(path: Path, label: str) -> list[xr.Dataset]:
    import cfgrib  # imported here: eccodes loads a shared library

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            datasets = cfgrib.open_datasets(
                str(path),
                backend_kwargs={"indexpath": "", "read_keys": ["expver"], "errors": "raise"},
            )
            return [ds.load() for ds in datasets]
    except Exception as exc:  # eccodes raises its own hierarchy; anything here means unreadable
        raise Era5FileError(f"{label}: corrupt or unreadable GRIB: {exc}") from None


def _read_netcdf(path: Path, label: str) -> xr.Dataset:
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            return ds.load()
    except Exception as exc:  # netCDF4/HDF5 errors have no common base class
        raise Era5FileError(f"{label}: corrupt or unreadable NetCDF: {exc}") from None


def _expver_text(value: object) -> str:
    """``1``, ``b'0001'``, ``'0001'``, ``'1'`` -> ``'0001'``."""
    if isinstance(value, bytes):
        value = value.decode()
    text = str(value).strip()
    try:
        return f"{int(float(text)):04d}"
    except ValueError:
        return text


def _normalise(ds: xr.Dataset, label: str) -> xr.Dataset:
    if "latitude" not in ds.dims or "longitude" not in ds.dims:
        raise Era5FileError(f"{label}: not a regular latitude/longitude grid")
    lats = ds["latitude"].values
    # A NetCDF-3 file cut short still opens, its missing coordinates read as zeros.
    if not np.all(np.isfinite(lats)) or np.unique(lats).size != lats.size:
        raise Era5FileError(f"{label}: latitudes repeat or are not finite (corrupt or cut file?)")
    ds = _first_member(ds)
    ds = _valid_time(ds, label)
    ds = _merge_expver(ds)
    for name in _LEVEL_NAMES:
        if name in ds.dims:
            ds = ds.rename({name: "level"})
            break
    ds = _normalise_grid(ds)
    keep = {"time", "level", "latitude", "longitude", "expver"}
    ds = ds.drop_vars([c for c in ds.coords if c not in keep])
    ds.attrs = {"source_file": label}
    return ds


def _first_member(ds: xr.Dataset) -> xr.Dataset:
    """Ensemble files: member 0 (the control, or the first member if there is no 0)."""
    if "number" not in ds.dims:
        return ds
    members = ds["number"].values
    index = int(np.flatnonzero(members == 0)[0]) if np.any(members == 0) else 0
    return ds.isel(number=index)


def _valid_time(ds: xr.Dataset, label: str) -> xr.Dataset:
    """Make ``time`` the dimension of valid times (cfgrib: time + step; new CDS: valid_time)."""
    if "step" in ds.dims:
        if ds.sizes["step"] != 1:
            raise Era5FileError(f"{label}: forecast steps are not supported (analysis fields only)")
        ds = ds.isel(step=0)
    if "valid_time" in ds.dims:
        return ds.drop_vars([v for v in ("time",) if v in ds.variables]).rename(
            {"valid_time": "time"}
        )
    valid = ds["valid_time"] if "valid_time" in ds.variables else ds.get("time")
    if valid is None:
        raise Era5FileError(f"{label}: no time coordinate")
    if "time" in ds.dims:
        return ds.assign_coords(time=("time", np.asarray(valid.values).reshape(-1)))
    ds = ds.drop_vars([v for v in ("time", "valid_time") if v in ds.variables])
    return ds.expand_dims(time=[np.asarray(valid.values).reshape(())[()]])


def _merge_expver(ds: xr.Dataset) -> xr.Dataset:
    """One ``expver`` per time; an ``expver`` dimension (old CDS NetCDF) is merged, final first."""
    if "expver" in ds.dims:
        versions = [_expver_text(v) for v in ds["expver"].values]
        order = sorted(range(len(versions)), key=lambda i: versions[i] != EXPVER_FINAL)
        merged = ds.isel(expver=order[0]).drop_vars("expver")
        chosen = np.full(ds.sizes["time"], versions[order[0]], dtype=object)
        first_var = next(iter(ds.data_vars))
        for i in order[1:]:
            other = ds.isel(expver=i).drop_vars("expver")
            missing = (
                merged[first_var]
                .isnull()
                .all(dim=[d for d in merged[first_var].dims if d != "time"])
            )
            merged = merged.where(~missing, other)
            chosen[missing.values] = versions[i]
        return merged.assign_coords(expver=("time", chosen))
    if "expver" in ds.variables:
        values = np.broadcast_to(ds["expver"].values, (ds.sizes["time"],))
        return ds.assign_coords(expver=("time", np.array([_expver_text(v) for v in values])))
    attrs = [ds[v].attrs.get("GRIB_expver") for v in ds.data_vars]
    found = next((a for a in attrs if a is not None), EXPVER_FINAL)
    return ds.assign_coords(
        expver=("time", np.full(ds.sizes["time"], _expver_text(found), dtype=object))
    )


def _normalise_grid(ds: xr.Dataset) -> xr.Dataset:
    """Longitudes to [-180, 180) ascending without duplicates, latitudes ascending."""
    lon = ((ds["longitude"].values.astype(np.float64) + 180.0) % 360.0) - 180.0
    ds = ds.assign_coords(longitude=lon)
    _, unique = np.unique(lon, return_index=True)
    ds = ds.isel(longitude=np.sort(unique))
    return ds.sortby(["latitude", "longitude"])
