"""Show a tuning run's progress from the runtime's progress file: a live bar on a terminal, log lines
otherwise."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def read_progress(path: Path) -> dict[str, Any] | None:
    """The last complete progress record, or None while there is none (the file is rewritten atomically)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def describe(record: dict[str, Any]) -> str:
    """One human line: step/total, loss, tokens/s, ETA."""
    parts = [f"step {record.get('step', 0)}/{record.get('total_steps') or '?'}"]
    if record.get("loss") is not None:
        parts.append(f"loss {record['loss']:.4f}")
    if record.get("tokens_per_second"):
        parts.append(f"{record['tokens_per_second']:.0f} tokens/s")
    if record.get("eta_seconds") is not None:
        parts.append(f"ETA {int(record['eta_seconds'])} s")
    return ", ".join(parts)


def follow_progress(path: Path, done: threading.Event, console: Console, interval: float = 0.5) -> None:
    """Render progress until `done` is set. Plain log lines (only on change) when not on a terminal."""
    if console.is_terminal:
        _follow_live(path, done, console, interval)
        return
    last = ""
    while not done.wait(interval):
        record = read_progress(path)
        line = describe(record) if record else ""
        if line and line != last:
            console.print(f"tuning: {line}")
            last = line
    record = read_progress(path)
    if record and describe(record) != last:
        console.print(f"tuning: {describe(record)}")


def _follow_live(path: Path, done: threading.Event, console: Console, interval: float) -> None:
    columns = (
        TextColumn("[bold]tuning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("tuning", total=None, detail="starting")
        while True:
            finished = done.wait(interval)
            record = read_progress(path)
            if record:
                detail = describe(record).split(", ", 1)[-1] if record.get("loss") is not None else ""
                bar.update(
                    task, completed=record.get("step", 0), total=record.get("total_steps"), detail=detail
                )
            if finished:
                break
