"""vLLM-compatible Prometheus metrics for the emulated engine (names and buckets as vLLM V1 exports).

Times are emulated seconds, so dashboards read the same as for the real deployment whatever the
`--time-scale`. Like vLLM, latencies start when a request reaches the engine's front end, after the
network and router (the profile's ingress).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from backends.emulator.deployment import Deployment
from backends.emulator.engine import Sequence, StepResult

__all__ = ["CONTENT_TYPE", "EngineMetrics"]

_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
_ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
    80.0,
)  # fmt: skip
_REQUEST_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
_ITERATION_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def _one_two_five(limit: int) -> list[float]:
    buckets: list[float] = []
    scale = 1
    while True:
        for mantissa in (1, 2, 5):
            if mantissa * scale > limit:
                return buckets
            buckets.append(float(mantissa * scale))
        scale *= 10


class EngineMetrics:
    """One registry of vLLM metrics for one served model (labels `model_name` and `engine`)."""

    def __init__(self, model_name: str, max_model_len: int) -> None:
        self.registry = CollectorRegistry()
        labels = {"model_name": model_name, "engine": "0"}
        names = list(labels)
        reg = self.registry
        lengths = _one_two_five(max_model_len)

        self.running = Gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.", names, registry=reg
        ).labels(**labels)
        self.waiting = Gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.", names, registry=reg
        ).labels(**labels)
        self.kv_usage = Gauge(
            "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", names, registry=reg
        ).labels(**labels)
        self.prompt_tokens = Counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", names, registry=reg
        ).labels(**labels)
        self.generation_tokens = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", names, registry=reg
        ).labels(**labels)
        self.preemptions = Counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine.", names, registry=reg
        ).labels(**labels)
        self._success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*names, "finished_reason"],
            registry=reg,
        )
        self._labels = labels
        self.ttft = Histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            names,
            buckets=_TTFT_BUCKETS,
            registry=reg,
        ).labels(**labels)
        self.itl = Histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            names,
            buckets=_ITL_BUCKETS,
            registry=reg,
        ).labels(**labels)
        self.request_tpot = Histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            names,
            buckets=_ITL_BUCKETS,
            registry=reg,
        ).labels(**labels)
        self.e2e = Histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            names,
            buckets=_REQUEST_BUCKETS,
            registry=reg,
        ).labels(**labels)
        self.queue_time = Histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            names,
            buckets=_REQUEST_BUCKETS,
            registry=reg,
        ).labels(**labels)
        self.request_prompt_tokens = Histogram(
            "vllm:request_prompt_tokens",
            "Number of prefill tokens processed.",
            names,
            buckets=lengths,
            registry=reg,
        ).labels(**labels)
        self.request_generation_tokens = Histogram(
            "vllm:request_generation_tokens",
            "Number of generation tokens processed.",
            names,
            buckets=lengths,
            registry=reg,
        ).labels(**labels)
        self.iteration_tokens = Histogram(
            "vllm:iteration_tokens_total",
            "Histogram of number of tokens per engine_step.",
            names,
            buckets=_ITERATION_BUCKETS,
            registry=reg,
        ).labels(**labels)

    def record_step(self, result: StepResult, finish_reasons: dict[int, str]) -> None:
        """Account for one finished engine step; `finish_reasons` maps seq_id to the API's finish
        reason, reported as the engine's (`stop` or `length`: a tool call is a `stop` to vLLM)."""
        self.iteration_tokens.observe(result.prefill_tokens + result.decode_seqs)
        if result.preempted:
            self.preemptions.inc(result.preempted)
        if result.tokens:
            self.generation_tokens.inc(len(result.tokens))
        for seq in result.first_tokens:
            self.prompt_tokens.inc(seq.prompt_tokens)
            self.ttft.observe(result.time - seq.arrived_at)
        for itl in result.itls:
            self.itl.observe(itl)
        for seq in result.finished:
            reason = "length" if finish_reasons.get(seq.seq_id) == "length" else "stop"
            self._record_finished(seq, reason)

    def record_state(self, deployment: Deployment) -> None:
        """Refresh the scheduler gauges."""
        self.running.set(deployment.num_running)
        self.waiting.set(deployment.num_waiting)
        self.kv_usage.set(deployment.engine.kv_usage)

    def render(self) -> bytes:
        """The exposition text for GET /metrics."""
        return generate_latest(self.registry)

    def _record_finished(self, seq: Sequence, reason: str) -> None:
        finished = seq.finished_at or 0.0
        first = seq.first_token_at or finished
        self._success.labels(**self._labels, finished_reason=reason).inc()
        self.e2e.observe(finished - seq.arrived_at)
        self.queue_time.observe((seq.scheduled_at or seq.arrived_at) - seq.arrived_at)
        if seq.generated > 1:
            self.request_tpot.observe((finished - first) / (seq.generated - 1))
        self.request_prompt_tokens.observe(seq.prompt_tokens)
        self.request_generation_tokens.observe(seq.generated)
