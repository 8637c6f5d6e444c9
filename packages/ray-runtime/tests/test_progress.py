"""The progress record: a JSON file for local runs, and `KAITO_PROGRESS` log lines for the operator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaito_runtime.tuning.progress import PROGRESS_MARKER, ProgressFile, read_progress


def test_progress_file_is_rewritten_whole_and_keeps_the_last_numbers(tmp_path: Path) -> None:
    progress = ProgressFile(tmp_path / "p" / "progress.json")
    progress.write("Running", "training", step=2, total_steps=10, loss=1.5)
    progress.write("Succeeded", "done")
    record = read_progress(tmp_path / "p" / "progress.json")
    assert record["state"] == "Succeeded" and record["message"] == "done"
    assert (record["step"], record["total_steps"], record["loss"]) == (2, 10, 1.5)
    assert [p.name for p in (tmp_path / "p").iterdir()] == ["progress.json"]


@pytest.mark.parametrize("log", [True, False])
def test_progress_lines_in_the_job_log_only_when_asked(capsys: pytest.CaptureFixture[str], log: bool) -> None:
    ProgressFile(None, log=log).write("Running", "training", step=3, total_steps=9)
    out = capsys.readouterr().out
    if not log:
        assert out == ""
        return
    (line,) = out.splitlines()
    assert line.startswith(PROGRESS_MARKER)
    record = json.loads(line[len(PROGRESS_MARKER) :])
    assert (record["state"], record["step"], record["total_steps"]) == ("Running", 3, 9)
