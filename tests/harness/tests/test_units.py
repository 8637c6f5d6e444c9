"""Pure pieces, tested by value: patches, selectors, JSONPath, structural schema, tables, versions."""

from __future__ import annotations

import pytest

from kube_api_emulator import jsonpath, patches, schema, tables
from kube_api_emulator.errors import ApiError
from kube_api_emulator.resources import sort_versions
from kube_api_emulator.selectors import label_selector_to_string, parse_field_selector, parse_label_selector


def test_merge_patch_rfc7386() -> None:
    assert patches.merge_patch({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": None, "d": 3}, "l": [2]}) == {
        "a": {"c": 2, "d": 3},
        "l": [2],
    }


def test_json_patch_ops_and_errors() -> None:
    doc = {"metadata": {"resourceVersion": "5"}, "spec": {"x": 1}}
    out = patches.json_patch(
        doc,
        [
            {"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
            {"op": "add", "path": "/spec/y", "value": 2},
            {"op": "remove", "path": "/spec/x"},
        ],
    )
    assert out["spec"] == {"y": 2} and doc["spec"] == {"x": 1}
    with pytest.raises(ApiError) as e:
        patches.json_patch(doc, [{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}])
    assert e.value.code == 422
    with pytest.raises(ApiError) as e:
        patches.json_patch(doc, [{"op": "frobnicate", "path": "/x"}])
    assert e.value.code == 400


def test_strategic_merge_directives() -> None:
    live = {
        "spec": {
            "containers": [
                {"name": "a", "image": "1", "ports": [{"containerPort": 80}]},
                {"name": "b", "image": "1"},
            ],
            "tolerations": [{"key": "x"}],
        },
        "metadata": {"finalizers": ["f1"], "ownerReferences": [{"uid": "u1", "name": "o"}]},
    }
    patch = {
        "spec": {
            "containers": [{"name": "a", "ports": [{"containerPort": 81}]}, {"name": "c", "image": "2"}],
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
            "tolerations": [{"key": "y"}],
        },
        "metadata": {"finalizers": ["f2"], "ownerReferences": [{"uid": "u1", "name": "renamed"}]},
    }
    out = patches.strategic_merge(live, patch)
    assert [c["name"] for c in out["spec"]["containers"]] == ["a", "b", "c"]
    assert out["spec"]["containers"][0]["ports"] == [{"containerPort": 80}, {"containerPort": 81}]
    assert out["spec"]["tolerations"] == [{"key": "y"}]  # no patch strategy: replaced
    assert out["metadata"]["finalizers"] == ["f1", "f2"]
    assert out["metadata"]["ownerReferences"] == [{"uid": "u1", "name": "renamed"}]
    out = patches.strategic_merge(live, {"spec": {"$patch": "replace", "containers": []}})
    assert out["spec"] == {"containers": []}
    out = patches.strategic_merge(
        live, {"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "9"}]}}
    )
    assert out["spec"]["containers"] == [{"name": "z", "image": "9"}]
    out = patches.strategic_merge({"a": {"k": 1, "j": 2}}, {"a": {"$retainKeys": ["k"], "k": 3}})
    assert out == {"a": {"k": 3}}


def test_apply_merge_and_removal() -> None:
    keys = {"items": ["name"]}
    live = {"spec": {"items": [{"name": "a", "v": 1}, {"name": "b", "v": 2}], "other": 1, "mine": 1}}
    prev = {"spec": {"items": [{"name": "a", "v": 1}], "mine": 1}}
    applied = {"spec": {"items": [{"name": "c", "v": 3}]}}
    out = patches.apply_merge(patches.remove_unapplied(live, prev, applied, keys), applied, keys)
    assert out == {"spec": {"items": [{"name": "b", "v": 2}, {"name": "c", "v": 3}], "other": 1}}
    assert patches.fields_v1({"data": {"a": "1"}, "x": 1}) == {"f:data": {".": {}, "f:a": {}}, "f:x": {}}


def test_label_selectors() -> None:
    labels = {"app": "web", "tier": "front", "env": "prod"}
    cases = {
        "app=web": True,
        "app==web": True,
        "app!=web": False,
        "app in (web,api)": True,
        "tier notin (front)": False,
        "env": True,
        "!env": False,
        "!missing": True,
        "app=web,tier=back": False,
        "missing!=x": True,
        "": True,
    }
    for expr, want in cases.items():
        assert parse_label_selector(expr)(labels) is want, expr
    with pytest.raises(ApiError):
        parse_label_selector("a b c")
    sel = {
        "matchLabels": {"a": "1"},
        "matchExpressions": [
            {"key": "b", "operator": "In", "values": ["x", "y"]},
            {"key": "c", "operator": "DoesNotExist"},
        ],
    }
    assert label_selector_to_string(sel) == "a=1,b in (x,y),!c"


def test_field_selectors() -> None:
    pod = {"metadata": {"name": "p", "namespace": "n"}, "spec": {"nodeName": "node1"}}
    assert parse_field_selector("spec.nodeName=node1,metadata.name=p", "Pod")(pod)
    assert not parse_field_selector("spec.nodeName!=node1", "Pod")(pod)
    with pytest.raises(ApiError) as e:
        parse_field_selector("spec.nodeName=x", "ConfigMap")
    assert e.value.code == 400 and "field label not supported" in e.value.message


def test_jsonpath_printer_column_subset() -> None:
    obj = {
        "status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
        "metadata": {"labels": {"app.kubernetes.io/name": "x"}},
        "spec": {"l": [1, 2]},
    }
    assert jsonpath.find(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath.find(obj, ".status.conditions[0].type") == ["A"]
    assert jsonpath.find(obj, ".spec.l[*]") == [1, 2]
    assert jsonpath.find(obj, r".metadata.labels.app\.kubernetes\.io/name") == ["x"]
    assert jsonpath.find(obj, ".metadata.labels['app.kubernetes.io/name']") == ["x"]
    assert jsonpath.find(obj, ".nope.deeper") == []


SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["n"],
            "properties": {
                "n": {"type": "integer", "maximum": 5},
                "s": {"type": "string", "default": "dflt", "maxLength": 4},
                "ios": {"x-kubernetes-int-or-string": True},
                "maybe": {"type": "string", "nullable": True},
                "nn": {"type": "string"},
                "free": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"known": {"type": "object", "properties": {"k": {"type": "string"}}}},
                },
                "m": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"v": {"type": "integer", "default": 7}},
                    },
                },
                "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "emb": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {"spec": {"type": "object"}},
                },
            },
        },
    },
}


