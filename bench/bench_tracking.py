"""Tracking: training step time with the MLflow server up vs dead, through the BufferedTracker.

Target (issue 5): step time with the server dead ≤ 1.05× step time with it up. A synthetic
training loop (a small torch MLP, one optimizer step + 3 metrics logged per step) runs:

1. without any logging (the floor);
2. through ``BufferedTracker`` with a real ``mlflow server`` (SQLite backend) up;
3. the same after the server is killed (SIGKILL) — the ratio that matters is 3 / 2;
4. stock ``MlflowClient.log_metric`` per step with the server up (what the tracker replaces);
5. one stock ``MlflowClient.log_metric`` against the dead server (default retries), capped at
   ``MLPLAT_BENCH_STOCK_CAP_S`` (default 20 s) — why the tracker exists.

Example: `.venv/bin/python bench/bench_tracking.py` (MLPLAT_BENCH_TRACKING_STEPS=300).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _loop(steps: int, log) -> list[float]:  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(512, 32), torch.randn(512, 1)
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if log is not None:
            log(step, float(loss.detach()))
        times.append(time.perf_counter() - t0)
    return times


def _p50_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def main() -> None:
    sys.path.insert(0, str(REPO))
    from mlflow import MlflowClient

    from mlplat.experiment import BufferedTracker
    from tests.services import Service, free_port, wait_for_port

    def start_mlflow_server(workdir: Path, backend: str, port: int | None = None) -> Service:
        # tests.services' starter waits 120 s; a loaded CI box can take longer to import MLflow.
        port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
             "--port", str(port), "--backend-store-uri", backend,
             "--artifacts-destination", str(workdir / "artifacts"), "--workers", "1"],
            stdout=(workdir / "mlflow.log").open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        svc = Service("mlflow", port, f"http://127.0.0.1:{port}", proc=proc, group=True)
        try:
            wait_for_port(port, timeout_s=600, proc=proc)
        except BaseException:
            svc.kill()
            raise
        return svc

    steps = int(os.environ.get("MLPLAT_BENCH_TRACKING_STEPS", "300"))
    cap_s = float(os.environ.get("MLPLAT_BENCH_STOCK_CAP_S", "20"))
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        server = start_mlflow_server(work / "mlflow", f"sqlite:///{work}/mlflow.db")
        print(f"mlflow server started in {time.perf_counter() - t0:.1f} s")
        try:
            c = MlflowClient(tracking_uri=server.url)
            exp = c.create_experiment("bench")
            floor = _loop(steps, None)

            tracker = BufferedTracker(server.url, work / "buf.db")
            run = tracker.start_run(exp, "bench-tracker")

            def via_tracker(step: int, loss: float) -> None:
                tracker.log_metrics(run, {"loss": loss, "lr": 0.01, "step_ms": 1.0}, step=step)

            _loop(20, via_tracker)  # warm-up: run creation, first batches
            tracker.flush(30)
            up = _loop(steps, via_tracker)
            tracker.flush(60)

            stock_run = c.create_run(exp).info.run_id

            def via_stock(step: int, loss: float) -> None:
                for k, v in (("loss", loss), ("lr", 0.01), ("step_ms", 1.0)):
                    c.log_metric(stock_run, k, v, step=step)

            stock_up = _loop(min(steps, 100), via_stock)

            server.kill()
            dead = _loop(steps, via_tracker)
            stats = tracker.stats()
            print(f"steps={steps} (3 metrics/step), median step time:")
            print(f"  no logging                      {_p50_ms(floor):8.3f} ms")
            print(f"  BufferedTracker, server up      {_p50_ms(up):8.3f} ms")
            print(f"  BufferedTracker, server dead    {_p50_ms(dead):8.3f} ms  "
                  f"(breaker {stats.breaker}, {stats.pending} writes journaled)")
            print(f"  stock MlflowClient, server up   {_p50_ms(stock_up):8.3f} ms")
            print(f"  p99 tracker up/dead             {sorted(up)[int(0.99 * steps)] * 1000:.3f}"
                  f" / {sorted(dead)[int(0.99 * steps)] * 1000:.3f} ms")
            ratio = statistics.median(dead) / statistics.median(up)
            print(f"ratio dead/up (tracker) = {ratio:.3f}  (target <= 1.05)")
            print(f"ratio stock-up/tracker-up = "
                  f"{statistics.median(stock_up) / statistics.median(up):.2f}")

            # Stock MLflow against the dead server: one call, default retry settings.
            result: dict[str, object] = {}

            def stock_dead() -> None:
                t = time.perf_counter()
                try:
                    MlflowClient(tracking_uri=server.url).log_metric(stock_run, "loss", 1.0)
                    result["outcome"] = "returned"
                except Exception as exc:  # what a training loop would see
                    result["outcome"] = f"raised {type(exc).__name__}"
                result["s"] = time.perf_counter() - t

            th = threading.Thread(target=stock_dead, daemon=True)
            th.start()
            th.join(cap_s)
            if th.is_alive():
                print(f"stock MlflowClient.log_metric, server dead: still blocked after "
                      f"{cap_s:.0f} s (default MLFLOW_HTTP_REQUEST_MAX_RETRIES back-off); "
                      f"ratio vs tracker step >= {cap_s / statistics.median(dead):.0f}x")
            else:
                print(f"stock MlflowClient.log_metric, server dead: {result['outcome']} after "
                      f"{result['s']:.1f} s")
            tracker.close(timeout_s=0)  # the journal would replay on the next open
        finally:
            server.stop()


if __name__ == "__main__":
    main()
