"""The CDS client wrapper with a fake CDS: cache, one in flight, retries, hard timeout, credentials.

The real CDS is exercised by tests/integration/test_reanalysis.py when a key is configured.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests

from services.reanalysis.cds import (
    CdsError,
    Era5Fetcher,
    FetchPolicy,
    is_transient,
    make_fetcher,
    resolve_credentials,
)
from services.reanalysis.planner import SINGLE_LEVELS, Era5Request, area_box
from services.reanalysis.settings import CdsSettings, ReanalysisSettings

pytestmark = pytest.mark.unit

REQUEST = Era5Request(SINGLE_LEVELS, 1, date(2024, 3, 1), date(2024, 3, 2), area_box(40.4, -3.7))


def _http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} error", response=response)


class FakeJob:
    """Ready after ``polls`` polls; writes ``payload`` on download."""

    def __init__(self, polls: int = 2, payload: bytes = b"CDF\x01data") -> None:
        self.polls = polls
        self.payload = payload
        self.deleted = False

    @property
    def results_ready(self) -> bool:
        self.polls -= 1
        return self.polls < 0

    def download(self, target: str | None = None) -> str:
        assert target is not None
        Path(target).write_bytes(self.payload)
        return target

    def delete(self) -> Any:
        self.deleted = True


class FakeCds:
    """Submit function that raises the queued errors first, then hands out jobs."""

    def __init__(self, errors: Sequence[BaseException] = (), job: FakeJob | None = None) -> None:
        self.errors = list(errors)
        self.job = job or FakeJob()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.concurrent = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()

    def __call__(self, dataset: str, body: dict[str, Any]) -> FakeJob:
        with self._lock:
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            self.calls.append((dataset, body))
            if self.errors:
                raise self.errors.pop(0)
            return self.job
        finally:
            with self._lock:
                self.concurrent -= 1


def _fetcher(cds: FakeCds, **policy: float) -> tuple[Era5Fetcher, list[float]]:
    slept: list[float] = []
    clock = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    fetcher = Era5Fetcher(
        cds,
        FetchPolicy(**policy),
        sleep=sleep,
        clock=lambda: clock[0],
    )
    return fetcher, slept


def test_download_then_cache_hit_without_a_second_request(tmp_path: Path) -> None:
    cds = FakeCds()
    fetcher, slept = _fetcher(cds, poll_initial_s=10, poll_max_s=12)
    path = fetcher.fetch(REQUEST, tmp_path)
    assert path == tmp_path / REQUEST.filename()
    assert path.read_bytes() == b"CDF\x01data"
    assert slept == [10, 12]  # patient polling, growing to the maximum
    assert cds.calls == [(SINGLE_LEVELS, REQUEST.body())]
    restarted, _ = _fetcher(cds)
    assert restarted.fetch(REQUEST, tmp_path) == path
    assert len(cds.calls) == 1
    assert not list(tmp_path.glob("*.part"))


def test_5xx_and_connection_errors_are_retried_with_backoff(tmp_path: Path) -> None:
    cds = FakeCds(errors=[_http_error(503), requests.ConnectionError("reset"), _http_error(500)])
    fetcher, slept = _fetcher(cds, poll_initial_s=1, backoff_initial_s=30, backoff_max_s=100)
    fetcher.fetch(REQUEST, tmp_path)
    assert len(cds.calls) == 4
    assert slept[:3] == [30, 60, 100]


def test_client_errors_fail_at_once_and_retries_run_out(tmp_path: Path) -> None:
    cds = FakeCds(errors=[_http_error(403)])
    fetcher, _ = _fetcher(cds)
    with pytest.raises(CdsError, match="403"):
        fetcher.fetch(REQUEST, tmp_path)
    assert len(cds.calls) == 1
    cds = FakeCds(errors=[_http_error(502)] * 3)
    fetcher, _ = _fetcher(cds, retries=2, backoff_initial_s=1)
    with pytest.raises(CdsError, match="502"):
        fetcher.fetch(REQUEST, tmp_path)
    assert len(cds.calls) == 3
    assert not (tmp_path / REQUEST.filename()).exists()


def test_hard_timeout_deletes_the_job(tmp_path: Path) -> None:
    job = FakeJob(polls=10**6)
    fetcher, slept = _fetcher(FakeCds(job=job), poll_initial_s=60, poll_max_s=600, timeout_s=3600)
    with pytest.raises(CdsError, match="no result within 3600 s"):
        fetcher.fetch(REQUEST, tmp_path)
    assert job.deleted
    assert sum(slept) == pytest.approx(3600)


def test_one_request_in_flight(tmp_path: Path) -> None:
    cds = FakeCds(job=FakeJob(polls=0))
    fetcher = Era5Fetcher(cds, FetchPolicy(poll_initial_s=0.001))
    requests_ = [
        Era5Request(SINGLE_LEVELS, 1, date(2024, 3, d), date(2024, 3, d), REQUEST.area)
        for d in range(1, 9)
    ]
    threads = [threading.Thread(target=fetcher.fetch, args=(r, tmp_path)) for r in requests_]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cds.calls) == 8
    assert cds.max_concurrent == 1


def test_transient_errors() -> None:
    assert is_transient(_http_error(500)) and is_transient(requests.Timeout())
    assert is_transient(ConnectionResetError())
    assert not is_transient(_http_error(400)) and not is_transient(ValueError("x"))


def test_credentials_from_environment_then_rc_file(tmp_path: Path) -> None:
    rc = tmp_path / "cdsapirc"
    assert resolve_credentials(None, None, rc) is None
    assert make_fetcher(None) is None
    rc.write_text("url: https://example.org/api\nkey: abc-123\n")
    from_rc = resolve_credentials(None, None, rc)
    assert from_rc is not None
    assert (from_rc.url, from_rc.key) == ("https://example.org/api", "abc-123")
    assert "abc-123" not in repr(from_rc)
    from_env = resolve_credentials(None, "token", rc)
    assert from_env is not None and from_env.key == "token"


def test_settings_read_cdsapi_variables_and_keep_the_key_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDSAPI_URL", "https://cds.example/api")
    monkeypatch.setenv("CDSAPI_KEY", "s3cret-token")
    monkeypatch.setenv("CDSAPI_RC", str(tmp_path / "none"))
    credentials = CdsSettings().credentials()
    assert credentials is not None and credentials.url == "https://cds.example/api"
    settings = ReanalysisSettings()
    assert "s3cret-token" in settings.secret_values()
    assert "s3cret-token" not in repr(settings)
