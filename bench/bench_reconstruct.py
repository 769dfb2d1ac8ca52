"""Benchmark of reconstruct: the per-event kernel and the chunk path, on simulated station events.

1. Data: one station-day of ``mingo simulate`` (8 Hz by default), parsed with the ingest parser;
   the coincidence events, tiled to ``--events`` rows, are reconstructed with the calibration of
   the whole day (what ``reconstruct_files`` computes for the day's last file).
2. Kernels on one core with preallocated outputs: ``_kernels.rates_kernel`` (status, hits,
   topology, event charge, fit, fiducial planes, region: what the per-minute tally needs) and
   ``_kernels.reconstruct_kernel`` (the same plus x, y, t, q per plane, θ, φ, χ², streamer flag),
   timed interleaved (one round runs each variant once; best of ``--repeat`` rounds), as wall time
   and as the thread's CPU time (``time.thread_time``: on a shared machine it leaves out the time
   the thread waits for a core). ``--kernel-baseline FILE`` adds both kernels of an older
   ``_kernels.py`` to the rounds and checks that their outputs are bit-identical to this tree's.
   Also ``events.reconstruct_events`` and ``events.reconstruct_rates`` (validation + allocation
   + kernel), the event-status pass alone, a pass that only reads every value once (the least a
   kernel can cost), and the memory-bandwidth limit: bandwidth of ``np.copyto`` on one core /
   bytes per event read and written.
3. Chunk path: Arrow IPC chunks of ``--chunk`` events (``schemas.events.encode_events``, as ingest
   publishes them) → ``decode_events`` → ``channel_matrix`` → ``reconstruct_rates`` +
   ``tally_chunk`` (kernel + per-minute tally) with a fixed calibration → ``merge_tallies`` →
   ``minute_records``; time per stage. Then the wire formats: the day's chunk messages to
   (n, 64) matrices with this tree's codec, its layout with lz4 buffers and (with
   ``--baseline``) the revision's codec, in thread CPU per event, with bytes per event.
4. Station stream: the day's files as ingest's chunk messages (both trigger types) through
   ``StationStream.add``, as the service runs them: chunk decoding, the calibration from the
   station's pool, reconstruction, tally and minute records; time per stage. With
   ``--baseline REV``, the ``StationStream`` of that git revision (its calibration, minutes,
   pipeline and stream modules, and its wire codec ``schemas/events.py``: each stream decodes the
   day's chunks encoded by its own codec) runs interleaved with this tree's, ``--stream-repeat``
   times each, so that a loaded machine affects both alike (the wire formats of 3. are measured
   first); then this tree's ``StoredStation`` (the service's state encoding) on a dict state,
   with the bytes it writes (what the changelog carries).
5. Memory (``--memory``): the day's coincidence events as 24 hourly files, as one file of the
   day, and as one file of ``--memory-days`` days (the day repeated, times shifted), their chunk
   messages made one at a time, through this tree's ``StationStream``: the peak of traced
   allocations (tracemalloc) against the bound the configuration sets (``memory_bound``).

    python bench/bench_reconstruct.py                       # 4 M events, ingest's chunks (4096)
    python bench/bench_reconstruct.py --stream-only --baseline main   # only 4., main vs this tree
    python bench/bench_reconstruct.py --memory --memory-days 10       # only 5.
    python bench/bench_reconstruct.py --kernel-only --kernel-baseline old_kernels.py   # only 2.
    python bench/bench_reconstruct.py --events 2000000 --chunk 8192 --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from types import ModuleType

import numba as nb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.dat_format import TRIGGER_COINCIDENCE
from schemas.events import (
    channel_matrix,
    decode_events,
    encode_events,
    envelope_from_headers,
    envelope_headers,
)
from services.common.stations import ReconstructionConfig, load_network
from services.ingest.chunking import MAX_CHUNK_EVENTS, chunk_envelopes, plan_chunks
from services.ingest.dat_parser import parse_dat
from services.ingest.publish import Outgoing, event_chunk_messages
from services.reconstruct import _kernels as k
from services.reconstruct import stream as stream_module
from services.reconstruct.calibration import Calibration, CalibrationPool, calibrate
from services.reconstruct.cli import load_dat
from services.reconstruct.events import (
    TRACK_CHI2_MAX,
    EventRates,
    EventResult,
    _empty,
    kernel_inputs,
    kernel_params,
    rates_outputs,
    reconstruct_events,
    reconstruct_rates,
)
from services.reconstruct.minutes import (
    NO_LIMIT,
    FileCover,
    MinuteTally,
    merge_tallies,
    minute_records,
    second_counts,
    tally_chunk,
)
from services.reconstruct.state import StoredStation
from services.reconstruct.stream import StationStream, chunk_from_message
from simulator.run import SimulationRequest, run_batch

Z_MM = (0.0, 150.0, 300.0, 450.0)


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def simulated_events(
    rate_hz: float, chunk: int, stations: tuple[int, ...] = (0,)
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Outgoing]]:
    """Times, line numbers and channels of the coincidence events of one simulated station-day,
    and the day's raw chunk messages as ingest publishes them, as if each of ``stations`` had
    recorded that day (station by station, files in time order)."""
    network = load_network()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sim"
        request = SimulationRequest(
            out=out,
            stations=(network.station(0),),
            start=date(2024, 3, 1),
            days=1,
            rate_hz=rate_hz,
            seed=11,
            workers=1,
        )
        truth = run_batch(request)
        entry = truth["stations"]["0"]
        paths = [
            out / f["path"]
            for _, f in sorted(entry["files"].items())
            if f["path"] and f["readable"] and f["events"]
        ]
        files = [load_dat(p) for p in paths]
        parsed = [parse_dat(p.read_bytes()) for p in paths]
        messages = [
            m
            for station in stations
            for p, f, result in zip(paths, files, parsed, strict=True)
            for m in event_chunk_messages(station, p.name, f.start_s, result, chunk)
        ]
    time_s = np.concatenate([f.time_s[f.trigger_type == TRIGGER_COINCIDENCE] for f in files])
    line = np.concatenate([f.line[f.trigger_type == TRIGGER_COINCIDENCE] for f in files])
    channels = np.concatenate([f.channels[f.trigger_type == TRIGGER_COINCIDENCE] for f in files])
    return time_s, line, channels, messages


_BASELINE_MODULES = (
    "calibration",
    "minutes",
    "pipeline",
    "stream",
    "events",
    "_calibration_kernels",
    "_tally_kernels",
)


def baseline_stream_class(ref: str) -> type:
    """``StationStream`` of the git revision ``ref``: its reconstruct modules and its wire codec
    (``schemas/events.py``, as ``wire``; with its kernel module if it has one) but the event
    kernels (``_kernels``, this tree's) loaded from ``git show`` under other names, so that the
    old and the new path run interleaved in one process, each decoding its own wire format."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    package = "bench_baseline_reconstruct"
    (tmp / package).mkdir()
    (tmp / package / "__init__.py").write_text("")
    files = {f"services/reconstruct/{name}.py": name for name in _BASELINE_MODULES}
    files |= {"schemas/events.py": "wire", "schemas/_events_kernels.py": "_wire_kernels"}
    renames = {f"services.reconstruct.{name}": name for name in _BASELINE_MODULES}
    renames |= {"schemas.events": "wire", "schemas._events_kernels": "_wire_kernels"}
    for path, name in files.items():
        shown = subprocess.run(
            ["git", "show", f"{ref}:{path}"], cwd=root, capture_output=True, text=True
        )
        if shown.returncode and name == "_wire_kernels":
            continue  # a revision before the sparse wire format has no codec kernels
        shown.check_returncode()
        text = shown.stdout
        for old, new in renames.items():
            text = text.replace(old, f"{package}.{new}")
        (tmp / package / f"{name}.py").write_text(text)
    sys.path.insert(0, str(tmp))
    module = importlib.import_module(f"{package}.stream")
    return module.StationStream  # type: ignore[no-any-return]


def wire_of(stream_class: type) -> ModuleType:
    """The wire codec (``schemas.events`` or a baseline's) that ``stream_class`` decodes with."""
    return sys.modules[sys.modules[stream_class.__module__].decode_events.__module__]


def recoded(messages: list[Outgoing], wire: ModuleType) -> list[Outgoing]:
    """The messages with their values in the wire format of ``wire`` (made before timing)."""
    if wire is sys.modules[decode_events.__module__]:
        return messages
    out = []
    for m in messages:
        table = decode_events(m.value)
        time_s, line = table.column("time_s").to_numpy(), table.column("line").to_numpy()
        value = wire.encode_events(time_s, line, channel_matrix(table))
        out.append(Outgoing(m.topic, m.key, value, m.headers))
    return out


def station_stream(
    messages: list[Outgoing], config: ReconstructionConfig, stream_class: type = StationStream
) -> tuple[list[dict[str, object]], dict[str, float]]:
    """The messages (in the wire format of ``stream_class``'s module) through one StationStream:
    (the minute records, seconds per stage).

    Stages: ``decode`` (Arrow IPC → chunk, the stream module's ``chunk_from_message``), ``add``
    (everything else: calibration, kernel, tally, records); for this tree's stream also, within
    ``add``, the calibration's ``part`` (``chunk_part``), ``equations`` (``tsum_equations``) and
    ``solve``
    (``CalibrationPool.calibration``: merge of the pooled parts, T_sum solution, band),
    ``kernel`` (``reconstruct_rates``, the held chunks' trial included) and ``tally``
    (``tally_chunk``).
    """
    spent = dict.fromkeys(("decode", "add", "part", "equations", "solve", "kernel", "tally"), 0.0)
    timed = stream_class is StationStream
    patches: list[tuple[object, str, Callable[..., object]]] = []

    def timer(owner: object, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            t0 = time.perf_counter()
            result = original(*args, **kwargs)
            elapsed = time.perf_counter() - t0
            spent[stage] += elapsed
            return result

        patches.append((owner, name, original))
        setattr(owner, name, wrapper)

    if timed:
        timer(stream_module, "chunk_part", "part")
        timer(stream_module, "tsum_equations", "equations")
        timer(CalibrationPool, "calibration", "solve")
        timer(stream_module, "reconstruct_rates", "kernel")
        timer(stream_module, "tally_chunk", "tally")
    stream = stream_class(0, lambda _: Z_MM, config)
    from_message = sys.modules[stream_class.__module__].chunk_from_message
    records: list[dict[str, object]] = []
    try:
        for message in messages:
            t0 = time.perf_counter()
            chunk = from_message(envelope_from_headers(message.headers), message.value)
            t1 = time.perf_counter()
            records += stream.add(chunk).rows
            spent["decode"] += t1 - t0
            spent["add"] += time.perf_counter() - t1
    finally:
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)
    return records, spent


class DictState:
    """Quix's State get/set/delete on a dict (the service's encoding, without RocksDB)."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.written = 0  #: bytes set, as the changelog would carry them

    def get(self, key: bytes, default: object = None) -> object:
        return self.data.get(key, default)

    def set(self, key: bytes, value: bytes) -> None:
        self.data[key] = value
        self.written += len(key) + len(value)

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)


def stored_stream(messages: list[Outgoing], config: ReconstructionConfig) -> tuple[int, int]:
    """The messages through the service's ``StoredStation`` on a dict state: (records, bytes
    written to the state)."""
    stored = StoredStation(0, lambda _: Z_MM, config)
    state = DictState()
    records = 0
    for message in messages:
        records += len(stored.add(state, message.headers, message.value).rows)
    return records, state.written


def tiled(array: np.ndarray, n: int) -> np.ndarray:
    """The first n rows of the array repeated (contiguous)."""
    reps = -(-n // len(array))
    return np.ascontiguousarray(np.concatenate([array] * reps)[:n])


def kernel_call(
    channels: np.ndarray,
    cal: Calibration,
    config: ReconstructionConfig,
    module: ModuleType = k,
) -> tuple[Callable[[], object], list[np.ndarray]]:
    """The full kernel of ``module`` (this ``_kernels`` or an older one) on preallocated
    outputs, and those outputs."""
    out = _empty(len(channels))
    outputs = [getattr(out, name) for name in EventResult.__dataclass_fields__]
    args = (channels, *kernel_inputs(cal, np.asarray(Z_MM, np.float64), config), *outputs)
    return lambda: module.reconstruct_kernel(*args), outputs


def rates_call(
    channels: np.ndarray,
    cal: Calibration,
    config: ReconstructionConfig,
    module: ModuleType = k,
) -> tuple[Callable[[], object], list[np.ndarray]]:
    """The rates kernel of ``module`` on preallocated outputs, and those outputs (the packed
    tracks zeroed, so that two modules' arrays compare whole)."""
    n = len(channels)
    outputs = [*rates_outputs(n), np.zeros((n, 4), np.int8), np.zeros((n, 4)), np.zeros(n)]
    args = (
        channels,
        *kernel_inputs(cal, np.asarray(Z_MM, np.float64), config),
        *outputs,
        TRACK_CHI2_MAX,
    )
    return lambda: module.rates_kernel(*args), outputs


def load_kernels(path: Path) -> ModuleType:
    """An older ``_kernels.py`` (e.g. ``git show REV:services/reconstruct/_kernels.py``) as a
    module of its own."""
    spec = importlib.util.spec_from_file_location("baseline_kernels", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # numba's cache finds the module of its functions by name
    spec.loader.exec_module(module)
    return module


@nb.njit(cache=True)
def _status_pass(
    channels: np.ndarray, params: np.ndarray, status: np.ndarray, strips: np.ndarray
) -> None:
    lo, hi = k._windows(params)
    for i in range(channels.shape[0]):
        status[i], strips[i] = k._event_status(channels, i, lo, hi, params)


@nb.njit(cache=True)
def _read_pass(channels: np.ndarray, columns: np.ndarray) -> None:
    # the least a kernel can do: read every value once (one vector compare each)
    for i in range(channels.shape[0]):
        m = 0
        for c in range(64):
            m |= (channels[i, c] != 0.0) << c
        columns[i] = m


def output_bytes_per_event(fields: type) -> int:
    """Bytes a kernel writes per event (the fields of its result class)."""
    one = _empty(1)
    # not the packed 4-plane tracks of the rates kernel: 41 bytes for a fraction of the events
    names = [name for name in fields.__dataclass_fields__ if name != "tracks"]
    return sum(getattr(one, name).nbytes for name in names)


def interleaved(
    calls: dict[str, Callable[[], object]], rounds: int
) -> dict[str, tuple[float, float]]:
    """Best wall and best thread-CPU seconds of each call over rounds that run each once."""
    best = {name: (np.inf, np.inf) for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            w0, c0 = time.perf_counter(), time.thread_time()
            call()
            wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def copy_bandwidth(n_bytes: int, repeat: int) -> float:
    """Read + write bandwidth of np.copyto on one core. [bytes/s]"""
    src = np.ones(n_bytes // 8)
    dst = np.empty_like(src)
    return 2 * src.nbytes / _best(lambda: np.copyto(dst, src), repeat)


def chunk_path(
    payloads: list[bytes], cal: Calibration, config: ReconstructionConfig
) -> tuple[list[dict], dict[str, float]]:
    """Arrow chunks to minute records with a fixed calibration; the seconds spent per stage."""
    stages = dict.fromkeys(("decode", "matrix", "reconstruct+tally", "merge+records"), 0.0)
    tallies: list[MinuteTally] = []
    for payload in payloads:
        t0 = time.perf_counter()
        table = decode_events(payload)
        t1 = time.perf_counter()
        channels = channel_matrix(table)
        time_s = table.column("time_s").to_numpy()
        t2 = time.perf_counter()
        events = reconstruct_rates(channels, cal, Z_MM, config)
        cover = FileCover.new(int(time_s[0]), int(time_s[-1]) + 1)
        counts = second_counts(time_s, events.status == 0, cover.start_s, cover.end_s)
        band = (0.0, NO_LIMIT)
        tallies.append(tally_chunk(time_s, events, cover, cover.end_s, counts, band)[0])
        t3 = time.perf_counter()
        stages["decode"] += t1 - t0
        stages["matrix"] += t2 - t1
        stages["reconstruct+tally"] += t3 - t2
    t4 = time.perf_counter()
    rows = minute_records(merge_tallies(tallies), 0, "bench")
    stages["merge+records"] = time.perf_counter() - t4
    return rows, stages


def encode_chunks(
    time_s: np.ndarray, line: np.ndarray, channels: np.ndarray, chunk: int
) -> list[bytes]:
    """Arrow IPC payloads of consecutive ``chunk``-event slices."""
    return [
        encode_events(time_s[i : i + chunk], line[i : i + chunk], channels[i : i + chunk])
        for i in range(0, len(time_s), chunk)
    ]


def repeated_file(
    time_s: np.ndarray, days: int, chunk: int, name: str
) -> tuple[list[tuple[object, np.ndarray, np.ndarray]], int]:
    """One file of the day's coincidence events repeated ``days`` times (times shifted by a day
    each): per chunk its envelope headers, rows of the day's arrays and time shift [s]; the
    file's events. Made before the measurement: the rows are the harness's, not the stream's."""
    n = len(time_s)
    every = np.arange(n * days)
    times = time_s[every % n] + 86_400 * (every // n)
    slices = plan_chunks(times, np.full(len(times), TRIGGER_COINCIDENCE, np.int8), chunk)
    start = int(times.min())
    envelopes = chunk_envelopes(0, name, start, times, slices)
    plan = [
        (envelope_headers(e), s.rows % n, 86_400 * (s.rows // n))
        for s, e in zip(slices, envelopes, strict=True)
    ]
    return plan, len(times)


def memory_bound(config: ReconstructionConfig, chunk: int, horizon_s: int = 86_400) -> float:
    """What :class:`StationStream` may hold, from the configuration alone. [bytes]

    Held chunks: at most ``calibration_min_events`` + one chunk of events, 532 bytes each
    (64 channels, time, line, the Arrow payload's share not kept). The pool: at most
    ``calibration_max_events`` events, and a chunk's part keeps at most its 32 charges and 16
    T_dif values per event (8 bytes each): 384 bytes per pooled event, plus ~2 kB equations and
    histogram per chunk. Minute sums: one per minute of the horizon, ~1 kB. The chunk being
    processed: its channels (512 bytes per event), the decoded Arrow table and the kernel outputs
    and scratch (~1 kB per event), the tally (small).
    """
    held = 532 * (config.calibration_min_events + chunk)
    pool = 384 * config.calibration_max_events + 2048 * (config.calibration_max_events // chunk + 1)
    minutes = 1024 * (horizon_s // 60 + 1)
    working = (512 + 1024) * chunk
    return float(held + pool + minutes + working)


def bench_memory(
    time_s: np.ndarray,
    line: np.ndarray,
    channels: np.ndarray,
    config: ReconstructionConfig,
    chunk: int,
    days: int,
) -> None:
    """Peak traced memory of this tree's stream: hourly files, one day-long file, one file of
    ``days`` days (see the module doc, 5.)."""
    out = sys.stdout.write
    hour = (time_s - time_s.min()) // 3600
    variants: list[tuple[str, list[tuple[list, int]]]] = [
        (
            "24 hourly files",
            [
                repeated_file(time_s[hour == h], 1, chunk, f"hour{h:02d}.dat")
                for h in np.unique(hour)
            ],
        ),
        ("one file of 1 day", [repeated_file(time_s, 1, chunk, "day.dat")]),
        (f"one file of {days} days", [repeated_file(time_s, days, chunk, "days.dat")]),
    ]
    bound = memory_bound(config, chunk)
    out(f"memory, chunks of {chunk}, bound from the configuration {bound / 1e6:.0f} MB:\n")
    starts = np.cumsum([0, *[len(np.flatnonzero(hour == h)) for h in np.unique(hour)]])
    for label, files in variants:
        stream = StationStream(0, lambda _: Z_MM, config)
        events = 0
        t0 = time.perf_counter()
        tracemalloc.start()
        for number, (plan, count) in enumerate(files):
            offset = starts[number] if label.startswith("24") else 0
            for headers, rows, shift in plan:
                rows = rows + offset
                payload = encode_events(time_s[rows] + shift, line[rows], channels[rows])
                stream.add(chunk_from_message(envelope_from_headers(headers), payload))
            events += count
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        elapsed = time.perf_counter() - t0
        out(f"  {label:22s} {events:9d} events: traced peak {peak / 1e6:6.1f} MB")
        out(f" ({peak / bound * 100:.0f} % of the bound; {elapsed:.0f} s traced, ")
        out(f"load {os.getloadavg()[0]:.1f})\n")


def bench_kernel(
    block: np.ndarray,
    cal: Calibration,
    config: ReconstructionConfig,
    repeat: int,
    baseline: ModuleType | None = None,
) -> None:
    """Kernel speeds on one core and the memory-bandwidth limit; printed."""
    out = sys.stdout.write
    n = len(block)
    params = kernel_params(config)
    status = np.empty(n, np.int8)
    words = np.empty(n, np.int64)
    calls: dict[str, Callable[[], object]] = {}
    outputs: dict[str, list[np.ndarray]] = {}
    modules = [("", k)] + ([(" (baseline)", baseline)] if baseline is not None else [])
    for suffix, module in modules:
        for name, make in (("reconstruct_kernel", kernel_call), ("rates_kernel", rates_call)):
            calls[name + suffix], outputs[name + suffix] = make(block, cal, config, module)
    calls["reconstruct_events (+ alloc)"] = partial(reconstruct_events, block, cal, Z_MM, config)
    calls["reconstruct_rates (+ alloc)"] = partial(reconstruct_rates, block, cal, Z_MM, config)
    calls["status pass alone"] = partial(_status_pass, block, params, status, words)
    calls["read pass alone"] = partial(_read_pass, block, words)
    returned = {name: call() for name, call in calls.items()}  # compile / load from the cache
    if baseline is not None:  # every output, NaN included, and the number of packed tracks
        for name in ("reconstruct_kernel", "rates_kernel"):
            other = name + " (baseline)"
            same = returned[name] == returned[other] and all(
                np.array_equal(a, b, equal_nan=True)
                for a, b in zip(outputs[name], outputs[other], strict=True)
            )
            out(f"{name}: outputs bit-identical to the baseline's: {same}\n")
    best = interleaved(calls, repeat)
    read_b = block.shape[1] * block.itemsize
    bandwidth = copy_bandwidth(block.nbytes, repeat)
    out(f"kernels, {n} events, one core, interleaved, best of {repeat} rounds:\n")
    out(f"  {'':30s} {'wall':>14s} {'thread CPU':>14s}\n")
    for name, (wall, cpu) in best.items():
        out(f"  {name:30s} {n / wall / 1e6:7.2f} M ev/s {n / cpu / 1e6:7.2f} M ev/s")
        out(f"  ({cpu * 1e9 / n:5.1f} ns/event CPU)\n")
    out(f"  np.copyto bandwidth   {bandwidth / 1e9:8.2f} GB/s (read + write)\n")
    for name, fields in (("reconstruct_kernel", EventResult), ("rates_kernel", EventRates)):
        write_b = output_bytes_per_event(fields)
        limit = bandwidth / (read_b + write_b)
        share = n / best[name][0] / limit
        out(f"  {name}: {read_b} bytes read + {write_b} written per event; bandwidth limit ")
        out(f"{limit / 1e6:.1f} M events/s; wall speed = {share * 100:.0f} % of it")
        out(f" ({best[name][0] / best['read pass alone'][0]:.1f}x the read pass)\n")


def _ipc(table: pa.Table, codec: str | None) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=codec)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def wire_formats(
    messages: list[Outgoing],
    repeat: int,
    baseline: tuple[str, ModuleType, list[Outgoing]] | None = None,
) -> None:
    """The day's chunks, payload to the (n, 64) matrix, this tree's codec against ``baseline``
    (the same chunks in the baseline's format) and against this tree's layout with lz4 buffers:
    thread CPU per event (interleaved rounds, best of ``repeat``), bytes per event, the largest
    message, and whether every matrix equals this tree's. ``baseline``: its label, its wire
    module and the messages in its format."""
    out = sys.stdout.write
    lz4 = [_ipc(decode_events(m.value), "lz4") for m in messages]
    variants: dict[str, tuple[list[bytes], Callable[[bytes], np.ndarray]]] = {
        "this tree": ([m.value for m in messages], lambda p: channel_matrix(decode_events(p))),
        "this tree's layout, lz4 buffers": (lz4, lambda p: channel_matrix(decode_events(p))),
    }
    if baseline is not None:
        label, wire, recoded_messages = baseline
        variants[label] = (
            [m.value for m in recoded_messages],
            lambda p: wire.channel_matrix(wire.decode_events(p)),
        )
    reference = [channel_matrix(decode_events(m.value)) for m in messages]
    n = sum(len(r) for r in reference)
    best = dict.fromkeys(variants, np.inf)
    same = {
        name: all(np.array_equal(fn(p), r) for p, r in zip(ps, reference, strict=True))
        for name, (ps, fn) in variants.items()
    }
    for _ in range(repeat):
        for name, (payloads, fn) in variants.items():
            c0 = time.thread_time()
            for p in payloads:
                fn(p)
            best[name] = min(best[name], time.thread_time() - c0)
    out(f"wire formats, the day's {len(messages)} chunks ({n} events), payload -> (n, 64), ")
    out(f"thread CPU, best of {repeat} interleaved rounds (load {os.getloadavg()[0]:.1f}):\n")
    for name, (payloads, _) in variants.items():
        size = sum(len(p) for p in payloads)
        out(f"  {name:34s} {best[name] * 1e9 / n:7.1f} ns/event {size / n:7.1f} bytes/event")
        out(f" (largest {max(map(len, payloads)) / 1e6:.3f} MB; same matrix: {same[name]})\n")


def main() -> None:
    """Run the benchmark and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000_000, help="kernel events")
    parser.add_argument("--path-events", type=int, default=1_000_000, help="chunk-path events")
    parser.add_argument(
        "--chunk",
        type=int,
        default=MAX_CHUNK_EVENTS,
        help="events per Arrow chunk (ingest's default)",
    )
    parser.add_argument("--rate", type=float, default=8.0, help="simulated rate [Hz]")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument(
        "--stream-only", action="store_true", help="only the station stream (skip kernel, path)"
    )
    parser.add_argument("--kernel-only", action="store_true", help="only the kernels")
    parser.add_argument(
        "--kernel-baseline",
        type=Path,
        help="an older _kernels.py whose two kernels are compared (speed, equal outputs)",
    )
    parser.add_argument(
        "--baseline", default="", help="git revision whose StationStream runs interleaved with ours"
    )
    parser.add_argument("--stream-repeat", type=int, default=2, help="station stream runs each")
    parser.add_argument("--memory", action="store_true", help="only the memory measurement (5.)")
    parser.add_argument("--memory-days", type=int, default=10, help="days of the long file")
    args = parser.parse_args()
    out = sys.stdout.write
    out(f"load average before: {os.getloadavg()}\n")

    time_s, line, channels, messages = simulated_events(args.rate, args.chunk)
    config = load_network().station(0).reconstruction
    if args.memory:
        bench_memory(time_s, line, channels, config, args.chunk, args.memory_days)
        out(f"load average after: {os.getloadavg()}\n")
        return
    if args.kernel_only:
        cal = calibrate(0, time_s, channels, Z_MM, config)
        baseline = load_kernels(args.kernel_baseline) if args.kernel_baseline else None
        bench_kernel(tiled(channels, args.events), cal, config, args.repeat, baseline)
        out(f"load average after: {os.getloadavg()}\n")
        return
    if not args.stream_only:
        other_parts(args, time_s, line, channels, config)
        if not args.baseline:
            wire_formats(messages, args.repeat)
    # station stream, as the service runs it, this tree against --baseline, interleaved
    events = sum(envelope_from_headers(m.headers).event_count for m in messages)
    out(f"station stream, the day's {len(messages)} chunk messages ({events} events, 24 files):\n")
    variants: list[tuple[str, type]] = [("this tree", StationStream)]
    if args.baseline:
        variants.insert(0, (f"baseline {args.baseline}", baseline_stream_class(args.baseline)))
    # each variant reads the messages in its own wire format, encoded by its own codec
    wired = {label: recoded(messages, wire_of(stream_class)) for label, stream_class in variants}
    if args.baseline:
        label, stream_class = variants[0]
        wire_formats(messages, args.repeat, (label, wire_of(stream_class), wired[label]))
    for label, stream_class in variants:  # warm-up: kernels compiled or loaded, first calls done
        station_stream(wired[label][:40], config, stream_class)
    outputs: dict[str, list[dict[str, object]]] = {}
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    for run in range(args.stream_repeat):
        for label, stream_class in variants:
            t0, c0 = time.perf_counter(), time.process_time()
            outputs[label], spent = station_stream(wired[label], config, stream_class)
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            best[label] = min(best.get(label, np.inf), elapsed)
            best_cpu[label] = min(best_cpu.get(label, np.inf), cpu)
            out(f"  run {run + 1}, {label}: {events / elapsed / 1e6:6.3f} M events/s")
            out(f" ({events / cpu / 1e6:.3f} per process CPU second; ")
            out(f"{len(outputs[label])} records, ")
            out(f"{elapsed:.2f} s, load {os.getloadavg()[0]:.1f})\n")
            for stage, seconds in spent.items():
                if seconds:
                    out(f"      {stage:10s} {seconds / elapsed * 100:5.1f} %")
                    out(f" {seconds * 1e9 / events:7.1f} ns/event\n")
        t0, c0 = time.perf_counter(), time.process_time()
        records, written = stored_stream(messages, config)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        best["stored"] = min(best.get("stored", np.inf), elapsed)
        out(f"  run {run + 1}, this tree, StoredStation on a dict state: ")
        out(f"{events / elapsed / 1e6:6.3f} M events/s ({events / cpu / 1e6:.3f} per process ")
        out(f"CPU second; {records} records, {elapsed:.2f} s, ")
        out(f"{written / events:.0f} state bytes/event, load {os.getloadavg()[0]:.1f})\n")
    if len(variants) == 2:
        (old, t_old), (new, t_new) = ((label, best[label]) for label, _ in variants)
        out(
            f"  best: {old} {events / t_old / 1e6:.3f}, {new} {events / t_new / 1e6:.3f} M events/s"
        )
        out(f" (x{t_old / t_new:.2f}); per process CPU second {events / best_cpu[old] / 1e6:.3f}, ")
        out(f"{events / best_cpu[new] / 1e6:.3f} (x{best_cpu[old] / best_cpu[new]:.2f})\n")
        # the records name the calibration versions, which hash the constants: equal records
        # mean equal calibrations too
        out(f"  minute records identical to the baseline's: {outputs[old] == outputs[new]}\n")
    out(f"load average after: {os.getloadavg()}\n")


def other_parts(
    args: argparse.Namespace,
    time_s: np.ndarray,
    line: np.ndarray,
    channels: np.ndarray,
    config: ReconstructionConfig,
) -> None:
    """Kernel, chunk path, wire formats, calibrate on the day, traced memory."""
    out = sys.stdout.write
    cal = calibrate(0, time_s, channels, Z_MM, config)
    out(f"simulated coincidence events: {len(time_s)} (one station-day at {args.rate} Hz)\n")

    # kernel
    baseline = load_kernels(args.kernel_baseline) if args.kernel_baseline else None
    bench_kernel(tiled(channels, args.events), cal, config, args.repeat, baseline)

    # chunk path: consecutive day events tiled with their times shifted by a day per copy
    n = args.path_events
    reps = -(-n // len(time_s))
    shift = np.repeat(np.arange(reps, dtype=np.int64) * 86400, len(time_s))[:n]
    p_time = tiled(time_s, n) + shift
    payloads = encode_chunks(p_time, tiled(line, n), tiled(channels, n), args.chunk)
    chunk_path(payloads[:2], cal, config)  # warm-up
    best = np.inf
    stages: dict[str, float] = {}
    rows: list[dict] = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        rows, run_stages = chunk_path(payloads, cal, config)
        elapsed = time.perf_counter() - t0
        if elapsed < best:
            best, stages = elapsed, run_stages
    mb = sum(len(p) for p in payloads) / 1e6
    out(f"chunk path, {n} events in {len(payloads)} chunks of {args.chunk} ({mb:.0f} MB):\n")
    out(f"  Arrow chunk -> minute records  {n / best / 1e6:8.2f} M events/s")
    out(f"  ({len(rows)} minute records)\n")
    for name, seconds in stages.items():
        out(f"    {name:20s} {seconds / best * 100:5.1f} %  {seconds * 1e9 / n:7.1f} ns/event\n")
    t_cal = _best(lambda: calibrate(0, time_s, channels, Z_MM, config), 1)
    out(f"  calibrate() on the day's {len(time_s)} events: {t_cal:.2f} s\n")


if __name__ == "__main__":
    main()
