"""The HTTP API of one replica (FastAPI): Kaito's `/chat`, the OpenAI routes, health, metrics.

`create_app(service)` is plain ASGI: tests drive it in-process, and the Ray Serve deployment
returns it from `__serve_build_asgi_app__`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kaito_runtime.serving.engine import GenerationFailed, GenerationResult, RequestHandle, StreamEvent
from kaito_runtime.serving.schemas import ChatCompletionRequest, CompletionRequest, KaitoChatRequest
from kaito_runtime.serving.service import ApiError, ChatService

DISCONNECT_POLL_S = 0.5


def error_body(message: str, *, param: str | None = None, code: str | None = None, kind: str = "") -> dict:
    """Both shapes clients look for: OpenAI's `error` object and FastAPI's `detail`."""
    return {
        "error": {"message": message, "type": kind or "invalid_request_error", "param": param, "code": code},
        "detail": message,
    }


class BodyLimit:
    """ASGI middleware: 413 for request bodies over `limit` bytes (declared or streamed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self) -> Response:
        msg = f"request body is larger than this server's limit of {self.limit} bytes"
        return JSONResponse(error_body(msg, code="body_too_large"), status_code=413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large()(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._too_large()(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _route_label(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def create_app(service: ChatService) -> FastAPI:
    app = FastAPI(title=f"Kaito serving: {service.config.name}", docs_url=None, redoc_url=None)
    metrics = service.metrics

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = _route_label(request)
        metrics.requests.labels(route=route, status=str(response.status_code)).inc()
        metrics.latency.labels(route=route).observe(time.perf_counter() - start)
        return response

    app.add_middleware(BodyLimit, limit=service.config.limits.max_body_bytes)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        kind = "server_error" if exc.status >= 500 else "invalid_request_error"
        return JSONResponse(
            error_body(exc.message, param=exc.param, code=exc.code, kind=kind),
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p != "body"]
            problems.append(f"{'.'.join(loc) or 'body'}: {err.get('msg')}")
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        body = error_body("; ".join(problems), param=param, code="invalid_request")
        body["detail"] = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()
        ]
        return JSONResponse(body, status_code=422)

    @app.get("/")
    async def root() -> dict:
        return service.info()

    @app.get("/health")
    async def health() -> JSONResponse:
        ok, body = service.health()
        headers = {} if ok else {"Retry-After": str(service.config.limits.retry_after_s)}
        return JSONResponse(body, status_code=200 if ok else 503, headers=headers)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict:
        created = int(service.started_at)
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "kaito",
                "root": service.config.model_name,
            }
            for name in service.model_ids()
        ]
        return {"object": "list", "data": data}

    @app.post("/chat")
    async def chat(body: KaitoChatRequest, request: Request) -> dict:
        service.require_ready()
        adapter = service.adapter_for_chat(body.adapter)
        if body.messages is not None:
            ids = service.encode_messages(body.messages)
            param = "messages"
        else:
            assert body.prompt is not None
            ids = service.encode_text(body.prompt)
            param = "prompt"
        service.check_prompt(ids, param)
        params = service.kaito_params(body.generate_kwargs, len(ids))
        result = await _collect(service.submit(ids, params, adapter), request)
        if body.prompt is not None and body.return_full_text:
            return {"Result": body.prompt + result.text}
        return {"Result": result.text}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        service.require_ready()
        adapter = service.adapter_for_model(body.model)
        ids = service.encode_messages(body.messages)
        service.check_prompt(ids, "messages")
        max_tokens = body.max_completion_tokens or body.max_tokens
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        params = service.openai_params(body, max_tokens, param)
        handle = service.submit(ids, params, adapter)
        rid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.model or _model(service)
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(_chat_chunks(handle, request, rid, created, model, usage))
        result = await _collect(handle, request)
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(result.prompt_tokens, result.completion_tokens),
        }

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        service.require_ready()
        adapter = service.adapter_for_model(body.model)
        prompt = body.prompt_text()
        ids = service.encode_text(prompt)
        service.check_prompt(ids, "prompt")
        params = service.openai_params(body, body.max_tokens or 16, "max_tokens")
        handle = service.submit(ids, params, adapter)
        rid, created, model = f"cmpl-{uuid.uuid4().hex}", int(time.time()), body.model or _model(service)
        prefix = prompt if body.echo else ""
        if body.stream:
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return _sse(_completion_chunks(handle, request, rid, created, model, usage, prefix))
        result = await _collect(handle, request)
        return {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "text": prefix + result.text,
                    "finish_reason": result.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(result.prompt_tokens, result.completion_tokens),
        }

    return app


