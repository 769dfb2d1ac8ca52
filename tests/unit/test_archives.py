"""Daily archives are used whole or refused whole, with the reason."""

from __future__ import annotations

import io
import tarfile

import pytest

from services.ingest.archives import ArchiveError, read_dat_archive

pytestmark = pytest.mark.unit


def _archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_members_are_returned_by_file_name() -> None:
    data = _archive({"day/mi0124061000003.dat": b"a\n", "mi0124061010003.dat": b"b\n"})
    assert read_dat_archive(data) == [
        ("mi0124061000003.dat", b"a\n"),
        ("mi0124061010003.dat", b"b\n"),
    ]


def test_a_truncated_archive_is_refused_whole() -> None:
    data = _archive({"mi0124061000003.dat": b"x" * 100_000, "mi0124061010003.dat": b"y\n"})
    with pytest.raises(ArchiveError, match="cannot unpack"):
        read_dat_archive(data[: len(data) // 2])


def test_an_archive_with_other_files_is_refused() -> None:
    with pytest.raises(ArchiveError, match=r"unexpected member 'notes\.txt'"):
        read_dat_archive(_archive({"mi0124061000003.dat": b"a\n", "notes.txt": b"hi"}))
