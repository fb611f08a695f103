"""One run per run folder: the folder's identity (``run.json``) and its lock.

:func:`claim_run_folder` is what :meth:`clipo.training.trainer.RLTrainer.fit` does first, on the main process:

* it takes an exclusive ``fcntl.flock`` on the folder's lock file, held until :meth:`RunClaim.release` (the end
  of the fit). A second run started on the same folder meanwhile refuses with one line. The OS drops the lock of
  a killed process, so a stale lock never blocks a resume;
* a fresh start (not ``trainer.resume``) in a folder that already holds a run's files (``run.json``, metrics,
  checkpoints) refuses with one line naming the ways out, unless ``trainer.overwrite`` (the old run's files are
  deleted first);
* it writes the run's identity: a random run id (kept across resumes), the start time, host, pid and a hash of
  the config. Checkpoints record the run id, so pruning never deletes another run's checkpoints.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from clipo.training.config import ConfigError
from clipo.training.run_folder import RunFolder

__all__ = ["RunClaim", "claim_run_folder", "config_hash"]


def config_hash(config: dict[str, Any]) -> str:
    """A short hash of a config dict (sorted JSON), recorded in ``run.json``."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunClaim:
    """The lock on a run folder and the run's id; :meth:`release` unlocks (idempotent)."""

    run: RunFolder
    run_id: str
    handle: Any = None

    def release(self) -> None:
        if self.handle is not None:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_UN)
            finally:
                self.handle.close()
                self.handle = None


def _lock(run: RunFolder) -> Any:
    run.root.mkdir(parents=True, exist_ok=True)
    handle = open(run.lock, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        other = run.read_run_info() or {}
        who = f" (pid {other['pid']} on {other['host']})" if "pid" in other and "host" in other else ""
        raise ConfigError(f"{run.root} is in use by another run{who}; wait for it to end or choose another "
                          "trainer.output_dir") from None
    return handle


def claim_run_folder(output_dir: str | os.PathLike[str], *, resume: bool, overwrite: bool,
                     config: dict[str, Any] | None = None) -> RunClaim:
    """Lock ``output_dir`` and record this run in it (see the module docstring); ConfigError when it may not."""
    run = RunFolder(output_dir)
    handle = _lock(run)
    try:
        previous = run.read_run_info() if resume else None
        if not resume:
            found = run.previous_run_files()
            if found and not overwrite:
                names = ", ".join(p.name for p in found)
                raise ConfigError(
                    f"{run.root} already holds another run ({names}): continue it with trainer.resume=true, use a new "
                    "trainer.output_dir, or delete it with trainer.overwrite=true")
            if found:
                run.clear_run()
        run_id = str(previous["run_id"]) if previous and previous.get("run_id") else uuid.uuid4().hex
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        info = {"run_id": run_id, "started": previous.get("started", now) if previous else now,
                "host": socket.gethostname(), "pid": os.getpid(),
                "config_hash": config_hash(config) if config is not None else None}
        if previous:
            info["resumed"] = [*previous.get("resumed", []), now]
        run.write_run_info(info)
    except BaseException:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
        raise
    return RunClaim(run, run_id, handle)
