"""The README's main command (a) without its installation step: `mingo demo` on tansu."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_streams_two_simulated_stations_into_the_topics(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    # A private state directory and port: the demo must not touch servers other tests use.
    env = os.environ | {
        "MINGO_STATE_DIR": str(tmp_path / "state"),
        "MINGO_TANSU_PORT": str(_free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    truth = json.loads((out / "truth.json").read_text())
    for station in ("1", "2"):
        valid = truth["stations"][station]["totals"]["valid_events"]
        match = re.search(
            rf"station {station} events: coincidence (\d+), self-trigger (\d+)", result.stdout
        )
        assert match, result.stdout
        assert (int(match[1]), int(match[2])) == (valid["1"], valid["2"])
        assert re.search(rf"station {station} rejects: .*GLUED_TOKENS", result.stdout)
    for topic in ("mingo.logs.raw.v1", "mingo.logbook.v1", "mingo.status.v1"):
        assert re.search(rf"^{re.escape(topic)}\s+[1-9]\d* messages", result.stdout, re.M)
    # the demo leaves no broker behind
    status = subprocess.run(
        [sys.executable, "-m", "services.cli", "infra", "status"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert re.search(r"^tansu\s+stopped", status.stdout, re.M), status.stdout
