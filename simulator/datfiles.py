"""``.dat`` files as bytes: the comment line, the formatted events, injected damage; daily
``.dat.tar.gz`` archives; per-event truth as Parquet.

Line numbers are 1-based physical lines of the file, counting the ``# param_hash=`` comment line
(line 1), so the first event is on line 2.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.dat_format import TRIGGER_TYPES
from simulator.damage import CATEGORY, choose_kinds, damage_line, truncate_line
from simulator.events import HourEvents
from simulator.formatting import format_event_lines

#: gzip level of the daily archives (1: fast; the content is the same at any level).
ARCHIVE_GZIP_LEVEL = 1
_TAR_BLOCK = 512
_TAR_RECORD = 10240


@dataclass
class RenderedFile:
    """A ``.dat`` file ready to be written.

    Attributes
    ----------
    name : str
        File name.
    chunks : list of bytes-like
        The content, in order (memoryviews may point into a per-thread buffer: write them before
        the same thread renders again).
    size : int
        Bytes.
    lines : int
        Physical lines (a last line without newline counts).
    event_line : numpy.ndarray [n]
        Line of each event.
    event_damage : dict of int to str
        Damage kind of the line of each damaged event (by event index).
    damaged : list of (line, kind)
        Damaged lines.
    valid_events : dict
        Valid event lines per trigger type (keys "1", "2").
    """

    name: str
    chunks: list[Any]
    size: int
    lines: int
    event_line: np.ndarray
    event_damage: dict[int, str]
    damaged: list[tuple[int, str]] = field(default_factory=list)
    valid_events: dict[str, int] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        """Whether the file ends with a truncated line."""
        return any(kind == "truncated_line" for _, kind in self.damaged)

    def content(self) -> bytes:
        """All bytes (a copy)."""
        return b"".join(bytes(c) for c in self.chunks)


def header_line(param_hash: str) -> bytes:
    """The first line of every simulated file."""
    return f"# param_hash={param_hash}\n".encode("ascii")


def render_dat_file(
    events: HourEvents,
    param_hash: str,
    *,
    damage_fraction: float = 0.0,
    rng: np.random.Generator | None = None,
    truncate_last: bool = False,
) -> RenderedFile:
    """Format one hour's events into a file, damaging about ``damage_fraction`` of the event lines.

    Parameters
    ----------
    events : HourEvents
        The file's events in order.
    param_hash : str
        Written as ``# param_hash=<hash>`` on line 1.
    damage_fraction : float
        Each event line is damaged with this probability (binomial count, positions uniform).
    rng : numpy.random.Generator
        Damage stream (needed when damaging or truncating).
    truncate_last : bool
        Cut the last line inside a token and drop its newline.
    """
    n = len(events)
    buf, offsets = format_event_lines(events.epoch_s, events.trigger, events.ticks, reuse=True)
    view = memoryview(buf.data)
    kinds: dict[int, str] = {}  # first (or only) event of each damaged line -> kind
    seconds: set[int] = set()  # second events of glued pairs
    if (damage_fraction > 0 or truncate_last) and rng is None:
        raise ValueError("damage needs a random generator")
    if damage_fraction > 0 and n > 0:
        assert rng is not None
        candidates = n - 1 if truncate_last else n
        n_damage = min(int(rng.binomial(candidates, damage_fraction)), candidates)
        picks = [int(i) for i in np.sort(rng.choice(candidates, size=n_damage, replace=False))]
        picked = set(picks)
        for i, kind in zip(picks, choose_kinds(rng, n_damage), strict=True):
            if i in seconds:
                continue  # already glued to the line before
            if kind == "glued_lines" and (i + 1 >= candidates or i + 1 in picked):
                kind = "missing_field"
            kinds[i] = kind
            if kind == "glued_lines":
                seconds.add(i + 1)
    if truncate_last and n > 0:
        kinds[n - 1] = "truncated_line"

    def line_text(i: int) -> str:
        return bytes(view[offsets[i] : offsets[i + 1] - 1]).decode("ascii")

    chunks: list[Any] = [header_line(param_hash)]
    event_damage: dict[int, str] = {}
    damaged: list[tuple[int, str]] = []
    glued_first: list[int] = []
    cursor = 0
    assert rng is not None or not kinds
    for i in sorted(kinds):
        kind = kinds[i]
        chunks.append(view[offsets[cursor] : offsets[i]])
        line_no = 2 + i - len(glued_first)
        if kind == "truncated_line":
            assert rng is not None
            chunks.append(truncate_line(line_text(i), rng).encode("ascii"))
            event_damage[i] = kind
            damaged.append((line_no, kind))
            cursor = i + 1
            continue
        assert rng is not None
        if kind == "glued_lines":
            text = damage_line(line_text(i), kind, rng, next_line=line_text(i + 1))
            event_damage[i] = event_damage[i + 1] = kind
            glued_first.append(i)
            cursor = i + 2
        else:
            text = damage_line(line_text(i), kind, rng)
            event_damage[i] = kind
            cursor = i + 1
        chunks.append((text + "\n").encode("ascii"))
        damaged.append((line_no, kind))
    chunks.append(view[offsets[cursor] : offsets[n]])
    # glued pairs share the line of their first event
    idx = np.arange(n)
    event_line = 2 + idx - np.searchsorted(np.array(glued_first, np.int64), idx, side="left")
    size = sum(len(c) for c in chunks)
    ok = np.ones(n, bool)
    ok[list(event_damage)] = False
    valid = {str(t): int(np.count_nonzero(ok & (events.trigger == t))) for t in TRIGGER_TYPES}
    lines = 1 + n - len(glued_first)
    return RenderedFile(
        events.window.name, chunks, size, lines, event_line, event_damage, damaged, valid
    )


def write_file(path: Path, chunks: Iterable[Any]) -> None:
    """Write chunks to ``path`` (through a temporary name, renamed when complete)."""
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
    tmp.replace(path)


def tar_member_gz(
    name: str, chunks: Sequence[Any], size: int, mtime: int, level: int = ARCHIVE_GZIP_LEVEL
) -> bytes:
    """One tar member (header, data, padding) as a complete gzip member.

    Concatenated gzip members form one valid gzip stream (RFC 1952 §2.2), so a daily archive is
    these members followed by :func:`tar_end_gz`.
    """
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    info.uname = info.gname = "rpcuser"
    info.uid = info.gid = 1000
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    parts = [comp.compress(info.tobuf(format=tarfile.GNU_FORMAT))]
    parts.extend(comp.compress(chunk) for chunk in chunks)
    pad = (-size) % _TAR_BLOCK
    parts.append(comp.compress(b"\0" * pad))
    parts.append(comp.flush())
    return b"".join(parts)


def tar_end_gz(members_uncompressed_size: int, level: int = ARCHIVE_GZIP_LEVEL) -> bytes:
    """End-of-archive blocks, padded to tar's 10240-byte record, as a gzip member."""
    total = members_uncompressed_size + 2 * _TAR_BLOCK
    pad = 2 * _TAR_BLOCK + (-total) % _TAR_RECORD
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    return comp.compress(b"\0" * pad) + comp.flush()


