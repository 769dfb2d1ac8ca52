"""Known-vulnerable pins of ``requirements.lock``, checked offline against the safety-db package.

::

    python -m infra.vulncheck                     # requirements.lock of the repository
    python -m infra.vulncheck path/to/other.lock

``pip-audit`` needs pypi.org's JSON API or osv.dev, which the machines of this project cannot
reach; the ``safety-db`` distribution (PyUp's free database, installed by pip like any package
as a dev dependency) is reachable. It is OLD: its last release holds advisories up to
2021-07-01, so this check catches pins that were already known to be vulnerable then and nothing
published since; ``bash infra/run.sh audit`` (pip-audit) remains the complete check where the
internet is reachable (docs/security.md). The age of the database is printed on every run.

Exit status: 0 when no pin matches an advisory, 1 when one does (each is printed with its
advisory id, CVE and affected range), 2 when the lock or the database cannot be read.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

DATABASE = "safety-db"
LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


class VulncheckError(RuntimeError):
    """The lock or the database cannot be read."""


@dataclass(frozen=True)
class Advisory:
    """One advisory of the database: affected versions of one package."""

    id: str
    cve: str | None
    specs: tuple[str, ...]  #: affected ranges; the pin is affected if any contains it
    text: str


@dataclass(frozen=True)
class Finding:
    """A pin of the lock that an advisory covers."""

    name: str
    version: str
    advisory: Advisory
    spec: str


@dataclass(frozen=True)
class Database:
    """Advisories by canonical package name, and how fresh they are."""

    advisories: dict[str, list[Advisory]]
    updated: datetime  #: the database's own timestamp (UTC)
    release: str  #: version of the distribution that shipped it


def canonical(name: str) -> str:
    """PEP 503 normalised project name (``Foo_Bar.baz`` -> ``foo-bar-baz``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(text: str, source: str = "requirements.lock") -> dict[str, str]:
    """Canonical name -> pinned version of every ``name==version`` line.

    Comments and blank lines are skipped; anything else is an error naming the line, so that a
    pin the check cannot read never passes silently.
    """
    pins: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)", line)
        if match is None:
            raise VulncheckError(f"{source}:{number}: not a 'name==version' pin: {raw!r}")
        pins[canonical(match[1])] = match[2]
    return pins


def parse_database(raw: dict[str, Any], release: str) -> Database:
    """The database from safety-db's ``insecure_full.json`` content."""
    meta = raw.get("$meta", {})
    if "timestamp" not in meta:
        raise VulncheckError(f"{DATABASE}: no $meta.timestamp; not a safety-db file")
    advisories: dict[str, list[Advisory]] = {}
    for name, entries in raw.items():
        if name == "$meta":
            continue
        advisories.setdefault(canonical(name), []).extend(
            Advisory(
                id=str(entry.get("id", "?")),
                cve=entry.get("cve"),
                specs=tuple(entry.get("specs") or ()),
                text=str(entry.get("advisory", "")),
            )
            for entry in entries
        )
    return Database(advisories, datetime.fromtimestamp(int(meta["timestamp"]), UTC), release)


def load_database() -> Database:
    """The installed safety-db (read as data: its ``__init__`` opens a path relative to cwd)."""
    try:
        dist = metadata.distribution(DATABASE)
    except metadata.PackageNotFoundError:
        raise VulncheckError(
            f"{DATABASE} is not installed (a dev dependency: pip install -e '.[dev]')"
        ) from None
    path = Path(str(dist.locate_file("safety_db/insecure_full.json")))
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VulncheckError(f"{DATABASE}: cannot read {path}: {exc}") from exc
    return parse_database(raw, dist.version)


def check(pins: dict[str, str], database: Database) -> tuple[list[Finding], list[str]]:
    """Findings (pins inside an affected range) and problems (ranges or pins not understood).

    A range the database writes in a form PEP 440 does not accept (a handful of old entries,
    e.g. ``<r5238``) is reported as a problem only when its package is pinned.
    """
    findings: list[Finding] = []
    problems: list[str] = []
    for name, pinned in sorted(pins.items()):
        entries = database.advisories.get(name, [])
        if not entries:
            continue
        try:
            version = Version(pinned)
        except InvalidVersion:
            problems.append(f"{name}=={pinned}: not a PEP 440 version, cannot be compared")
            continue
        for advisory in entries:
            for spec in advisory.specs:
                try:
                    affected = SpecifierSet(spec, prereleases=True).contains(version)
                except InvalidSpecifier:
                    problems.append(
                        f"{name}: advisory {advisory.id} has an unreadable range {spec!r}"
                    )
                    continue
                if affected:
                    findings.append(Finding(name, pinned, advisory, spec))
                    break
    return findings, problems


def main(argv: list[str] | None = None) -> int:
    """Check a lock file; print findings and the age of the database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", nargs="?", type=Path, default=LOCK)
    args = parser.parse_args(argv)
    try:
        pins = read_lock(args.lock.read_text(), str(args.lock))
        database = load_database()
    except (OSError, VulncheckError) as exc:
        sys.stderr.write(f"vulncheck: {exc}\n")
        return 2
    age_days = (datetime.now(UTC) - database.updated).days
    sys.stdout.write(
        f"vulncheck: {len(pins)} pins of {args.lock} against {DATABASE} {database.release} "
        f"(advisories up to {database.updated:%Y-%m-%d}, {age_days} days old: vulnerabilities "
        "published since are NOT covered; bash infra/run.sh audit checks them where pypi.org "
        "is reachable)\n"
    )
    findings, problems = check(pins, database)
    for problem in problems:
        sys.stderr.write(f"vulncheck: cannot check: {problem}\n")
    for f in findings:
        sys.stdout.write(
            f"VULNERABLE {f.name}=={f.version}: {f.advisory.id}"
            f"{' ' + f.advisory.cve if f.advisory.cve else ''} affects {f.spec}: "
            f"{f.advisory.text[:200]}\n"
        )
    if findings or problems:
        return 1
    sys.stdout.write("vulncheck: no pin matches a known advisory\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
