"""Reading data files (parquet, jsonl, json, csv) into rows. Malformed rows are counted, not fatal."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaito_runtime.tuning.errors import DataError

_EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
}


@dataclass
class FileRows:
    """The rows of one file, plus the problems found reading it."""

    path: Path
    format: str
    rows: list[dict[str, Any]]
    bad_rows: int = 0
    problems: list[str] = field(default_factory=list)


def detect_format(path: Path) -> str:
    """By extension (a `?download=true` suffix already stripped), else by the first bytes."""
    for suffix in reversed(path.suffixes):
        if suffix.lower() in _EXTENSIONS:
            return _EXTENSIONS[suffix.lower()]
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.lstrip()
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        first_line = stripped.split(b"\n", 1)[0]
        try:
            json.loads(first_line)
            return "jsonl"
        except ValueError:
            return "json"
    return "csv"


def is_data_file(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and any(s.lower() in _EXTENSIONS for s in path.suffixes)
    )


def read_rows(path: Path, fmt: str = "auto") -> FileRows:
    """Read `path` as `fmt` (auto: detect). Raises `DataError` when the file cannot be parsed at all."""
    if path.stat().st_size == 0:
        raise DataError(f"data file {path.name}: the file is empty")
    fmt = detect_format(path) if fmt == "auto" else fmt
    try:
        return {"parquet": _parquet, "jsonl": _jsonl, "json": _json, "csv": _csv}[fmt](path)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"data file {path.name}: not readable as {fmt}: {exc}") from None


def _parquet(path: Path) -> FileRows:
    import pyarrow.parquet as pq

    return FileRows(path, "parquet", pq.read_table(path).to_pylist())


def _csv(path: Path) -> FileRows:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    bad: list[str] = []

    def on_invalid(row: Any) -> str:
        bad.append(
            f"line {row.number}: {row.text[:80]!r} has {row.actual_columns} columns, "
            f"expected {row.expected_columns}"
        )
        return "skip"

    table = pcsv.read_csv(
        path,
        parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pcsv.ConvertOptions(column_types=None, strings_can_be_null=False),
    )
    # Everything as text: numbers in a text column are still text for training.
    table = table.cast(pa.schema([pa.field(f.name, pa.string()) for f in table.schema]))
    return FileRows(path, "csv", table.to_pylist(), len(bad), bad[:5])


def _jsonl(path: Path) -> FileRows:
    rows: list[dict[str, Any]] = []
    bad: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                bad.append(f"line {number}: not JSON ({exc.msg})")
                continue
            if not isinstance(value, dict):
                bad.append(f"line {number}: a JSON {type(value).__name__}, expected an object")
                continue
            rows.append(value)
    if not rows and bad:
        raise DataError(f"data file {path.name}: no line is a JSON object (first problem: {bad[0]})")
    return FileRows(path, "jsonl", rows, len(bad), bad[:5])


def _json(path: Path) -> FileRows:
    try:
        value = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except ValueError as exc:
        raise DataError(f"data file {path.name}: not valid JSON: {exc}") from None
    if isinstance(value, dict):
        # {"data": [...]} / {"train": [...]}: the one list inside.
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) != 1:
            return FileRows(path, "json", [value])
        value = lists[0]
    if not isinstance(value, list):
        raise DataError(f"data file {path.name}: expected a JSON list of objects")
    rows = [r for r in value if isinstance(r, dict)]
    bad = [
        f"item {i}: a JSON {type(r).__name__}, expected an object"
        for i, r in enumerate(value)
        if not isinstance(r, dict)
    ]
    return FileRows(path, "json", rows, len(bad), bad[:5])
