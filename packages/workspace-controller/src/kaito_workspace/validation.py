"""One pure validation function for Workspaces, used by the admission webhook, the controller and the CLI.

`validate_workspace` returns every problem it finds (field path, message, fix hint) instead of stopping
at the first. It implements Kaito's admission rules, plus the checks of a tuning/inference config
ConfigMap when its contents are given. Nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
import math
import re
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import yaml

from .api import (
    ANNOTATION_PERFORMANCE_MODE,
    AdapterSpec,
    DataDestination,
    DataSource,
    InferenceSpec,
    LabelSelector,
    Problem,
    ResourceSpec,
    TuningSpec,
    Workspace,
    parse_workspace,
)
from .api.problems import dedupe, join_path
from .presets import Catalog, Preset, inference_fit, load_catalog, tuning_fit

__all__ = [
    "MAX_ADAPTERS",
    "RESERVED_LABEL_PREFIX",
    "TUNING_CONFIG_SECTIONS",
    "Problem",
    "validate_data_url",
    "validate_inference_config",
    "validate_tuning_config",
    "validate_workspace",
]

MAX_ADAPTERS = 10
RESERVED_LABEL_PREFIX = "kaito.sh/workspace"
PERFORMANCE_MODES = ("balanced", "interactivity", "throughput")
TUNING_METHODS = ("lora", "qlora")
PARTITION_MODES = ("mig", "accelerator")
TRAINING_CONFIG_KEY = "training_config.yaml"
INFERENCE_CONFIG_KEY = "inference_config.yaml"
METADATA_HOSTNAMES = {
    "metadata",
    "metadata.google.internal",
    "metadata.google",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.internal",
    "metadata.tencentyun.com",
    "metadata.platformequinix.com",
}

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# An OCI image reference: [registry[:port]/]path[:tag][@digest]. Case is not enforced, so Kaito's
# upper-case placeholders ("ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1") pass, as they do in kubectl.
_IMAGE_REF = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[A-Za-z0-9._/-]+(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z0-9]+:[A-Fa-f0-9]{32,})?$"
)
_MIG_PROFILE = re.compile(r"^[1-9]g\.[0-9]+gb(\+me)?$")
_CPU_SKU = re.compile(r"^Standard_[A-Z]", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------- helpers
def _dns1123_label(value: str, path: str, what: str) -> list[Problem]:
    if not value:
        return [Problem(path, f"{what} is required", f"set {path} to a lowercase DNS-1123 name")]
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        return [
            Problem(
                path,
                f"{what} {value!r} is not a valid DNS-1123 label",
                "use at most 63 lowercase letters, digits and '-', starting and ending alphanumeric",
            )
        ]
    return []


def _dns1123_subdomain(value: str, path: str, what: str) -> list[Problem]:
    if not value:
        return [Problem(path, f"{what} is required", f"set {path}")]
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        return [
            Problem(
                path,
                f"{what} {value!r} is not a valid DNS-1123 subdomain",
                "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
            )
        ]
    return []


def _image_ref(value: str, path: str) -> list[Problem]:
    if "://" in value or not _IMAGE_REF.match(value):
        return [
            Problem(
                path,
                f"{value!r} is not a valid image reference",
                "use registry/repository[:tag][@sha256:digest], e.g. myacr.azurecr.io/adapters/phi3:0.0.1",
            )
        ]
    return []


def _label_key(key: str, path: str) -> list[Problem]:
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix))) or (
        len(name) > 63 or not _LABEL_NAME.match(name)
    ):
        return [
            Problem(
                path,
                f"{key!r} is not a valid label key",
                "use [prefix/]name: name up to 63 alphanumerics, '-', '_' or '.'; prefix a DNS subdomain",
            )
        ]
    return []


def _label_value(value: str, path: str) -> list[Problem]:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return [
            Problem(
                path, f"{value!r} is not a valid label value", "use up to 63 alphanumerics, '-', '_' or '.'"
            )
        ]
    return []


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = host.split("%", 1)[0]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # Legacy IPv4 spellings that resolvers still accept: 2130706433, 0x7f.1, 0177.0.0.1, 127.1
    if re.fullmatch(r"[0-9a-fA-Fx.]+", host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def validate_data_url(url: str, path: str, *, local: bool = False) -> list[Problem]:
    """http(s) only, and never an address inside the cluster or the cloud host (SSRF): no loopback,
    private, link-local, unspecified or metadata endpoints. `local=True` (a user's own machine) allows
    loopback. DNS names are checked by name; the downloader must re-check the resolved address."""
    hint_remote = "use a public http(s) URL (or put the data in a volume or an image)"
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        _ = parts.port  # raises on a malformed port
    except ValueError as e:
        return [Problem(path, f"invalid URL {url!r}: {e}", hint_remote)]
    if parts.scheme.lower() not in ("http", "https"):
        return [Problem(path, f"URL {url!r} must use http or https", hint_remote)]
    if not host:
        return [Problem(path, f"URL {url!r} has no host", hint_remote)]
    host = host.lower().rstrip(".")
    if parts.username or parts.password:
        return [
            Problem(
                path,
                "URL must not embed credentials",
                "remove user:password@ from the URL; credentials never go into a Workspace",
            )
        ]
    loopback_hint = "loopback URLs are only allowed in local mode (kaito-workspace run --local)"
    if host in METADATA_HOSTNAMES:
        return [Problem(path, f"URL {url!r} targets a cloud metadata endpoint", hint_remote)]
    if host == "localhost" or host.endswith(".localhost"):
        return [] if local else [Problem(path, f"URL {url!r} targets the local host", loopback_hint)]
    ip = _parse_ip(host)
    if ip is None:
        return []
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return [] if local else [Problem(path, f"URL {url!r} targets a loopback address", loopback_hint)]
    if ip.is_link_local:
        return [Problem(path, f"URL {url!r} targets a link-local or metadata address", hint_remote)]
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return [Problem(path, f"URL {url!r} targets a non-routable address", hint_remote)]
    if ip.is_private or (
        isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10")
    ):
        return [Problem(path, f"URL {url!r} targets a private address", hint_remote)]
    return []


def _volume_source(vs: Mapping[str, Any], path: str, *, local: bool) -> list[Problem]:
    if not vs:
        return [
            Problem(
                path,
                "volumeSource is empty",
                "give one volume type, e.g. persistentVolumeClaim: {claimName: X}",
            )
        ]
    problems = []
    if len(vs) != 1:
        problems.append(
            Problem(
                path, f"volumeSource must name exactly one volume type, got {sorted(vs)}", "keep one of them"
            )
        )
    if "hostPath" in vs and not local:
        problems.append(
            Problem(
                join_path(path, "hostPath"),
                "hostPath volumes are only allowed in local mode",
                "use a persistentVolumeClaim (or another shared volume) on a cluster",
            )
        )
    pvc = vs.get("persistentVolumeClaim")
    if pvc is not None and not (isinstance(pvc, Mapping) and pvc.get("claimName")):
        problems.append(
            Problem(
                join_path(path, "persistentVolumeClaim", "claimName"), "claimName is required", "name the PVC"
            )
        )
    return problems


# --------------------------------------------------------------------------------------------- sections
def _validate_metadata(ws: Workspace) -> list[Problem]:
    problems = _dns1123_label(ws.metadata.name or "", "metadata.name", "workspace name")
    if ws.metadata.namespace:
        problems += _dns1123_label(ws.metadata.namespace, "metadata.namespace", "namespace")
    mode = ws.annotations.get(ANNOTATION_PERFORMANCE_MODE)
    if mode is not None and mode not in PERFORMANCE_MODES:
        problems.append(
            Problem(
                f"metadata.annotations[{ANNOTATION_PERFORMANCE_MODE}]",
                f"{mode!r} is not a valid performance mode",
                f"use one of {', '.join(PERFORMANCE_MODES)}",
            )
        )
    return problems


def _validate_selector(sel: LabelSelector, path: str) -> list[Problem]:
    problems: list[Problem] = []
    labels = dict(sel.match_labels or {})
    for key, value in labels.items():
        p = join_path(path, "matchLabels", f"[{key}]")
        problems += _label_key(key, p) + _label_value(value, p)
        if key.startswith(RESERVED_LABEL_PREFIX):
            problems.append(
                Problem(p, f"label {key!r} is reserved for the controller", "choose a label key of your own")
            )
    for i, expr in enumerate(sel.match_expressions or []):
        p = join_path(path, "matchExpressions", i)
        problems += _label_key(expr.key, join_path(p, "key"))
        if expr.key.startswith(RESERVED_LABEL_PREFIX):
            problems.append(
                Problem(
                    join_path(p, "key"),
                    f"label {expr.key!r} is reserved for the controller",
                    "choose your own",
                )
            )
        if expr.operator == "In" and len(expr.values or []) == 1:
            labels[expr.key] = (expr.values or [""])[0]
        else:
            problems.append(
                Problem(
                    p,
                    f"operator {expr.operator!r} with {len(expr.values or [])} values cannot label new nodes",
                    "use matchLabels, or a matchExpression with operator In and exactly one value",
                )
            )
    if not labels:
        problems.append(
            Problem(
                join_path(path, "matchLabels"),
                "labelSelector must contain at least one label",
                "add a label such as `app: my-workspace`; it selects (and labels) the workspace's nodes",
            )
        )
    return problems


def _validate_resource(
    ws: Workspace, res: ResourceSpec, preset: Preset | None, catalog: Catalog
) -> list[Problem]:
    problems = _validate_selector(res.label_selector, "resource.labelSelector")
    if res.partition is not None:
        problems += _validate_partition(ws, res)
    it = res.instance_type
    if not it:
        return problems  # bring-your-own nodes: matched by the selector, nothing is provisioned
    gpu = catalog.sku(it)
    if gpu is None:
        if res.preferred_nodes:
            return problems  # the size only describes the existing preferred nodes (e.g. Arc machines)
        if preset is not None and preset.cpu_capable and _CPU_SKU.match(it):
            return problems  # a small model on a CPU VM size: nothing to check
        if not it.lower().startswith("standard_n"):
            hint = "use an Azure GPU VM size such as Standard_NC24ads_A100_v4 (see `presets/gpus/azure.yaml`)"
            if preset is not None and not preset.cpu_capable and _CPU_SKU.match(it):
                hint = f"{preset.name} needs GPUs: " + hint
            problems.append(Problem("resource.instanceType", f"unsupported instance type {it!r}", hint))
        return problems  # an N-series size we do not know: accepted, memory not checked
    if ws.bypass_resource_checks or preset is None:
        return problems
    if ws.tuning is not None and ws.tuning.method:
        fit = tuning_fit(preset, ws.tuning.method.lower(), gpu)
    else:
        fit = inference_fit(preset, gpu, res.count)
    if not fit.fits:
        problems.append(
            Problem(
                "resource.instanceType",
                f"insufficient GPU memory: {fit.message}",
                "choose a larger instance type or a higher resource.count, or set the annotation "
                "kaito.sh/bypass-resource-checks to skip this check",
            )
        )
    return problems


def _validate_partition(ws: Workspace, res: ResourceSpec) -> list[Problem]:
    part = res.partition
    assert part is not None
    problems = []
    path = "resource.partition"
    if ws.tuning is not None:
        problems.append(
            Problem(path, "GPU partitioning is not supported for tuning", "remove resource.partition")
        )
    if res.instance_type and not res.preferred_nodes:
        problems.append(
            Problem(
                path,
                "GPU partitioning is only supported on existing (BYO) nodes",
                "remove resource.instanceType; label the partitioned GPU nodes to match the labelSelector",
            )
        )
    if part.mode not in PARTITION_MODES:
        problems.append(
            Problem(
                join_path(path, "mode"), f"unsupported partition mode {part.mode!r}", "use mig or accelerator"
            )
        )
    elif part.mode == "accelerator":
        if part.count is None:
            problems.append(
                Problem(join_path(path, "count"), "count is required in accelerator mode", "set count: 1")
            )
        if part.profile:
            problems.append(
                Problem(
                    join_path(path, "profile"), "profile is not valid in accelerator mode", "remove profile"
                )
            )
    else:
        if part.count is not None:
            problems.append(
                Problem(join_path(path, "count"), "count is only valid in accelerator mode", "remove it")
            )
        if not part.profile or not _MIG_PROFILE.match(part.profile):
            problems.append(
                Problem(
                    join_path(path, "profile"),
                    f"invalid MIG profile {part.profile!r}",
                    "use a MIG profile such as 1g.10gb, 3g.40gb or 7g.80gb",
                )
            )
    return problems


def _lookup_preset(name: str, path: str, catalog: Catalog) -> tuple[Preset | None, list[Problem]]:
    preset = catalog.find(name)
    if preset is None:
        close = [n for n in catalog.names() if name.lower() in n or n in name.lower()][:5]
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return None, [
            Problem(
                path,
                f"unsupported preset {name!r}",
                hint + "use a preset from `presets/` or a Hugging Face model id such as org/model",
            )
        ]
    return preset, []


def _validate_preset_options(spec_preset: Any, preset: Preset | None, path: str) -> list[Problem]:
    problems = []
    opts = spec_preset.preset_options
    if spec_preset.access_mode == "private" and not (opts and opts.image):
        problems.append(
            Problem(
                join_path(path, "presetOptions", "image"),
                "accessMode private needs the model image",
                "set presetOptions.image to the private model image, or use accessMode public",
            )
        )
    if opts and opts.image:
        problems += _image_ref(opts.image, join_path(path, "presetOptions", "image"))
    if (
        preset is not None
        and preset.download_auth_required
        and spec_preset.access_mode != "private"
        and not (opts and opts.model_access_secret)
    ):
        problems.append(
            Problem(
                join_path(path, "presetOptions", "modelAccessSecret"),
                f"{preset.name} ({preset.hf_id}) is gated and needs a Hugging Face token to download",
                "create a Secret with key HF_TOKEN and name it in presetOptions.modelAccessSecret",
            )
        )
    return problems


def _validate_adapters(adapters: list[AdapterSpec], *, local: bool) -> list[Problem]:
    problems: list[Problem] = []
    if len(adapters) > MAX_ADAPTERS:
        problems.append(
            Problem(
                "inference.adapters",
                f"{len(adapters)} adapters given, at most {MAX_ADAPTERS} are allowed",
                "remove some adapters",
            )
        )
    seen: set[str] = set()
    for i, adapter in enumerate(adapters):
        path = join_path("inference.adapters", i)
        src = adapter.source
        if src is None:
            problems.append(
                Problem(join_path(path, "source"), "adapter source is required", "add source: {name, image}")
            )
            continue
        name = src.name or ""
        problems += _dns1123_subdomain(name, join_path(path, "source", "name"), "adapter name")
        if name and name in seen:
            problems.append(
                Problem(
                    join_path(path, "source", "name"),
                    f"duplicate adapter name {name!r}",
                    "give each adapter a unique name",
                )
            )
        seen.add(name)
        if src.urls:
            problems.append(
                Problem(
                    join_path(path, "source", "urls"),
                    "URLs are not supported as an adapter source",
                    "publish the adapter as an image or put it in a volume",
                )
            )
        if not src.image and src.volume_source is None:
            problems.append(
                Problem(
                    join_path(path, "source"),
                    "adapter source needs an image or a volumeSource",
                    "set source.image",
                )
            )
        if src.image and src.volume_source is not None:
            problems.append(
                Problem(join_path(path, "source"), "give either image or volumeSource, not both", "keep one")
            )
        if src.image:
            problems += _image_ref(src.image, join_path(path, "source", "image"))
        if src.volume_source is not None:
            problems += _volume_source(
                src.volume_source, join_path(path, "source", "volumeSource"), local=local
            )
        if adapter.strength is not None:
            try:
                strength = float(adapter.strength)
            except ValueError:
                strength = math.nan
            if not (0.0 <= strength <= 1.0):
                problems.append(
                    Problem(
                        join_path(path, "strength"),
                        f"strength {adapter.strength!r} must be a number between 0 and 1",
                        'write it as a quoted string, e.g. strength: "0.8"',
                    )
                )
    return problems


def _validate_inference(
    inf: InferenceSpec,
    catalog: Catalog,
    config_maps: Mapping[str, Mapping[str, Any]] | None,
    *,
    local: bool,
) -> tuple[Preset | None, list[Problem]]:
    problems: list[Problem] = []
    preset = None
    if inf.preset is None and inf.template is None:
        problems.append(
            Problem("inference", "either preset or template must be specified", "add inference.preset.name")
        )
    if inf.preset is not None and inf.template is not None:
        problems.append(Problem("inference", "preset and template cannot both be set", "keep one of them"))
    if inf.preset is not None:
        preset, found = _lookup_preset(inf.preset.name, "inference.preset.name", catalog)
        problems += found
        problems += _validate_preset_options(inf.preset, preset, "inference.preset")
    if inf.template is not None:
        containers = (
            (inf.template.get("spec") or {}).get("containers") if isinstance(inf.template, dict) else None
        )
        if not containers:
            problems.append(
                Problem(
                    "inference.template.spec.containers",
                    "a pod template needs at least one container",
                    "add one",
                )
            )
        if inf.adapters:
            problems.append(
                Problem("inference.adapters", "adapters need a preset, not a template", "use a preset")
            )
    if inf.adapters:
        problems += _validate_adapters(inf.adapters, local=local)
    if inf.config:
        problems += _dns1123_subdomain(inf.config, "inference.config", "ConfigMap name")
        data = (config_maps or {}).get(inf.config)
        if data is not None:
            if INFERENCE_CONFIG_KEY not in data:
                problems.append(
                    Problem(
                        "inference.config",
                        f"ConfigMap {inf.config!r} has no {INFERENCE_CONFIG_KEY} key",
                        f"put the inference config under data.{INFERENCE_CONFIG_KEY}",
                    )
                )
            else:
                problems += validate_inference_config(
                    data[INFERENCE_CONFIG_KEY],
                    preset=preset,
                    path=f"ConfigMap/{inf.config}.data[{INFERENCE_CONFIG_KEY}]",
                )
    return preset, problems


def _validate_input(src: DataSource, *, local: bool) -> list[Problem]:
    problems: list[Problem] = []
    given = [
        k for k, v in (("urls", src.urls), ("image", src.image), ("volumeSource", src.volume_source)) if v
    ]
    if len(given) != 1:
        problems.append(
            Problem(
                "tuning.input",
                "exactly one of urls, image or volumeSource must be specified"
                + (f" (got {', '.join(given)})" if given else ""),
                "give the training data as urls, an image, or a volumeSource",
            )
        )
    for i, url in enumerate(src.urls or []):
        problems += validate_data_url(url, join_path("tuning.input.urls", i), local=local)
    if src.image:
        problems += _image_ref(src.image, "tuning.input.image")
    if src.volume_source:
        problems += _volume_source(src.volume_source, "tuning.input.volumeSource", local=local)
    return problems


def _validate_output(dst: DataDestination, *, local: bool) -> list[Problem]:
    problems: list[Problem] = []
    given = [k for k, v in (("image", dst.image), ("volumeSource", dst.volume_source)) if v]
    if len(given) != 1:
        problems.append(
            Problem(
                "tuning.output",
                "exactly one of image or volumeSource must be specified"
                + (" (got both)" if len(given) > 1 else ""),
                "push the adapter to an image (with imagePushSecret) or write it to a volumeSource",
            )
        )
    if dst.image:
        problems += _image_ref(dst.image, "tuning.output.image")
        if not dst.image_push_secret:
            problems.append(
                Problem(
                    "tuning.output.imagePushSecret",
                    "an output image needs imagePushSecret",
                    "create a docker-registry Secret with push rights and name it in imagePushSecret",
                )
            )
    if dst.volume_source:
        problems += _volume_source(dst.volume_source, "tuning.output.volumeSource", local=local)
    return problems


def _validate_tuning(
    tun: TuningSpec,
    catalog: Catalog,
    config_maps: Mapping[str, Mapping[str, Any]] | None,
    *,
    local: bool,
) -> tuple[Preset | None, list[Problem]]:
    problems: list[Problem] = []
    preset = None
    method = (tun.method or "").lower()
    if method not in TUNING_METHODS:
        problems.append(
            Problem(
                "tuning.method",
                f"tuning method must be lora or qlora, got {tun.method!r}",
                "set method: qlora (4-bit base model, least memory) or method: lora",
            )
        )
    if tun.preset is None:
        problems.append(Problem("tuning.preset", "tuning needs a preset", "add tuning.preset.name"))
    else:
        preset, found = _lookup_preset(tun.preset.name, "tuning.preset.name", catalog)
        problems += found
        problems += _validate_preset_options(tun.preset, preset, "tuning.preset")
        if preset is not None and not preset.tuning_supported:
            tunable = [p.name for p in catalog if p.tuning and p.known][:8]
            problems.append(
                Problem(
                    "tuning.preset.name",
                    f"preset {preset.name!r} does not support tuning",
                    f"use a tunable preset such as {', '.join(tunable)}",
                )
            )
        elif (
            preset is not None
            and preset.known
            and method in TUNING_METHODS
            and not preset.tuning_requirement(method)
        ):
            problems.append(
                Problem(
                    "tuning.method",
                    f"preset {preset.name!r} supports {', '.join(preset.tuning)} tuning, not {method}",
                    f"set method: {next(iter(preset.tuning))}",
                )
            )
    if tun.config:
        problems += _dns1123_subdomain(tun.config, "tuning.config", "ConfigMap name")
        data = (config_maps or {}).get(tun.config)
        if data is not None:
            if TRAINING_CONFIG_KEY not in data:
                problems.append(
                    Problem(
                        "tuning.config",
                        f"ConfigMap {tun.config!r} has no {TRAINING_CONFIG_KEY} key",
                        f"put the tuning config under data.{TRAINING_CONFIG_KEY}",
                    )
                )
            else:
                problems += validate_tuning_config(
                    data[TRAINING_CONFIG_KEY],
                    method=method if method in TUNING_METHODS else None,
                    path=f"ConfigMap/{tun.config}.data[{TRAINING_CONFIG_KEY}]",
                )
    problems += _validate_input(tun.input, local=local)
    problems += _validate_output(tun.output, local=local)
    return preset, problems


def _validate_update(ws: Workspace, old: Workspace) -> list[Problem]:
    problems: list[Problem] = []
    immutable = "this field cannot be changed after creation"
    recreate = "delete and recreate the workspace to change it"
    if (old.inference is None) != (ws.inference is None):
        problems.append(Problem("inference", "inference cannot be added or removed after creation", recreate))
    if (old.tuning is None) != (ws.tuning is None):
        problems.append(Problem("tuning", "tuning cannot be added or removed after creation", recreate))
    new_r, old_r = ws.resource, old.resource
    if new_r is not None and old_r is not None:
        if new_r.count != old_r.count:
            problems.append(Problem("resource.count", immutable, recreate))
        if _selector_map(new_r.label_selector) != _selector_map(old_r.label_selector):
            problems.append(Problem("resource.labelSelector", immutable, recreate))
        if old_r.instance_type and new_r.instance_type and new_r.instance_type != old_r.instance_type:
            problems.append(Problem("resource.instanceType", immutable, recreate))
        if (new_r.partition and new_r.partition.to_dict()) != (old_r.partition and old_r.partition.to_dict()):
            problems.append(Problem("resource.partition", immutable, recreate))
    if ws.inference is not None and old.inference is not None:
        if _dump(ws.inference.preset) != _dump(old.inference.preset):
            problems.append(Problem("inference.preset", immutable, recreate))
        if (ws.inference.template is None) != (old.inference.template is None):
            problems.append(
                Problem("inference.template", "template cannot be set or unset after creation", recreate)
            )
    if ws.tuning is not None and old.tuning is not None:
        if _dump(ws.tuning.preset) != _dump(old.tuning.preset):
            problems.append(Problem("tuning.preset", immutable, recreate))
        if (ws.tuning.method or "").lower() != (old.tuning.method or "").lower():
            problems.append(Problem("tuning.method", immutable, recreate))
        if ws.tuning.input.name != old.tuning.input.name:
            problems.append(Problem("tuning.input.name", immutable, recreate))
    return problems


def _dump(model: Any) -> Any:
    return model.to_dict() if model is not None else None


def _selector_map(sel: LabelSelector | None) -> dict[str, str]:
    if sel is None:
        return {}
    labels = dict(sel.match_labels or {})
    for e in sel.match_expressions or []:
        labels[e.key] = ",".join([e.operator, *(e.values or [])])
    return labels


# ----------------------------------------------------------------------------------------------- public
def validate_workspace(
    ws: Workspace | Mapping[str, Any],
    *,
    old: Workspace | Mapping[str, Any] | None = None,
    local: bool = False,
    presets: Catalog | None = None,
    config_maps: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Problem]:
    """Every problem in a Workspace (empty list = valid).

    ws: a parsed Workspace or the raw document (a document's type errors are reported too; unknown
    fields are reported either way).
    old: the stored object on update (immutability rules). local: the user's own machine (loopback
    URLs and hostPath volumes allowed). presets: the catalog (default: the packaged one).
    config_maps: ConfigMap `data` by name; a referenced config found here is validated too.
    """
    catalog = presets or load_catalog()
    problems: list[Problem] = []
    if isinstance(ws, Workspace):
        # A parsed object keeps unknown fields too (they are reported, never silently dropped).
        _, problems = parse_workspace(ws.model_dump(by_alias=True, exclude_none=True, mode="json"))
    else:
        parsed, problems = parse_workspace(dict(ws))
        if parsed is None:
            return problems
        ws = parsed
    if old is not None and not isinstance(old, Workspace):
        old = Workspace.from_dict(dict(old))

    problems += _validate_metadata(ws)
    preset: Preset | None = None
    if ws.inference is None and ws.tuning is None:
        problems.append(
            Problem(
                "", "either inference or tuning must be specified", "add an inference or a tuning section"
            )
        )
    elif ws.inference is not None and ws.tuning is not None:
        problems.append(
            Problem(
                "", "inference and tuning cannot both be specified", "use one workspace for each; remove one"
            )
        )
    if ws.inference is not None:
        preset, found = _validate_inference(ws.inference, catalog, config_maps, local=local)
        problems += found
    if ws.tuning is not None:
        preset, found = _validate_tuning(ws.tuning, catalog, config_maps, local=local)
        problems += found
    if ws.resource is None:
        problems.append(
            Problem(
                "resource", "resource is required", "add resource.instanceType and resource.labelSelector"
            )
        )
    else:
        problems += _validate_resource(ws, ws.resource, preset, catalog)
    if old is not None:
        problems += _validate_update(ws, old)
    return dedupe(problems)


# --------------------------------------------------------------------------------- ConfigMap contents
_DTYPES = ("auto", "bfloat16", "float16", "float32", "bf16", "fp16", "fp32")

# Per section: key -> (types, extra check or None). Unlisted keys are allowed (they are passed through to
# transformers / peft / bitsandbytes) but still type-checked as YAML scalars or lists.
_Num = (int, float)
TUNING_CONFIG_SECTIONS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "ModelConfig": {
        "torch_dtype": ((str,), lambda v: v in _DTYPES or f"must be one of {', '.join(_DTYPES)}"),
        "dtype": ((str,), lambda v: v in _DTYPES or f"must be one of {', '.join(_DTYPES)}"),
        "local_files_only": ((bool,), None),
        "device_map": ((str, dict), None),
        "trust_remote_code": ((bool,), None),
        "revision": ((str,), None),
        "chat_template": ((str,), None),
    },
    "QuantizationConfig": {
        "load_in_4bit": ((bool,), None),
        "load_in_8bit": ((bool,), None),
        "bnb_4bit_quant_type": ((str,), lambda v: v in ("nf4", "fp4") or "must be nf4 or fp4"),
        "bnb_4bit_compute_dtype": ((str,), lambda v: v in _DTYPES or f"must be one of {', '.join(_DTYPES)}"),
        "bnb_4bit_use_double_quant": ((bool,), None),
    },
    "LoraConfig": {
        "r": ((int,), lambda v: v > 0 or "must be a positive integer"),
        "lora_alpha": (_Num, lambda v: v > 0 or "must be positive"),
        "lora_dropout": (_Num, lambda v: 0 <= v < 1 or "must be in [0, 1)"),
        "target_modules": ((list, str), None),
        "bias": ((str,), lambda v: v in ("none", "all", "lora_only") or "must be none, all or lora_only"),
        "task_type": ((str,), None),
    },
    "TrainingArguments": {
        "output_dir": ((str,), None),
        "num_train_epochs": (_Num, lambda v: v > 0 or "must be positive"),
        "max_steps": ((int,), None),
        "per_device_train_batch_size": ((int,), lambda v: v > 0 or "must be a positive integer"),
        "per_device_eval_batch_size": ((int,), lambda v: v > 0 or "must be a positive integer"),
        "gradient_accumulation_steps": ((int,), lambda v: v > 0 or "must be a positive integer"),
        "learning_rate": (_Num, lambda v: v > 0 or "must be positive"),
        "save_strategy": (
            (str,),
            lambda v: v in ("no", "steps", "epoch", "best") or "must be no, steps, epoch or best",
        ),
        "ddp_find_unused_parameters": ((bool,), None),
        "gradient_checkpointing": ((bool,), None),
        "bf16": ((bool,), None),
        "fp16": ((bool,), None),
        "max_seq_length": ((int,), lambda v: v > 0 or "must be a positive integer"),
        "seed": ((int,), None),
    },
    "DatasetConfig": {
        "shuffle_dataset": ((bool,), None),
        "shuffle_seed": ((int,), None),
        "train_test_split": (_Num, lambda v: 0 < v <= 1 or "must be in (0, 1]"),
        "context_column": ((str,), None),
        "response_column": ((str,), None),
        "messages_column": ((str,), None),
        "instruction_column": ((str,), None),
        "dataset_path": ((str,), None),
    },
    "DataCollator": {
        "mlm": ((bool,), None),
        "mlm_probability": (_Num, lambda v: 0 <= v <= 1 or "must be in [0, 1]"),
    },
}


def _type_name(types: tuple[type, ...]) -> str:
    names = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _check_value(value: Any, types: tuple[type, ...], check: Any, path: str) -> list[Problem]:
    ok_type = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok_type:
        return [Problem(path, f"must be {_type_name(types)}, got {value!r}", f"write {_type_name(types)}")]
    if check is not None:
        result = check(value)
        if result is not True:
            return [Problem(path, f"{value!r} {result}", "fix the value")]
    return []


def _load_config_yaml(text: str | Mapping[str, Any], path: str) -> tuple[Any, list[Problem]]:
    if isinstance(text, Mapping):
        return dict(text), []
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as e:
        return None, [Problem(path, f"invalid YAML: {e}", "fix the YAML syntax")]


def validate_tuning_config(
    text: str | Mapping[str, Any], *, method: str | None = None, path: str = TRAINING_CONFIG_KEY
) -> list[Problem]:
    """Check a Kaito `training_config.yaml` (as text or parsed): the known sections only, each a mapping,
    known keys with the right types; with `method`, qlora needs load_in_4bit or load_in_8bit true and
    lora needs both false. TrainingArguments.output_dir must stay under /mnt (Kaito's rule)."""
    doc, problems = _load_config_yaml(text, path)
    if problems:
        return problems
    if not isinstance(doc, Mapping) or not isinstance(doc.get("training_config"), Mapping):
        return [
            Problem(
                path,
                "expected a top-level `training_config:` mapping",
                "start the file with training_config:",
            )
        ]
    extra_top = [k for k in doc if k != "training_config"]
    for k in extra_top:
        problems.append(
            Problem(join_path(path, str(k)), f"unknown top-level key {k!r}", "only training_config: is read")
        )
    cfg = doc["training_config"]
    base = join_path(path, "training_config")
    for section, body in cfg.items():
        spath = join_path(base, str(section))
        if section not in TUNING_CONFIG_SECTIONS:
            problems.append(
                Problem(
                    spath,
                    f"unrecognized section {section!r}",
                    f"use only {', '.join(TUNING_CONFIG_SECTIONS)}",
                )
            )
            continue
        if body is None:
            continue
        if not isinstance(body, Mapping):
            problems.append(
                Problem(spath, "a section must be a mapping of settings", "indent key: value pairs under it")
            )
            continue
        rules = TUNING_CONFIG_SECTIONS[section]
        for key, value in body.items():
            kpath = join_path(spath, str(key))
            if not isinstance(key, str):
                problems.append(Problem(kpath, "setting names must be strings", "quote the key"))
            elif key in rules:
                types, check = rules[key]
                if value is not None:
                    problems += _check_value(value, types, check, kpath)
    quant = cfg.get("QuantizationConfig") if isinstance(cfg.get("QuantizationConfig"), Mapping) else {}
    four, eight = quant.get("load_in_4bit") is True, quant.get("load_in_8bit") is True
    qpath = join_path(base, "QuantizationConfig")
    if four and eight:
        problems.append(
            Problem(qpath, "load_in_4bit and load_in_8bit cannot both be true", "keep one of them")
        )
    if method == "qlora" and not (four or eight):
        problems.append(
            Problem(
                qpath,
                "method qlora needs load_in_4bit or load_in_8bit set to true",
                "add QuantizationConfig: {load_in_4bit: true, bnb_4bit_quant_type: nf4}, or use method lora",
            )
        )
    if method == "lora" and (four or eight):
        problems.append(
            Problem(
                qpath,
                "method lora needs load_in_4bit and load_in_8bit false (quantized training is qlora)",
                "set them to false, or use method qlora",
            )
        )
    args = cfg.get("TrainingArguments") if isinstance(cfg.get("TrainingArguments"), Mapping) else {}
    out = args.get("output_dir")
    if isinstance(out, str):
        import posixpath

        clean = posixpath.normpath(posixpath.join("/mnt", out))
        if clean == "/mnt" or not clean.startswith("/mnt/"):
            problems.append(
                Problem(
                    join_path(base, "TrainingArguments", "output_dir"),
                    f"output_dir {out!r} must be a directory under /mnt",
                    "use e.g. /mnt/results (the controller maps it to the workspace's output)",
                )
            )
    return problems


INFERENCE_CONFIG_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "max_probe_steps": ((int,), lambda v: v >= 0 or "must be >= 0"),
}
VLLM_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "gpu-memory-utilization": (_Num, lambda v: 0 < v <= 1 or "must be in (0, 1]"),
    "max-model-len": ((int,), lambda v: v > 0 or "must be a positive integer"),
    "tensor-parallel-size": ((int,), lambda v: v > 0 or "must be a positive integer"),
    "pipeline-parallel-size": ((int,), lambda v: v > 0 or "must be a positive integer"),
    "cpu-offload-gb": (_Num, lambda v: v >= 0 or "must be >= 0"),
    "swap-space": (_Num, lambda v: v >= 0 or "must be >= 0"),
    "max-num-seqs": ((int,), lambda v: v > 0 or "must be a positive integer"),
    "max-seq-len-to-capture": ((int,), lambda v: v > 0 or "must be a positive integer"),
    "num-scheduler-steps": ((int,), lambda v: v > 0 or "must be a positive integer"),
    "enable-chunked-prefill": ((bool,), None),
    "enable-prefix-caching": ((bool,), None),
    "dtype": ((str,), lambda v: v in _DTYPES or f"must be one of {', '.join(_DTYPES)}"),
    "tool-call-parser": ((str,), None),
    "chat-template": ((str,), None),
}
INFERENCE_SECTIONS = ("vllm", "transformers", "generation")


