"""Stopping a folder run between cases on SIGINT or SIGTERM (Ctrl-C, a cluster's preemption, ``kill``).

The first signal sets a flag the run checks before each case: the cases in flight are finished and written
atomically, then :class:`PredictionStopped` is raised, so nothing is half-written and a rerun predicts only the
rest. A second signal restores the previous handler and interrupts at once (``KeyboardInterrupt``); atomic
writes still leave no partial file under a final name. Handlers can only be installed from the main thread;
elsewhere the run is not interruptible this way.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from nnseg.errors import PredictionStopped
from nnseg.sharding import Shard

__all__ = ["PredictionStopped", "StopOnSignal", "stopped_error"]

logger = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stopped_error(signum: int, shard: Shard, output_dir: Path) -> PredictionStopped:
    """The :class:`~nnseg.errors.PredictionStopped` of a part stopped by ``signum`` between cases."""
    name = signal.Signals(signum).name
    return PredictionStopped(
        f"{shard} of {output_dir} stopped by {name} between cases; every finished case is written and recorded, "
        "nothing is half-written. Run the same command again to predict the remaining cases.",
        signum,
    )


class StopOnSignal:
    """Context manager: ``signum`` is set when SIGINT or SIGTERM arrives; the previous handlers come back on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # a second signal: stop now
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum
        logger.warning("%s received: finishing the cases in flight, then stopping (send it again to stop at once)",
                       signal.Signals(signum).name)  # fmt: skip

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._restore()
