"""Which API calls each operator makes: a recording proxy in front of the API server, one per operator
(each gets its own kubeconfig), and the Kubernetes RequestInfo of every request (verb, group, resource,
subresource), to compare with the ClusterRole its chart grants."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from kaito_devcluster.forward import Forwarder


@dataclass(frozen=True)
class ApiCall:
    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def rbac_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def request_info(method: str, path: str, query: dict[str, str]) -> ApiCall | None:
    """The API server's RequestInfo of a resource request; None for discovery and non-resource paths."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    watch = query.get("watch") in ("true", "1")
    verb = {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }.get(method.upper())
    if verb is None:
        verb = "watch" if watch else ("get" if name else "list")
    return ApiCall(verb, group, resource, subresource, namespace, name)


class AuditProxy:
    """A proxy to `upstream` recording each resource request of one client into a JSON-lines file."""

    def __init__(self, client: str, upstream: str, log_file: Path) -> None:
        self.client = client
        self.log_file = log_file
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self._handle = log_file.open("a")
        self.forwarder = Forwarder(f"audit:{client}", lambda: upstream, on_request=self._record)

    def _record(self, request: web.Request) -> None:
        call = request_info(request.method, request.path, dict(request.query))
        if call is not None:
            self._handle.write(json.dumps({"client": self.client, **asdict(call)}) + "\n")
            self._handle.flush()

    async def start(self) -> AuditProxy:
        await self.forwarder.start()
        return self

    @property
    def url(self) -> str:
        return self.forwarder.url

    async def stop(self) -> None:
        await self.forwarder.stop()
        self._handle.close()


def read_calls(log_file: Path) -> list[ApiCall]:
    calls = []
    for line in log_file.read_text().splitlines():
        doc = json.loads(line)
        doc.pop("client", None)
        calls.append(ApiCall(**doc))
    return calls


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) triples a ClusterRole's rules grant (no wildcards expected)."""
    out: set[tuple[str, str, str]] = set()
    for rule in rules:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    out.add((str(group), str(resource), str(verb)))
    return out


def used(calls: list[ApiCall]) -> set[tuple[str, str, str]]:
    return {(c.group, c.rbac_resource, c.verb) for c in calls}
