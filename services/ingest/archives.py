"""Daily ``.dat.tar.gz`` archives of a station: all or nothing, pure (bytes in, members out)."""

from __future__ import annotations

import io
import posixpath
import tarfile


class ArchiveError(ValueError):
    """The archive cannot be used; the message says why (it is rejected whole)."""


def read_dat_archive(data: bytes) -> list[tuple[str, bytes]]:
    """Every member of a daily archive as (``.dat`` file name, content).

    Raises
    ------
    ArchiveError
        If the archive cannot be unpacked or holds anything but ``.dat`` files. A damaged archive
        is refused whole, so that none of its members is published twice or half.
    """
    members: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                name = posixpath.basename(member.name)
                extracted = tar.extractfile(member) if member.isfile() else None
                if extracted is None or not name.endswith(".dat"):
                    raise ArchiveError(
                        f"unexpected member {member.name!r} (only .dat files belong here)"
                    )
                members.append((name, extracted.read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"cannot unpack: {exc}") from None
    return members
