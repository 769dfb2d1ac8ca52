"""Sink without servers: line protocol, daily files, the store-then-commit loop, settings."""

from __future__ import annotations

import gzip
import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from services.common.runtime import StopFlag
from services.common.status import status_message
from services.sink.files import (
    COLUMNS,
    DailyFiles,
    FilesWriteError,
    day_path,
    read_csv,
    read_day,
    read_range,
)
from services.sink.influx import InfluxTarget, InfluxV1Writer, InfluxV2Writer, InfluxWriteError
from services.sink.lineprotocol import (
    UNIFIED_KINDS,
    FieldKind,
    encode_point,
    encode_status,
    encode_unified,
    escape_key,
)
from services.sink.service import SinkOptions, SinkService, make_writer, newest_revisions
from services.sink.settings import SinkSettings
from tests.sink_rows import unified_row, unified_rows

pytestmark = pytest.mark.unit

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _fields(line: str) -> dict[str, str]:
    _head, fields, _ts = line.rsplit(" ", 2)
    return dict(f.split("=", 1) for f in fields.split(","))


def test_unified_line_types_tags_and_timestamp() -> None:
    row = unified_row(1, T0 + timedelta(seconds=0), quality_flags=5, quality=["a", "b_c"])
    line = encode_unified(row)
    assert line is not None
    head, _fields_text, ts = line.rsplit(" ", 2)
    assert head == "unified,station=1"
    assert int(ts) == int(T0.timestamp())
    fields = _fields(line)
    assert fields["count_1234"].endswith("i") and fields["revision"] == "0i"
    assert fields["live_s"] == "60.0"  # a float stays a float even when integral
    assert fields["quality_flags"] == "5i" and fields["quality"] == '"a;b_c"'
    assert "schema_version" not in fields and "station" not in fields


def test_missing_values_are_left_out_and_types_never_change() -> None:
    line = encode_unified(unified_row(2, T0, era5_t_eff_k=None, rate_pt_corr_hz=None))
    assert line is not None
    fields = _fields(line)
    assert "era5_t_eff_k" not in fields and "rate_pt_corr_hz" not in fields
    for name, kind in UNIFIED_KINDS.items():
        if kind is FieldKind.INT and name in fields:
            assert fields[name].endswith("i"), name
        if kind is FieldKind.FLOAT and name in fields:
            assert (not fields[name].endswith("i") and "." in fields[name]) or "e" in fields[name]


def test_escaping_and_empty_points() -> None:
    assert escape_key("a b,c=d") == "a\\ b\\,c\\=d"
    kinds = {"t": FieldKind.TAG, "s": FieldKind.STRING, "x": FieldKind.FLOAT}
    line = encode_point("m", {"t": "x y", "s": 'he said "hi"\\', "x": 1}, kinds, timestamp_s=60)
    assert line == 'm,t=x\\ y s="he said \\"hi\\"\\\\",x=1.0 60'
    assert encode_point("m", {"t": "a", "x": None}, kinds, timestamp_s=0) is None
    assert encode_point("m", {"x": float("nan")}, kinds, timestamp_s=0) is None


def test_status_line_tags_and_times() -> None:
    status = status_message(
        "ingest", "host-1", "file_summary", station=3, source="hv", file="hv0_2024-03-01.log",
        newest_data_time=T0, lag_s=30.0, lines_total=96, lines_valid=95, lines_rejected=1,
    )  # fmt: skip
    line = encode_status(status)
    assert line is not None
    assert line.startswith(
        "pipeline_status,instance=host-1,kind=file_summary,service=ingest,source=hv,station=3 "
    )
    fields = _fields(line)
    assert fields["newest_data_time_s"] == f"{int(T0.timestamp())}i"
    assert fields["lines_rejected"] == "1i" and fields["lag_s"] == "30.0"
    assert fields["file"] == '"hv0_2024-03-01.log"'


