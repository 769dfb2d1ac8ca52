"""The service loop: signal handling, bounded runs for tests, periodic heartbeats.

A service is a ``step()`` function called until a stop is requested. SIGTERM/SIGINT only set a
flag: the current step finishes (its transaction commits or aborts), then ``close()`` flushes and
closes. ``max_seconds``/``max_steps``/``stop_when_idle`` bound a run for tests and batch use.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunBounds:
    """When a run ends by itself (None = never)."""

    max_seconds: float | None = None
    max_steps: int | None = None
    stop_when_idle: bool = False  #: stop after the first step that found nothing to do


class StopFlag:
    """Set by a signal or by code; services check it between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        """Request a stop."""
        self._event.set()

    @property
    def is_set(self) -> bool:
        """True once a stop was requested."""
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on a stop; True if stopped."""
        return self._event.wait(seconds)


def install_signal_handlers(stop: StopFlag) -> None:
    """Make SIGTERM and SIGINT request a graceful stop (main thread only)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_loop(
    step: Callable[[], bool],
    *,
    stop: StopFlag,
    interval_s: float,
    bounds: RunBounds | None = None,
    heartbeat: Callable[[], None] | None = None,
    heartbeat_s: float = 30.0,
) -> int:
    """Call ``step`` until stopped; returns the number of steps run.

    ``step`` returns True when it did work (then it is called again at once) and False when idle
    (then the loop waits ``interval_s``).
    """
    bounds = bounds or RunBounds()
    started = time.monotonic()
    last_heartbeat = float("-inf")
    steps = 0
    while not stop.is_set:
        if heartbeat is not None and time.monotonic() - last_heartbeat >= heartbeat_s:
            heartbeat()
            last_heartbeat = time.monotonic()
        did_work = step()
        steps += 1
        if bounds.max_steps is not None and steps >= bounds.max_steps:
            break
        if bounds.max_seconds is not None and time.monotonic() - started >= bounds.max_seconds:
            break
        if not did_work:
            if bounds.stop_when_idle:
                break
            stop.wait(interval_s)
    return steps
