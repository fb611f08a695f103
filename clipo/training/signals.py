"""Preemption: SIGTERM (what a cluster sends before it stops a job) and SIGINT (Ctrl-C) during a fit.

Inside :class:`PreemptionGuard` the first signal only sets a flag: the trainer finishes the step it is in,
writes a checkpoint and raises :class:`Preempted`, whose one-line message says how to resume. A second signal
exits at once (exit code 128 + the signal number). The previous handlers are restored on leaving the guard.
Handlers can only be installed from the main thread; elsewhere the guard does nothing.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["Preempted", "PreemptionGuard", "STOP_SIGNALS"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """``fit()`` stopped early on a signal, after writing a checkpoint of the last finished step."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None, output_dir: str | Path):
        self.signum, self.step, self.checkpoint, self.output_dir = signum, step, checkpoint, output_dir
        where = f"checkpoint {checkpoint}" if checkpoint is not None else f"checkpoint in {output_dir}"
        super().__init__(f"clipo: stopped by {signal.Signals(signum).name} after step {step}, {where}; continue with "
                         f"trainer.output_dir={output_dir} trainer.resume=true")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended (143 SIGTERM, 130 SIGINT)."""
        return 128 + int(self.signum)


class PreemptionGuard:
    """A context manager: while inside, SIGTERM/SIGINT set :attr:`signum` instead of ending the process."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # the second signal: stop now
            sys.stderr.write(f"clipo: second {signal.Signals(signum).name}; exiting without a checkpoint\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum
        sys.stderr.write(f"clipo: {signal.Signals(signum).name} received; finishing the current step and writing a "
                         "checkpoint (send it again to exit at once)\n")
        sys.stderr.flush()

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()
