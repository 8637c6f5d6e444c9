"""The progress file (JSON) that the controller surfaces in the Workspace status, and the Ray
Train callback that keeps it current from the workers' `ray.train.report` metrics.

Format: {"state": "Running"|"Succeeded"|"Failed", "step", "total_steps", "epoch", "loss",
"learning_rate", "tokens_per_second", "eta_seconds", "updated_at", "message"}.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ray.train import UserCallback

log = logging.getLogger(__name__)

#: The prefix of progress records printed to the job log (`ProgressFile(..., log=True)`).
PROGRESS_MARKER = "KAITO_PROGRESS "
PROGRESS_KEYS = ("step", "total_steps", "epoch", "loss", "learning_rate", "tokens_per_second", "eta_seconds")


class ProgressFile:
    """Atomic writes of the progress JSON; keeps the last numbers so a state change keeps them."""

    def __init__(self, path: str | Path | None, *, log: bool = False) -> None:
        self.path = Path(path).expanduser() if path else None
        self.log = log
        self.last: dict[str, Any] = dict.fromkeys(PROGRESS_KEYS)

    def write(self, state: str, message: str = "", **numbers: Any) -> None:
        self.last.update({k: v for k, v in numbers.items() if k in PROGRESS_KEYS})
        doc = {
            "state": state,
            **self.last,
            "updated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "message": message,
        }
        if self.log:
            print(PROGRESS_MARKER + json.dumps(doc), flush=True)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".progress-", dir=self.path.parent)
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle)
        os.replace(tmp, self.path)


def read_progress(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


class ProgressCallback(UserCallback):
    """Runs in the Ray Train controller (on the driver's node): writes the progress file after
    every report and notes worker failures (Ray Train then restarts from the last checkpoint)."""

    def __init__(self, path: str | None, *, log: bool = False) -> None:
        self.progress = ProgressFile(path, log=log)

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        rank0 = metrics[0] if metrics else {}
        numbers = {k: rank0.get(k) for k in PROGRESS_KEYS if k in rank0}
        saved = f"; checkpoint at step {rank0.get('step')}" if checkpoint is not None else ""
        resumed = rank0.get("resumed_from_step")
        resumed = f" (resumed from step {resumed})" if resumed else ""
        message = f"training: step {rank0.get('step')} of {rank0.get('total_steps')}{resumed}{saved}"
        self.progress.write("Running", message, **numbers)

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        ranks = ", ".join(str(r) for r in sorted(worker_exceptions))
        first = next(iter(worker_exceptions.values()), None)
        reason = str(first).strip().splitlines()[-1][:300] if first is not None and str(first).strip() else ""
        message = (
            f"worker {ranks} failed ({type(first).__name__}: {reason}); resuming from the last checkpoint"
        )
        log.warning(message)
        self.progress.write("Running", message)
