"""Cost attribution arithmetic against the prices in platform.yaml, with a fake clock."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mlplat.config import PlatformConfig
from mlplat.errors import NotFoundError, UserError
from mlplat.governance import CostMeter

REPO = Path(__file__).resolve().parents[3]
# Prices are read straight from the YAML here, independently of mlplat.config, so the test
# proves the meter uses the file's numbers and not some copy of them.
POOLS = yaml.safe_load((REPO / "platform.yaml").read_text())["pools"]


def usd_per_cpu_s(pool: str) -> float:
    return POOLS[pool]["price_usd_per_hour"] / POOLS[pool]["cpus_per_node"] / 3600.0


class FakeClock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def job(sid: str | None, status: str, start_s: float | None, end_s: float | None = None,
        **meta: str) -> SimpleNamespace:
    return SimpleNamespace(
        submission_id=sid, job_id=sid, status=status, metadata=meta or None,
        start_time=None if start_s is None else int(start_s * 1000),
        end_time=None if end_s is None else int(end_s * 1000),
    )


def test_usage_cost_is_cpus_times_seconds_times_pool_price(platform_config) -> None:
    meter = CostMeter(platform_config, clock=FakeClock())
    rec = meter.record_usage("risk", "fraud", "trial", "training-spot", cpus=4, seconds=900,
                             source="trial-7")
    assert rec.resource_seconds == 3600
    assert rec.cost_usd == pytest.approx(4 * 900 * usd_per_cpu_s("training-spot"), rel=1e-12)
    assert (rec.team, rec.model, rec.kind, rec.pool, rec.source) == (
        "risk", "fraud", "trial", "training-spot", "trial-7")


def test_report_by_team_model_pool_and_per_inference(platform_config) -> None:
    meter = CostMeter(platform_config, clock=FakeClock())
    meter.record_usage("risk", "fraud", "replica", "serving-ondemand", 0.5, 3600, "fraud-v2/r1")
    meter.record_usage("risk", "fraud", "replica", "serving-ondemand", 0.5, 3600, "fraud-v2/r2")
    meter.record_usage("risk", "fraud", "job", "training-spot", 2, 600, "train-1")
    meter.record_usage("search", "ranker", "replica", "serving-ondemand", 1, 1800, "ranker-v1")
    meter.record_usage("search", "ranker", "job", "cpu", 1, 60, "build-1")
    assert meter.record_inferences("fraud", 4000) == 4000
    assert meter.record_inferences("fraud", 1000) == 5000

    serving, training, cpu = (usd_per_cpu_s(p) for p in ("serving-ondemand", "training-spot", "cpu"))
    fraud_serving = 2 * 0.5 * 3600 * serving
    fraud_total = fraud_serving + 2 * 600 * training
    ranker_total = 1800 * serving + 60 * cpu
    report = meter.report()
    assert report.by_team == pytest.approx({"risk": fraud_total, "search": ranker_total})
    assert report.by_model == pytest.approx({"fraud": fraud_total, "ranker": ranker_total})
    assert report.by_team_model["search"] == pytest.approx({"ranker": ranker_total})
    assert report.by_pool == pytest.approx({
        "serving-ondemand": fraud_serving + 1800 * serving,
        "training-spot": 2 * 600 * training, "cpu": 60 * cpu})
    assert report.total_usd == pytest.approx(fraud_total + ranker_total)
    # Cost per inference counts serving replicas only, not training.
    assert report.per_inference_usd == pytest.approx({"fraud": fraud_serving / 5000})
    assert report.inferences == {"fraud": 5000}
    assert len(report.records) == 5


def test_prices_come_from_the_config(platform_config) -> None:
    raw = platform_config.model_dump(exclude={"source_path"})
    raw["pools"]["cpu"]["price_usd_per_hour"] *= 2
    doubled = PlatformConfig.model_validate(raw)
    base = CostMeter(platform_config).record_usage("risk", "m", "job", "cpu", 1, 100, "j").cost_usd
    twice = CostMeter(doubled).record_usage("risk", "m", "job", "cpu", 1, 100, "j").cost_usd
    assert twice == pytest.approx(2 * base)


def test_unknown_team_or_pool_names_the_known_ones(platform_config) -> None:
    meter = CostMeter(platform_config)
    with pytest.raises(NotFoundError, match=r"Unknown team 'risc'\. Did you mean 'risk'"):
        meter.record_usage("risc", "fraud", "job", "cpu", 1, 1, "j")
    with pytest.raises(NotFoundError, match=r"Unknown node pool 'gpu'.*Pools:"):
        meter.record_usage("risk", "fraud", "job", "gpu", 1, 1, "j")
    with pytest.raises(UserError, match="kind must be one of"):
        meter.record_usage("risk", "fraud", "batch", "cpu", 1, 1, "j")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="seconds must be a finite number"):
        meter.record_usage("risk", "fraud", "job", "cpu", 1, -5, "j")
    assert meter.report().total_usd == 0


def test_jobs_are_charged_once_and_running_jobs_up_to_now(platform_config) -> None:
    clock = FakeClock(10_000.0)
    meter = CostMeter(platform_config, clock=clock)
    meta = {"team": "risk", "model": "fraud", "pool": "training-spot", "cpus": "2"}
    jobs = [
        job("raysubmit_done", "SUCCEEDED", 1_000, 1_600, **meta),
        job("raysubmit_run", "RUNNING", 9_000, None, **{**meta, "kind": "trial", "cpus": "0.5"}),
        job("raysubmit_wait", "PENDING", None, None, **meta),
        job(None, "SUCCEEDED", 0, 100),  # a plain driver: not billed, not reported
        job("raysubmit_raw", "FAILED", 0, 100),  # submitted without mlplat metadata
        job("raysubmit_bad", "SUCCEEDED", 0, 100, **{**meta, "team": "nobody"}),
    ]
    first = meter.ingest_jobs(jobs)
    price = usd_per_cpu_s("training-spot")
    assert {r.source: r.cost_usd for r in first} == pytest.approx(
        {"raysubmit_done": 2 * 600 * price, "raysubmit_run": 0.5 * 1_000 * price})
    assert {r.source: r.kind for r in first} == {"raysubmit_done": "job", "raysubmit_run": "trial"}

    assert meter.ingest_jobs(jobs) == []  # idempotent: nothing new at the same instant
    clock.t += 500
    again = meter.ingest_jobs(jobs)
    assert [(r.source, r.resource_seconds) for r in again] == [("raysubmit_run", 0.5 * 1_500)]

    report = meter.report()
    assert report.by_team == pytest.approx({"risk": (2 * 600 + 0.5 * 1_500) * price})
    assert sorted(report.skipped_jobs) == ["raysubmit_bad", "raysubmit_raw"]
    assert "Unknown team 'nobody'" in report.skipped_jobs["raysubmit_bad"]
    assert "mlplat jobs submit" in report.skipped_jobs["raysubmit_raw"]
    assert sum(r.source == "raysubmit_run" for r in report.records) == 1


def test_cost_per_1k_tokens_is_llm_replica_cost_over_tokens(platform_config) -> None:
    """Known numbers: 2 LLM replicas × 0.5 CPU × 1 h on the serving pool, 120 000 tokens."""
    clock = FakeClock()
    meter = CostMeter(platform_config, clock=clock)
    for r in ("r1", "r2"):
        meter.record_usage("search", "tiny-chat", "replica", "serving-ondemand", 0.5, 3600,
                           f"llm/{r}")
    meter.record_usage("search", "tiny-chat", "job", "training-spot", 1, 600, "build-tiny")
    assert meter.record_tokens("tiny-chat", 100_000) == 100_000
    assert meter.record_tokens("tiny-chat", 20_000) == 120_000
    serving = 2 * 0.5 * 3600 * usd_per_cpu_s("serving-ondemand")
    report = meter.report()
    assert report.tokens == {"tiny-chat": 120_000}
    # Training the model is not a serving cost: only the replicas are divided by the tokens.
    assert report.per_1k_tokens_usd == pytest.approx({"tiny-chat": serving * 1000 / 120_000})
    # The cost meter actor's Prometheus endpoint exports it (no Ray needed to build the class).
    from mlplat.governance._actor import CostMeterActor

    exporter = CostMeterActor(platform_config, None, metrics_port=0, sample=False)
    exporter._publish(report)
    line = next(ln for ln in exporter.metrics_text().splitlines()
                if ln.startswith('mlplat_cost_per_1k_tokens_usd{model="tiny-chat"}'))
    assert float(line.split()[-1]) == pytest.approx(serving * 1000 / 120_000)
    clock.t += 10
    meter.record_tokens("tiny-chat", 5)
    assert meter.report(since=clock.t - 1).tokens == {"tiny-chat": 5}
    with pytest.raises(UserError, match="Token count must be an int"):
        meter.record_tokens("tiny-chat", -1)
