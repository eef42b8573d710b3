"""Token metrics (TTFT, inter-token latency, tokens/s, queue time) and cost per 1k tokens.

``TokenAccounting`` is a plain class (unit-tested without Ray) that keeps the counters a replica
reports on ``GET <prefix>/stats``; ``RayTokenMetrics`` exports the same observations through
``ray.util.metrics`` (``mlplat_llm_*``), which the Ray dashboard and Prometheus scrape.

Cost: a replica occupies a share of one node of its pool (its CPUs, or its GPUs for vLLM); that
node's ``price_usd_per_hour`` (platform.yaml) over the measured tokens per second gives the cost
of 1,000 generated tokens.

Example:
    >>> cost_per_1k_tokens(cfg, app, tokens_per_s=50.0)    # doctest: +SKIP
    0.000210…
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlplat.errors import UserError
from mlplat.llm._engine import GenerationStats

if TYPE_CHECKING:
    from mlplat.config import PlatformConfig
    from mlplat.llm._config import LLMAppConfig

METRIC_PREFIX = "mlplat_llm_"
TAG_KEYS = ("app", "model", "version", "engine")
_MS_BOUNDARIES: list[float] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
_TPS_BOUNDARIES: list[float] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]


def replica_node_share(cfg: PlatformConfig, app: LLMAppConfig) -> float:
    """The share of one pool node a replica holds (billing unit: whole nodes).

    vLLM replicas are sized by GPUs (``tensor_parallel_size`` of ``gpus_per_node``); the
    transformers engine by CPUs (``num_cpus_per_replica`` of ``cpus_per_node``). With
    ``placement: deployments`` a generation also holds one version replica: its CPUs or GPUs
    (whichever is the larger share of a node) are added to the router's.
    """
    serving = app.serving
    pool = cfg.pool(serving.pool)
    cpu_share = serving.num_cpus_per_replica / pool.cpus_per_node
    if app.engine == "vllm" and app.vllm is not None and pool.gpus_per_node:
        return max(cpu_share, app.vllm.tensor_parallel_size / pool.gpus_per_node)
    if serving.placement == "deployments":
        gpu_share = serving.version_num_gpus / pool.gpus_per_node if pool.gpus_per_node else 0.0
        cpu_share += max(serving.version_num_cpus / pool.cpus_per_node, gpu_share)
    return min(1.0, cpu_share)


def replica_cost_usd_per_s(cfg: PlatformConfig, app: LLMAppConfig) -> float:
    """What one replica of the app costs per second at the pool's price."""
    pool = cfg.pool(app.serving.pool)
    return pool.price_usd_per_hour / 3600.0 * replica_node_share(cfg, app)


def cost_per_1k_tokens(cfg: PlatformConfig, app: LLMAppConfig, tokens_per_s: float) -> float:
    """USD per 1,000 generated tokens for a replica producing ``tokens_per_s`` while busy.

    This is the cost meter's hook: feed it the measured throughput (``/stats`` →
    ``tokens_per_s``) and multiply by tokens served to attribute LLM cost per team/model.

    Raises:
        UserError: ``tokens_per_s`` is not positive (nothing measured yet).

    Example:
        >>> round(cost_per_1k_tokens(cfg, app, 100.0), 8)   # doctest: +SKIP
        1.052e-05
    """
    if not tokens_per_s > 0:
        raise UserError(
            f"tokens_per_s: must be > 0 to price tokens, got {tokens_per_s}. Serve some "
            "requests first (GET <prefix>/stats reports the measured rate)."
        )
    return replica_cost_usd_per_s(cfg, app) / tokens_per_s * 1000.0


@dataclass
class TokenAccounting:
    """Running totals of one replica's generations (plain class; the replica is its shell)."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    busy_s: float = 0.0
    ttft_sum_s: float = 0.0
    ttft_count: int = 0
    queue_sum_s: float = 0.0
    max_ttft_s: float = 0.0

    def observe(self, stats: GenerationStats) -> None:
        self.requests += 1
        self.prompt_tokens += stats.prompt_tokens
        self.completion_tokens += stats.completion_tokens
        self.busy_s += stats.generate_s
        self.queue_sum_s += stats.queue_s
        if stats.ttft_s is not None:
            self.ttft_sum_s += stats.ttft_s
            self.ttft_count += 1
            self.max_ttft_s = max(self.max_ttft_s, stats.ttft_s)

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per second of generation time (0 before the first request)."""
        return self.completion_tokens / self.busy_s if self.busy_s > 0 else 0.0

    def summary(self, cfg: PlatformConfig, app: LLMAppConfig) -> dict[str, Any]:
        tps = self.tokens_per_s
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens_per_s": tps,
            "mean_ttft_ms": 1000 * self.ttft_sum_s / self.ttft_count if self.ttft_count else None,
            "max_ttft_ms": 1000 * self.max_ttft_s if self.ttft_count else None,
            "mean_queue_ms": 1000 * self.queue_sum_s / self.requests if self.requests else None,
            "replica_cost_usd_per_hour": replica_cost_usd_per_s(cfg, app) * 3600,
            "cost_usd_per_1k_tokens": cost_per_1k_tokens(cfg, app, tps) if tps > 0 else None,
        }


class RayTokenMetrics:
    """``ray.util.metrics`` instruments, created inside the replica (Ray must be running).

    Example:
        >>> m = RayTokenMetrics({"app": "llm", "model": "tiny-chat", "version": "1",
        ...                      "engine": "transformers"})   # doctest: +SKIP
        >>> m.observe(stats, status="ok")                      # doctest: +SKIP
    """

    def __init__(self, tags: dict[str, str]) -> None:
        from ray.util.metrics import Counter, Histogram

        self._tags = tags
        keys = TAG_KEYS

        def hist(name: str, desc: str, bounds: list[float]) -> Histogram:
            return Histogram(METRIC_PREFIX + name, description=desc, boundaries=bounds,
                             tag_keys=keys)

        self.ttft = hist("ttft_ms", "Time to first token.", _MS_BOUNDARIES)
        self.itl = hist("inter_token_latency_ms", "Gap between streamed tokens.", _MS_BOUNDARIES)
        self.queue = hist("queue_ms", "Wait for a generation slot in the replica.", _MS_BOUNDARIES)
        self.tps = hist("tokens_per_s", "Completion tokens per second of generation.",
                        _TPS_BOUNDARIES)
        self.tokens = Counter(METRIC_PREFIX + "tokens_total", description="Tokens processed.",
                              tag_keys=(*keys, "kind"))
        self.requests = Counter(METRIC_PREFIX + "requests_total",
                                description="Generation requests by outcome.",
                                tag_keys=(*keys, "status"))

    def observe(self, stats: GenerationStats, status: str) -> None:
        tags = self._tags
        self.requests.inc(1, {**tags, "status": status})
        if status != "ok":
            return
        if stats.ttft_s is not None:
            self.ttft.observe(1000 * stats.ttft_s, tags)
        for gap in stats.inter_token_s:
            self.itl.observe(1000 * gap, tags)
        self.queue.observe(1000 * stats.queue_s, tags)
        if stats.tokens_per_s > 0:
            self.tps.observe(stats.tokens_per_s, tags)
        for kind, n in (("prompt", stats.prompt_tokens), ("completion", stats.completion_tokens)):
            if n > 0:  # Ray counters refuse increments of 0
                self.tokens.inc(n, {**tags, "kind": kind})
