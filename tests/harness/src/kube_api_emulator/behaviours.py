"""Per-kind behaviour of the built-in kinds the operators rely on (defaults, a few checks),
and ObjectMeta validation shared by every kind."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any

from .errors import ApiError, FieldError
from .resources import NAME_1035, NAME_LABEL, ResourceInfo

Obj = dict[str, Any]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QNAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _name_errors(name: str, rule: str, fld: str) -> list[FieldError]:
    if rule == NAME_LABEL:
        ok, maxlen, what = (
            _LABEL_1123.match(name),
            63,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
            "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
            "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )
    elif rule == NAME_1035:
        ok, maxlen, what = (
            _LABEL_1035.match(name),
            63,
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
            "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        )
    else:
        ok, maxlen, what = (
            _SUBDOMAIN.match(name),
            253,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
            "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )
    errs = []
    if len(name) > maxlen:
        errs.append(
            FieldError(
                fld, "FieldValueInvalid", f'Invalid value: "{name}": must be no more than {maxlen} characters'
            )
        )
    if not ok:
        errs.append(FieldError(fld, "FieldValueInvalid", f'Invalid value: "{name}": {what}'))
    return errs


def _qualified_name_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return False
    return bool(name) and len(name) <= 63 and bool(_QNAME.match(name))


TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def validate_meta(info: ResourceInfo, obj: Obj) -> list[FieldError]:
    md = obj.get("metadata") or {}
    errs: list[FieldError] = []
    name = md.get("name")
    if not name:
        errs.append(
            FieldError(
                "metadata.name", "FieldValueRequired", "Required value: name or generateName is required"
            )
        )
    elif not isinstance(name, str):
        raise ApiError(400, "metadata.name must be a string")
    else:
        errs.extend(_name_errors(name, info.name_rule, "metadata.name"))
    annotations = md.get("annotations")
    if isinstance(annotations, dict):
        total = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
        if total > TOTAL_ANNOTATION_SIZE_LIMIT:
            # The real server's limit: why `kubectl apply` (client-side) of very large CRDs fails and
            # `kubectl apply --server-side` is needed for them.
            errs.append(
                FieldError(
                    "metadata.annotations",
                    "FieldValueTooLong",
                    f"Too long: may not be more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes",
                )
            )
    for fld in ("labels", "annotations"):
        vals = md.get(fld)
        if vals is None:
            continue
        if not isinstance(vals, dict) or not all(isinstance(v, str) for v in vals.values()):
            raise ApiError(
                400, f"json: cannot unmarshal metadata.{fld}: values must be strings (map[string]string)"
            )
        for k, v in vals.items():
            if not _qualified_name_ok(k):
                errs.append(
                    FieldError(
                        f"metadata.{fld}",
                        "FieldValueInvalid",
                        f'Invalid value: "{k}": name part must consist of alphanumeric characters, '
                        "'-', '_' or '.', and must start and end with an alphanumeric character",
                    )
                )
            if fld == "labels" and (len(v) > 63 or not _LABEL_VALUE.match(v)):
                errs.append(
                    FieldError(
                        "metadata.labels",
                        "FieldValueInvalid",
                        f'Invalid value: "{v}": a valid label must be an empty string or consist of '
                        "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                        "alphanumeric character",
                    )
                )
    for i, ref in enumerate(md.get("ownerReferences") or []):
        for req in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(req):
                errs.append(
                    FieldError(f"metadata.ownerReferences[{i}].{req}", "FieldValueRequired", "Required value")
                )
    fins = md.get("finalizers")
    if fins is not None and (not isinstance(fins, list) or not all(isinstance(f, str) for f in fins)):
        raise ApiError(400, "metadata.finalizers must be a list of strings")
    return errs


# ---- per kind ----


class ServiceIPs:
    """Allocates ClusterIPs from 10.96.0.0/12."""

    def __init__(self) -> None:
        self._next = int(ipaddress.IPv4Address("10.96.0.10"))

    def allocate(self) -> str:
        self._next += 1
        return str(ipaddress.IPv4Address(self._next))


def on_create(info: ResourceInfo, obj: Obj, ips: ServiceIPs) -> list[FieldError]:
    """Defaults and checks for a new built-in object. Mutates obj; returns field errors."""
    if not info.builtin:
        return []
    key = info.key
    if key == ("", "namespaces"):
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif key == ("", "pods"):
        errs = _pod_errors(obj)
        if errs:
            return errs
        _pod_defaults(obj["spec"])
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif key == ("", "services"):
        return _service_defaults(obj, None, ips)
    elif key == ("", "secrets"):
        return _secret_data(obj)
    return []


def on_update(info: ResourceInfo, old: Obj, new: Obj, ips: ServiceIPs) -> list[FieldError]:
    if not info.builtin:
        return []
    key = info.key
    if key == ("", "namespaces"):
        new["spec"] = old.get("spec", {}) if "spec" not in new else new["spec"]
        new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = new["metadata"]["name"]
    elif key == ("", "services"):
        return _service_defaults(new, old, ips)
    elif key == ("", "secrets"):
        return _secret_data(new)
    elif key == ("", "pods"):
        return _pod_errors(new) or _pod_update_errors(old, new)
    return []


# What a pod update may change in spec (the real server's rule, simplified: tolerations may change freely).
_POD_MUTABLE = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates")


def _pod_defaults(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("securityContext", {})
    for c in spec.get("containers") or []:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        image = str(c.get("image", ""))
        c.setdefault(
            "imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image else "IfNotPresent"
        )
        c.setdefault("resources", {})


def _pod_update_errors(old: Obj, new: Obj) -> list[FieldError]:
    """Pod specs are immutable but for images and a few fields; nodeName is set through pods/binding."""
    _pod_defaults(new["spec"])

    def comparable(spec: Obj) -> Obj:
        out = {k: v for k, v in spec.items() if k not in _POD_MUTABLE}
        for kind in ("containers", "initContainers"):
            out[kind] = [{k: v for k, v in c.items() if k != "image"} for c in spec.get(kind) or []]
        return out

    if comparable(old.get("spec") or {}) != comparable(new["spec"]):
        return [
            FieldError(
                "spec",
                "FieldValueForbidden",
                "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
                "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only "
                "additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be "
                "set to 1 if it was previously negative)",
            )
        ]
    return []


def _pod_errors(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict) or not spec.get("containers"):
        return [FieldError("spec.containers", "FieldValueRequired", "Required value")]
    errs = []
    for i, c in enumerate(spec["containers"]):
        if not c.get("name"):
            errs.append(FieldError(f"spec.containers[{i}].name", "FieldValueRequired", "Required value"))
        if not c.get("image"):
            errs.append(FieldError(f"spec.containers[{i}].image", "FieldValueRequired", "Required value"))
    return errs


def _service_defaults(obj: Obj, old: Obj | None, ips: ServiceIPs) -> list[FieldError]:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
    if old_ip and spec.get("clusterIP") in (None, ""):
        spec["clusterIP"] = old_ip
    elif old_ip and spec.get("clusterIP") != old_ip:
        return [
            FieldError(
                "spec.clusterIP",
                "FieldValueInvalid",
                f'Invalid value: "{spec.get("clusterIP")}": field is immutable',
            )
        ]
    if spec.get("type") != "ExternalName":
        if not spec.get("clusterIP"):
            spec["clusterIP"] = ips.allocate()
        spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if not spec.get("ports") and spec.get("clusterIP") != "None" and spec.get("type") != "ExternalName":
        return [FieldError("spec.ports", "FieldValueRequired", "Required value")]
    for p in spec.get("ports") or []:
        p.setdefault("protocol", "TCP")
        if "port" in p:
            p.setdefault("targetPort", p["port"])
    obj.setdefault("status", {"loadBalancer": {}})
    return []


def _secret_data(obj: Obj) -> list[FieldError]:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None) or {}
    data = obj.get("data") or {}
    for k, v in data.items():
        try:
            base64.b64decode(v, validate=True)
        except (binascii.Error, TypeError) as e:
            raise ApiError(
                400,
                f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data in data[{k!r}]',
            ) from e
    for k, v in string_data.items():
        data[k] = base64.b64encode(str(v).encode()).decode()
    if data:
        obj["data"] = data
    return []