def test_prune_default_validate() -> None:
    obj = {
        "apiVersion": "g/v1",
        "kind": "K",
        "metadata": {"name": "x"},
        "spec": {
            "n": 1,
            "maybe": None,
            "nn": None,
            "junk": 1,
            "free": {"any": 1, "known": {"k": "a", "drop": 1}},
            "m": {"a": {"extra": 1}},
            "emb": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "zzz": 1},
        },
    }
    pruned: list[str] = []
    schema.prune(obj, SCHEMA, [], pruned, root=True)
    assert sorted(pruned) == ["spec.emb.zzz", "spec.free.known.drop", "spec.junk", "spec.m.a.extra"]
    schema.apply_defaults(obj, SCHEMA)
    assert obj["spec"]["s"] == "dflt" and obj["spec"]["m"]["a"] == {"v": 7}
    assert obj["spec"]["maybe"] is None and "nn" not in obj["spec"]
    assert obj["spec"]["emb"]["metadata"] == {"name": "p"} and obj["spec"]["free"]["any"] == 1
    assert schema.validate(obj, SCHEMA) == []
    bad = {"spec": {"n": 9, "s": "toolong", "ios": 1.5, "set": ["a", "a"]}}
    errs = {e.field: (e.reason, e.detail) for e in schema.validate(bad, SCHEMA)}
    assert errs["spec.n"] == (
        "FieldValueInvalid",
        "Invalid value: 9: spec.n in body should be less than or equal to 5",
    )
    assert errs["spec.s"][0] == "FieldValueTooLong"
    assert errs["spec.ios"][0] == "FieldValueTypeInvalid"
    assert errs["spec.set"][0] == "FieldValueInvalid"
    assert schema.validate({}, {**SCHEMA, "required": ["spec"]})[0].field == "spec"


def test_human_age_and_versions() -> None:
    import datetime as dt

    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert tables.human_age("2026-01-02T03:04:00Z", now) == "5s"
    assert tables.human_age("2026-01-02T02:59:05Z", now) == "5m"
    assert tables.human_age("2026-01-01T03:04:05Z", now) == "24h"
    assert tables.human_age("2025-12-20T03:04:05Z", now) == "13d"
    assert sort_versions(["v1alpha1", "v1", "v1beta2", "v2", "v1beta1", "foo"]) == [
        "v2",
        "v1",
        "v1beta2",
        "v1beta1",
        "v1alpha1",
        "foo",
    ]


CEL_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "min must not exceed max", "fieldPath": ".min"},
                {
                    "rule": "self.name.lowerAscii() == self.name",
                    "messageExpression": "'name ' + self.name + ' not lower'",
                },
                {"rule": "!has(self.banned)", "message": "not allowed", "reason": "FieldValueForbidden"},
                {"rule": "self.min == oldSelf.min", "message": "min is immutable"},
                {"rule": "self.name.someUnknownFunction()", "message": "never evaluated"},
            ],
            "properties": {
                "min": {"type": "integer"},
                "max": {"type": "integer"},
                "name": {"type": "string"},
                "banned": {"type": "string"},
            },
        }
    },
}


