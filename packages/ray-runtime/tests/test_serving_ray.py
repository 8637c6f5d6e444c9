"""The Ray Serve application end to end on a local Ray bound to 127.0.0.1: SmolLM2-135M-Instruct answers
/chat and the official `openai` client, an adapter changes the answer only when selected, concurrent
requests are batched, and Serve's bounded queue answers 503 + Retry-After."""

from __future__ import annotations

import concurrent.futures
import socket
import time
from pathlib import Path

import httpx
import pytest

from kaito_runtime.modeling import SMOLLM2_ID, TINY_RANDOM_ID, ModelSource, load_model
from kaito_runtime.serving import run_local
from kaito_runtime.serving.config import ServeConfig

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_adapter(out: Path) -> Path:
    """A LoRA on SmolLM2's attention with large random B: selecting it must change the answer."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(7)
    model = get_peft_model(
        load_model(ModelSource(id=SMOLLM2_ID)),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def ray_serve(ray_cluster, tmp_path_factory: pytest.TempPathFactory):
    """Serve on the session's loopback Ray (conftest `ray_cluster`); shut down after this module."""
    from ray import serve

    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield _free_port(), tmp_path_factory.mktemp("serving")
    serve.shutdown()
    mp.undo()


@pytest.fixture(scope="module")
def smol_url(ray_serve) -> str:
    port, tmp = ray_serve
    adapter = _make_adapter(tmp / "noisy-adapter")
    config = ServeConfig.model_validate(
        {
            "name": "smol",
            "model": {"id": SMOLLM2_ID},
            "adapters": [{"name": "noisy", "path": str(adapter)}],
            "default_adapter": "base",
            "generation": {"max_new_tokens": 24},
            "deployment": {"ray_actor_options": {"num_cpus": 1}},
            "http": {"host": "127.0.0.1", "port": port},
        }
    )
    return run_local(config, timeout=300)


def test_chat_answers_paris(smol_url: str) -> None:
    r = httpx.post(f"{smol_url}/chat", json={"messages": QUESTION}, timeout=120)
    assert r.status_code == 200, r.text
    assert "Paris" in r.json()["Result"]
    r = httpx.post(f"{smol_url}/chat", json={"prompt": "The capital of France is"}, timeout=120)
    assert r.json()["Result"].startswith("The capital of France is")


def test_openai_client_chat_stream_and_completions(smol_url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{smol_url}/v1", api_key="unused", max_retries=0, timeout=120)
    models = [m.id for m in client.models.list().data]
    assert models == [SMOLLM2_ID, "noisy"]
    reply = client.chat.completions.create(model=SMOLLM2_ID, messages=QUESTION, max_tokens=20)
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0
    stream = client.chat.completions.create(model=SMOLLM2_ID, messages=QUESTION, max_tokens=20, stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert "Paris" in text
    completion = client.completions.create(model=SMOLLM2_ID, prompt="The capital of France is", max_tokens=8)
    assert completion.choices[0].text.strip()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=QUESTION)


def test_adapter_changes_the_answer_only_when_selected(smol_url: str) -> None:
    def chat(**extra) -> str:
        body = {"messages": QUESTION, "generate_kwargs": {"max_new_tokens": 12}, **extra}
        r = httpx.post(f"{smol_url}/chat", json=body, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()["Result"]

    base = chat()
    adapted = chat(adapter="noisy")
    assert "Paris" in base
    assert adapted != base and "Paris" not in adapted
    assert chat() == base  # selecting the adapter for one request leaves the others alone
    r = httpx.post(
        f"{smol_url}/v1/chat/completions",
        json={"model": "noisy", "messages": QUESTION, "max_tokens": 12},
        timeout=120,
    )
    assert r.json()["choices"][0]["message"]["content"] == adapted


def test_concurrent_requests_are_batched(smol_url: str) -> None:
    body = {"messages": QUESTION, "max_tokens": 16}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(httpx.post, f"{smol_url}/v1/chat/completions", json=body, timeout=120)
            for _ in range(8)
        ]
        answers = [f.result() for f in futures]
    assert all(r.status_code == 200 for r in answers)
    assert all("Paris" in r.json()["choices"][0]["message"]["content"] for r in answers)
    metrics = httpx.get(f"{smol_url}/metrics", timeout=30).text
    values = {}
    for line in metrics.splitlines():
        key, _, value = line.rpartition(" ")
        values[key] = value
    steps = float(values["kaito_batch_size_count"])
    single = float(values['kaito_batch_size_bucket{le="1.0"}'])
    assert steps > single, "some decode steps must have carried more than one request"


def test_overload_gives_503_with_retry_after_and_disconnect_cancels(ray_serve) -> None:
    port, _ = ray_serve
    config = ServeConfig.model_validate(
        {
            "name": "tiny",
            "model": {"id": TINY_RANDOM_ID},
            "limits": {"max_ongoing_requests": 1, "max_queued_requests": 1, "max_tokens": 1_000_000},
            "deployment": {"ray_actor_options": {"num_cpus": 0.5}},
            "http": {"host": "127.0.0.1", "port": port, "route_prefix": "/tiny"},
        }
    )
    url = run_local(config, timeout=300)
    endless = {"prompt": "hello", "max_tokens": 1_000_000, "stream": True}
    with (
        httpx.Client(timeout=60) as streaming,
        streaming.stream("POST", f"{url}/v1/completions", json=endless) as s,
    ):
        assert s.status_code == 200
        lines = s.iter_lines()
        next(lines)  # generation is running: the replica's only slot is taken
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [
                pool.submit(httpx.post, f"{url}/chat", json={"prompt": "hi"}, timeout=120) for _ in range(3)
            ]
            deadline = time.monotonic() + 60
            while sum(f.done() for f in futures) < 2:
                assert time.monotonic() < deadline, "the queue limit never rejected a request"
                time.sleep(0.05)
            rejected = [f.result() for f in futures if f.done()]
            assert all(r.status_code == 503 and r.headers.get("retry-after") for r in rejected)
            # close the endless stream: the client is gone, generation stops, the queued request runs
            s.close()
            streaming.close()
            statuses = sorted(f.result().status_code for f in futures)
    assert statuses == [200, 503, 503]
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    assert 'kaito_generations_finished_total{reason="cancelled"} 1.0' in metrics
