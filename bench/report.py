"""Regenerate bench/RESULTS.md: every figure of the stress benchmarks, with machine, date, command.

::

    mingo infra up && eval "$(mingo infra env)"     # bench_e2e.py needs the servers
    python bench/report.py                           # every benchmark (about 20 min on 2 cores)
    python bench/report.py --only process            # one of them
    python bench/report.py --from-json a.json b.json # tables from saved ``--json`` outputs

Each benchmark runs as its own process with ``--json``; its figures become one table. The
benchmarks of bench_e2e.py and bench_reconstruct_scaling.py delete and recreate every topic: use
a development cluster.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BENCHMARKS = {
    "e2e": ["bench/bench_e2e.py"],
    "process": ["bench/bench_process_days.py", "--days", "7"],
    "scaling": ["bench/bench_reconstruct_scaling.py", "--stations", "1,2,3,4", "--rate", "1"],
}


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def table(figures: dict[str, object]) -> str:
    """A two-column markdown table of one benchmark's figures."""
    lines = [f"### {figures['benchmark']}", "", "| figure | value |", "|---|---|"]
    lines += [f"| {key} | {_cell(value)} |" for key, value in figures.items() if key != "benchmark"]
    return "\n".join(lines)


def main() -> None:
    """Run the chosen benchmarks and rewrite RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--from-json", nargs="+", type=Path, help="Saved --json outputs.")
    args = parser.parse_args()
    sections = []
    for saved in args.from_json or []:
        sections.append(table(json.loads(saved.read_text().strip().splitlines()[-1])))
    for name in [] if args.from_json else args.only or list(BENCHMARKS):
        result = subprocess.run(
            [sys.executable, *BENCHMARKS[name], "--json"],
            cwd=HERE.parent, check=True, capture_output=True, text=True,
        )  # fmt: skip
        sections.append(table(json.loads(result.stdout.strip().splitlines()[-1])))
    RESULTS.write_text(
        "# Stress benchmark results\n\nWritten by `python bench/report.py`; how to read them: "
        "bench/README.md.\n\n" + "\n\n".join(sections) + "\n"
    )
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