def test_files_split_days_merge_revisions_and_round_trip(tmp_path: Path) -> None:
    files = DailyFiles(tmp_path)
    start = datetime(2024, 3, 1, 23, 58, tzinfo=UTC)
    rows = unified_rows(1, start, 4)
    written = files.write(rows)
    assert [p.name for p in written] == ["unified_2024_03_01.csv", "unified_2024_03_02.csv"]
    assert written[0] == tmp_path / "mingo01/2024/03/unified_2024_03_01.csv"
    revised = unified_row(1, start, revision=2, rate_pt_corr_hz=8.5, quality=["x"])
    stale = unified_row(1, start, revision=1, rate_pt_corr_hz=1.0)
    files.write([revised])
    files.write([stale])  # a lower revision arriving late never replaces a higher one
    frame = read_csv(written[0])
    assert len(frame) == 2 and list(frame.columns) == list(COLUMNS)
    assert frame.loc[0, "revision"] == 2 and frame.loc[0, "rate_pt_corr_hz"] == 8.5
    assert frame.loc[0, "quality"] == "x"
    parquet = read_day(written[0])
    assert parquet is not None
    assert parquet.equals(frame)
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temporary file left behind
    whole = read_range(tmp_path, 1, start, start + timedelta(minutes=4))
    assert len(whole) == 4 and whole["time"].is_monotonic_increasing


def test_newest_revisions_keeps_one_row_per_minute() -> None:
    rows = [unified_row(1, T0, revision=r) for r in (0, 2, 1)] + [unified_row(2, T0)]
    kept = newest_revisions(rows)
    assert [(r.station, r.revision) for r in kept] == [(1, 2), (2, 0)]


class _Message:
    def __init__(self, topic: str, offset: int, value: bytes) -> None:
        self._topic, self._offset, self._value = topic, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


class _Consumer:
    def __init__(self, messages: list[_Message]) -> None:
        self.messages = messages
        self.commits: list[list[tuple[str, int, int]]] = []
        self.paused = False

    def consume(self, num: int, timeout: float) -> list[_Message]:
        batch, self.messages = self.messages[:num], self.messages[num:]
        return batch

    def commit(self, offsets: Any, asynchronous: bool) -> None:
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def assignment(self) -> list[str]:
        return ["tp"]

    def pause(self, partitions: Any) -> None:
        self.paused = True

    def resume(self, partitions: Any) -> None:
        self.paused = False

    def poll(self, timeout: float) -> None:
        return None


class _Writer:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.lines: list[str] = []

    def write(self, lines: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise InfluxWriteError("down", retryable=True)
        self.lines.extend(lines)

    def close(self) -> None:
        pass


def _service(consumer: _Consumer, writer: _Writer, tmp_path: Path, stop: StopFlag) -> SinkService:
    options = SinkOptions(instance="t", unified_topic="u", status_topic="s", backoff_initial_s=0)
    return SinkService(consumer, writer, DailyFiles(tmp_path), options, stop)


def test_commit_only_after_the_store_accepted(tmp_path: Path) -> None:
    rows = unified_rows(1, T0, 3)
    status = status_message("ingest", "i", "heartbeat")
    messages = [_Message("u", i, r.to_json_bytes()) for i, r in enumerate(rows)]
    messages += [_Message("s", 7, status.to_json_bytes()), _Message("u", 3, b"{not json")]
    consumer, writer = _Consumer(messages), _Writer(failures=3)
    service = _service(consumer, writer, tmp_path, StopFlag())
    assert service.step()
    assert consumer.commits == [[("s", 0, 8), ("u", 0, 4)]]  # the bad message is skipped
    assert not consumer.paused
    assert sum(line.startswith("unified,") for line in writer.lines) == 3
    assert any(line.startswith("pipeline_status,") for line in writer.lines)
    assert len(read_csv(day_path(tmp_path, 1, T0.date()))) == 3
    assert not service.step()  # nothing more to read
    consumer.assignment = lambda: []  # type: ignore[method-assign]
    assert service.step()  # no partitions yet (group join): not idle, a --once run goes on


def test_a_stop_while_influxdb_is_down_commits_nothing(tmp_path: Path) -> None:
    consumer = _Consumer([_Message("u", 0, unified_row(1, T0).to_json_bytes())])
    writer, stop = _Writer(failures=10**6), StopFlag()
    service = _service(consumer, writer, tmp_path, stop)
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    assert not service.step()
    assert consumer.commits == [] and consumer.paused and writer.lines == []


def test_a_file_that_cannot_be_written_names_the_folder_and_is_retried(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    blocker = out / "mingo01"
    blocker.write_text("")  # a file where the station's folder should be: every write fails
    consumer = _Consumer([_Message("u", 0, unified_row(1, T0).to_json_bytes())])
    stop = StopFlag()
    service = _service(consumer, _Writer(failures=0), out, stop)
    with pytest.raises(FilesWriteError, match=f"in the output folder {out}: "):
        service.files.write([unified_row(1, T0)])  # type: ignore[union-attr]
    threading.Timer(0.3, blocker.unlink).start()  # the folder becomes writable again
    assert service.step()  # retried until the files accepted, then committed
    assert consumer.commits == [[("u", 0, 1)]] and not consumer.paused
    assert len(read_csv(day_path(out, 1, T0.date()))) == 1


def test_make_writer_does_not_fail_while_influxdb_is_down(recorder: Any) -> None:
    url, handler = recorder
    handler.statuses[:] = [503]  # CREATE DATABASE at start: InfluxDB not ready
    writer = make_writer(InfluxTarget(url=url, database="mingo"), create_database=True)
    writer.write(["m v=1.0 60"])  # creates the database first, then writes
    assert [path.split("?")[0] for path, _, _ in handler.requests] == ["/query"] * 2 + ["/write"]
    assert "CREATE+DATABASE" in handler.requests[1][0]
    writer.write(["m v=2.0 120"])  # only once
    assert [path.split("?")[0] for path, _, _ in handler.requests][-1] == "/write"
    assert len(handler.requests) == 4


class _Recorder(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict[str, str], bytes]] = []  # noqa: RUF012
    statuses: list[int] = []  # noqa: RUF012

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).requests.append((self.path, dict(self.headers), body))
        status = type(self).statuses.pop(0) if type(self).statuses else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Any:
    _Recorder.requests, _Recorder.statuses = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder
    server.shutdown()
    server.server_close()


