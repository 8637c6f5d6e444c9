"""`kaito-workspace render -f FILE [--byo-node NAME ...]`: print every object the operator would create.

Each Workspace in FILE is validated, planned and rendered as YAML (NodeClaims, the runtime ConfigMap,
the RayJob or RayService, the Service). ConfigMaps in the same file that a tuning workspace references
(`tuning.config`) are used as its training config; otherwise Kaito's default template for the method is
used. `--byo-node` names nodes that already match the workspace's labelSelector (they count towards the
target and no NodeClaim is rendered for them). Planning notes are printed as YAML comments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from kaito_workspace.builders import build_objects, dump_yaml
from kaito_workspace.planning import ClusterFacts, PlannerSettings, PlanningError
from kaito_workspace.planning.catalog import plan_with_catalog
from kaito_workspace.planning.model import DEFAULT_RAY_VERSION, default_runtime_image
from kaito_workspace.planning.templates import inference_config_for, training_config_from


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "render",
        help="print every object the operator would create for a Workspace, as YAML",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--filename", required=True, type=Path, help="Workspace YAML file ('-' for stdin)")
    p.add_argument(
        "--byo-node",
        action="append",
        default=[],
        metavar="NAME",
        help="a ready node matching the workspace's labelSelector (repeatable)",
    )
    p.add_argument("--byo-node-gpus", type=int, default=None, help="GPUs on each --byo-node")
    p.add_argument("--node-provisioner", choices=["gpu-provisioner", "byo"], default="gpu-provisioner")
    p.add_argument("--runtime-image", default=None, help="Ray runtime image (default: %(default)s)")
    p.add_argument("--ray-version", default=DEFAULT_RAY_VERSION)
    p.add_argument("--namespace", "-n", default=None, help="namespace for workspaces that do not set one")
    p.add_argument(
        "--local",
        action="store_true",
        help="validate for the user's own machine (loopback data URLs and hostPath volumes allowed)",
    )
    p.set_defaults(func=run)


def _documents(path: Path) -> list[Any]:
    text = sys.stdin.read() if str(path) == "-" else path.read_text()
    return [d for d in yaml.safe_load_all(text) if d is not None]


def _config_maps(docs: list[Any]) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"]: d.get("data") or {}
        for d in docs
        if isinstance(d, dict) and d.get("kind") == "ConfigMap" and d.get("metadata", {}).get("name")
    }


def _training_config(ws: Any, config_maps: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    name = ws.tuning.config if ws.tuning is not None else None
    return training_config_from(config_maps.get(name)) if name else None


def run(args: argparse.Namespace) -> int:
    from kaito_workspace.api import parse_workspace
    from kaito_workspace.validation import validate_workspace

    try:
        docs = _documents(args.filename)
    except (OSError, yaml.YAMLError) as e:
        print(f"error: cannot read {args.filename}: {e}", file=sys.stderr)
        return 1
    config_maps = _config_maps(docs)
    settings = PlannerSettings(
        node_provisioner=args.node_provisioner,
        runtime_image=args.runtime_image or default_runtime_image(),
        ray_version=args.ray_version,
    )
    out: list[str] = []
    failed = False
    workspaces = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Workspace"]
    if not workspaces:
        print(f"error: no Workspace in {args.filename}", file=sys.stderr)
        return 1
    for doc in workspaces:
        if args.namespace and not doc.get("metadata", {}).get("namespace"):
            doc.setdefault("metadata", {})["namespace"] = args.namespace
        name = doc.get("metadata", {}).get("name", "?")
        problems = validate_workspace(doc, config_maps=config_maps, local=args.local)
        ws, _ = parse_workspace(doc)
        if problems or ws is None:
            failed = True
            for p in problems:
                hint = f" (hint: {p.hint})" if p.hint else ""
                print(f"error: Workspace/{name}: {p.path}: {p.message}{hint}", file=sys.stderr)
            continue
        facts = ClusterFacts(
            byo_nodes=list(args.byo_node),
            node_gpus={n: args.byo_node_gpus for n in args.byo_node} if args.byo_node_gpus else {},
            training_config=_training_config(ws, config_maps),
            inference_config=inference_config_for(ws, config_maps),
        )
        try:
            plan = plan_with_catalog(ws, facts=facts, settings=settings)
        except PlanningError as e:
            failed = True
            if e.path == "resource.instanceType":
                e.hint += "; to render for nodes you bring, name them with --byo-node NAME"
            hint = f" (hint: {e.hint})" if e.hint else ""
            print(f"error: Workspace/{name}: {e.path}: {e.message}{hint}", file=sys.stderr)
            continue
        header = [f"# Workspace {ws.namespace}/{ws.name}: {plan.mode}, {plan.nodes.target_count} node(s)"]
        header += [f"# note: {n}" for n in plan.notes]
        if plan.serve_after_tuning:
            header.append("# the RayService is created after the tuning job succeeds (serve-after-tuning)")
        out.append("\n".join(header) + "\n" + dump_yaml(build_objects(plan)))
    sys.stdout.write("---\n".join(out))
    return 1 if failed else 0
