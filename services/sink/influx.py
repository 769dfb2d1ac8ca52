"""InfluxDB back ends sharing the line-protocol encoder: the v1 ``/write`` API and the v2 client.

The v1 HTTP API is spoken by InfluxDB 1.x and, through their v1 compatibility endpoints, by
InfluxDB 2.x (with a DBRP mapping) and 3.x. The v2 back end uses ``influxdb-client`` (InfluxDB 2.x
and 3.x native API). Both write gzip-compressed batches with second precision and raise
:class:`InfluxWriteError` on any failure; the sink decides how to retry. Credentials are
``SecretStr`` and sent in headers, never in URLs (which end up in logs).
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, cast

import httpx
from pydantic import SecretStr

log = logging.getLogger(__name__)

#: Lines per HTTP request (InfluxDB suggests 5000-10000 points per write).
DEFAULT_BATCH_LINES = 5000


class InfluxWriteError(RuntimeError):
    """A batch was not accepted; ``retryable`` is False for errors a retry cannot fix."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class InfluxWriter(Protocol):
    """Something that stores line-protocol lines (precision seconds) or raises."""

    def write(self, lines: Sequence[str]) -> None:
        """Store every line or raise :class:`InfluxWriteError`."""

    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class InfluxTarget:
    """Where and how to write.

    Attributes
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8086``.
    api : {"v1", "v2"}
        ``v1``: ``/write`` (1.x, 2.x/3.x compatibility); ``v2``: influxdb-client.
    database : str
        v1 database (for 2.x: the database name of the DBRP mapping).
    retention_policy : str
        v1 retention policy; empty = the database's default.
    username, password : str, SecretStr
        v1 basic authentication (1.x with auth, 2.x: any user name and a token as password).
    token : SecretStr
        Token (v2, or v1 compatibility of 2.x/3.x as ``Authorization: Token``).
    org, bucket : str
        v2 organisation and bucket.
    timeout_s : float
        Per-request timeout. [s]
    batch_lines : int
        Lines per request.
    """

    url: str
    api: Literal["v1", "v2"] = "v1"
    database: str = "mingo"
    retention_policy: str = ""
    username: str = ""
    password: SecretStr | None = None
    token: SecretStr | None = None
    org: str = ""
    bucket: str = ""
    timeout_s: float = 10.0
    batch_lines: int = DEFAULT_BATCH_LINES


def chunks(lines: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Consecutive slices of at most ``size`` lines."""
    for start in range(0, len(lines), size):
        yield lines[start : start + size]


def gzip_body(lines: Sequence[str]) -> bytes:
    """The request body: newline-separated lines, gzip-compressed."""
    return gzip.compress("\n".join(lines).encode(), compresslevel=5)


def v1_credentials(target: InfluxTarget) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    """Request headers and basic auth for the v1 API: a token wins over user and password."""
    if target.token is not None:
        return {"Authorization": f"Token {target.token.get_secret_value()}"}, None
    if target.username:
        password = target.password.get_secret_value() if target.password else ""
        return {}, httpx.BasicAuth(target.username, password)
    return {}, None


class InfluxV1Writer:
    """Writes through ``POST /write?db=&precision=s`` (gzip)."""

    def __init__(self, target: InfluxTarget, client: httpx.Client | None = None) -> None:
        self.target = target
        credentials, auth = v1_credentials(target)
        headers = {
            "Content-Encoding": "gzip",
            "Content-Type": "text/plain; charset=utf-8",
            **credentials,
        }
        self._client = client or httpx.Client(
            base_url=target.url,
            headers=headers,
            auth=auth,
            timeout=target.timeout_s,
            trust_env=False,  # InfluxDB is reached directly, never through an HTTP proxy
        )
        self._create_before_write = False

    def ensure_database(self) -> None:
        """``CREATE DATABASE`` (idempotent on 1.x; 2.x/3.x create buckets otherwise)."""
        name = self.target.database.replace('"', '\\"')
        try:
            response = self._client.post(
                "/query",
                params={"q": f'CREATE DATABASE "{name}"'},
                headers={"Content-Encoding": "identity"},
            )
        except httpx.HTTPError as exc:
            raise InfluxWriteError(f"InfluxDB unreachable: {exc}", retryable=True) from exc
        _raise_for(response, "create database")
        self._create_before_write = False

    def create_database_before_write(self) -> None:
        """Let the next :meth:`write` create the database first (it was unreachable before)."""
        self._create_before_write = True

    def write(self, lines: Sequence[str]) -> None:
        """POST the lines in gzip batches; raise :class:`InfluxWriteError` if one fails."""
        if self._create_before_write:
            self.ensure_database()
        params = {"db": self.target.database, "precision": "s"}
        if self.target.retention_policy:
            params["rp"] = self.target.retention_policy
        for batch in chunks(lines, self.target.batch_lines):
            try:
                response = self._client.post("/write", params=params, content=gzip_body(batch))
            except httpx.HTTPError as exc:
                raise InfluxWriteError(f"InfluxDB unreachable: {exc}", retryable=True) from exc
            _raise_for(response, "write")

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.status_code < 300:
        return
    retryable = response.status_code in (404, 408, 429) or response.status_code >= 500
    raise InfluxWriteError(
        f"InfluxDB {what} failed: HTTP {response.status_code} {response.text[:300]}",
        retryable=retryable,
    )


class InfluxV2Writer:
    """Writes through the native v2 API with ``influxdb-client`` (gzip, precision seconds)."""

    def __init__(self, target: InfluxTarget) -> None:
        from influxdb_client import InfluxDBClient  # imported here: only this back end needs it
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.target = target
        token = target.token.get_secret_value() if target.token else ""
        self._client = InfluxDBClient(
            url=target.url,
            token=token,
            org=target.org,
            enable_gzip=True,
            timeout=int(target.timeout_s * 1000),
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        """Write the lines in batches; raise :class:`InfluxWriteError` if one fails."""
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        for batch in chunks(lines, self.target.batch_lines):
            try:
                self._api.write(
                    bucket=self.target.bucket,
                    org=self.target.org,
                    record=list(batch),
                    write_precision=cast(WritePrecision, WritePrecision.S),
                )
            except ApiException as exc:
                status = int(exc.status or 0)
                retryable = status in (0, 404, 408, 429) or status >= 500
                raise InfluxWriteError(
                    f"InfluxDB write failed: HTTP {status} {exc.reason}", retryable=retryable
                ) from exc
            except Exception as exc:  # urllib3 connection errors and timeouts
                raise InfluxWriteError(f"InfluxDB unreachable: {exc}", retryable=True) from exc

    def close(self) -> None:
        """Close the client."""
        self._client.close()


def make_writer(target: InfluxTarget) -> InfluxWriter:
    """The back end ``target.api`` names."""
    if target.api == "v2":
        return InfluxV2Writer(target)
    return InfluxV1Writer(target)
