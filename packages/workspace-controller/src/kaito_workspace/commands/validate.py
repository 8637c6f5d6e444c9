"""`kaito-workspace validate -f FILE...`: check Workspace YAML the way the admission webhook does.

Every document of every file is looked at: Workspaces are validated (with the ConfigMaps of the same
input, when they reference one), ConfigMaps carrying training_config.yaml / inference_config.yaml are
checked as tuning / inference configs, anything else is reported as skipped. Exit 1 if anything is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from kaito_workspace.api import Problem
from kaito_workspace.validation import (
    INFERENCE_CONFIG_KEY,
    TRAINING_CONFIG_KEY,
    validate_inference_config,
    validate_tuning_config,
    validate_workspace,
)

YAML_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Result:
    """The outcome for one document."""

    source: str
    index: int
    kind: str
    name: str
    status: str  # valid | invalid | skipped
    problems: list[Problem] = field(default_factory=list)
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}" if self.name else self.kind

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["problems"] = [asdict(p) for p in self.problems]
        return d


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="validate Workspace YAML files (and their tuning/inference ConfigMaps)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="extend",
        nargs="+",
        required=True,
        metavar="FILE",
        help="YAML file(s) or directories ('-' reads stdin); multi-document YAML is fine",
    )
    p.add_argument(
        "--local",
        action="store_true",
        help="validate for a local run on this machine (allows loopback URLs and hostPath volumes)",
    )
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    p.set_defaults(func=run)


def _expand(paths: Iterable[str]) -> Iterator[str]:
    for raw in paths:
        path = Path(raw)
        if raw != "-" and path.is_dir():
            yield from (str(p) for p in sorted(path.iterdir()) if p.suffix in YAML_SUFFIXES and p.is_file())
        else:
            yield raw


def _read_documents(source: str, stdin: TextIO) -> tuple[list[Any], Problem | None]:
    try:
        text = stdin.read() if source == "-" else Path(source).read_text()
    except OSError as e:
        return [], Problem("", f"cannot read file: {e.strerror or e}", "check the path")
    try:
        return list(yaml.safe_load_all(text)), None
    except yaml.YAMLError as e:
        return [], Problem("", f"invalid YAML: {e}", "fix the YAML syntax")


def validate_documents(
    sources: list[str], *, local: bool = False, stdin: TextIO | None = None
) -> list[Result]:
    """Validate every document of `sources`; the pure core of the command (no printing)."""
    stdin = stdin or sys.stdin
    loaded: list[tuple[str, int, Any]] = []
    results: list[Result] = []
    for source in _expand(sources):
        docs, err = _read_documents(source, stdin)
        if err is not None:
            results.append(Result(source, 0, "File", "", "invalid", [err]))
        loaded.extend((source, i, d) for i, d in enumerate(docs) if d is not None)

    # ConfigMaps by name; one in the same file as the Workspace wins over one from another file.
    config_maps: dict[str, dict[str, Any]] = {}
    by_source: dict[str, dict[str, dict[str, Any]]] = {}
    referenced: dict[tuple[str, str], str] = {}
    for source, _, doc in loaded:
        if not isinstance(doc, dict):
            continue
        meta: dict[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
        if doc.get("kind") == "ConfigMap" and isinstance(doc.get("data"), dict):
            config_maps[str(meta.get("name", ""))] = doc["data"]
            by_source.setdefault(source, {})[str(meta.get("name", ""))] = doc["data"]
        if doc.get("kind") == "Workspace":
            for section in ("inference", "tuning"):
                spec = doc.get(section)
                ref = spec.get("config") if isinstance(spec, dict) else None
                if isinstance(ref, str):
                    referenced[(source, ref)] = str(meta.get("name", ""))

    for source, index, doc in loaded:
        cms = {**config_maps, **by_source.get(source, {})}
        results.append(_validate_document(source, index, doc, cms, referenced, local=local))
    # A ConfigMap checked through its Workspace is invalid when that Workspace found problems in it.
    by_workspace = {(r.source, r.name): r for r in results if r.kind == "Workspace"}
    for r in results:
        owner = referenced.get((r.source, r.name)) if r.kind == "ConfigMap" and r.note else None
        ws_result = by_workspace.get((r.source, owner)) if owner is not None else None
        if ws_result and any(p.path.startswith(f"ConfigMap/{r.name}.") for p in ws_result.problems):
            r.status = "invalid"
            r.note = f"problems listed under Workspace/{owner}"
    return results


def _validate_document(
    source: str,
    index: int,
    doc: Any,
    config_maps: dict[str, dict[str, Any]],
    referenced: dict[tuple[str, str], str],
    *,
    local: bool,
) -> Result:
    if not isinstance(doc, dict):
        return Result(
            source, index, "Document", "", "invalid", [Problem("", "a document must be a mapping", "")]
        )
    kind = str(doc.get("kind") or "<no kind>")
    name = str((doc.get("metadata") or {}).get("name", "")) if isinstance(doc.get("metadata"), dict) else ""
    problems: list[Problem] = []
    if kind == "Workspace":
        problems = validate_workspace(doc, local=local, config_maps=config_maps)
        return Result(source, index, kind, name, "invalid" if problems else "valid", problems)
    if kind == "ConfigMap":
        data: dict[str, Any] = doc["data"] if isinstance(doc.get("data"), dict) else {}
        keys = [k for k in (TRAINING_CONFIG_KEY, INFERENCE_CONFIG_KEY) if k in data]
        if not keys:
            return Result(source, index, kind, name, "skipped", note="no training/inference config in it")
        owner = referenced.get((source, name))
        if owner is not None:
            # The referencing Workspace validates it with its method and preset; report once, there.
            return Result(source, index, kind, name, "valid", note=f"checked with Workspace/{owner}")
        for key in keys:
            prefix = f"data[{key}]"
            if key == TRAINING_CONFIG_KEY:
                problems += validate_tuning_config(data[key], path=prefix)
            else:
                problems += validate_inference_config(data[key], path=prefix)
        return Result(source, index, kind, name, "invalid" if problems else "valid", problems)
    return Result(
        source, index, kind, name, "skipped", note="not a Workspace or a tuning/inference ConfigMap"
    )


def _print_plain(results: list[Result], out: TextIO) -> None:
    for r in results:
        where = f"{r.source} (document {r.index + 1})" if r.index else r.source
        note = f" ({r.note})" if r.note else ""
        print(f"{r.status.upper():8} {where}: {r.label}{note}", file=out)
        for p in r.problems:
            print(f"  - {p.path or '<document>'}: {p.message}", file=out)
            if p.hint:
                print(f"    hint: {p.hint}", file=out)


def _print_rich(results: list[Result], out: TextIO) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(file=out, highlight=False)
    style = {"valid": "bold green", "invalid": "bold red", "skipped": "dim"}
    mark = {"valid": "✓", "invalid": "✗", "skipped": "-"}
    for r in results:
        where = r.source + (f" #{r.index + 1}" if r.index else "")
        note = f" [dim]({escape(r.note)})[/dim]" if r.note else ""
        console.print(
            f"[{style[r.status]}]{mark[r.status]} {r.status}[/] {escape(where)}: {escape(r.label)}{note}"
        )
        for p in r.problems:
            console.print(f"    [yellow]{escape(p.path or '<document>')}[/yellow]: {escape(p.message)}")
            if p.hint:
                console.print(f"      [cyan]hint:[/cyan] {escape(p.hint)}")


def run(args: argparse.Namespace) -> int:
    results = validate_documents(args.files, local=args.local)
    invalid = [r for r in results if r.status == "invalid"]
    out = sys.stdout
    if args.output == "json":
        json.dump({"valid": not invalid, "results": [r.to_json() for r in results]}, out, indent=2)
        out.write("\n")
    else:
        (_print_rich if out.isatty() else _print_plain)(results, out)
        checked = sum(1 for r in results if r.status != "skipped")
        summary = f"{checked} checked, {len(invalid)} invalid, {len(results) - checked} skipped"
        print(summary, file=out)
    return 1 if invalid else 0
