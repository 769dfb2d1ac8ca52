"""The README's main command (a) without its installation step: `mingo demo` on tansu.

Two simulated hours of two stations, live, through all five services on the embedded broker
(no InfluxDB): the unified files must cover every minute of every file the simulator completed,
the topics must hold exactly the simulated events, and a plot must be written.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _file_minutes(entry: dict[str, object]) -> set[pd.Timestamp]:
    """Every minute that a file with events of the truth overlaps."""
    minutes: set[pd.Timestamp] = set()
    files = entry["files"]
    assert isinstance(files, dict)
    for info in files.values():
        if not info["events"]:
            continue
        start = pd.Timestamp(datetime.fromisoformat(info["acq_start"])).floor("min")
        end = pd.Timestamp(datetime.fromisoformat(info["acq_end"]))
        minutes |= set(pd.date_range(start, end, freq="min", inclusive="left"))
    return {m.tz_convert(UTC) if m.tzinfo else m.tz_localize(UTC) for m in minutes}


def test_demo_runs_two_stations_through_all_services(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # A private state directory and port: the demo must not touch servers other tests use.
    env = os.environ | {
        "MINGO_STATE_DIR": str(tmp_path / "state"),
        "MINGO_TANSU_PORT": str(_free_port()),
    }
    command = [sys.executable, "-m", "services.cli", "demo", "--hours", "2"]
    result = subprocess.run(
        [*command, "--out", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    truth = json.loads((out / "stations" / "truth.json").read_text())
    for station in ("1", "2"):
        entry = truth["stations"][station]
        valid = entry["totals"]["valid_events"]
        match = re.search(
            rf"station {station} events: coincidence (\d+), self-trigger (\d+)", result.stdout
        )
        assert match, result.stdout
        assert (int(match[1]), int(match[2])) == (valid["1"], valid["2"])
        assert re.search(rf"station {station} rejects: .*GLUED_TOKENS", result.stdout)
        # the unified table covers every minute of every file the simulator completed
        csvs = sorted((out / "unified" / f"mingo0{station}").glob("*/*/unified_*.csv"))
        assert csvs and all(p.with_suffix(".parquet").exists() for p in csvs)
        table = pd.concat([pd.read_csv(p) for p in csvs])
        minutes = set(pd.to_datetime(table["time"], utc=True))
        assert minutes == _file_minutes(entry)
        assert f"station {station}: minutes {len(table)}" in result.stdout
    for topic in ("mingo.rates.minute.v1", "mingo.era5.hourly.v1", "mingo.unified.minute.v1"):
        assert re.search(rf"^{re.escape(topic)}\s+[1-9]\d* messages", result.stdout, re.M)
    plot = out / "rates.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert f"Plot (raw and corrected rate with pressure): {plot}" in result.stdout
    # the demo leaves no broker behind
    status = subprocess.run(
        [sys.executable, "-m", "services.cli", "infra", "status"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert re.search(r"^tansu\s+stopped", status.stdout, re.M), status.stdout
