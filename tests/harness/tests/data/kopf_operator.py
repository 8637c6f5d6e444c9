"""A kopf operator used by the conformance test: create/update/delete handlers, a timer, a status patch."""

import os
from pathlib import Path

import kopf

MARKERS = Path(os.environ["KOPF_TEST_MARKERS"])


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.persistence.finalizer = "test.example.com/kopf-finalizer"
    settings.watching.server_timeout = 30
    settings.posting.level = 20


@kopf.on.create("test.example.com", "v1", "widgets")
def created(name, spec, patch, logger, **_):
    patch.status["phase"] = "Created"
    patch.status["conditions"] = [{"type": "Ready", "status": "True", "reason": "Created"}]
    kopf.info(
        {
            "apiVersion": "test.example.com/v1",
            "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"},
        },
        reason="Created",
        message=f"created with size {spec['size']}",
    )
    return {"message": f"hello {name}"}


@kopf.on.update("test.example.com", "v1", "widgets", field="spec.size")
def resized(new, patch, **_):
    patch.status["size"] = new


@kopf.timer("test.example.com", "v1", "widgets", interval=0.3)
def tick(status, patch, **_):
    patch.status["ticks"] = int(status.get("ticks") or 0) + 1


@kopf.on.delete("test.example.com", "v1", "widgets")
def deleted(name, **_):
    (MARKERS / f"deleted-{name}").write_text("yes")
