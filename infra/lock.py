"""The resolved dependencies of the project as pins, for ``requirements.lock`` and ``pip-audit``.

::

    python -m infra.lock > requirements.lock     # in the .venv of `bash infra/run.sh test`

Walks the requirements of the installed ``mingo-dataflow[dev]`` distribution (and theirs,
markers evaluated for this interpreter) and prints ``name==version`` for each, sorted. Unlike
``pip freeze`` it leaves out whatever else happens to be installed in the environment.
"""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement

PROJECT = "mingo-dataflow"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolved(project: str = PROJECT, extras: tuple[str, ...] = ("dev",)) -> dict[str, str]:
    """Canonical name -> installed version of every distribution ``project[extras]`` needs.

    Raises
    ------
    metadata.PackageNotFoundError
        If a needed distribution is not installed.
    """
    pins: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [(project, extras)]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        dist = metadata.distribution(name)
        if _canonical(name) != _canonical(project):
            pins[_canonical(name)] = dist.version
        for text in dist.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": e} for e in wanted] or [{"extra": ""}]
            marker = requirement.marker
            if marker is None or any(marker.evaluate(env) for env in environments):
                todo.append((requirement.name, tuple(sorted(requirement.extras))))
    return pins


def main() -> None:
    """Print the pins, one per line, with a header saying how they were made."""
    lines = [f"{name}=={version}" for name, version in sorted(resolved().items())]
    header = "# Resolved dependencies of mingo-dataflow[dev]; regenerate: python -m infra.lock"
    print("\n".join([header, *lines]))  # noqa: T201 - the output is the product


if __name__ == "__main__":
    main()
