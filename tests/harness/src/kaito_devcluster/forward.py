"""Expose a Service port on a local port: an HTTP reverse proxy (streaming, so SSE works) to the local
endpoint that stands for the Service's pods, resolved per request (so it follows RayService upgrades)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


class Forwarder:
    """`127.0.0.1:<port>` -> `target()` + the request path. `target` returns a base URL or None."""

    def __init__(
        self,
        name: str,
        target: Callable[[], str | None],
        host: str = "127.0.0.1",
        port: int = 0,
        on_request: Callable[[web.Request], None] | None = None,
    ) -> None:
        self.name = name
        self.on_request = on_request
        self.target = target
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Forwarder:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.on_request is not None:
            self.on_request(request)
        base = self.target()
        if base is None or self._session is None:
            return web.json_response(
                {"error": f"service {self.name}: no ready endpoint behind this port yet"}, status=503
            )
        url = base.rstrip("/") + request.rel_url.path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            ) as upstream:
                response = web.StreamResponse(
                    status=upstream.status,
                    headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP},
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientError as exc:
            return web.json_response({"error": f"service {self.name}: upstream {base}: {exc}"}, status=502)
