"""``--live``: same bytes as the batch run, no partial .dat file ever visible, clean stop."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.common.stations import load_network
from simulator.live import run_live
from simulator.run import SimulationRequest, run_batch

pytestmark = pytest.mark.unit


def _request(
    out: Path, days: int = 1, rate: float = 0.5, damage: float = 0.01
) -> SimulationRequest:
    return SimulationRequest(
        out=out,
        stations=(load_network().station(1),),
        start=date(2024, 3, 1),
        days=days,
        seed=8,
        rate_hz=rate,
        damage=damage,
        acceptance_samples=20_000,
    )


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "truth.json"
    }


def test_live_writes_the_batch_bytes(tmp_path: Path) -> None:
    seen: dict[str, int] = {}
    dat = tmp_path / "live" / "mingo01" / "dat"

    def watch(_: int) -> None:
        # a reader polling the directory only ever sees complete files: a .dat never grows
        for p in dat.glob("*.dat"):
            size = p.stat().st_size
            assert seen.setdefault(p.name, size) == size, p.name

    live = run_live(
        _request(tmp_path / "live", days=2), speed=86400 / 1.5, on_tick=watch, tick_s=0.05
    )
    batch = run_batch(_request(tmp_path / "batch", days=2))
    assert live["live"]["complete"]
    assert _digests(tmp_path / "live") == _digests(tmp_path / "batch")
    live.pop("live")
    assert json.loads(json.dumps(live)) == json.loads(json.dumps(batch))
    assert seen  # the watcher saw files appear


def test_live_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    timer = threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        truth = run_live(_request(out, rate=2.0), speed=3600.0, tick_s=0.05)
    finally:
        timer.cancel()
    assert not truth["live"]["complete"]
    assert not list(out.rglob("*.part"))
    station: dict[str, Any] = truth["stations"]["1"]
    files = {n: e for n, e in station["files"].items() if not e["empty"]}
    assert 1 <= len(files) <= 6
    partial = [e for e in files.values() if e.get("partial")]
    assert len(partial) == 1
    for entry in files.values():
        data = (out / entry["path"]).read_bytes()
        assert data.count(b"\n") == entry["lines"]  # whole lines only
        assert entry["lines"] == 1 + sum(entry["valid_events"].values()) + entry["damaged_lines"]
    for rel, info in station["logs"]["files"].items():
        assert len((out / rel).read_text().splitlines()) == info["lines"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
