"""What one replica does between HTTP and the engine: loading state, prompt building, limits.

Plain Python (no Ray, no FastAPI): the HTTP layer turns `ApiError` into responses.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kaito_runtime import __version__
from kaito_runtime.serving.config import BASE_SELECTORS, ServeConfig
from kaito_runtime.serving.engine import (
    BatchingEngine,
    EngineOverloaded,
    EngineUnavailable,
    GenerationRequest,
    RequestHandle,
)
from kaito_runtime.serving.loader import LoadedModel, load_for_serving
from kaito_runtime.serving.metrics import ServingMetrics
from kaito_runtime.serving.sampling import SamplingParams
from kaito_runtime.serving.schemas import GenerateKwargs, Message

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status, a message for the client, and the offending field."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}


def make_engine(
    model: Any, tokenizer: Any, config: ServeConfig, *, adapters: list[str], metrics: ServingMetrics
) -> BatchingEngine:
    """The engine the config asks for; `auto` is the static-cache engine on CUDA, the dynamic one on CPU."""
    limits, engine_cfg = config.limits, config.engine
    common: dict[str, Any] = {
        "max_batch_size": min(engine_cfg.max_batch_size, limits.max_ongoing_requests),
        "max_waiting": limits.max_ongoing_requests + limits.max_queued_requests,
        "max_prefill_tokens": engine_cfg.max_prefill_tokens,
        "adapters": adapters,
        "metrics": metrics,
    }
    kind = engine_cfg.kind
    if kind == "auto":
        on_cuda = any(p.device.type == "cuda" for p in model.parameters())
        kind = "static" if on_cuda else "dynamic"
    if kind == "static":
        from kaito_runtime.serving.static_engine import StaticSlotEngine

        return StaticSlotEngine(
            model,
            tokenizer,
            max_cache_len=engine_cfg.max_cache_len,
            cuda_graphs=engine_cfg.cuda_graphs,
            **common,
        )
    return BatchingEngine(model, tokenizer, **common)


class ChatService:
    """Loads the model (in the background), then validates and submits generation requests."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        loader: Callable[[ServeConfig], LoadedModel] = load_for_serving,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or ServingMetrics()
        self._loader = loader
        self.state = "loading"
        self.error: str | None = None
        self.engine: BatchingEngine | None = None
        self.tokenizer: Any = None
        self.adapters: list[str] = []
        self.started_at = time.time()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def start_loading(self) -> None:
        """Load in a background thread so `/health` can answer 503 meanwhile."""
        self._thread = threading.Thread(target=self.load, name="kaito-model-loader", daemon=True)
        self._thread.start()

    def load(self) -> None:
        try:
            loaded = self._loader(self.config)
            self.tokenizer = loaded.tokenizer
            self.adapters = loaded.adapters
            self.engine = make_engine(
                loaded.model,
                loaded.tokenizer,
                self.config,
                adapters=loaded.adapters,
                metrics=self.metrics,
            ).start()
            self.state = "ready"
            log.info("model %s ready (adapters: %s)", self.config.model_name, self.adapters or "none")
        except Exception as exc:
            log.exception("loading the model failed")
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = "failed"

    def wait_ready(self, timeout: float) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.ready

    def shutdown(self) -> None:
        if self.engine is not None:
            self.engine.stop()

    @property
    def ready(self) -> bool:
        return self.state == "ready" and self.engine is not None and self.engine.alive

    def health(self) -> tuple[bool, dict[str, Any]]:
        body: dict[str, Any] = {"status": "ok" if self.ready else self.state, "model": self.config.model_name}
        if self.state == "ready" and not self.ready:
            body["status"] = "engine stopped"
        if self.error:
            body["error"] = self.error
        return self.ready, body

    def info(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "model": self.config.model_name,
            "adapters": self.adapters,
            "default_adapter": self.config.resolved_default_adapter(),
            "version": __version__,
            "status": self.health()[1]["status"],
        }

    def model_ids(self) -> list[str]:
        return [self.config.model_name, *self.adapters]

    # ---------------------------------------------------------------- request building
    def require_ready(self) -> BatchingEngine:
        if not self.ready or self.engine is None:
            detail = f": {self.error}" if self.error else ""
            raise ApiError(
                503,
                f"the model is not ready ({self.state}{detail})",
                code="not_ready",
                headers={"Retry-After": str(self.config.limits.retry_after_s)},
            )
        return self.engine

    def adapter_for_model(self, model: str | None) -> str | None:
        """OpenAI `model`: the base model's name (or "base") → base; an adapter's name → that adapter."""
        if model is None:
            return self.config.resolved_default_adapter()
        if model == self.config.model_name or model in BASE_SELECTORS:
            return None
        if model in self.adapters:
            return model
        raise ApiError(
            404,
            f"model {model!r} is not served here; available: {self.model_ids()}",
            param="model",
            code="model_not_found",
        )

    def adapter_for_chat(self, adapter: str | None) -> str | None:
        """Kaito `/chat` `adapter`: absent → the configured default (all adapters combined, like Kaito)."""
        if adapter is None:
            return self.config.resolved_default_adapter()
        if adapter in BASE_SELECTORS or adapter == self.config.model_name:
            return None
        if adapter in self.adapters:
            return adapter
        raise ApiError(400, f"adapter {adapter!r} is not loaded; loaded: {self.adapters}", param="adapter")

    def encode_messages(self, messages: list[Message]) -> list[int]:
        try:
            chat = [{"role": m.role, "content": m.text()} for m in messages]
            text = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        except ValueError as exc:
            raise ApiError(400, f"messages: {exc}", param="messages") from exc
        except Exception as exc:  # jinja raises its own errors for templates that reject the chat
            raise ApiError(
                400, f"messages: the chat template rejected them: {exc}", param="messages"
            ) from exc
        return self.encode_text(text, special_tokens=False)

    def encode_text(self, text: str, *, special_tokens: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special_tokens)["input_ids"])

    def check_prompt(self, prompt_ids: list[int], param: str) -> None:
        engine = self.require_ready()
        context = engine.context_length
        if not prompt_ids:
            raise ApiError(400, f"{param}: the prompt is empty", param=param)
        if len(prompt_ids) >= context:
            over = len(prompt_ids) - context + 1
            raise ApiError(
                400,
                f"{param}: the prompt is {len(prompt_ids)} tokens but the model context is {context} tokens "
                f"(including at least one generated token): shorten it by {over} tokens",
                param=param,
                code="context_length_exceeded",
            )

    def _ceiling(self, value: int | None, param: str) -> int | None:
        ceiling = self.config.limits.max_tokens
        if value is not None and value > ceiling:
            raise ApiError(
                400, f"{param}: {value} is above this server's limit of {ceiling} tokens", param=param
            )
        return value

    def _stops(self, stop: str | list[str] | None, param: str = "stop") -> tuple[str, ...]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > self.config.limits.max_stop_strings:
            raise ApiError(
                400, f"{param}: at most {self.config.limits.max_stop_strings} stop strings", param=param
            )
        return tuple(stops)

    def kaito_params(self, kwargs: GenerateKwargs, prompt_len: int) -> SamplingParams:
        defaults = self.config.generation
        max_new = self._ceiling(kwargs.max_new_tokens, "generate_kwargs.max_new_tokens")
        if max_new is None and kwargs.max_length is not None:
            if kwargs.max_length <= prompt_len:
                raise ApiError(
                    400,
                    f"generate_kwargs.max_length: {kwargs.max_length} counts the prompt, which is already "
                    f"{prompt_len} tokens; raise it or use max_new_tokens",
                    param="generate_kwargs.max_length",
                )
            max_new = self._ceiling(kwargs.max_length - prompt_len, "generate_kwargs.max_length")
        do_sample = defaults.do_sample if kwargs.do_sample is None else kwargs.do_sample
        return SamplingParams(
            max_new_tokens=max_new or defaults.max_new_tokens,
            do_sample=do_sample,
            temperature=defaults.temperature if kwargs.temperature is None else kwargs.temperature,
            top_k=defaults.top_k if kwargs.top_k is None else kwargs.top_k,
            top_p=defaults.top_p if kwargs.top_p is None else kwargs.top_p,
            repetition_penalty=(
                defaults.repetition_penalty
                if kwargs.repetition_penalty is None
                else kwargs.repetition_penalty
            ),
            stop=self._stops(kwargs.stop, "generate_kwargs.stop"),
        )

    def openai_params(self, req: Any, max_tokens: int | None, max_tokens_param: str) -> SamplingParams:
        defaults = self.config.generation
        self._ceiling(max_tokens, max_tokens_param)
        temperature = defaults.temperature if req.temperature is None else req.temperature
        do_sample = defaults.do_sample if req.temperature is None else req.temperature > 0
        return SamplingParams(
            max_new_tokens=max_tokens or defaults.max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_k=defaults.top_k if req.top_k is None else req.top_k,
            top_p=defaults.top_p if req.top_p is None else req.top_p,
            repetition_penalty=defaults.repetition_penalty
            if req.repetition_penalty is None
            else req.repetition_penalty,
            stop=self._stops(req.stop),
            ignore_eos=req.ignore_eos,
        )

    def submit(self, prompt_ids: list[int], params: SamplingParams, adapter: str | None) -> RequestHandle:
        engine = self.require_ready()
        self.metrics.prompt_tokens.inc(len(prompt_ids))
        try:
            return engine.submit(
                GenerationRequest(prompt_ids=prompt_ids, params=params, adapter=adapter),
                loop=asyncio.get_running_loop(),
            )
        except EngineOverloaded as exc:
            self.metrics.rejected.inc()
            raise ApiError(
                503,
                f"this replica is at capacity ({exc}); retry later",
                code="overloaded",
                headers={"Retry-After": str(self.config.limits.retry_after_s)},
            ) from exc
        except EngineUnavailable as exc:
            raise ApiError(503, str(exc), code="not_ready") from exc
