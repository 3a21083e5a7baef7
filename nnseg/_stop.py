"""Stopping long work at a safe point on SIGINT or SIGTERM (Ctrl-C, a cluster's preemption, ``kill``).

:class:`StopOnSignal` turns the first signal into a flag (``signum``) that the work checks at its safe points
(between prediction cases, between training steps); the work then finishes what is in flight, writes it
atomically and stops with an error naming the signal. A second signal restores the previous handlers and
interrupts at once (``KeyboardInterrupt``); atomic writes still leave no partial file under a final name.
Handlers can only be installed from the main thread; elsewhere the work is not interruptible this way.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any, TypeVar

__all__ = ["STOP_SIGNALS", "StopOnSignal"]

logger = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_Stop = TypeVar("_Stop", bound="StopOnSignal")


class StopOnSignal:
    """Context manager: ``signum`` is set when SIGINT or SIGTERM arrives; the previous handlers come back on exit.

    Args:
        doing: What happens before the stop, for the logged note (``"finishing the cases in flight"``).
    """

    def __init__(self, doing: str = "finishing the work in flight") -> None:
        self.doing = doing
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self: _Stop) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # a second signal: stop now
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        logger.warning("%s received: %s, then stopping (send it again to stop at once)",
                       signal.Signals(signum).name, self.doing)  # fmt: skip

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._restore()
