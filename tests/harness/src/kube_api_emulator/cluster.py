"""The emulated cluster: resource types, objects and the API verbs, independent of HTTP."""

from __future__ import annotations

import base64
import builtins
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import behaviours, crds, ownership, patches, scale, schema
from . import jsoncopy as copy
from .errors import ApiError, FieldError, already_exists, conflict, invalid, not_found
from .gc import NS_KEY, GarbageCollection
from .resources import ResourceInfo, builtin_resources, from_crd
from .selectors import parse_field_selector, parse_label_selector
from .store import Obj, Store
from .timeutil import now

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
_GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_manager: str | None = None
    field_validation: str = "Warn"  # Strict | Warn | Ignore
    force: bool = False
    warnings: builtins.list[str] = field(default_factory=list)


class Cluster(GarbageCollection):
    def __init__(self, history_limit: int = 10000) -> None:
        self.store = Store(history_limit)
        self.types: dict[tuple[str, str], ResourceInfo] = {}
        self._applied: dict[tuple[str, str], Any] = {}  # (uid, manager) -> last applied configuration
        self._own = ownership.Ownership()
        self._uids: dict[str, tuple[tuple[str, str], str, str]] = {}
        self._ips = behaviours.ServiceIPs()
        self.store.listeners.append(self._index_uid)
        for info in builtin_resources():
            self.types[info.key] = info
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(
                self.types[NS_KEY],
                "v1",
                "",
                {"metadata": {"name": ns}},
                WriteOptions(field_manager="kube-apiserver"),
            )

    # ---- types ----

    def infos(self) -> builtins.list[ResourceInfo]:
        return list(self.types.values())

    def resolve(self, group: str, version: str, plural: str) -> ResourceInfo:
        info = self.types.get((group, plural))
        if info is None or version not in info.versions:
            gv = f"{group}/{version}" if group else version
            raise ApiError(
                404, f"the server could not find the requested resource (resource {plural!r} in {gv})"
            )
        return info

    def by_kind(self, api_version: str, kind: str) -> ResourceInfo | None:
        group = api_version.rpartition("/")[0]
        return next((i for i in self.types.values() if i.group == group and i.kind == kind), None)

    # ---- output ----

    @staticmethod
    def out(info: ResourceInfo, version: str, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        obj["apiVersion"] = info.api_version(version)
        obj["kind"] = info.kind
        return obj

    # ---- reads ----

    def get(self, info: ResourceInfo, version: str, ns: str, name: str) -> Obj:
        obj = self.store.get(info.key, ns if info.namespaced else "", name)
        if obj is None:
            raise not_found(info.plural, info.group, name)
        return self.out(info, version, obj)

    def list(
        self,
        info: ResourceInfo,
        version: str,
        ns: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        cont: str | None = None,
    ) -> Obj:
        match_labels = parse_label_selector(label_selector)
        match_fields = parse_field_selector(field_selector, info.kind, info.selectable_fields)
        objs = self.store.list(info.key, ns if info.namespaced else None)
        objs = [o for o in objs if match_labels(o["metadata"].get("labels") or {}) and match_fields(o)]
        md: Obj = {"resourceVersion": str(self.store.resource_version)}
        if cont:
            try:
                start = json.loads(base64.urlsafe_b64decode(cont.encode()))["start"]
            except (ValueError, KeyError, TypeError) as e:
                raise ApiError(400, f"continue key is not valid: {cont}") from e
            objs = [o for o in objs if [o["metadata"].get("namespace") or "", o["metadata"]["name"]] > start]
        if limit and limit > 0 and len(objs) > limit:
            last = objs[limit - 1]["metadata"]
            md["continue"] = base64.urlsafe_b64encode(
                json.dumps({"start": [last.get("namespace") or "", last["name"]]}).encode()
            ).decode()
            md["remainingItemCount"] = len(objs) - limit
            objs = objs[:limit]
        return {
            "kind": info.list_kind,
            "apiVersion": info.api_version(version),
            "metadata": md,
            "items": [self.out(info, version, o) for o in objs],
        }

    # ---- writes ----

    def _check_namespace(self, info: ResourceInfo, ns: str, creating: bool) -> None:
        if not info.namespaced:
            return
        nso = self.store.peek(NS_KEY, "", ns)
        if nso is None:
            raise not_found("namespaces", "", ns)
        if creating and nso["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                f"{info.kind.lower()} is forbidden: unable to create new content in namespace {ns} "
                "because it is being terminated",
                reason="Forbidden",
            )

    def _coerce_body(self, info: ResourceInfo, version: str, ns: str, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        want = info.api_version(version)
        if obj.get("apiVersion") not in (None, want) or obj.get("kind") not in (None, info.kind):
            raise ApiError(
                400,
                f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
                f"API version ({want})"
                if obj.get("apiVersion") != want
                else f"the kind in the data ({obj.get('kind')}) does not match the expected kind "
                f"({info.kind})",
            )
        obj["apiVersion"], obj["kind"] = want, info.kind
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise ApiError(400, "metadata must be an object")
        if info.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        return obj

    def _admit_schema(
        self, info: ResourceInfo, version: str, obj: Obj, opts: WriteOptions, old: Obj | None = None
    ) -> builtins.list[FieldError]:
        """CRs: prune unknown fields (per fieldValidation), apply defaults, validate."""
        sch = info.schemas.get(version)
        if info.builtin or sch is None:
            return []
        pruned: builtins.list[str] = []
        schema.prune(obj, sch, [], pruned, root=True)
        if pruned and opts.field_validation == "Strict":
            raise ApiError(
                400,
                f'{info.kind} in version "{version}" cannot be handled as a {info.kind}: '
                "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in pruned),
            )
        if opts.field_validation != "Ignore":
            opts.warnings.extend(f'unknown field "{p}"' for p in pruned)
        schema.apply_defaults(obj, sch)
        return schema.validate(obj, sch, old, opts.warnings)

    def _invalid(self, info: ResourceInfo, name: str, errs: builtins.list[FieldError]) -> ApiError:
        return invalid(info.kind, info.group, name, errs)

    def _leaves(
        self, info: ResourceInfo, version: str, obj: Obj | None, subresource: str | None
    ) -> dict[Any, Any]:
        if obj is None:
            return {}
        keys = patches.list_map_keys_from_schema(info.schemas.get(version))
        return ownership.leaves(ownership.subject(obj, info.status_subresource, subresource), keys)

    def _manager(
        self,
        opts: WriteOptions,
        obj: Obj,
        info: ResourceInfo,
        version: str,
        operation: str,
        subresource: str | None,
        applied: Any = None,
        old: Obj | None = None,
    ) -> None:
        """Record who set which fields (managedFields) for a write about to be stored."""
        if opts.dry_run:
            return
        uid = obj["metadata"]["uid"]
        key = (opts.field_manager or "unknown", operation, subresource or "")
        self._own.record(
            uid,
            key,
            info.api_version(version),
            now(),
            self._leaves(info, version, old, subresource),
            self._leaves(info, version, obj, subresource),
            self._leaves(info, version, applied, subresource) if applied is not None else None,
        )
        obj["metadata"]["managedFields"] = self._own.managed_fields(uid)

    def create(
        self,
        info: ResourceInfo,
        version: str,
        ns: str,
        body: Any,
        opts: WriteOptions,
        operation: str = "Update",
        applied: Any = None,
    ) -> Obj:
        obj = self._coerce_body(info, version, ns, body)
        md = obj["metadata"]
        self._check_namespace(info, ns, creating=True)
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + "".join(random.choice(_GEN_CHARS) for _ in range(5))
        errs = behaviours.validate_meta(info, obj)
        if errs:
            raise self._invalid(info, md.get("name") or "", errs)
        if md.get("resourceVersion"):
            # what the real storage layer answers (a common mistake: creating from `kubectl get -o yaml`)
            raise ApiError(
                500,
                "Internal error occurred: resourceVersion should not be set on objects to be created",
                reason="InternalError",
            )
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "managedFields"):
            md.pop(k, None)
        if info.status_on_create == "drop" and info.key != CRD_KEY:
            obj.pop("status", None)
        errs = self._admit_schema(info, version, obj, opts) + behaviours.on_create(info, obj, self._ips)
        if info.key == CRD_KEY:
            errs += crds.validate_crd(obj)
        if errs:
            raise self._invalid(info, md["name"], errs)
        if self.store.peek(info.key, md.get("namespace") or "", md["name"]) is not None:
            raise already_exists(info.plural, info.group, md["name"])
        if info.key == CRD_KEY:
            self._check_crd_names(obj)
            obj["status"] = crds.crd_status(obj, None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now()
        md["generation"] = 1
        self._manager(opts, obj, info, version, operation, None, applied)
        obj["apiVersion"] = info.api_version(info.storage_version)
        if opts.dry_run:
            md["resourceVersion"] = ""
            return self.out(info, version, obj)
        stored = self.store.put(info.key, obj, "ADDED")
        if info.key == CRD_KEY:
            self._register_crd(stored)
        if md.get("ownerReferences"):
            self._schedule_orphan_check(info, stored)
        return self.out(info, version, stored)

    def _check_crd_names(self, crd: Obj) -> None:
        spec = crd["spec"]
        existing = self.types.get((spec["group"], spec["names"]["plural"]))
        if existing is not None and existing.builtin:
            raise ApiError(
                422, f"{spec['names']['plural']}.{spec['group']} conflicts with a built-in resource"
            )

    def _register_crd(self, crd: Obj) -> None:
        info = from_crd(crd)
        self.types[info.key] = info

    def update(
        self,
        info: ResourceInfo,
        version: str,
        ns: str,
        name: str,
        body: Any,
        subresource: str | None,
        opts: WriteOptions,
        operation: str = "Update",
        applied: Any = None,
    ) -> Obj:
        ns = ns if info.namespaced else ""
        old = self.store.get(info.key, ns, name)
        if old is None:
            raise not_found(info.plural, info.group, name)
        new = self._coerce_body(info, version, ns, body)
        if new["metadata"].get("name") not in (None, name):
            raise ApiError(
                400,
                f"the name of the object ({new['metadata']['name']}) does not match the name on the URL "
                f"({name})",
            )
        new["metadata"]["name"] = name
        rv = new["metadata"].get("resourceVersion")
        if rv not in (None, "") and rv != old["metadata"]["resourceVersion"]:
            raise conflict(info.plural, info.group, name)
        return self._write_update(info, version, old, new, subresource, opts, operation, applied)

    def _write_update(
        self,
        info: ResourceInfo,
        version: str,
        old: Obj,
        new: Obj,
        subresource: str | None,
        opts: WriteOptions,
        operation: str,
        applied: Any = None,
    ) -> Obj:
        name = old["metadata"]["name"]
        omd = old["metadata"]
        if subresource == "status":
            status = new.get("status")
            merged = copy.deepcopy(old)
            if status is None:
                merged.pop("status", None)
            else:
                merged["status"] = status
            new = merged
        else:
            md = new["metadata"]
            for k in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if k in omd:
                    md[k] = omd[k]
                else:
                    md.pop(k, None)
            md["managedFields"] = omd.get("managedFields") or []
            if info.status_subresource:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            if omd.get("deletionTimestamp"):
                added = set(md.get("finalizers") or []) - set(omd.get("finalizers") or [])
                if added:
                    raise self._invalid(
                        info,
                        name,
                        [
                            FieldError(
                                "metadata.finalizers",
                                "FieldValueForbidden",
                                "Forbidden: no new finalizers can be added if the object is being deleted, "
                                f"found new finalizers {sorted(added)!r}",
                            )
                        ],
                    )
        errs = behaviours.validate_meta(info, new)
        if errs:
            raise self._invalid(info, name, errs)
        errs = self._admit_schema(info, version, new, opts, old) + behaviours.on_update(
            info, old, new, self._ips
        )
        if info.key == CRD_KEY:
            errs += crds.validate_crd(new)
        if errs:
            raise self._invalid(info, name, errs)
        if info.key == CRD_KEY and subresource != "status":
            new["status"] = crds.crd_status(new, old)
        new["apiVersion"] = info.api_version(info.storage_version)
        old_cmp = _comparable(old)
        if _comparable(new) == old_cmp:
            if operation == "Apply":  # no write, but the applier now co-owns what it applied
                self._manager(opts, copy.deepcopy(old), info, version, operation, subresource, applied, old)
            return self.out(info, version, old)
        if _spec_changed(old, new, info.status_subresource):
            new["metadata"]["generation"] = int(omd.get("generation") or 1) + 1
        self._manager(opts, new, info, version, operation, subresource, applied, old)
        if opts.dry_run:
            return self.out(info, version, new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            gone = self._remove(info, new)
            return self.out(info, version, gone)
        stored = self.store.put(info.key, new, "MODIFIED")
        if info.key == CRD_KEY:
            self._register_crd(stored)
        return self.out(info, version, stored)

    def patch(
        self,
        info: ResourceInfo,
        version: str,
        ns: str,
        name: str,
        content_type: str,
        body: Any,
        subresource: str | None,
        opts: WriteOptions,
    ) -> tuple[Obj, bool]:
        """Returns (object, created)."""
        ns = ns if info.namespaced else ""
        ct = content_type.split(";")[0].strip()
        old = self.store.get(info.key, ns, name)
        if ct in (patches.APPLY_PATCH, patches.APPLY_PATCH_CBOR):
            if ct == patches.APPLY_PATCH_CBOR:
                raise ApiError(
                    415,
                    "the body of the request was in an unknown format - kube-api-emulator accepts "
                    "application/apply-patch+yaml, not CBOR",
                    reason="UnsupportedMediaType",
                )
            return self._apply(info, version, ns, name, old, body, subresource, opts)
        if old is None:
            raise not_found(info.plural, info.group, name)
        current = self.out(info, version, old)
        if ct == patches.MERGE_PATCH:
            if not isinstance(body, dict):
                raise ApiError(400, "a merge patch must be a JSON object")
            new = patches.merge_patch(current, body)
        elif ct == patches.JSON_PATCH:
            new = patches.json_patch(current, body)
        elif ct == patches.STRATEGIC_PATCH:
            if not info.builtin:
                raise ApiError(
                    415,
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, "
                    "application/apply-patch+yaml",
                    reason="UnsupportedMediaType",
                )
            if not isinstance(body, dict):
                raise ApiError(400, "a strategic merge patch must be a JSON object")
            new = patches.strategic_merge(current, body)
        else:
            raise ApiError(
                415,
                f"the body of the request was in an unknown format ({content_type}) - accepted media "
                "types include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml, application/strategic-merge-patch+json",
                reason="UnsupportedMediaType",
            )
        if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
            raise ApiError(422, "the patch produced an object without metadata")
        new = self._coerce_body(info, version, ns, new)
        if new["metadata"].get("name") != name:
            raise ApiError(
                422, f"metadata.name: Invalid value: {new['metadata'].get('name')!r}: field is immutable"
            )
        rv = new["metadata"].get("resourceVersion")
        if rv not in (None, "") and rv != old["metadata"]["resourceVersion"]:
            raise conflict(info.plural, info.group, name)
        return self._write_update(info, version, old, new, subresource, opts, "Update"), False

    def _apply(
        self,
        info: ResourceInfo,
        version: str,
        ns: str,
        name: str,
        old: Obj | None,
        body: Any,
        subresource: str | None,
        opts: WriteOptions,
    ) -> tuple[Obj, bool]:
        if not opts.field_manager:
            raise ApiError(
                422,
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                "is required for apply patch",
            )
        if not isinstance(body, dict):
            raise ApiError(400, "an apply patch must be an object")
        applied = self._coerce_body(info, version, ns, body)
        if applied["metadata"].get("name") not in (None, name):
            raise ApiError(400, "the name of the object does not match the name on the URL")
        applied["metadata"]["name"] = name
        if old is None:
            if subresource:
                raise not_found(info.plural, info.group, name)
            fresh = copy.deepcopy(applied)
            fresh["metadata"].pop("resourceVersion", None)
            created = self.create(info, version, ns, fresh, opts, "Apply", applied)
            if not opts.dry_run:
                self._applied[(created["metadata"]["uid"], opts.field_manager)] = applied
            return created, True
        map_keys = patches.list_map_keys_from_schema(info.schemas.get(version))
        current = self.out(info, version, old)
        conflicts = self._own.check_apply(
            old["metadata"]["uid"],
            opts.field_manager,
            subresource,
            self._leaves(info, version, current, subresource),
            self._leaves(info, version, applied, subresource),
        )
        if conflicts and not opts.force:
            raise self._own.conflict_error(old["metadata"]["uid"], info.plural, info.group, name, conflicts)
        previous = self._applied.get((old["metadata"]["uid"], opts.field_manager))
        merged = current
        if previous is not None:
            # what this manager stops applying goes, unless another manager owns it too
            shared = self._own.owned_by_others(
                old["metadata"]["uid"], (opts.field_manager, "Apply", subresource or "")
            )
            previous = ownership.without(previous, shared)
            merged = patches.remove_unapplied(merged, previous, applied, map_keys)
        merged = patches.apply_merge(merged, applied, map_keys)
        rv = applied["metadata"].get("resourceVersion")
        if rv not in (None, "") and rv != old["metadata"]["resourceVersion"]:
            raise conflict(info.plural, info.group, name)
        merged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        result = self._write_update(info, version, old, merged, subresource, opts, "Apply", applied)
        if not opts.dry_run:
            self._applied[(old["metadata"]["uid"], opts.field_manager)] = applied
        return result, False

    def scale(
        self,
        info: ResourceInfo,
        version: str,
        ns: str,
        name: str,
        method: str,
        content_type: str,
        body: Any,
        opts: WriteOptions,
    ) -> Obj:
        """GET/PUT/PATCH of the scale subresource: reads and writes the replicas of the main object."""
        ns = ns if info.namespaced else ""
        old = self.store.get(info.key, ns, name)
        if old is None:
            raise not_found(info.plural, info.group, name)
        current = scale.to_scale(info, old)
        if method == "GET":
            return current
        if method == "PUT":
            if not isinstance(body, dict):
                raise ApiError(400, "the request body must be a Scale object")
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if rv not in (None, "") and rv != old["metadata"]["resourceVersion"]:
                raise conflict(info.plural, info.group, name)
            wanted = (body.get("spec") or {}).get("replicas")
        else:
            ct = content_type.split(";")[0].strip()
            if ct == patches.JSON_PATCH:
                patched = patches.json_patch(current, body)
            elif ct in (patches.MERGE_PATCH, patches.STRATEGIC_PATCH) and isinstance(body, dict):
                patched = patches.merge_patch(current, body)
            else:
                raise ApiError(
                    415,
                    f"the scale subresource accepts merge, strategic and JSON patches, not {ct!r}",
                    reason="UnsupportedMediaType",
                )
            wanted = (patched.get("spec") or {}).get("replicas")
        new = scale.set_replicas(info, copy.deepcopy(old), wanted)
        written = self._write_update(info, version, old, new, None, opts, "Update")
        return scale.to_scale(info, written)

    def bind_pod(self, ns: str, name: str, binding: Any) -> Obj:
        """pods/binding (what a scheduler does): set spec.nodeName once."""
        info = self.types[("", "pods")]
        target = (binding or {}).get("target") or {}
        if not target.get("name"):
            raise self._invalid(
                info, name, [FieldError("target.name", "FieldValueRequired", "Required value")]
            )
        pod = self.store.get(info.key, ns, name)
        if pod is None:
            raise not_found("pods", "", name)
        current = pod["spec"].get("nodeName")
        if current:
            raise conflict("pods", "", name, f'pod {name} is already assigned to node "{current}"')
        pod["spec"]["nodeName"] = target["name"]
        self.store.put(info.key, pod, "MODIFIED")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    # ---- delete & garbage collection ----

    def delete(
        self, info: ResourceInfo, version: str, ns: str, name: str, options: Obj | None, dry_run: bool = False
    ) -> Obj:
        ns = ns if info.namespaced else ""
        obj = self.store.get(info.key, ns, name)
        if obj is None:
            raise not_found(info.plural, info.group, name)
        options = options or {}
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            raise conflict(
                info.plural,
                info.group,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, "
                f"UID in object meta: {obj['metadata']['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise conflict(
                info.plural,
                info.group,
                name,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {obj['metadata']['resourceVersion']}",
            )
        if dry_run:
            return self.out(info, version, obj)
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        policy = policy or "Background"
        if policy not in ("Background", "Foreground", "Orphan"):
            raise ApiError(
                422,
                f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "{policy}": '
                'supported values: "Background", "Foreground", "Orphan"',
            )
        md = obj["metadata"]
        if md.get("deletionTimestamp"):
            return self.out(info, version, obj)
        fins = list(md.get("finalizers") or [])
        uid = md["uid"]
        has_dependents = bool(self._dependents(uid))
        if policy == "Foreground" and has_dependents:
            fins.append("foregroundDeletion")
        if policy == "Orphan" and has_dependents:
            fins.append("orphan")
        if info.key == NS_KEY:
            md["deletionTimestamp"] = now()
            md["deletionGracePeriodSeconds"] = 0
            md["finalizers"] = fins
            obj["status"] = {"phase": "Terminating"}
            stored = self.store.put(info.key, obj, "MODIFIED")
            self._drain_namespace(name)
            return self.out(info, version, self.store.get(info.key, "", name) or stored)
        if not fins:
            return self.out(info, version, self._remove(info, obj))
        md["finalizers"] = fins
        md["deletionTimestamp"] = now()
        md["deletionGracePeriodSeconds"] = 0
        stored = self.store.put(info.key, obj, "MODIFIED")
        if "orphan" in fins:
            self._orphan_dependents(uid)
            stored = self._drop_finalizer(info, stored, "orphan")
        elif "foregroundDeletion" in fins:
            for tk, dep in self._dependents(uid):
                self._delete_quietly(self.types[tk], dep)
            stored = self._maybe_finish_foreground(info, uid) or stored
        return self.out(info, version, stored)

    def delete_collection(
        self,
        info: ResourceInfo,
        version: str,
        ns: str | None,
        label_selector: str | None,
        field_selector: str | None,
        options: Obj | None,
        dry_run: bool = False,
    ) -> Obj:
        listed = self.list(info, version, ns, label_selector, field_selector)
        items = []
        for o in listed["items"]:
            try:
                items.append(
                    self.delete(
                        info,
                        version,
                        o["metadata"].get("namespace") or "",
                        o["metadata"]["name"],
                        options,
                        dry_run,
                    )
                )
            except ApiError as e:
                if e.code != 404:
                    raise
        listed["items"] = items
        return listed

    def _remove(self, info: ResourceInfo, obj: Obj) -> Obj:
        gone = self.store.remove(info.key, obj)
        uid = gone["metadata"]["uid"]
        for k in [k for k in self._applied if k[0] == uid]:
            del self._applied[k]
        self._own.forget(uid)
        if info.key == CRD_KEY:
            spec = gone["spec"]
            tk = (spec["group"], spec["names"]["plural"])
            self.types.pop(tk, None)
            for o in self.store.drop_type(tk):
                self._after_removal(o)
            self.store.close_watchers(tk)
        self._after_removal(gone)
        ns = gone["metadata"].get("namespace")
        if ns:
            self._maybe_finish_namespace(ns)
        return gone


def _comparable(obj: Obj) -> Obj:
    o = copy.deepcopy(obj)
    md = o.get("metadata", {})
    for k in ("managedFields", "resourceVersion"):
        md.pop(k, None)
    o.pop("apiVersion", None)
    return o


def _spec_changed(old: Obj, new: Obj, status_sub: bool) -> bool:
    skip = {"metadata", "apiVersion", "kind"} | ({"status"} if status_sub else set())
    a = {k: v for k, v in old.items() if k not in skip}
    b = {k: v for k, v in new.items() if k not in skip}
    return a != b