def test_cel_rules() -> None:
    warnings: list[str] = []
    ok = {"spec": {"min": 1, "max": 2, "name": "abc"}}
    assert schema.validate(ok, CEL_SCHEMA, None, warnings) == []
    assert len(warnings) == 1 and "someUnknownFunction" in warnings[0]  # reported, not silently passed
    bad = {"spec": {"min": 3, "max": 2, "name": "ABC", "banned": "x"}}
    errs = {e.field: (e.reason, e.detail) for e in schema.validate(bad, CEL_SCHEMA, None, [])}
    assert errs["spec.min"] == ("FieldValueInvalid", 'Invalid value: "object": min must not exceed max')
    assert errs["spec"] in {
        ("FieldValueInvalid", 'Invalid value: "object": name ABC not lower'),
        ("FieldValueForbidden", "Forbidden: not allowed"),
    }
    assert len([e for e in schema.validate(bad, CEL_SCHEMA, None, []) if e.field == "spec"]) == 2
    changed = {"spec": {"min": 0, "max": 2, "name": "abc"}}
    errs2 = schema.validate(changed, CEL_SCHEMA, ok, [])
    assert [e.detail for e in errs2] == ['Invalid value: "object": min is immutable']


def test_validation_ratcheting() -> None:
    """Updates do not fail on values they did not change (Kubernetes >= 1.33), but do on changed ones."""
    old = {"spec": {"n": 9, "s": "toolong"}}
    assert schema.validate({"spec": {"n": 9, "s": "toolong"}, "status": {}}, SCHEMA, old) == []
    errs = schema.validate({"spec": {"n": 8, "s": "toolong"}}, SCHEMA, old)
    assert [e.field for e in errs] == ["spec.n"]
    assert [e.field for e in schema.validate({"spec": {}}, SCHEMA, old)] == [
        "spec.n"
    ]  # removing a required field


def test_crd_selectable_fields() -> None:
    from kube_api_emulator.resources import from_crd

    crd = {
        "metadata": {"name": "ws.g.io"},
        "spec": {
            "group": "g.io",
            "scope": "Namespaced",
            "names": {"plural": "ws", "kind": "W"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "selectableFields": [{"jsonPath": ".spec.color"}],
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    info = from_crd(crd)
    match = parse_field_selector("spec.color=red", info.kind, info.selectable_fields)
    assert match({"metadata": {}, "spec": {"color": "red"}}) and not match({"metadata": {}, "spec": {}})


def test_ownership_leaves_and_paths() -> None:
    from kube_api_emulator import ownership

    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "b"}, "uid": "u"},
        "spec": {"containers": [{"name": "c", "image": "i"}], "tolerations": [{"key": "k"}]},
        "status": {"phase": "Running"},
    }
    got = ownership.leaves(ownership.subject(obj, True, None), {})
    assert got == {
        ("f:metadata", "f:labels", "f:a"): "b",
        ("f:spec", "f:containers", 'k:{"name":"c"}', "f:name"): "c",
        ("f:spec", "f:containers", 'k:{"name":"c"}', "f:image"): "i",
        ("f:spec", "f:tolerations"): [{"key": "k"}],
    }
    assert ownership.subject(obj, True, "status") == {"status": {"phase": "Running"}}
    assert (
        ownership.show(("f:spec", "f:containers", 'k:{"name":"c"}', "f:image"))
        == '.spec.containers[name="c"].image'
    )


def test_crd_scale_subresource() -> None:
    from kube_api_emulator import Cluster, WriteOptions

    c = Cluster()
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "rs.g.io"},
        "spec": {
            "group": "g.io",
            "scope": "Namespaced",
            "names": {"plural": "rs", "kind": "R"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.size",
                            "statusReplicasPath": ".status.size",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    opts = WriteOptions(field_manager="t")
    c.create(c.types[("apiextensions.k8s.io", "customresourcedefinitions")], "v1", "", crd, opts)
    info = c.types[("g.io", "rs")]
    c.create(info, "v1", "default", {"metadata": {"name": "a"}, "spec": {"size": 1}}, opts)
    got = c.scale(
        info, "v1", "default", "a", "PATCH", "application/merge-patch+json", {"spec": {"replicas": 4}}, opts
    )
    assert got["spec"] == {"replicas": 4} and c.get(info, "v1", "default", "a")["spec"]["size"] == 4
    with pytest.raises(ApiError) as e:
        c.scale(info, "v1", "default", "a", "PUT", "application/json", {"spec": {"replicas": -1}}, opts)
    assert e.value.code == 422
