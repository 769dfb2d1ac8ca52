"""services/common: settings, logging, run loop, station network, local source."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from services.common.logging import JsonFormatter, TextFormatter, configure_logging
from services.common.runtime import RunBounds, StopFlag, run_loop
from services.common.settings import ServiceSettings
from services.common.stations import NetworkConfigError, load_network
from services.ingest.sources import LocalSource, SourceUnavailableError, resolve_ssh_target

pytestmark = pytest.mark.unit


def test_secrets_are_read_from_the_environment_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MINGO_KAFKA_SASL_PASSWORD", "hunter2-very-secret")
    settings = ServiceSettings()
    assert settings.kafka.sasl_password is not None
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    configure_logging("INFO", "json", settings.secret_values())
    logging.getLogger("any.library").warning("connecting with password %s", "hunter2-very-secret")
    err = capsys.readouterr().err
    assert "hunter2" not in err and "***" in err


def test_settings_are_frozen() -> None:
    settings = ServiceSettings()
    with pytest.raises(ValueError, match="frozen"):
        settings.log_level = "DEBUG"  # type: ignore[misc]


def test_json_log_lines_carry_extra_fields() -> None:
    record = logging.makeLogRecord({"msg": "file done", "levelname": "INFO", "station": 2})
    payload = json.loads(JsonFormatter().format(record))
    assert payload["message"] == "file done" and payload["station"] == 2


def test_text_log_lines_carry_extra_fields() -> None:
    record = logging.makeLogRecord(
        {"msg": "store refused", "levelname": "WARNING", "station": 2, "error": "disk full"}
    )
    line = TextFormatter().format(record)
    assert line.endswith(": store refused station=2 error=disk full"), line


def test_run_loop_stops_when_idle_and_on_a_stop_request() -> None:
    work = iter([True, True, False])
    steps = run_loop(lambda: next(work), stop=StopFlag(), interval_s=0.01,
                     bounds=RunBounds(stop_when_idle=True))  # fmt: skip
    assert steps == 3
    stop = StopFlag()
    calls = []

    def step() -> bool:
        calls.append(1)
        if len(calls) == 5:
            stop.set()
        return True

    assert run_loop(step, stop=stop, interval_s=0.01) == 5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("stations: [", "not valid YAML"),
        ("- 1\n", "expected a mapping"),
        ("stations:\n  - {id: 1, name: a}\n  - {id: 1, name: b}\n", "unique"),
        ("stations:\n  - {id: 12, name: a}\n", "less than or equal to 9"),
        ("stations:\n  - {id: 1, name: a, source: {kind: sftp, root: /x}}\n", "needs a host"),
    ],
)
def test_bad_network_files_are_named_with_the_reason(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "stations.yaml"
    path.write_text(content)
    with pytest.raises(NetworkConfigError, match=message) as info:
        load_network(path)
    assert str(path) in str(info.value)


def test_shipped_network_file_is_valid() -> None:
    network = load_network()
    assert network.station(1).name == "mingo01"
    with pytest.raises(KeyError, match="known"):
        network.station(7)


def test_ssh_alias_resolves_from_the_ssh_config(tmp_path: Path) -> None:
    from services.common.stations import StationSource

    config = tmp_path / "ssh_config"
    config.write_text(
        "Host mingo01\n  HostName 10.1.2.3\n  Port 2222\n  User rpcuser\n"
        "  IdentityFile ~/.ssh/mingo\n  UserKnownHostsFile /etc/mingo_known_hosts\n"
    )
    target = resolve_ssh_target(StationSource(host="mingo01", root="/home/rpcuser"), config)
    assert (target.host, target.port, target.user) == ("10.1.2.3", 2222, "rpcuser")
    assert target.key_file == os.path.expanduser("~/.ssh/mingo")
    assert target.known_hosts == "/etc/mingo_known_hosts"


def test_local_source_lists_files_and_reads_from_an_offset(tmp_path: Path) -> None:
    (tmp_path / "dat").mkdir()
    (tmp_path / "dat" / "a.dat").write_bytes(b"0123456789")
    (tmp_path / "dat" / "sub").mkdir()
    source = LocalSource(tmp_path)
    [file] = source.list("dat")
    assert (file.name, file.size) == ("a.dat", 10)
    assert source.read(file, 4) == b"456789"
    assert source.list("missing") == []


def test_local_source_refuses_a_file_cut_short_since_its_listing(tmp_path: Path) -> None:
    (tmp_path / "dat").mkdir()
    path = tmp_path / "dat" / "a.dat"
    path.write_bytes(b"0123456789")
    source = LocalSource(tmp_path)
    [file] = source.list("dat")
    path.write_bytes(b"01234")
    with pytest.raises(SourceUnavailableError, match=r"a.dat: read 3 of 8 bytes from offset 2"):
        source.read(file, 2)


def test_local_source_skips_a_file_renamed_during_the_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A station renames ``.x.dat.part`` to ``x.dat`` between the listing and the stat."""
    (tmp_path / "dat").mkdir()
    (tmp_path / "dat" / "a.dat").write_bytes(b"01")
    (tmp_path / "dat" / ".b.dat.part").write_bytes(b"0123")
    real_scandir = os.scandir

    def scandir_then_rename(path: str) -> list[os.DirEntry[str]]:
        entries = list(real_scandir(path))
        os.rename(os.path.join(path, ".b.dat.part"), os.path.join(path, "b.dat"))
        return entries

    monkeypatch.setattr("services.ingest.sources.os.scandir", scandir_then_rename)
    files = LocalSource(tmp_path).list("dat")
    assert [f.name for f in files] == ["a.dat"]
