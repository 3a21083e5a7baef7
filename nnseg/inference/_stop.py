"""Stopping a folder run between cases on SIGINT or SIGTERM (Ctrl-C, a cluster's preemption, ``kill``).

The first signal sets a flag the run checks before each case: the cases in flight are finished and written
atomically, then :class:`PredictionStopped` is raised, so nothing is half-written and a rerun predicts only the
rest. A second signal restores the previous handler and interrupts at once (``KeyboardInterrupt``); atomic
writes still leave no partial file under a final name. Handlers can only be installed from the main thread;
elsewhere the run is not interruptible this way.
"""

from __future__ import annotations

import signal
from pathlib import Path

from nnseg._stop import STOP_SIGNALS
from nnseg._stop import StopOnSignal as _StopOnSignal
from nnseg.errors import PredictionStopped
from nnseg.sharding import Shard

__all__ = ["STOP_SIGNALS", "PredictionStopped", "StopOnSignal", "stopped_error"]


def stopped_error(signum: int, shard: Shard, output_dir: Path) -> PredictionStopped:
    """The :class:`~nnseg.errors.PredictionStopped` of a part stopped by ``signum`` between cases."""
    name = signal.Signals(signum).name
    return PredictionStopped(
        f"{shard} of {output_dir} stopped by {name} between cases; every finished case is written and recorded, "
        "nothing is half-written. Run the same command again to predict the remaining cases.",
        signum,
    )


class StopOnSignal(_StopOnSignal):
    """:class:`nnseg._stop.StopOnSignal` for a folder run: the cases in flight are finished before the stop."""

    def __init__(self) -> None:
        super().__init__("finishing the cases in flight")
