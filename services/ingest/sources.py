"""Where a station's files are read from: a local directory or the station PC over SFTP.

Both sources list and read files the same way, so everything after the listing is one code path.
SSH host keys are always verified against known_hosts (never added automatically).
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import paramiko
from pydantic import SecretStr

from services.common.stations import StationSource

log = logging.getLogger(__name__)


class SourceUnavailableError(Exception):
    """The station cannot be reached or read now; worth retrying later."""


class HostKeyRejectedError(SourceUnavailableError):
    """The station's SSH host key is unknown or differs from known_hosts: refused."""


@dataclass(frozen=True)
class RemoteFile:
    """A file of the station: name, full path on the source, size [bytes], mtime [s]."""

    name: str
    path: str
    size: int
    mtime: float


class Source(Protocol):
    """What ingest needs from a station: list a directory, read a file from an offset."""

    label: str

    def list(self, relative_dir: str) -> list[RemoteFile]:
        """Regular files in ``root/relative_dir`` (empty if the directory does not exist)."""
        ...

    def read(self, file: RemoteFile, offset: int = 0) -> bytes:
        """Bytes of ``file`` from ``offset`` up to its listed size, all of them.

        Raises SourceUnavailableError when fewer arrive (connection lost, file truncated).
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class LocalSource:
    """A station directory on the local file system."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.label = f"local:{self.root}"

    def list(self, relative_dir: str) -> list[RemoteFile]:
        directory = self.root / relative_dir
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SourceUnavailableError(f"{directory}: {exc.strerror}") from exc
        files = []
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False):
                    info = entry.stat()
                    files.append(RemoteFile(entry.name, entry.path, info.st_size, info.st_mtime))
            except FileNotFoundError:
                # renamed or removed since the listing (a station renames a finished
                # .part file; logs move to done/): the next poll sees its new name
                continue
        return files

    def read(self, file: RemoteFile, offset: int = 0) -> bytes:
        try:
            with open(file.path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(max(file.size - offset, 0))
        except OSError as exc:
            raise SourceUnavailableError(f"{file.path}: {exc.strerror}") from exc
        return _complete(data, file, offset, self.label)

    def close(self) -> None:
        """Nothing to release."""


@dataclass(frozen=True)
class SshTarget:
    """Resolved connection parameters of an SFTP station."""

    host: str
    port: int
    user: str | None
    key_file: str | None
    known_hosts: str


def resolve_ssh_target(source: StationSource, ssh_config: Path | None) -> SshTarget:
    """Connection parameters from the station entry, falling back to ``~/.ssh/config``.

    The station's ``host`` may be an alias (``mingo01``) whose HostName, Port, User, IdentityFile
    and UserKnownHostsFile come from the ssh config, as the network's operators already have them.
    """
    assert source.host is not None
    entry: dict[str, object] = {}
    if ssh_config is not None and ssh_config.exists():
        entry = dict(paramiko.SSHConfig.from_path(str(ssh_config)).lookup(source.host))
    identity = entry.get("identityfile")
    known = entry.get("userknownhostsfile")
    known_default = str(known).split()[0] if known else "~/.ssh/known_hosts"
    return SshTarget(
        host=str(entry.get("hostname", source.host)),
        port=source.port or int(str(entry.get("port", 22))),
        user=source.user or (str(entry["user"]) if "user" in entry else None),
        key_file=source.key_file or (str(identity[0]) if isinstance(identity, list) else None),
        known_hosts=os.path.expanduser(source.known_hosts or known_default),
    )


class SftpSource:
    """A station PC reached over SFTP with key authentication and verified host keys."""

    def __init__(
        self,
        source: StationSource,
        ssh_config: Path | None,
        timeout_s: float = 15.0,
        passphrase: SecretStr | None = None,
    ):
        self.target = resolve_ssh_target(source, ssh_config)
        self._passphrase = passphrase
        self.root = source.root
        self.timeout_s = timeout_s
        self.label = f"sftp:{self.target.user or ''}@{self.target.host}:{self.target.port}"
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def _connect(self) -> paramiko.SFTPClient:
        if self._sftp is not None:
            return self._sftp
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.load_host_keys(self.target.known_hosts)
        except OSError as exc:
            raise HostKeyRejectedError(
                f"{self.label}: cannot read known_hosts {self.target.known_hosts}: {exc.strerror}"
            ) from exc
        try:
            client.connect(
                self.target.host,
                port=self.target.port,
                username=self.target.user,
                key_filename=self.target.key_file,
                passphrase=self._passphrase.get_secret_value() if self._passphrase else None,
                timeout=self.timeout_s,
                banner_timeout=self.timeout_s,
                auth_timeout=self.timeout_s,
                allow_agent=False,
                look_for_keys=self.target.key_file is None,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyRejectedError(
                f"{self.label}: the host key ({exc.key.get_name()}) differs from the one in "
                f"{self.target.known_hosts}; refusing to connect (possible man-in-the-middle; "
                "if the station was reinstalled, update known_hosts)"
            ) from exc
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyRejectedError(
                    f"{self.label}: host key not in {self.target.known_hosts}; refusing to "
                    "connect (add it with ssh-keyscan after checking its fingerprint)"
                ) from exc
            raise SourceUnavailableError(f"{self.label}: {exc}") from exc
        except OSError as exc:
            client.close()
            raise SourceUnavailableError(f"{self.label}: {exc}") from exc
        self._client = client
        self._sftp = client.open_sftp()
        # Without a channel timeout a request to a station that vanished mid-session never returns.
        self._sftp.get_channel().settimeout(self.timeout_s)  # type: ignore[union-attr]
        return self._sftp

    def list(self, relative_dir: str) -> list[RemoteFile]:
        directory = posixpath.join(self.root, relative_dir)
        try:
            entries = self._connect().listdir_attr(directory)
        except FileNotFoundError:
            return []
        except (OSError, paramiko.SSHException) as exc:
            self.close()
            raise SourceUnavailableError(f"{self.label}:{directory}: {exc}") from exc
        return [
            RemoteFile(
                e.filename, posixpath.join(directory, e.filename), e.st_size or 0, e.st_mtime or 0
            )
            for e in entries
            if e.st_mode is not None and stat.S_ISREG(e.st_mode)
        ]

    def read(self, file: RemoteFile, offset: int = 0) -> bytes:
        try:
            with self._connect().open(file.path, "rb") as handle:
                data = _read_pipelined(handle, offset, max(file.size - offset, 0))
        except (OSError, paramiko.SSHException, EOFError, TimeoutError) as exc:
            self.close()
            raise SourceUnavailableError(f"{self.label}:{file.path}: {exc}") from exc
        if len(data) < file.size - offset:
            # paramiko's read turns a server's end-of-file answer into a short result, not an
            # error; the session is suspect, so the next attempt opens a new one
            self.close()
        return _complete(data, file, offset, self.label)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self._sftp = None


#: SFTP read requests kept in flight per batch (32 kB each, 8 MB; OpenSSH's sftp keeps 64).
_READ_BATCH = 256


def _read_pipelined(handle: paramiko.SFTPFile, offset: int, size: int) -> bytes:
    """``size`` bytes of an open remote file from ``offset``, read in pipelined batches.

    Two costs of paramiko are avoided (bench/README.md, "Ingest"): ``read(size)`` of a large
    ``size`` grows its buffer by ``bytes +=`` one 32 kB block at a time, quadratic in the file
    size (an 84 MB archive took 160 s); and ``prefetch`` of a whole file runs its requests in a
    thread that, when the reader catches up with it on a busy CPU, marks the prefetch done too
    early, after which every remaining block is one synchronous round trip (5 MB/s). ``readv``
    of bounded batches keeps the requests pipelined and limits such a stall to one batch.
    """
    block = handle.MAX_REQUEST_SIZE
    out = bytearray()
    end = offset + size
    while offset < end:
        stop = min(end, offset + block * _READ_BATCH)
        spans = [(start, min(block, stop - start)) for start in range(offset, stop, block)]
        for (_, length), data in zip(spans, handle.readv(spans), strict=True):
            out += data
            if len(data) < length:
                return bytes(out)  # connection lost or file shrank: the caller decides
        offset = stop
    return bytes(out)


def _complete(data: bytes, file: RemoteFile, offset: int, label: str) -> bytes:
    """``data`` if it holds every byte of ``file`` from ``offset`` to its listed size.

    A short read is never passed on as the file: published as complete, the lost tail would never
    be read again. The next poll lists the file anew and reads it whole.
    """
    expected = max(file.size - offset, 0)
    if len(data) < expected:
        raise SourceUnavailableError(
            f"{label}:{file.path}: read {len(data)} of {expected} bytes from offset {offset} "
            "(connection lost or file truncated while reading); retrying later"
        )
    return data


def open_source(
    source: StationSource, ssh_config: Path | None, passphrase: SecretStr | None = None
) -> Source:
    """The source object for a station's configuration (connects lazily).

    ``passphrase`` unlocks an encrypted private key; it is held as a SecretStr and never logged.
    """
    if source.kind == "local":
        return LocalSource(source.root)
    return SftpSource(source, ssh_config, passphrase=passphrase)
