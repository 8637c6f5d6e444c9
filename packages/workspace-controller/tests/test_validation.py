"""validate_workspace: every Kaito rule has a failing and a passing case; every real example is valid."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kaito_workspace.api import Workspace
from kaito_workspace.validation import validate_data_url, validate_workspace

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("KAITO_SHARED_DIR", REPO.parent / "shared"))

TUNING: dict[str, Any] = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "Workspace",
    "metadata": {"name": "ws"},
    "resource": {"instanceType": "Standard_NC6s_v3", "labelSelector": {"matchLabels": {"app": "ws"}}},
    "tuning": {
        "preset": {"name": "phi-3-mini-128k-instruct"},
        "method": "qlora",
        "input": {"urls": ["https://huggingface.co/datasets/x/y/resolve/main/train.parquet"]},
        "output": {"image": "myacr.azurecr.io/adapters/phi3:0.0.1", "imagePushSecret": "acr-push"},
    },
}
INFERENCE: dict[str, Any] = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "Workspace",
    "metadata": {"name": "ws"},
    "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"app": "ws"}}},
    "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
}


def make(base: dict, **changes: Any) -> dict:
    """Copy `base` and set dotted paths (`resource.count=2`); the value None deletes the field."""
    doc = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return doc


def paths(doc: dict, **kw: Any) -> list[str]:
    return [p.path for p in validate_workspace(doc, **kw)]


def test_bases_are_valid():
    assert validate_workspace(TUNING) == []
    assert validate_workspace(INFERENCE) == []
    assert validate_workspace(Workspace.from_dict(TUNING)) == []


# ----------------------------------------------------------------------------------------- examples
def example_workspaces() -> list[tuple[str, dict, dict]]:
    files = sorted((SHARED / "reference/kaito-examples").glob("*.yaml")) + sorted(
        (REPO / "examples").rglob("*.yaml")
    )
    out = []
    for f in files:
        docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
        cms = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d.get("kind") == "ConfigMap"}
        out += [(f"{f.parent.name}/{f.name}", d, cms) for d in docs if d.get("kind") == "Workspace"]
    return out


EXAMPLES = example_workspaces()


@pytest.mark.parametrize(("name", "doc", "cms"), EXAMPLES, ids=[n for n, _, _ in EXAMPLES])
def test_every_example_is_valid(name, doc, cms):
    # examples/local/ run on the user's machine (loopback URLs and hostPath volumes are allowed there)
    assert validate_workspace(doc, config_maps=cms, local=name.startswith("local/")) == []


def test_v1alpha1_quick_start_is_valid():
    seed = yaml.safe_load((REPO / "examples/fine-tuning/kaito_workspace_tuning_phi_3.yaml").read_text())
    assert seed["apiVersion"] == "kaito.sh/v1alpha1"
    assert validate_workspace(seed) == []


def test_all_problems_are_reported_at_once():
    doc = make(
        TUNING,
        metadata__name="Bad_Name",
        tuning__method="sft",
        tuning__output={"image": "myacr.azurecr.io/a:1"},
        resource__labelSelector={"matchLabels": {"kaito.sh/workspace": "x"}},
    )
    problems = validate_workspace(doc)
    assert {p.path for p in problems} >= {
        "metadata.name",
        "tuning.method",
        "tuning.output.imagePushSecret",
        "resource.labelSelector.matchLabels[kaito.sh/workspace]",
    }
    assert all(p.message and p.hint for p in problems)


def test_unknown_fields_and_type_errors_are_reported():
    typo = make(TUNING, tuning__inputs={"urls": []})
    assert paths(typo) == ["tuning.inputs"]
    assert [p.path for p in validate_workspace(Workspace.from_dict(typo))] == ["tuning.inputs"]
    assert paths(make(TUNING, resource__count="two")) == ["resource.count"]
    assert paths(make(TUNING, apiVersion="kaito.sh/v1")) == ["apiVersion"]


# ------------------------------------------------------------------------------------------ metadata
@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("ws", True),
        ("workspace-tuning-phi-3", True),
        ("a" * 63, True),
        ("Bad_Name", False),
        ("a" * 64, False),
        ("-ws", False),
        ("ws.x", False),
        (None, False),
    ],
)
def test_name_is_a_dns1123_label(name, ok):
    assert ("metadata.name" not in paths(make(TUNING, metadata__name=name))) == ok


@pytest.mark.parametrize(("mode", "ok"), [("throughput", True), ("balanced", True), ("fast", False)])
def test_performance_mode_annotation(mode, ok):
    doc = make(INFERENCE, metadata__annotations={"kaito.sh/performance-mode": mode})
    assert (validate_workspace(doc) == []) == ok


# ------------------------------------------------------------------------------------- workload shape
def test_exactly_one_of_inference_and_tuning():
    assert paths(make(TUNING, tuning=None)) == [""]
    both = make(TUNING, inference={"preset": {"name": "phi-3-mini-4k-instruct"}})
    assert "" in paths(both)


def test_resource_is_required():
    assert paths(make(INFERENCE, resource=None)) == ["resource"]


# ------------------------------------------------------------------------------------- labelSelector
@pytest.mark.parametrize(
    ("selector", "bad_path"),
    [
        (
            {"matchLabels": {"kaito.sh/workspace": "x"}},
            "resource.labelSelector.matchLabels[kaito.sh/workspace]",
        ),
        (
            {"matchLabels": {"app": "a", "kaito.sh/workspacenamespace": "x"}},
            "resource.labelSelector.matchLabels[kaito.sh/workspacenamespace]",
        ),
        (
            {"matchExpressions": [{"key": "kaito.sh/workspace", "operator": "In", "values": ["x"]}]},
            "resource.labelSelector.matchExpressions[0].key",
        ),
        ({}, "resource.labelSelector.matchLabels"),
        ({"matchLabels": {}}, "resource.labelSelector.matchLabels"),
        (
            {
                "matchLabels": {"a": "b"},
                "matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["x"]}],
            },
            "resource.labelSelector.matchExpressions[0]",
        ),
        ({"matchLabels": {"bad key!": "x"}}, "resource.labelSelector.matchLabels[bad key!]"),
        ({"matchLabels": {"app": "not valid!"}}, "resource.labelSelector.matchLabels[app]"),
    ],
)
def test_label_selector_rules(selector, bad_path):
    assert bad_path in paths(make(TUNING, resource__labelSelector=selector))


@pytest.mark.parametrize(
    "selector",
    [
        {"matchLabels": {"app": "x", "example.com/team": "ml"}},
        {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]},
    ],
)
def test_label_selector_passes(selector):
    assert validate_workspace(make(TUNING, resource__labelSelector=selector)) == []


# -------------------------------------------------------------------------------------- instanceType
@pytest.mark.parametrize(
    ("base", "instance_type", "ok"),
    [
        (INFERENCE, "Standard_NC24ads_A100_v4", True),
        (INFERENCE, "Standard_NC999xyz_v9", True),  # an N-series size we don't know: accepted, not sized
        (INFERENCE, "p3.2xlarge", False),
        (INFERENCE, "Standard_D8s_v5", False),  # no GPU for a GPU model
        (INFERENCE, "", True),  # bring your own nodes
    ],
)
def test_instance_type_must_be_a_gpu_sku(base, instance_type, ok):
    problems = validate_workspace(make(base, resource__instanceType=instance_type))
    assert (problems == []) == ok
    if not ok:
        assert problems[0].path == "resource.instanceType" and "Standard_NC" in problems[0].hint


def test_cpu_presets_may_use_cpu_vm_sizes():
    doc = make(
        TUNING, tuning__preset={"name": "smollm2-135m-instruct"}, resource__instanceType="Standard_D8s_v5"
    )
    assert validate_workspace(doc) == []
    gpu_model = make(TUNING, resource__instanceType="Standard_D8s_v5")
    assert "needs GPUs" in validate_workspace(gpu_model)[0].hint


def test_preferred_nodes_make_an_unknown_instance_type_descriptive():
    doc = make(INFERENCE, resource__instanceType="<your-vm-sku>", resource__preferredNodes=["node-1"])
    assert validate_workspace(doc) == []
    assert paths(make(INFERENCE, resource__instanceType="<your-vm-sku>")) == ["resource.instanceType"]
    # a known size is still checked: missing nodes would be provisioned with it
    small = make(doc, resource__instanceType="Standard_NC6s_v3", inference__preset={"name": "phi-4"})
    assert paths(small) == ["resource.instanceType"]


# -------------------------------------------------------------------------------------- GPU memory
@pytest.mark.parametrize(
    ("preset", "instance_type", "count", "ok"),
    [
        ("phi-4", "Standard_NC6s_v3", 1, False),  # 31 GiB > 16 GiB
        ("phi-4", "Standard_NC12s_v3", 2, True),  # 4 x 16 GiB
        ("llama-3.3-70b-instruct", "Standard_NC24ads_A100_v4", 1, False),
        ("llama-3.3-70b-instruct", "Standard_NC24ads_A100_v4", 2, True),
        ("deepseek-r1-0528", "Standard_NC80adis_H100_v5", 3, False),
        ("deepseek-r1-0528", "Standard_NC80adis_H100_v5", 6, True),
        ("phi-3-mini-4k-instruct", "Standard_NV6ads_A10_v5", 1, False),  # a 4 GiB slice of an A10
        ("meta-org/unknown-model", "Standard_NC6s_v3", 1, True),  # sizes unknown: not checked
    ],
)
def test_inference_needs_enough_total_gpu_memory(preset, instance_type, count, ok):
    doc = make(
        INFERENCE,
        inference__preset={"name": preset, "presetOptions": {"modelAccessSecret": "hf"}},
        resource__instanceType=instance_type,
        resource__count=count,
    )
    problems = validate_workspace(doc)
    assert (problems == []) == ok, problems
    if not ok:
        assert (
            problems[0].path == "resource.instanceType" and "insufficient GPU memory" in problems[0].message
        )
        assert "kaito.sh/bypass-resource-checks" in problems[0].hint


@pytest.mark.parametrize(
    ("preset", "method", "instance_type", "ok"),
    [
        ("phi-3-mini-128k-instruct", "qlora", "Standard_NC6s_v3", True),  # Kaito's quick start
        ("phi-3-mini-128k-instruct", "lora", "Standard_NC6s_v3", True),
        ("phi-4", "lora", "Standard_NC6s_v3", False),  # 38 GiB per GPU needed
        ("phi-4", "lora", "Standard_NC24s_v3", False),  # more GPUs do not help: each worker holds the model
        ("phi-4", "lora", "Standard_NC24ads_A100_v4", True),
        ("falcon-7b", "qlora", "Standard_NC12s_v3", True),
    ],
)
def test_tuning_needs_enough_memory_per_gpu(preset, method, instance_type, ok):
    doc = make(
        TUNING, tuning__preset={"name": preset}, tuning__method=method, resource__instanceType=instance_type
    )
    assert (validate_workspace(doc) == []) == ok


def test_bypass_annotation_skips_the_memory_check():
    doc = make(INFERENCE, inference__preset={"name": "phi-4"}, resource__instanceType="Standard_NC6s_v3")
    assert paths(doc) == ["resource.instanceType"]
    doc["metadata"]["annotations"] = {"kaito.sh/bypass-resource-checks": "true"}
    assert validate_workspace(doc) == []


# -------------------------------------------------------------------------------------- partition
BYO = {"labelSelector": {"matchLabels": {"app": "ws"}}}


@pytest.mark.parametrize(
    ("partition", "resource_extra", "bad_path"),
    [
        ({"mode": "accelerator"}, {}, "resource.partition.count"),
        ({"mode": "accelerator", "count": 1, "profile": "1g.10gb"}, {}, "resource.partition.profile"),
        ({"mode": "mig"}, {}, "resource.partition.profile"),
        ({"mode": "mig", "profile": "huge"}, {}, "resource.partition.profile"),
        ({"mode": "mig", "profile": "1g.10gb", "count": 2}, {}, "resource.partition.count"),
        ({"mode": "timeslice"}, {}, "resource.partition.mode"),
        (
            {"mode": "accelerator", "count": 1},
            {"instanceType": "Standard_NC24ads_A100_v4"},
            "resource.partition",
        ),
    ],
)
def test_partition_rules(partition, resource_extra, bad_path):
    doc = make(INFERENCE, resource={**BYO, **resource_extra, "partition": partition})
    assert bad_path in paths(doc)


@pytest.mark.parametrize(
    "partition", [{"mode": "accelerator", "count": 2}, {"mode": "mig", "profile": "3g.40gb"}]
)
def test_partition_passes_on_byo_nodes(partition):
    assert validate_workspace(make(INFERENCE, resource={**BYO, "partition": partition})) == []


def test_partition_is_not_for_tuning():
    doc = make(TUNING, resource={**BYO, "partition": {"mode": "accelerator", "count": 1}})
    assert paths(doc) == ["resource.partition"]


# -------------------------------------------------------------------------------------- inference
def test_inference_needs_preset_or_template_not_both():
    assert paths(make(INFERENCE, inference={})) == ["inference"]
    template = {"spec": {"containers": [{"name": "c", "image": "myimage:1"}]}}
    assert validate_workspace(make(INFERENCE, inference={"template": template})) == []
    both = make(INFERENCE, inference__template=template)
    assert paths(both) == ["inference"]
    assert paths(make(INFERENCE, inference={"template": {"spec": {}}})) == [
        "inference.template.spec.containers"
    ]


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("phi-3-mini-4k-instruct", True),
        ("PHI-3-MINI-4K-INSTRUCT", True),
        ("Qwen/Qwen3-0.6B", True),
        ("phi-9", False),
        ("not a model", False),
    ],
)
def test_preset_must_be_known_or_a_hugging_face_id(name, ok):
    problems = validate_workspace(make(INFERENCE, inference__preset={"name": name}))
    assert (problems == []) == ok
    if not ok:
        assert problems[0].path == "inference.preset.name"


def test_unknown_preset_hint_suggests_close_names():
    problems = validate_workspace(make(INFERENCE, inference__preset={"name": "phi-3-mini"}))
    assert "phi-3-mini-4k-instruct" in problems[0].hint


@pytest.mark.parametrize(
    ("preset", "ok"),
    [
        ({"name": "llama-3.1-8b-instruct"}, False),
        ({"name": "llama-3.1-8b-instruct", "presetOptions": {"modelAccessSecret": "hf-token"}}, True),
        (
            {
                "name": "llama-3.1-8b-instruct",
                "accessMode": "private",
                "presetOptions": {"image": "r.io/llama:1"},
            },
            True,
        ),
        ({"name": "phi-3-mini-4k-instruct", "accessMode": "private"}, False),
        ({"name": "phi-3-mini-4k-instruct", "presetOptions": {"image": "not an image"}}, False),
    ],
)
def test_preset_access(preset, ok):
    assert (validate_workspace(make(INFERENCE, inference__preset=preset)) == []) == ok


def adapter(name: str = "a1", **extra: Any) -> dict:
    return {"source": {"name": name, "image": f"myacr.azurecr.io/adapters/{name}:1", **extra}}


@pytest.mark.parametrize(
    ("adapters", "bad_path"),
    [
        ([adapter(f"a{i}") for i in range(11)], "inference.adapters"),
        ([adapter("same"), adapter("same")], "inference.adapters[1].source.name"),
        ([adapter("Bad_Name")], "inference.adapters[0].source.name"),
        ([{**adapter(), "strength": "1.5"}], "inference.adapters[0].strength"),
        ([{**adapter(), "strength": "-0.1"}], "inference.adapters[0].strength"),
        ([{**adapter(), "strength": "strong"}], "inference.adapters[0].strength"),
        ([{"source": {"name": "a", "urls": ["https://example.com/a"]}}], "inference.adapters[0].source.urls"),
        ([{"source": {"name": "a"}}], "inference.adapters[0].source"),
        ([adapter(volumeSource={"emptyDir": {}})], "inference.adapters[0].source"),
        ([{"source": {"name": "a", "image": "https://x/y"}}], "inference.adapters[0].source.image"),
        ([{"strength": "0.5"}], "inference.adapters[0].source"),
        (
            [{"source": {"name": "a", "volumeSource": {"hostPath": {"path": "/tmp/a"}}}}],
            "inference.adapters[0].source.volumeSource.hostPath",
        ),
    ],
)
def test_adapter_rules(adapters, bad_path):
    assert bad_path in paths(make(INFERENCE, inference__adapters=adapters))


def test_adapters_pass():
    adapters = [adapter(f"a{i}") for i in range(10)]
    adapters[0]["strength"] = "0"
    adapters[1]["strength"] = "0.75"
    adapters[2] = {"source": {"name": "vol", "volumeSource": {"persistentVolumeClaim": {"claimName": "c"}}}}
    assert validate_workspace(make(INFERENCE, inference__adapters=adapters)) == []
    local = [{"source": {"name": "a", "volumeSource": {"hostPath": {"path": "/tmp/a"}}}}]
    assert validate_workspace(make(INFERENCE, inference__adapters=local), local=True) == []


def test_adapters_need_a_preset():
    template = {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}
    doc = make(INFERENCE, inference={"template": template, "adapters": [adapter()]})
    assert paths(doc) == ["inference.adapters"]


# ----------------------------------------------------------------------------------------- tuning
@pytest.mark.parametrize(
    ("method", "ok"), [("qlora", True), ("lora", True), ("QLoRA", True), ("sft", False), (None, False)]
)
def test_tuning_method(method, ok):
    assert ("tuning.method" not in paths(make(TUNING, tuning__method=method))) == ok


@pytest.mark.parametrize(
    ("preset", "method", "bad_path"),
    [
        (None, "qlora", "tuning.preset"),
        ({"name": "gpt-oss-20b"}, "qlora", "tuning.preset.name"),  # not tunable
        ({"name": "falcon-40b"}, "lora", "tuning.method"),  # only qlora fits the model
        ({"name": "nope-model"}, "qlora", "tuning.preset.name"),
    ],
)
def test_tuning_preset_must_support_tuning(preset, method, bad_path):
    doc = make(
        TUNING,
        tuning__preset=preset,
        tuning__method=method,
        resource__instanceType="Standard_ND96amsr_A100_v4",
    )
    assert bad_path in paths(doc)


@pytest.mark.parametrize(
    "name", ["falcon-7b", "smollm2-135m-instruct", "tiny-random-llama", "HuggingFaceTB/SmolLM2-360M"]
)
def test_tunable_presets_pass(name):
    doc = make(TUNING, tuning__preset={"name": name}, resource__instanceType="Standard_NC24ads_A100_v4")
    assert validate_workspace(doc) == []


@pytest.mark.parametrize(
    ("data_input", "ok"),
    [
        ({"urls": ["https://example.com/a.jsonl", "http://93.184.216.34/b.parquet"]}, True),
        ({"image": "myacr.azurecr.io/data/dolly:1"}, True),
        ({"volumeSource": {"persistentVolumeClaim": {"claimName": "data"}}}, True),
        ({}, False),
        ({"name": "only-a-name"}, False),
        ({"urls": ["https://example.com/a"], "image": "myacr.azurecr.io/data:1"}, False),
        ({"image": "myacr.azurecr.io/d:1", "volumeSource": {"emptyDir": {}}}, False),
        ({"image": "bad image ref"}, False),
        ({"volumeSource": {"persistentVolumeClaim": {}}}, False),
        ({"volumeSource": {"emptyDir": {}, "persistentVolumeClaim": {"claimName": "x"}}}, False),
        ({"volumeSource": {"hostPath": {"path": "/data"}}}, False),
    ],
)
def test_tuning_input(data_input, ok):
    assert (validate_workspace(make(TUNING, tuning__input=data_input)) == []) == ok


def test_host_path_input_only_in_local_mode():
    doc = make(TUNING, tuning__input={"volumeSource": {"hostPath": {"path": "/data"}}})
    assert paths(doc) == ["tuning.input.volumeSource.hostPath"]
    assert validate_workspace(doc, local=True) == []


@pytest.mark.parametrize(
    ("output", "bad_path"),
    [
        ({}, "tuning.output"),
        ({"image": "myacr.azurecr.io/a:1"}, "tuning.output.imagePushSecret"),
        (
            {"image": "myacr.azurecr.io/a:1", "imagePushSecret": "s", "volumeSource": {"emptyDir": {}}},
            "tuning.output",
        ),
        ({"image": "http://myacr.azurecr.io/a:1", "imagePushSecret": "s"}, "tuning.output.image"),
        ({"imagePushSecret": "s"}, "tuning.output"),
    ],
)
def test_tuning_output_rules(output, bad_path):
    assert bad_path in paths(make(TUNING, tuning__output=output))


@pytest.mark.parametrize(
    "output",
    [
        {
            "image": "ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1",
            "imagePushSecret": "ACR_REGISTRY_SECRET_HERE",
        },
        {"image": "myacr.azurecr.io/a@sha256:" + "a" * 64, "imagePushSecret": "s"},
        {"volumeSource": {"persistentVolumeClaim": {"claimName": "out"}}},
    ],
)
def test_tuning_output_passes(output):
    assert validate_workspace(make(TUNING, tuning__output=output)) == []


# ------------------------------------------------------------------------------------- data URLs
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/data.jsonl",
        "http://localhost/data",
        "http://api.localhost/data",
        "http://[::1]/data",
        "http://[::ffff:127.0.0.1]/data",
        "http://2130706433/data",  # 127.0.0.1 as one number
        "http://0x7f.1/data",
        "http://10.0.0.5/data",
        "http://172.16.3.4/data",
        "http://192.168.1.10/data",
        "http://100.64.0.1/data",
        "http://[fd00::1]/data",
        "http://169.254.169.254/metadata/instance",
        "http://[fe80::1]/data",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://0.0.0.0/data",
        "ftp://example.com/data",
        "file:///etc/passwd",
        "https:///no-host",
        "https://user:secret@example.com/data",
        "http://example.com:99999/data",
    ],
)
def test_data_urls_must_not_reach_inside(url):
    problems = validate_data_url(url, "tuning.input.urls[0]")
    assert problems and problems[0].path == "tuning.input.urls[0]"
    assert problems == validate_workspace(make(TUNING, tuning__input={"urls": [url]}))


@pytest.mark.parametrize(
    "url",
    [
        "https://huggingface.co/datasets/philschmid/dolly-15k-oai-style/resolve/main/data/train.parquet?download=true",
        "http://example.com/data.jsonl",
        "https://8.8.8.8/data",
        "HTTPS://EXAMPLE.COM/data",
    ],
)
def test_public_data_urls_pass(url):
    assert validate_data_url(url, "u") == []


def test_local_mode_allows_loopback_only():
    for url in ("http://127.0.0.1:8000/d.jsonl", "http://localhost:9000/d", "http://[::1]/d"):
        assert validate_data_url(url, "u", local=True) == []
    for url in ("http://10.0.0.5/d", "http://169.254.169.254/", "http://metadata.google.internal/"):
        assert validate_data_url(url, "u", local=True) != []
    doc = make(TUNING, tuning__input={"urls": ["http://127.0.0.1:8000/d.jsonl"]})
    assert paths(doc) == ["tuning.input.urls[0]"]
    assert "local mode" in validate_workspace(doc)[0].hint
    assert validate_workspace(doc, local=True) == []


# -------------------------------------------------------------------------------------- updates
@pytest.mark.parametrize(
    ("base", "changes", "bad_path"),
    [
        (INFERENCE, {"resource__count": 2}, "resource.count"),
        (INFERENCE, {"resource__labelSelector": {"matchLabels": {"app": "other"}}}, "resource.labelSelector"),
        (INFERENCE, {"resource__instanceType": "Standard_NC48ads_A100_v4"}, "resource.instanceType"),
        (INFERENCE, {"inference__preset": {"name": "phi-3.5-mini-instruct"}}, "inference.preset"),
        (TUNING, {"tuning__preset": {"name": "phi-3-mini-4k-instruct"}}, "tuning.preset"),
        (TUNING, {"tuning__method": "lora"}, "tuning.method"),
        (TUNING, {"tuning__input__name": "renamed"}, "tuning.input.name"),
        (INFERENCE, {"inference": None, "tuning": TUNING["tuning"]}, "inference"),
        (TUNING, {"tuning": None, "inference": INFERENCE["inference"]}, "tuning"),
    ],
)
def test_immutable_fields_on_update(base, changes, bad_path):
    new = make(base, **changes)
    assert bad_path in paths(new, old=base)
    assert bad_path not in paths(new)  # the same object is fine on create


def test_allowed_updates():
    adapters = make(INFERENCE, inference__adapters=[adapter()], metadata__labels={"team": "ml"})
    assert validate_workspace(adapters, old=INFERENCE) == []
    same = make(TUNING, tuning__method="QLORA")
    assert validate_workspace(same, old=Workspace.from_dict(TUNING)) == []
    new_output = make(TUNING, tuning__output={"volumeSource": {"emptyDir": {}}})
    assert validate_workspace(new_output, old=TUNING) == []