def validate_inference_config(
    text: str | Mapping[str, Any], *, preset: Preset | None = None, path: str = INFERENCE_CONFIG_KEY
) -> list[Problem]:
    """Check a Kaito `inference_config.yaml`: top-level `max_probe_steps` and the `vllm` section (engine
    arguments, whose common keys are type-checked; `max-model-len` must not exceed the preset's context),
    plus `transformers` / `generation` mappings for the Ray runtime."""
    doc, problems = _load_config_yaml(text, path)
    if problems:
        return problems
    if doc is None:
        return []
    if not isinstance(doc, Mapping):
        return [
            Problem(
                path, "inference_config.yaml must be a mapping", "write key: value pairs, e.g. vllm: {...}"
            )
        ]
    for key, value in doc.items():
        kpath = join_path(path, str(key))
        if key in INFERENCE_CONFIG_KEYS:
            types, check = INFERENCE_CONFIG_KEYS[key]
            problems += _check_value(value, types, check, kpath)
        elif key in INFERENCE_SECTIONS:
            if value is not None and not isinstance(value, Mapping):
                problems.append(
                    Problem(kpath, f"{key} must be a mapping of settings", "indent key: value pairs under it")
                )
        else:
            problems.append(
                Problem(
                    kpath,
                    f"unknown key {key!r}",
                    f"use max_probe_steps or the sections {', '.join(INFERENCE_SECTIONS)}",
                )
            )
    vllm = doc.get("vllm")
    if isinstance(vllm, Mapping):
        for key, value in vllm.items():
            kpath = join_path(path, "vllm", str(key))
            if isinstance(value, Mapping | list):
                problems.append(Problem(kpath, "engine arguments must be scalars", "write a single value"))
            elif key in VLLM_KEYS and value is not None:
                types, check = VLLM_KEYS[key]
                problems += _check_value(value, types, check, kpath)
        mml = vllm.get("max-model-len")
        limit = preset.context_length if preset is not None else None
        if isinstance(mml, int) and not isinstance(mml, bool) and limit and mml > limit:
            problems.append(
                Problem(
                    join_path(path, "vllm", "max-model-len"),
                    f"max-model-len {mml} exceeds {preset.name}'s context window of {limit} tokens",  # type: ignore[union-attr]
                    f"use at most {limit}",
                )
            )
    return problems
