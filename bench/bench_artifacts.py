"""Artifact retrieval: fetch a ~100 MB registered model version, locally and from S3 (moto).

SLO (platform.yaml slos.experiment.artifact_retrieval_s, 30 s): any registered artifact is
retrievable in under 30 s. The version is registered in a real MLflow registry (SQLite store)
and fetched the way ``load_model_version`` fetches it (``mlflow.artifacts.download_artifacts``
on the version's source). Baselines in the same run:

- local: a raw ``shutil.copyfile`` of the same bytes;
- S3: a raw ``boto3`` ``download_file`` of the same object from the same moto server
  (``moto.server.ThreadedMotoServer`` on loopback — an S3-compatible server, not AWS).

Example: `.venv/bin/python bench/bench_artifacts.py` (MLPLAT_BENCH_ARTIFACT_MB=100).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _register(tracking: str, artifact_location: str, model_dir: Path, name: str) -> str:
    """Log ``model_dir`` as a run's ``model/`` folder and register it; returns the source."""
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    exp = c.create_experiment(name, artifact_location=artifact_location)
    run = c.create_run(exp)
    c.log_artifacts(run.info.run_id, str(model_dir), "model")
    c.create_registered_model(name)
    mv = c.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    return str(c.get_model_version(name, mv.version).source)


def _fetch(source: str, tracking: str, dst: Path) -> float:
    import mlflow.artifacts

    t0 = time.perf_counter()
    mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dst),
                                        tracking_uri=tracking)
    return time.perf_counter() - t0


def main() -> None:
    from mlplat.config import load_config

    slo_s = load_config(REPO / "platform.yaml").slos.experiment.artifact_retrieval_s
    mb = int(os.environ.get("MLPLAT_BENCH_ARTIFACT_MB", "100"))
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as tmp:
        work = Path(tmp)
        model_dir = work / "model"
        model_dir.mkdir()
        blob = model_dir / "model.pt"
        with blob.open("wb") as fh:
            for _ in range(mb):
                fh.write(os.urandom(1 << 20))
        (model_dir / "preprocessor.json").write_text("{}")
        size_mb = blob.stat().st_size / 1e6
        tracking = f"sqlite:///{work}/mlflow.db"

        # ---- local storage
        source = _register(tracking, (work / "artifacts").as_uri(), model_dir, "bench-local")
        t0 = time.perf_counter()
        shutil.copyfile(blob, work / "raw-copy.pt")
        raw_local = time.perf_counter() - t0
        fetched_local = _fetch(source, tracking, work / "dl-local")
        assert (work / "dl-local" / "model" / "model.pt").stat().st_size == blob.stat().st_size

        # ---- S3-compatible server on loopback
        from moto.server import ThreadedMotoServer

        port = _free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_DEFAULT_REGION": "us-east-1",
               "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            import boto3

            s3 = boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"])
            s3.create_bucket(Bucket="mlplat-bench")
            source_s3 = _register(tracking, "s3://mlplat-bench/artifacts", model_dir, "bench-s3")
            key = source_s3.removeprefix("s3://mlplat-bench/") + "/model.pt"
            t0 = time.perf_counter()
            s3.download_file("mlplat-bench", key, str(work / "raw-s3.pt"))
            raw_s3 = time.perf_counter() - t0
            fetched_s3 = _fetch(source_s3, tracking, work / "dl-s3")
            assert (work / "dl-s3" / "model" / "model.pt").stat().st_size == blob.stat().st_size
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            server.stop()

    print(f"registered model version of {size_mb:.0f} MB (model.pt + preprocessor.json)")
    print(f"  local:  fetch {fetched_local:6.2f} s   raw copy     {raw_local:6.2f} s   "
          f"ratio {fetched_local / raw_local:5.2f}x   SLO {slo_s:.0f} s: "
          f"{'OK' if fetched_local < slo_s else 'MISSED'}")
    print(f"  S3/moto: fetch {fetched_s3:6.2f} s   raw boto3    {raw_s3:6.2f} s   "
          f"ratio {fetched_s3 / raw_s3:5.2f}x   SLO {slo_s:.0f} s: "
          f"{'OK' if fetched_s3 < slo_s else 'MISSED'}")


if __name__ == "__main__":
    main()