def test_v1_writer_gzip_batches_token_and_errors(recorder: Any) -> None:
    url, handler = recorder
    target = InfluxTarget(url=url, database="mingo", token=SecretStr("s3cret"), batch_lines=2)
    writer = InfluxV1Writer(target)
    writer.write(["m v=1.0 60", "m v=2.0 120", "m v=3.0 180"])
    assert len(handler.requests) == 2
    path, headers, body = handler.requests[0]
    assert path.startswith("/write?") and "db=mingo" in path and "precision=s" in path
    assert "s3cret" not in path and headers["Authorization"] == "Token s3cret"
    assert gzip.decompress(body) == b"m v=1.0 60\nm v=2.0 120"
    handler.statuses[:] = [503]
    with pytest.raises(InfluxWriteError) as error:
        writer.write(["m v=1.0 60"])
    assert error.value.retryable
    handler.statuses[:] = [400]
    with pytest.raises(InfluxWriteError) as error:
        writer.write(["m v=1.0 60"])
    assert not error.value.retryable
    writer.close()
    dead = InfluxV1Writer(InfluxTarget(url="http://127.0.0.1:9", timeout_s=1))
    with pytest.raises(InfluxWriteError, match="unreachable"):
        dead.write(["m v=1.0 60"])


def test_v2_writer_uses_the_same_lines(recorder: Any) -> None:
    url, handler = recorder
    target = InfluxTarget(url=url, api="v2", org="o", bucket="b", token=SecretStr("tok"))
    writer = InfluxV2Writer(target)
    writer.write(["m,station=1 v=1.0 60"])
    writer.close()
    [(path, headers, body)] = handler.requests
    assert path.startswith("/api/v2/write?") and "bucket=b" in path and "precision=s" in path
    assert headers["Authorization"] == "Token tok"
    assert gzip.decompress(body) == b"m,station=1 v=1.0 60"


def test_settings_keep_secrets_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINGO_INFLUX_TOKEN", "tok-123")
    monkeypatch.setenv("MINGO_INFLUX_PASSWORD", "pw-456")
    monkeypatch.setenv("MINGO_INFLUX_URL", "http://influx:8086")
    settings = SinkSettings()
    assert "tok-123" not in repr(settings) and "pw-456" not in json.dumps(str(settings))
    assert set(settings.secret_values()) >= {"tok-123", "pw-456"}
    assert settings.influx_target().url == "http://influx:8086"