def _model(service: ChatService) -> str:
    return service.config.model_name


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _watch_disconnect(handle: RequestHandle, request: Request) -> None:
    while not handle.done:
        if await request.is_disconnected():
            handle.cancel()
            return
        await asyncio.sleep(DISCONNECT_POLL_S)


async def _collect(handle: RequestHandle, request: Request) -> GenerationResult:
    """Wait for the whole result; cancel generation if the client goes away or the task is cancelled."""
    watcher = asyncio.create_task(_watch_disconnect(handle, request))
    try:
        return await handle.result()
    except GenerationFailed as exc:
        raise ApiError(500, f"generation failed: {exc}", code="generation_failed") from exc
    finally:
        watcher.cancel()
        if not handle.done:
            handle.cancel()


async def _events(handle: RequestHandle, request: Request) -> AsyncIterator[list[StreamEvent]]:
    watcher = asyncio.create_task(_watch_disconnect(handle, request))
    try:
        async for batch in handle.batches():
            yield batch
    finally:
        watcher.cancel()
        if not handle.done:
            handle.cancel()


def _sse(chunks: AsyncIterator[list[dict]]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        async for group in chunks:
            if group:
                yield "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in group)
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _openai_chunks(
    handle: RequestHandle,
    request: Request,
    envelope: dict[str, Any],
    head: list[dict],
    text_choice: Callable[[str], dict],
    final_choice: Callable[[str | None], dict],
    include_usage: bool,
) -> AsyncIterator[list[dict]]:
    """OpenAI stream chunks, one group per engine step: `head`, a chunk per text delta, a final chunk
    with the finish reason (and usage when asked); an engine error ends the stream with an error object."""

    def chunk(choice: dict) -> dict:
        return {**envelope, "choices": [choice]}

    if head:
        yield head
    last: StreamEvent | None = None
    async for batch in _events(handle, request):
        group: list[dict] = []
        for event in batch:
            last = event
            if event.finish_reason == "error":
                yield [
                    *group,
                    {"error": {"message": event.error or "generation failed", "type": "server_error"}},
                ]
                return
            if event.delta:
                group.append(chunk(text_choice(event.delta)))
        yield group
    if last is not None:
        tail = [chunk(final_choice(last.finish_reason))]
        if include_usage:
            tail.append(
                {**envelope, "choices": [], "usage": _usage(last.prompt_tokens, last.completion_tokens)}
            )
        yield tail


def _chat_chunks(
    handle: RequestHandle, request: Request, rid: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[list[dict]]:
    envelope = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}

    def choice(delta: dict, finish: str | None) -> dict:
        return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}

    head = [{**envelope, "choices": [choice({"role": "assistant", "content": ""}, None)]}]
    return _openai_chunks(
        handle,
        request,
        envelope,
        head,
        lambda text: choice({"content": text}, None),
        lambda finish: choice({}, finish),
        include_usage,
    )


def _completion_chunks(
    handle: RequestHandle,
    request: Request,
    rid: str,
    created: int,
    model: str,
    include_usage: bool,
    prefix: str,
) -> AsyncIterator[list[dict]]:
    envelope = {"id": rid, "object": "text_completion", "created": created, "model": model}

    def choice(text: str, finish: str | None) -> dict:
        return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}

    head = [{**envelope, "choices": [choice(prefix, None)]}] if prefix else []
    return _openai_chunks(
        handle,
        request,
        envelope,
        head,
        lambda text: choice(text, None),
        lambda finish: choice("", finish),
        include_usage,
    )
