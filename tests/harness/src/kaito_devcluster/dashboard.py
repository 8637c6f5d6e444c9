"""The Ray dashboard's REST API, as KubeRay uses it: Ray Jobs (submit, info, stop) and Serve
(declarative PUT of the applications, their statuses)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp


class DashboardError(Exception):
    pass


class Dashboard:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def close(self) -> None:
        await self._session.close()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with self._session.request(method, self.url + path, json=body) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise DashboardError(f"{method} {path}: {resp.status} {text[:500]}")
            if not text:
                return None
            try:
                return await resp.json(content_type=None)
            except ValueError:
                return text

    async def submit_job(
        self,
        submission_id: str,
        entrypoint: str,
        *,
        metadata: dict[str, str],
        runtime_env: dict[str, Any],
        attempts: int = 60,
    ) -> None:
        """Submit (retrying while the job agent is still starting, as KubeRay's submitter does)."""
        body = {
            "entrypoint": entrypoint,
            "submission_id": submission_id,
            "metadata": metadata,
            "runtime_env": runtime_env,
        }
        last: Exception | None = None
        for _ in range(attempts):
            try:
                await self._call("POST", "/api/jobs/", body)
                return
            except DashboardError as exc:
                if "already exists" in str(exc):
                    return
                last = exc
            except aiohttp.ClientError as exc:
                last = exc
            await asyncio.sleep(1)
        raise DashboardError(f"submitting job {submission_id} failed: {last}")

    async def job_info(self, submission_id: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", f"/api/jobs/{submission_id}")
        except DashboardError as exc:
            if " 404 " in str(exc):
                return None
            raise

    async def stop_job(self, submission_id: str) -> None:
        with contextlib.suppress(DashboardError):
            await self._call("POST", f"/api/jobs/{submission_id}/stop")

    async def put_serve(self, config: dict[str, Any]) -> None:
        await self._call("PUT", "/api/serve/applications/", config)

    async def serve_applications(self) -> dict[str, Any]:
        doc = await self._call("GET", "/api/serve/applications/")
        return (doc or {}).get("applications") or {} if isinstance(doc, dict) else {}

    async def shutdown_serve(self) -> None:
        await self._call("DELETE", "/api/serve/applications/")
