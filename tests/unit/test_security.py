"""Security settings and guarantees that need no server (docs/security.md).

Secrets come only from the environment (or ``.env``/files), are SecretStr everywhere, and never
reach a log line, whether they travel in the message, an extra field or a traceback. Kafka
SASL/TLS and InfluxDB authentication are settings. The API is read-only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from services.common.kafka import client_config
from services.common.logging import configure_logging, redact_secrets
from services.common.settings import KafkaSettings, ServiceSettings
from services.ingest.settings import IngestSettings
from services.reanalysis.settings import CdsSettings, ReanalysisSettings
from services.reconstruct.settings import ReconstructSettings
from services.sink.api import create_app
from services.sink.influx import InfluxV1Writer
from services.sink.settings import ApiSettings, SinkSettings

pytestmark = pytest.mark.unit

SETTINGS = (
    KafkaSettings,
    ServiceSettings,
    IngestSettings,
    ReconstructSettings,
    ReanalysisSettings,
    CdsSettings,
    SinkSettings,
    ApiSettings,
)
SECRET_WORDS = ("password", "token", "passphrase", "key", "secret")


@pytest.mark.parametrize("model", SETTINGS, ids=lambda m: m.__name__)
def test_every_secret_setting_is_a_secret_str(model: type[BaseSettings]) -> None:
    for name, info in model.model_fields.items():
        words = name.split("_")
        if any(w in words for w in SECRET_WORDS) and not name.endswith(("_file", "_location")):
            assert SecretStr in getattr(info.annotation, "__args__", (info.annotation,)), name


def _secret_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    secrets = {
        "MINGO_KAFKA_SASL_PASSWORD": "kafka-pw-1f3a",
        "MINGO_SSH_KEY_PASSPHRASE": "ssh-pp-92bc",
        "MINGO_INFLUX_PASSWORD": "influx-pw-77de",
        "MINGO_INFLUX_TOKEN": 'influx-tok-"quoted"\\x',
        "CDSAPI_KEY": "cds-key-0a0b",
        "CDSAPI_URL": "https://cds.example/api",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    return secrets


def test_each_service_knows_the_secrets_it_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = _secret_env(monkeypatch)
    kafka = secrets["MINGO_KAFKA_SASL_PASSWORD"]
    assert set(IngestSettings().secret_values()) == {kafka, secrets["MINGO_SSH_KEY_PASSPHRASE"]}
    assert set(SinkSettings().secret_values()) == {
        kafka,
        secrets["MINGO_INFLUX_PASSWORD"],
        secrets["MINGO_INFLUX_TOKEN"],
    }
    assert set(ReanalysisSettings().secret_values()) == {kafka, secrets["CDSAPI_KEY"]}
    assert set(ReconstructSettings().secret_values()) == {kafka}
    for model in (IngestSettings, SinkSettings, ReanalysisSettings):
        text = repr(model()) + str(model().model_dump())
        assert not any(value in text for value in secrets.values() if "://" not in value)


def test_secrets_are_redacted_in_messages_extras_and_tracebacks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = _secret_env(monkeypatch)
    configure_logging("DEBUG", "json")
    redact_secrets(SinkSettings().secret_values())  # learnt after logging was set up, as the CLI
    redact_secrets(IngestSettings().secret_values())
    log = logging.getLogger("test.security")
    for value in (v for k, v in secrets.items() if k != "CDSAPI_URL" and k != "CDSAPI_KEY"):
        log.info("connecting with %s", value)
        log.warning("failed", extra={"error": f"auth {value} refused", "nested": {"v": value}})
        try:
            raise RuntimeError(f"server said: bad credentials {value}")
        except RuntimeError:
            log.exception("write failed")
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert len(lines) == 12 and all("***" in json.dumps(line) for line in lines)
    for name, value in secrets.items():
        if name.startswith("MINGO_"):
            assert value not in err and json.dumps(value)[1:-1] not in err, name


def test_text_format_is_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "text", ["p4ss"])
    try:
        raise ValueError("p4ss")
    except ValueError:
        logging.getLogger("x").exception("oops %s", "p4ss")
    err = capsys.readouterr().err
    assert "p4ss" not in err and err.count("***") == 3


def test_kafka_sasl_and_tls_come_from_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    for name, value in {
        "MINGO_KAFKA_BOOTSTRAP": "broker-a:9093,broker-b:9093",
        "MINGO_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "MINGO_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "MINGO_KAFKA_SASL_USERNAME": "mingo-ingest",
        "MINGO_KAFKA_SASL_PASSWORD": "s3cr3t",
        "MINGO_KAFKA_SSL_CA_LOCATION": str(ca),
    }.items():
        monkeypatch.setenv(name, value)
    config = client_config(KafkaSettings())
    assert config == {
        "bootstrap.servers": "broker-a:9093,broker-b:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "mingo-ingest",
        "sasl.password": "s3cr3t",
        "ssl.ca.location": str(ca),
    }
    monkeypatch.setenv("MINGO_KAFKA_SECURITY_PROTOCOL", "SASL_SOMETHING")
    with pytest.raises(ValueError, match="security_protocol"):
        KafkaSettings()


def test_default_kafka_is_plaintext_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BOOTSTRAP", "SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_PASSWORD"):
        monkeypatch.delenv(f"MINGO_KAFKA_{name}", raising=False)
    config = client_config(KafkaSettings(_env_file=None))  # type: ignore[call-arg]
    assert config == {"bootstrap.servers": "127.0.0.1:19092", "security.protocol": "PLAINTEXT"}


def test_influx_credentials_go_to_the_request_and_nowhere_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MINGO_INFLUX_USERNAME", "writer")
    monkeypatch.setenv("MINGO_INFLUX_PASSWORD", "pw-123")
    monkeypatch.delenv("MINGO_INFLUX_TOKEN", raising=False)
    target = SinkSettings().influx_target()
    assert "pw-123" not in repr(target)
    writer = InfluxV1Writer(target)
    request = writer._client.build_request("POST", "/write")
    auth = writer._client.auth
    assert auth is not None
    signed = next(auth.auth_flow(request))
    assert signed.headers["Authorization"].startswith("Basic ")
    writer.close()
    monkeypatch.setenv("MINGO_INFLUX_TOKEN", "tok-456")
    writer = InfluxV1Writer(SinkSettings().influx_target())
    assert writer._client.headers["Authorization"] == "Token tok-456"
    writer.close()


def test_api_is_read_only(tmp_path: Path) -> None:
    app = create_app(tmp_path)
    spec = app.openapi()
    methods = {method for path in spec["paths"].values() for method in path}
    assert methods == {"get"}
    routes = [r for r in app.routes if getattr(r, "methods", None)]
    assert all(set(r.methods) <= {"GET", "HEAD"} for r in routes)  # type: ignore[attr-defined]


def test_api_and_settings_default_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINGO_API_HOST", raising=False)
    monkeypatch.delenv("MINGO_INFLUX_URL", raising=False)
    assert ApiSettings(_env_file=None).api_host == "127.0.0.1"  # type: ignore[call-arg]
    assert SinkSettings(_env_file=None).influx_url.startswith("http://127.0.0.1:")  # type: ignore[call-arg]


def test_lock_file_pins_every_declared_dependency() -> None:
    import tomllib

    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (root / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    for text in declared:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-").replace(".", "-")
        assert name in pins, f"{name} is not in requirements.lock: python -m infra.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
