"""Click options shared by the ``mingo`` commands of several services."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from services.common.runtime import RunBounds

F = TypeVar("F", bound=Callable[..., Any])


def network_option(
    default: Path | None = None,
    help: str = "Network file (default: MINGO_NETWORK_FILE or config/stations.yaml).",
) -> Callable[[F], F]:
    """``--network FILE`` into the parameter ``network_file`` (an existing file)."""
    return click.option(
        "--network",
        "network_file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=default,
        show_default=default is not None,
        help=help,
    )


def service_run_options(once_help: str) -> Callable[[F], F]:
    """``--once`` (stop when idle) and ``--max-seconds`` of a long-running service command."""

    def decorate(command: F) -> F:
        command = click.option(
            "--max-seconds", type=float, default=None, help="Stop after this long. [s]"
        )(command)
        return click.option("--once", is_flag=True, help=once_help)(command)

    return decorate


def run_bounds(once: bool, max_seconds: float | None) -> RunBounds:
    """The bounds the two options above ask for."""
    return RunBounds(max_seconds=max_seconds, stop_when_idle=once)
