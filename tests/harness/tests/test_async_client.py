"""The async official client (kubernetes_asyncio) against the `kube_api` plugin fixture."""

from __future__ import annotations

import asyncio

from kubernetes_asyncio import client, config, watch

from kube_api_emulator import KubeApiEmulator


async def test_async_client_create_watch_delete(kube_api: KubeApiEmulator) -> None:
    api = await config.new_client_from_config(str(kube_api.kubeconfig))
    async with api:
        core = client.CoreV1Api(api)
        start = (await core.list_namespaced_config_map("default")).metadata.resource_version

        async def collect() -> list[tuple[str, str]]:
            seen = []
            async with watch.Watch().stream(
                core.list_namespaced_config_map,
                "default",
                resource_version=start,
                timeout_seconds=5,
                allow_watch_bookmarks=True,
            ) as stream:
                async for ev in stream:
                    seen.append((ev["type"], ev["object"].metadata.name))
                    if ev["type"] == "DELETED":
                        break
            return seen

        watcher = asyncio.create_task(collect())
        await core.create_namespaced_config_map("default", {"metadata": {"name": "a1"}, "data": {"k": "v"}})
        await core.patch_namespaced_config_map("a1", "default", {"data": {"k": "w"}})
        await core.delete_namespaced_config_map("a1", "default")
        assert await asyncio.wait_for(watcher, 10) == [("ADDED", "a1"), ("MODIFIED", "a1"), ("DELETED", "a1")]
