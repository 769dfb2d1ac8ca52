"""The operator's view folded from status records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.models import PipelineStatus
from services.common.health import render_health, summarise_status

pytestmark = pytest.mark.unit

NOW = datetime(2024, 3, 2, 12, 0, tzinfo=UTC)


def _status(kind: str, minutes_ago: float, **fields: object) -> PipelineStatus:
    return PipelineStatus(
        service="ingest", instance="a", kind=kind, time=NOW - timedelta(minutes=minutes_ago),
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_summaries_errors_and_recovery_fold_into_the_current_state() -> None:
    newest = NOW - timedelta(minutes=30)
    records = [
        _status("file_summary", 50, station=1, source="dat", file="a.dat", lines_valid=100,
                lines_rejected=2, newest_data_time=newest - timedelta(hours=1)),
        _status("file_summary", 40, station=1, source="dat", file="b.dat", lines_valid=50,
                lines_rejected=1, newest_data_time=newest),
        _status("source_error", 30, station=2, message="connection refused"),
        _status("source_error", 20, station=3, message="host key differs"),
        _status("source_ok", 10, station=3, message="reachable again"),
        _status("heartbeat", 1, message="3 units"),
    ]  # fmt: skip
    health = summarise_status(records)
    dat = health.sources[(1, "dat")]
    assert (dat.files, dat.lines_valid, dat.lines_rejected) == (2, 150, 3)
    assert dat.newest_data_time == newest and dat.lag_s(NOW) == 1800
    assert health.sources[(2, "station")].last_error == "connection refused"
    assert health.sources[(3, "station")].last_error is None
    [service] = health.services.values()
    assert not service.stopped and service.last_seen == NOW - timedelta(minutes=1)
    text = "\n".join(render_health(health, NOW))
    assert "30.0 min" in text and "connection refused" in text and "running" in text


def test_a_stopped_service_is_shown_as_stopped() -> None:
    health = summarise_status([_status("heartbeat", 5), _status("stopped", 2)])
    assert "stopped" in "\n".join(render_health(health, NOW))
