"""The pipeline harness: every variable it sets is read by a service, each service gets it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.common.settings import KafkaSettings
from services.common.stations import load_network
from services.ingest.settings import IngestSettings
from services.pipeline import (
    GROUP_INPUTS,
    SERVICES,
    PipelineConfig,
    Progress,
    write_local_network,
)
from services.reanalysis.settings import ReanalysisSettings
from services.reconstruct.settings import ReconstructSettings
from services.sink.settings import SinkSettings
from services.unify.service import INPUTS as UNIFY_INPUTS
from services.unify.settings import UnifySettings

pytestmark = pytest.mark.unit

SETTINGS = {
    "ingest": IngestSettings,
    "reanalysis": ReanalysisSettings,
    "reconstruct": ReconstructSettings,
    "unify": UnifySettings,
    "sink": SinkSettings,
}


def _config(tmp_path: Path, influx: str | None) -> PipelineConfig:
    return PipelineConfig(
        kafka=KafkaSettings(bootstrap="127.0.0.1:1"), network_file=tmp_path / "network.yaml",
        era5_dir=tmp_path / "era5", out_dir=tmp_path / "unified", log_dir=tmp_path / "logs",
        run_id="run7", influx_url=influx,
    )  # fmt: skip


@pytest.mark.parametrize("influx", [None, "http://127.0.0.1:9"])
def test_each_service_reads_its_run_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, influx: str | None
) -> None:
    config = _config(tmp_path, influx)
    for name, value in config.environment().items():
        monkeypatch.setenv(name, value)
    assert set(SETTINGS) == set(SERVICES)
    for settings_class in SETTINGS.values():
        settings = settings_class()
        assert settings.kafka.bootstrap == "127.0.0.1:1"
        assert settings.instance == "run7"
        assert settings.network_file == tmp_path / "network.yaml"
    assert ReconstructSettings().options().group_id == config.group("reconstruct")
    assert UnifySettings().options().group_id == config.group("unify")
    assert UnifySettings().options().state_dir == tmp_path / "state" / "unify"
    assert ReconstructSettings().options().calibration_dir == tmp_path / "state" / "calibrations"
    assert ReanalysisSettings().options().era5_dir == tmp_path / "era5"
    assert IngestSettings().options().settle_s == 0
    sink = SinkSettings()
    assert sink.options().group_id == config.group("sink")
    assert sink.sink_out_dir == tmp_path / "unified"
    assert sink.sink_influx is (influx is not None)
    if influx is None:
        assert sink.make_writer() is None


def test_every_variable_is_read_by_some_service(tmp_path: Path) -> None:
    known: set[str] = set()
    for settings_class in SETTINGS.values():
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        known |= {f"{prefix}{name}".upper() for name in settings_class.model_fields}
    known |= {f"MINGO_KAFKA_{name}".upper() for name in KafkaSettings.model_fields}
    unread = set(_config(tmp_path, "http://127.0.0.1:9").environment()) - known
    assert not unread


def test_local_network_file_points_at_the_folders(tmp_path: Path) -> None:
    network = load_network()
    path = write_local_network(
        tmp_path / "network.yaml",
        [network.station(1), network.station(2)],
        {1: tmp_path / "a", 2: tmp_path / "b"},
    )
    local = load_network(path)
    assert [s.id for s in local.stations] == [1, 2]
    assert local.station(2).source is not None
    assert local.station(2).source.kind == "local"
    assert local.station(2).source.root == str(tmp_path / "b")
    assert local.station(1).atmosphere == network.station(1).atmosphere
    assert yaml.safe_load(path.read_text())["stations"][0]["name"] == "mingo01"


def test_caught_up_only_when_no_group_lags() -> None:
    ends = (("mingo.events.raw.v2", 10),)
    assert Progress(ends, (("reconstruct", 0), ("sink", 0))).caught_up
    assert not Progress(ends, (("reconstruct", 0), ("sink", 3))).caught_up
    assert "lag: reconstruct 0, sink 3" in str(Progress(ends, (("reconstruct", 0), ("sink", 3))))


def test_the_drain_check_waits_for_every_topic_unify_reads() -> None:
    # a run that publishes coefficients (mingo fit --publish) is drained only once unify has
    # read them: the check's inputs of the unify group are the service's own
    assert sorted(GROUP_INPUTS["unify"]) == sorted(UNIFY_INPUTS)
