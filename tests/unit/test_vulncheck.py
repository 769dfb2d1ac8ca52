"""The offline check of requirements.lock against known advisories (infra/vulncheck.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from infra.vulncheck import VulncheckError, check, load_database, main, parse_database, read_lock

CRAFTED_DB = {
    "$meta": {"advisory": "PyUp.io metadata", "timestamp": 1625119202},
    "Jinja2": [
        {
            "advisory": "sandbox escape",
            "cve": "CVE-2019-10906",
            "id": "pyup.io-1",
            "specs": ["<2.10.1"],
        },
        {"advisory": "ReDoS", "cve": None, "id": "pyup.io-2", "specs": [">=0.0.0,<2.11.3"]},
    ],
    "ruamel.yaml": [{"advisory": "x", "cve": None, "id": "pyup.io-3", "specs": ["<0.15.0"]}],
    "odd": [{"advisory": "y", "cve": None, "id": "pyup.io-4", "specs": ["<r5238"]}],
}


def test_lock_lines_are_read_and_anything_else_is_an_error_naming_the_line() -> None:
    pins = read_lock("# header\n\nJinja2==2.10\nruamel_yaml == 0.14.1  # comment\n")
    assert pins == {"jinja2": "2.10", "ruamel-yaml": "0.14.1"}
    with pytest.raises(VulncheckError, match=r"x.lock:2: not a 'name==version' pin"):
        read_lock("a==1\nb>=2\n", "x.lock")


def test_a_pin_inside_an_affected_range_is_found_and_one_outside_is_not() -> None:
    database = parse_database(CRAFTED_DB, "test")
    assert database.updated == datetime(2021, 7, 1, 6, 0, 2, tzinfo=UTC)
    findings, problems = check(
        {"jinja2": "2.10", "ruamel-yaml": "0.14.1", "numpy": "1.0"}, database
    )
    assert problems == []
    # one finding per advisory (2.10 is in both jinja2 ranges), names matched after PEP 503
    assert sorted((f.name, f.advisory.id) for f in findings) == [
        ("jinja2", "pyup.io-1"),
        ("jinja2", "pyup.io-2"),
        ("ruamel-yaml", "pyup.io-3"),
    ]
    assert check({"jinja2": "2.11.3", "ruamel-yaml": "0.15.0"}, database) == ([], [])


def test_an_unreadable_range_of_a_pinned_package_is_a_problem_not_a_pass() -> None:
    findings, problems = check({"odd": "1.0"}, parse_database(CRAFTED_DB, "test"))
    assert findings == [] and problems == [
        "odd: advisory pyup.io-4 has an unreadable range '<r5238'"
    ]


def test_main_fails_on_a_known_vulnerable_pin_of_the_installed_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = load_database()
    assert database.updated.year >= 2021 and len(database.advisories) > 1000
    vulnerable = tmp_path / "bad.lock"
    vulnerable.write_text("pyyaml==5.1\nrequests==2.32.3\n")  # PyYAML < 5.4: CVE-2020-14343
    assert main([str(vulnerable)]) == 1
    out = capsys.readouterr().out
    assert "VULNERABLE pyyaml==5.1" in out and "CVE-2020-14343" in out
    assert "advisories up to 2021-07-01" in out
    clean = tmp_path / "good.lock"
    clean.write_text("pyyaml==6.0.2\n")
    assert main([str(clean)]) == 0
    assert main([str(tmp_path / "missing.lock")]) == 2
