"""CustomResourceDefinition checks and status, like apiextensions-apiserver (the main ones)."""

from __future__ import annotations

from typing import Any

from .errors import FieldError
from .timeutil import now


def validate_crd(crd: dict[str, Any]) -> list[FieldError]:
    errs: list[FieldError] = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [FieldError("spec", "FieldValueRequired", "Required value")]
    group = spec.get("group")
    names = spec.get("names") or {}
    if not group:
        errs.append(FieldError("spec.group", "FieldValueRequired", "Required value"))
    elif "." not in group:
        errs.append(
            FieldError(
                "spec.group",
                "FieldValueInvalid",
                f'Invalid value: "{group}": should be a domain with at least one dot',
            )
        )
    for key in ("plural", "kind"):
        if not names.get(key):
            errs.append(FieldError(f"spec.names.{key}", "FieldValueRequired", "Required value"))
    if names.get("plural") and names.get("plural") != names["plural"].lower():
        errs.append(
            FieldError(
                "spec.names.plural",
                "FieldValueInvalid",
                f'Invalid value: "{names["plural"]}": a lowercase RFC 1123 subdomain must consist of '
                "lower case alphanumeric characters",
            )
        )
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        errs.append(
            FieldError(
                "spec.scope",
                "FieldValueNotSupported",
                f'Unsupported value: "{scope}": supported values: "Cluster", "Namespaced"',
            )
        )
    name = (crd.get("metadata") or {}).get("name")
    if group and names.get("plural") and name != f"{names['plural']}.{group}":
        errs.append(
            FieldError(
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        errs.append(
            FieldError(
                "spec.versions",
                "FieldValueInvalid",
                "Invalid value: null: must have exactly one version marked as storage version",
            )
        )
    storage = [v for v in versions if v.get("storage")]
    if versions and len(storage) != 1:
        errs.append(
            FieldError(
                "spec.versions",
                "FieldValueInvalid",
                f'Invalid value: "{[v.get("name") for v in versions]}": '
                "must have exactly one version marked as storage version",
            )
        )
    seen: set[str] = set()
    for i, v in enumerate(versions):
        if not v.get("name"):
            errs.append(FieldError(f"spec.versions[{i}].name", "FieldValueRequired", "Required value"))
        elif v["name"] in seen:
            errs.append(
                FieldError(
                    f"spec.versions[{i}].name", "FieldValueDuplicate", f'Duplicate value: "{v["name"]}"'
                )
            )
        seen.add(v.get("name", ""))
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if not schema:
            errs.append(
                FieldError(
                    f"spec.versions[{i}].schema.openAPIV3Schema",
                    "FieldValueRequired",
                    "Required value: schemas are required",
                )
            )
        elif schema.get("type") not in ("object", None):
            errs.append(
                FieldError(
                    f"spec.versions[{i}].schema.openAPIV3Schema.type",
                    "FieldValueInvalid",
                    f'Invalid value: "{schema.get("type")}": must be object at the root',
                )
            )
    return errs


def crd_status(crd: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    spec = crd["spec"]
    ts = now()
    stored = list((old or {}).get("status", {}).get("storedVersions") or [])
    storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
    if storage not in stored:
        stored.append(storage)
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    return {
        "acceptedNames": names,
        "storedVersions": stored,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": ts,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": ts,
            },
        ],
    }
