"""Real ERA5 sample files from the cfgrib source distribution on PyPI, fetched once and cached.

``pip download --no-deps --no-binary :all: cfgrib==0.9.15.1`` into
``~/.cache/mingo-dataflow/cfgrib-samples``; the ``era5-*`` files of ``tests/sample-data`` are
unpacked beside it. Tests that need them are skipped, with the reason, only when PyPI cannot be
reached and nothing is cached.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

CFGRIB_VERSION = "0.9.15.1"
CACHE_DIR = Path("~/.cache/mingo-dataflow/cfgrib-samples").expanduser()
SAMPLE_NAMES = (
    "era5-levels-members.grib",
    "era5-levels-members.nc",
    "era5-single-level-scalar-time.grib",
    "era5-levels-corrupted.grib",
)


def _download_sdist(cache: Path) -> Path:
    sdist = cache / f"cfgrib-{CFGRIB_VERSION}.tar.gz"
    if sdist.is_file():
        return sdist
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "-d",
        str(cache),
        f"cfgrib=={CFGRIB_VERSION}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0 or not sdist.is_file():
        pytest.skip(f"cfgrib sdist not downloadable from PyPI (offline?): {done.stderr[-300:]}")
    return sdist


def sample_dir(cache: Path = CACHE_DIR) -> Path:
    """Directory holding the ERA5 sample files (downloaded and unpacked on first use)."""
    target = cache / "sample-data"
    if all((target / name).is_file() for name in SAMPLE_NAMES):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    sdist = _download_sdist(cache)
    target.mkdir(exist_ok=True)
    with tarfile.open(sdist) as archive:
        for name in SAMPLE_NAMES:
            member = archive.getmember(f"cfgrib-{CFGRIB_VERSION}/tests/sample-data/{name}")
            source = archive.extractfile(member)
            assert source is not None
            part = target / f".{name}.part"
            part.write_bytes(source.read())
            part.replace(target / name)
    return target
