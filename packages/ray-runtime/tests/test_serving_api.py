"""The HTTP API of one replica, in-process (no Ray): routes, schemas, errors, limits, metrics, health."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from kaito_runtime.modeling import TINY_RANDOM_ID
from kaito_runtime.serving.api import create_app
from kaito_runtime.serving.app import deployment_options
from kaito_runtime.serving.config import ServeConfig
from kaito_runtime.serving.loader import load_for_serving
from kaito_runtime.serving.service import ChatService


def tiny_config(**overrides) -> ServeConfig:
    data = {"name": "tiny", "model": {"id": TINY_RANDOM_ID}, "limits": {"max_body_bytes": 65536}}
    data.update(overrides)
    return ServeConfig.model_validate(data)


@pytest.fixture(scope="module")
def service() -> ChatService:
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    svc = ChatService(tiny_config())
    svc.load()
    assert svc.ready, svc.error
    yield svc
    svc.shutdown()
    mp.undo()


@pytest.fixture
async def client(service: ChatService) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(service))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
        yield c


async def test_chat_prompt_and_messages(client: httpx.AsyncClient) -> None:
    r = await client.post("/chat", json={"prompt": "hello", "generate_kwargs": {"max_new_tokens": 5}})
    assert r.status_code == 200, r.text
    assert r.json()["Result"].startswith("hello") and len(r.json()["Result"]) > len("hello")
    r = await client.post(
        "/chat", json={"prompt": "hello", "return_full_text": False, "generate_kwargs": {"max_length": 8}}
    )
    assert r.status_code == 200 and not r.json()["Result"].startswith("hello")
    r = await client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and isinstance(r.json()["Result"], str)


async def test_info_models_and_health(client: httpx.AsyncClient) -> None:
    info = (await client.get("/")).json()
    assert info["name"] == "tiny" and info["model"] == TINY_RANDOM_ID and info["adapters"] == []
    assert info["version"]
    models = (await client.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == [TINY_RANDOM_ID]
    assert (await client.get("/health")).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": 5}, "prompt"),
        ({"prompt": "x", "generate_kwargs": {"temperature": "hot"}}, "generate_kwargs.temperature"),
        ({}, "set exactly one of `prompt`"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ],
)
async def test_wrong_types_are_422_naming_the_field(
    client: httpx.AsyncClient, body: dict, field: str
) -> None:
    r = await client.post("/chat", json=body)
    assert r.status_code == 422
    assert field in r.json()["error"]["message"]


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert "JSON" in r.json()["error"]["message"]


async def test_limits_give_400_413_404(client: httpx.AsyncClient, service: ChatService) -> None:
    context = service.engine.context_length
    long_prompt = " ".join(["fox"] * (context + 50))
    r = await client.post("/v1/completions", json={"prompt": long_prompt, "max_tokens": 2})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert f"context is {context} tokens" in message and "shorten it by" in message
    r = await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 5000})
    assert r.status_code == 400 and "limit of 4096" in r.json()["error"]["message"]
    r = await client.post("/chat", json={"prompt": "hi", "generate_kwargs": {"max_new_tokens": 9999}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "generate_kwargs.max_new_tokens"
    r = await client.post("/chat", json={"prompt": "x" * 70000})
    assert r.status_code == 413 and "65536 bytes" in r.json()["error"]["message"]
    r = await client.post(
        "/v1/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 404 and TINY_RANDOM_ID in r.json()["error"]["message"]
    r = await client.post("/chat", json={"prompt": "x", "adapter": "nope"})
    assert r.status_code == 400 and "not loaded" in r.json()["error"]["message"]
    # the replica keeps answering after bad requests
    assert (await client.post("/chat", json={"prompt": "ok"})).status_code == 200


def sse_events(text: str) -> list:
    lines = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


async def test_openai_chat_streaming_matches_non_streaming(client: httpx.AsyncClient) -> None:
    body = {"model": TINY_RANDOM_ID, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 12}
    plain = (await client.post("/v1/chat/completions", json=body)).json()
    assert plain["object"] == "chat.completion"
    assert plain["usage"]["completion_tokens"] <= 12 and plain["usage"]["prompt_tokens"] > 0
    r = await client.post(
        "/v1/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert content == plain["choices"][0]["message"]["content"]
    assert events[-2]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert events[-1]["usage"] == plain["usage"]


async def test_openai_completions_stream_and_stop(client: httpx.AsyncClient) -> None:
    plain = (await client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 10})).json()
    text = plain["choices"][0]["text"]
    r = await client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 10, "stream": True})
    streamed = "".join(e["choices"][0]["text"] for e in sse_events(r.text))
    assert streamed == text
    if len(text.strip()) >= 3:
        stop = text[2:4]
        r = await client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 10, "stop": [stop]})
        choice = r.json()["choices"][0]
        assert choice["text"] == text[: text.find(stop)] and choice["finish_reason"] == "stop"


async def test_concurrent_requests_share_batches(client: httpx.AsyncClient) -> None:
    body = {"prompt": "hello", "max_tokens": 30}
    responses = await asyncio.gather(*[client.post("/v1/completions", json=body) for _ in range(6)])
    assert all(r.status_code == 200 for r in responses)
    metrics = (await client.get("/metrics")).text
    count = _sample(metrics, "kaito_batch_size_count")
    single = _sample(metrics, 'kaito_batch_size_bucket{le="1.0"}')
    assert count > single, "some decode steps must have run more than one request"
    assert _sample(metrics, 'kaito_requests_total{route="/v1/completions",status="200"}') >= 6
    assert _sample(metrics, "kaito_generated_tokens_total") >= 6
    assert "kaito_time_to_first_token_seconds_bucket" in metrics
    assert "kaito_queue_waiting" in metrics


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    raise AssertionError(f"{name} not in metrics")


async def test_overload_is_503_with_retry_after_and_cancel_frees_the_slot() -> None:
    svc = ChatService(
        tiny_config(limits={"max_ongoing_requests": 1, "max_queued_requests": 0, "max_tokens": 100000})
    )
    svc.load()
    transport = httpx.ASGITransport(app=create_app(svc))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
            long = {"prompt": "hello", "generate_kwargs": {"max_new_tokens": 50000}}
            first = asyncio.create_task(c.post("/chat", json=long))
            await _until(lambda: svc.engine.running == 1)
            second = asyncio.create_task(c.post("/chat", json=long))
            await _until(lambda: svc.engine.waiting == 1)
            r = await c.post("/chat", json={"prompt": "hi"})
            assert r.status_code == 503 and r.headers["retry-after"] == "2"
            assert "capacity" in r.json()["error"]["message"]
            for task in (first, second):  # the clients go away: generation stops
                task.cancel()
            await _until(lambda: svc.engine.running == 0 and svc.engine.waiting == 0)
            r = await c.post("/chat", json={"prompt": "hi", "generate_kwargs": {"max_new_tokens": 2}})
            assert r.status_code == 200
    finally:
        svc.shutdown()


async def _until(predicate, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_health_is_503_until_the_model_is_loaded() -> None:
    release = threading.Event()

    def slow_loader(config: ServeConfig):
        assert release.wait(60)
        return load_for_serving(config)

    svc = ChatService(tiny_config(), loader=slow_loader)
    svc.start_loading()
    transport = httpx.ASGITransport(app=create_app(svc))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
            r = await c.get("/health")
            assert r.status_code == 503 and r.json()["status"] == "loading" and "retry-after" in r.headers
            r = await c.post("/chat", json={"prompt": "hi"})
            assert r.status_code == 503 and "not ready" in r.json()["error"]["message"]
            release.set()
            await _until(lambda: svc.state != "loading", timeout=60)
            assert (await c.get("/health")).status_code == 200
    finally:
        svc.shutdown()


async def test_failed_load_is_reported() -> None:
    svc = ChatService(tiny_config(model={"path": "/nonexistent/model"}))
    svc.load()
    transport = httpx.ASGITransport(app=create_app(svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "failed" and "config.json" in r.json()["error"]


def test_config_validation_and_deployment_options() -> None:
    with pytest.raises(ValidationError, match="exactly one of `path`"):
        tiny_config(adapters=[{"name": "a"}])
    with pytest.raises(ValidationError, match="duplicate names"):
        tiny_config(adapters=[{"name": "a", "path": "/x"}, {"name": "a", "path": "/y"}])
    with pytest.raises(ValidationError, match="extra"):
        tiny_config(limits={"max_tokenz": 3})
    with pytest.raises(ValidationError, match="load_in_4bit or load_in_8bit"):
        tiny_config(quantization={})
    two = tiny_config(adapters=[{"name": "a", "path": "/x", "strength": "0.5"}, {"name": "b", "path": "/y"}])
    assert two.adapters[0].strength == 0.5 and two.resolved_default_adapter() == "combined"
    one = tiny_config(adapters=[{"name": "a", "path": "/x"}])
    assert one.resolved_default_adapter() == "a"
    assert (
        tiny_config(adapters=[{"name": "a", "path": "/x"}], default_adapter="base").resolved_default_adapter()
        is None
    )
    opts = deployment_options(
        tiny_config(deployment={"num_replicas": 2, "ray_actor_options": {"num_gpus": 1}})
    )
    assert opts["num_replicas"] == 2 and opts["ray_actor_options"] == {"num_gpus": 1}
    assert opts["max_ongoing_requests"] == 64 and opts["backpressure_config"].retry_after_s == 2
    auto = deployment_options(
        tiny_config(deployment={"autoscaling_config": {"min_replicas": 1, "max_replicas": 4}})
    )
    assert "num_replicas" not in auto and auto["autoscaling_config"]["max_replicas"] == 4


def _lora(out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from kaito_runtime.modeling import ModelSource, load_model

    torch.manual_seed(seed)
    model = get_peft_model(
        load_model(ModelSource(id=TINY_RANDOM_ID)),
        LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 2.0)
    model.save_pretrained(out)
    return out


async def test_adapters_from_a_directory_and_a_registry_combined_by_strength(
    oci_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kaito_runtime import oci

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("KAITO_REGISTRY_USERNAME", oci_registry.username)
    monkeypatch.setenv("KAITO_REGISTRY_PASSWORD", oci_registry.password)
    ref = oci_registry.ref("adapters/tiny-b")
    auth = oci.RegistryAuth(username=oci_registry.username, password=oci_registry.password)
    oci.push_adapter(_lora(tmp_path / "b", seed=2), ref, auth, model_name=TINY_RANDOM_ID)
    config = tiny_config(
        adapters=[
            {"name": "a", "path": str(_lora(tmp_path / "a", seed=1)), "strength": "0.7"},
            {"name": "b", "image": ref, "strength": 0.3},
        ]
    )
    svc = ChatService(config)
    svc.load()
    assert svc.ready, svc.error
    transport = httpx.ASGITransport(app=create_app(svc))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
            models = [m["id"] for m in (await c.get("/v1/models")).json()["data"]]
            assert models == [TINY_RANDOM_ID, "a", "b", "combined"]

            async def answer(**extra) -> str:
                kwargs = {"max_new_tokens": 8}
                body = {"prompt": "hello", "return_full_text": False, "generate_kwargs": kwargs}
                r = await c.post("/chat", json={**body, **extra})
                assert r.status_code == 200, r.text
                return r.json()["Result"]

            texts = {name: await answer(adapter=name) for name in ("base", "a", "b", "combined")}
            assert len(set(texts.values())) == 4, texts  # each adapter, and their mix, answers differently
            assert await answer() == texts["combined"]  # Kaito's default: all adapters, by strength
    finally:
        svc.shutdown()


async def test_unreachable_adapter_image_fails_the_load_with_its_name(tmp_path: Path) -> None:
    svc = ChatService(tiny_config(adapters=[{"name": "gone", "image": "127.0.0.1:9/adapters/gone:v1"}]))
    svc.load()
    assert svc.state == "failed" and "adapters[gone]" in (svc.error or "")


async def test_4bit_quantized_model_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    svc = ChatService(tiny_config(quantization={"load_in_4bit": True, "bnb_4bit_compute_dtype": "float32"}))
    svc.load()
    assert svc.ready, svc.error
    assert any("4bit" in type(m).__name__ for m in svc.engine.model.modules())
    transport = httpx.ASGITransport(app=create_app(svc))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
            r = await c.post("/chat", json={"prompt": "hello", "generate_kwargs": {"max_new_tokens": 4}})
        assert r.status_code == 200 and r.json()["Result"].startswith("hello")
    finally:
        svc.shutdown()


def test_cli_rejects_a_bad_config_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kaito_runtime.cli import main

    bad = tmp_path / "serve.yaml"
    bad.write_text("model: {id: x/y}\nlimits: {max_tokens: -1}\n")
    assert main(["serve", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "limits.max_tokens" in err and str(bad) in err
    assert main(["serve", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["serve", "--config", str(bad), "--detach"]) == 2
    assert "--detach needs --address" in capsys.readouterr().err