def tar_member_size(size: int) -> int:
    """Uncompressed bytes of a member: header block plus padded data."""
    return _TAR_BLOCK + size + (-size) % _TAR_BLOCK


def corrupt_archive_bytes(member_name: str, content: bytes, keep_fraction: float = 0.5) -> bytes:
    """A tar.gz of one member, truncated: decompression fails before the member is complete."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(member_name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    comp = zlib.compressobj(ARCHIVE_GZIP_LEVEL, zlib.DEFLATED, 31)
    data = comp.compress(raw.getvalue()) + comp.flush()
    return data[: max(64, int(len(data) * keep_fraction))]


def truth_table(events: HourEvents, rendered: RenderedFile) -> pa.Table:
    """Per-event truth of one file, keyed by line number."""
    t = events.truth
    columns: dict[str, Any] = {
        "line": pa.array(rendered.event_line, pa.int32()),
        "time": pa.array(t["time_s"].astype("datetime64[s]"), pa.timestamp("s", tz="UTC")),
        "trigger_type": pa.array(t["trigger_type"], pa.int8()),
    }
    for name in (
        "x_p1",
        "x_p2",
        "x_p3",
        "x_p4",
        "y_p1",
        "y_p2",
        "y_p3",
        "y_p4",
        "theta_deg",
        "phi_deg",
    ):
        columns[name] = pa.array(t[name].astype(np.float32), pa.float32())
    for name in ("hit_mask", "avalanche_mask", "pairs_fired"):
        columns[name] = pa.array(t[name], pa.uint8())
    columns["planes_hit"] = pa.DictionaryArray.from_arrays(
        pa.array(t["hit_mask"].astype(np.int8), pa.int8()), pa.array(_TOPOLOGIES, pa.string())
    )
    columns["t_event_ns"] = pa.array(t["t_event_ns"].astype(np.float32), pa.float32())
    codes = np.zeros(len(events), np.int8)
    for i, kind in rendered.event_damage.items():
        codes[i] = _DAMAGE_CODES[kind]
    columns["damage"] = pa.DictionaryArray.from_arrays(
        pa.array(codes, pa.int8()), pa.array(_DAMAGE_NAMES, pa.string())
    )
    return pa.table(columns)


#: Topology string of each 4-bit plane mask ("1234", "13", "" ...).
_TOPOLOGIES = ["".join(str(k + 1) for k in range(4) if m >> k & 1) for m in range(16)]
_DAMAGE_NAMES = ["", *CATEGORY]
_DAMAGE_CODES = {name: i for i, name in enumerate(_DAMAGE_NAMES)}


def write_truth_table(path: Path, table: pa.Table) -> None:
    """Write a per-event truth table as Parquet (zstd)."""
    tmp = path.with_name(f".{path.name}.part")
    dictionary = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
    pq.write_table(
        table,
        tmp,
        compression="zstd",
        compression_level=1,
        use_dictionary=dictionary,
        write_statistics=["line", "time"],
    )
    tmp.replace(path)
