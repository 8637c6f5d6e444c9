"""Prometheus metrics of one serving replica (its own registry, exposed at `/metrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kaito_runtime.serving.engine import EngineMetrics

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServingMetrics(EngineMetrics):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "kaito_requests", "HTTP requests by route and status code", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "kaito_request_latency_seconds",
            "HTTP request latency (to the response headers for streams)",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "kaito_time_to_first_token_seconds",
            "Time from arrival to first token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.generated = Counter("kaito_generated_tokens", "Tokens generated", registry=r)
        self.prompt_tokens = Counter("kaito_prompt_tokens", "Prompt tokens processed", registry=r)
        self.batch_size = Histogram(
            "kaito_batch_size", "Rows per decode forward pass", buckets=_BATCH_BUCKETS, registry=r
        )
        self.waiting = Gauge("kaito_queue_waiting", "Requests waiting for a batch slot", registry=r)
        self.running = Gauge("kaito_queue_running", "Requests in the running batch", registry=r)
        self.finished_requests = Counter(
            "kaito_generations_finished",
            "Generations by finish reason (stop, length, cancelled, error)",
            ["reason"],
            registry=r,
        )
        self.rejected = Counter("kaito_rejected", "Requests rejected because the queue was full", registry=r)

    # EngineMetrics hooks (called from the engine thread; prometheus_client is thread-safe)
    def batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def first_token(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def tokens(self, count: int) -> None:
        self.generated.inc(count)

    def queue_depth(self, waiting: int, running: int) -> None:
        self.waiting.set(waiting)
        self.running.set(running)

    def finished(self, reason: str) -> None:
        self.finished_requests.labels(reason=reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
