"""The Copernicus Climate Data Store client: credentials, one request in flight, retries, cache.

The CDS is a queue: a request waits minutes to hours, the API often answers 500, and about one
ERA5 request per user runs at a time. :class:`Era5Fetcher` therefore

- serves a request from the download directory when its file (named by the request's cache key)
  is already there, so a restart never downloads again;
- keeps one request in flight (a lock shared by all callers of the fetcher);
- submits without blocking and polls patiently (intervals growing to ``poll_max_s``);
- retries submission, polling and download on 5xx answers and connection errors with exponential
  backoff, up to ``retries`` times;
- gives up after ``timeout_s`` per request (hard timeout), deleting the job on the server;
- writes the download to ``<name>.part`` and renames it when complete.

Credentials (new CDS, since Sep 2024): ``url`` and a personal access token ``key`` from
``CDSAPI_URL``/``CDSAPI_KEY`` (read by the settings at the edge, passed in here) or ``~/.cdsapirc``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests

from services.reanalysis.planner import Era5Request

log = logging.getLogger(__name__)

#: Default CDS API endpoint.
DEFAULT_CDS_URL = "https://cds.climate.copernicus.eu/api"
#: Where cdsapi keeps credentials.
DEFAULT_CDSAPIRC = Path("~/.cdsapirc").expanduser()

NO_CREDENTIALS = (
    "no CDS credentials: set CDSAPI_URL and CDSAPI_KEY or write ~/.cdsapirc "
    "('url: https://cds.climate.copernicus.eu/api' and 'key: <personal access token>')"
)


class CdsError(RuntimeError):
    """A CDS request failed for good (rejected, failed, out of retries or timed out)."""


@dataclass(frozen=True)
class CdsCredentials:
    """URL and personal access token of the CDS API (the key is never logged)."""

    url: str
    key: str

    def __repr__(self) -> str:
        return f"CdsCredentials(url={self.url!r}, key='***')"


def read_cdsapirc(path: Path) -> dict[str, str]:
    """``key: value`` lines of a cdsapi configuration file (empty if it does not exist)."""
    if not path.is_file():
        return {}
    entries: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.lstrip().startswith("#"):
            entries[name.strip()] = value.strip()
    return entries


def resolve_credentials(
    url: str | None, key: str | None, rc_path: Path = DEFAULT_CDSAPIRC
) -> CdsCredentials | None:
    """Credentials from explicit values (environment) first, then the rc file; None if none.

    Parameters
    ----------
    url, key : str or None
        ``CDSAPI_URL`` and ``CDSAPI_KEY`` as read by the settings.
    rc_path : Path
        The cdsapi configuration file.
    """
    rc = read_cdsapirc(rc_path)
    final_key = key or rc.get("key")
    if not final_key:
        return None
    return CdsCredentials(url=url or rc.get("url") or DEFAULT_CDS_URL, key=final_key)


class CdsJob(Protocol):
    """A submitted request (``ecmwf.datastores.Remote`` has this shape)."""

    @property
    def results_ready(self) -> bool:
        """True when the result can be downloaded; raises if the job failed."""
        ...

    def download(self, target: str | None = None) -> str:
        """Download the result to ``target``."""
        ...

    def delete(self) -> Any:
        """Delete the job on the server."""
        ...


Submit = Callable[[str, dict[str, Any]], CdsJob]


def cdsapi_submitter(credentials: CdsCredentials, http_timeout_s: float = 60.0) -> Submit:
    """A submit function on the real CDS (cdsapi, non-blocking submission)."""
    import cdsapi

    client = cdsapi.Client(
        url=credentials.url,
        key=credentials.key,
        wait_until_complete=False,
        quiet=True,
        progress=False,
        timeout=http_timeout_s,
        retry_max=3,
    )

    def submit(dataset: str, body: dict[str, Any]) -> CdsJob:
        job: CdsJob = client.retrieve(dataset, body)
        return job

    return submit


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: connection problems, timeouts and HTTP 5xx."""
    if isinstance(exc, requests.HTTPError):
        response = exc.response
        return response is not None and response.status_code >= 500
    return isinstance(
        exc, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError
    )


@dataclass(frozen=True)
class FetchPolicy:
    """Patience of the fetcher. [s] unless stated."""

    poll_initial_s: float = 10.0
    poll_max_s: float = 120.0
    retries: int = 5  #: retries of transient errors per request [count]
    backoff_initial_s: float = 30.0
    backoff_max_s: float = 900.0
    timeout_s: float = 12 * 3600.0  #: hard limit per request, queueing included


class Era5Fetcher:
    """Fetch planned requests into a directory, one at a time (module docstring)."""

    def __init__(
        self,
        submit: Submit,
        policy: FetchPolicy = FetchPolicy(),
        *,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._submit = submit
        self._policy = policy
        self._sleep = sleep
        self._clock = clock
        self._in_flight = threading.Lock()

    def fetch(self, request: Era5Request, directory: Path) -> Path:
        """The file of a request: from the cache directory, or downloaded into it.

        Raises
        ------
        CdsError
            When the request failed, ran out of retries or exceeded the hard timeout.
        """
        target = directory / request.filename()
        if target.exists():
            log.debug("era5 cache hit", extra={"file": target.name})
            return target
        with self._in_flight:
            directory.mkdir(parents=True, exist_ok=True)
            deadline = self._clock() + self._policy.timeout_s
            backoff = self._policy.backoff_initial_s
            for attempt in range(self._policy.retries + 1):
                try:
                    return self._fetch_once(request, target, deadline)
                except CdsError:
                    raise
                except Exception as exc:
                    if not is_transient(exc) or attempt == self._policy.retries:
                        raise CdsError(f"{target.name}: CDS request failed: {exc}") from exc
                    wait = min(backoff, max(0.0, deadline - self._clock()))
                    log.warning(
                        "CDS transient error, retrying",
                        extra={"file": target.name, "error": str(exc), "retry_in_s": wait},
                    )
                    self._sleep(wait)
                    backoff = min(backoff * 2, self._policy.backoff_max_s)
            raise AssertionError("unreachable")  # pragma: no cover

    def _fetch_once(self, request: Era5Request, target: Path, deadline: float) -> Path:
        log.info("CDS request submitted", extra={"file": target.name, "dataset": request.dataset})
        job = self._submit(request.dataset, request.body())
        poll = self._policy.poll_initial_s
        while not job.results_ready:
            if self._clock() >= deadline:
                with contextlib.suppress(Exception):  # best effort: the job may be gone
                    job.delete()
                raise CdsError(f"{target.name}: no result within {self._policy.timeout_s:.0f} s")
            self._sleep(min(poll, max(0.0, deadline - self._clock())))
            poll = min(poll * 1.5, self._policy.poll_max_s)
        part = target.with_name(f"{target.name}.part")
        job.download(str(part))
        part.replace(target)
        log.info("CDS download complete", extra={"file": target.name})
        return target


def make_fetcher(
    credentials: CdsCredentials | None,
    timeout_s: float = FetchPolicy.timeout_s,
    sleep: Callable[[float], object] = time.sleep,
) -> Era5Fetcher | None:
    """A fetcher on the real CDS, or None without credentials (the caller says so)."""
    if credentials is None:
        return None
    return Era5Fetcher(cdsapi_submitter(credentials), FetchPolicy(timeout_s=timeout_s), sleep=sleep)
