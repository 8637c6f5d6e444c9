"""The CRD manifest and the pydantic models agree: every example is accepted by both, and documents that
break the schema's types or required fields are rejected by both."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from kaito_workspace.api import CONDITION_TYPES, parse_workspace

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))
CRD_PATH = REPO / "charts/workspace-controller/crds/kaito.sh_workspaces.yaml"
KAITO_CRD = SHARED / "reference/crds/kaito-v0.12.0_kaito.sh_workspaces.yaml"


@pytest.fixture(scope="module")
def crd() -> dict:
    return yaml.safe_load(CRD_PATH.read_text())


def schema_of(crd: dict, version: str) -> dict:
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


def example_docs() -> list[tuple[str, dict]]:
    files = sorted((SHARED / "reference/kaito-examples").glob("*.yaml")) + sorted(
        (REPO / "examples").rglob("*.yaml")
    )
    out = []
    for f in files:
        for i, d in enumerate(yaml.safe_load_all(f.read_text())):
            if d and d.get("kind") == "Workspace":
                out.append((f"{f.name}#{i}", d))
    return out


EXAMPLES = example_docs()


def crd_accepts(schema: dict, doc: dict) -> bool:
    try:
        jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)
    except jsonschema.ValidationError:
        return False
    return True


def test_crd_metadata(crd):
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "workspaces.kaito.sh"
    assert spec["group"] == "kaito.sh" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "Workspace" and spec["names"]["plural"] == "workspaces"
    assert spec["names"]["shortNames"] == ["wk", "wks"]
    versions = {v["name"]: v for v in spec["versions"]}
    assert set(versions) == {"v1alpha1", "v1beta1"}
    assert all(v["served"] for v in versions.values())
    assert [n for n, v in versions.items() if v["storage"]] == ["v1beta1"]
    for v in versions.values():
        assert v["subresources"] == {"status": {}}
        cols = [c["name"] for c in v["additionalPrinterColumns"] if c.get("priority", 0) == 0]
        assert cols == [
            "Instance",
            "ResourceReady",
            "InferenceReady",
            "JobStarted",
            "WorkspaceSucceeded",
            "WorkspaceReady",
            "State",
            "Age",
        ]
        for c in v["additionalPrinterColumns"]:
            if c["name"] in CONDITION_TYPES:
                assert c["jsonPath"] == f'.status.conditions[?(@.type=="{c["name"]}")].status'


def walk(schema: dict, path: str = ""):
    yield path, schema
    for k, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{k}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural(crd):
    """Kubernetes' structural schema rules: every node has a type (or preserves unknown fields), no
    additionalProperties next to properties, no $ref/anyOf at the top of a node."""
    for version in ("v1alpha1", "v1beta1"):
        for path, node in walk(schema_of(crd, version)):
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
            assert not ("properties" in node and "additionalProperties" in node), path
            assert "$ref" not in node and "anyOf" not in node and "oneOf" not in node, path


def test_schema_covers_kaito_v0_12_fields(crd):
    """Every field Kaito v0.12's Workspace schema defines (outside free-form parts) exists in ours."""
    kaito = yaml.safe_load(KAITO_CRD.read_text())
    ours = {p for p, _ in walk(schema_of(crd, "v1beta1"))}
    for version in ("v1alpha1", "v1beta1"):
        theirs = {p for p, _ in walk(schema_of(kaito, version))}
        missing = sorted(p for p in theirs - ours if not p.startswith(".status.performance"))
        assert missing == []


@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1"])
@pytest.mark.parametrize(("name", "doc"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_crd_and_model_accept_every_example(crd, version, name, doc):
    doc = {**doc, "apiVersion": f"kaito.sh/{version}"}
    assert crd_accepts(schema_of(crd, version), doc)
    ws, problems = parse_workspace(doc)
    assert ws is not None and problems == []
    # What the model writes back is accepted by the CRD too.
    assert crd_accepts(schema_of(crd, version), ws.to_dict())


BASE = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "Workspace",
    "metadata": {"name": "ws"},
    "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"a": "b"}}},
    "tuning": {
        "preset": {"name": "phi-3-mini-4k-instruct"},
        "method": "qlora",
        "input": {"urls": ["https://example.com/d.parquet"]},
        "output": {"volumeSource": {"emptyDir": {}}},
    },
}


def mutate(path: str, value):
    doc = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


DELETE = object()
BROKEN = {
    "count-string": mutate("resource.count", "2"),
    "count-zero": mutate("resource.count", 0),
    "no-label-selector": mutate("resource.labelSelector", DELETE),
    "match-labels-not-strings": mutate("resource.labelSelector.matchLabels", {"a": 1}),
    "instance-type-number": mutate("resource.instanceType", 5),
    "preset-without-name": mutate("tuning.preset", {"accessMode": "public"}),
    "bad-access-mode": mutate("tuning.preset.accessMode", "secret"),
    "tuning-without-input": mutate("tuning.input", DELETE),
    "tuning-without-output": mutate("tuning.output", DELETE),
    "urls-not-a-list": mutate("tuning.input.urls", "https://example.com/d"),
    "adapter-strength-number": {
        **{k: v for k, v in BASE.items() if k != "tuning"},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}, "adapters": [{"strength": 0.5}]},
    },
    "partition-without-mode": mutate("resource.partition", {"count": 1}),
}


@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1"])
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_crd_and_model_reject_the_same_broken_documents(crd, version, case):
    doc = {**BROKEN[case], "apiVersion": f"kaito.sh/{version}"}
    assert not crd_accepts(schema_of(crd, version), doc)
    ws, problems = parse_workspace(doc)
    assert ws is None and problems


def test_base_document_is_accepted_by_both(crd):
    assert crd_accepts(schema_of(crd, "v1beta1"), BASE)
    assert parse_workspace(BASE)[0] is not None
