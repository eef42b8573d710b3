"""Ray Train checkpoints in an S3-compatible bucket (moto's server on loopback).

The profile's ``checkpoints`` points at the bucket while tracking stays local. A training job,
submitted as a user would (``ray job submit python jobs/train.py``), writes its checkpoints to
the bucket; resubmitting the run with one more epoch resumes from the bucket's checkpoint
instead of starting over. The job reaches the bucket through the AWS variables (and endpoint
override) in its runtime_env, so its driver, Train controller and workers all do.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplat.data._storage import list_files, resolve
from tests.conftest import S3_BUCKET
from tests.ray_fixtures import run_repo_job
from tests.unit.training.synthetic import write_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _train(client: Any, args: str, env: dict[str, str]) -> dict[str, Any]:
    from mlplat.jobs import last_json_line

    logs = run_repo_job(client, f"python jobs/train.py {args}", env,
                        {"team": "risk", "model": "fraud", "pool": "training-spot", "cpus": "2"},
                        timeout_s=420)
    return dict(last_json_line(logs))


def test_training_job_checkpoints_to_a_bucket_and_resumes_from_it(
    s3: dict[str, str], ray_dashboard_url: str, session_home: Path, repo_root: Path,
    tmp_path: Path,
) -> None:
    from ray.job_submission import JobSubmissionClient

    from mlplat.apps import load_app
    from mlplat.config import load_config

    raw = yaml.safe_load((repo_root / "platform.yaml").read_text())
    raw["profiles"]["local"]["checkpoints"] = f"s3://{S3_BUCKET}/checkpoints"
    config = tmp_path / "platform.yaml"
    config.write_text(yaml.safe_dump(raw))
    app = load_app("fraud", load_config(repo_root / "platform.yaml"))
    dataset = write_dataset(session_home / "datasets" / "fraud-s3-ckpt", app.features, 1200)
    run = f"it-s3-{uuid.uuid4().hex[:6]}"
    client = JobSubmissionClient(ray_dashboard_url)
    env = {**s3, "MLPLAT_HOME": str(session_home)}
    args = (f"--app apps/fraud --dataset {dataset} --run-name {run} --config {config} "
            "--set checkpoint_every_steps=5 --set batch_size=64")

    first = _train(client, f"{args} --set epochs=1", env)
    assert first["resumed_from_step"] == 0
    fs, run_path = resolve(f"s3://{S3_BUCKET}/checkpoints/{run}")
    objects = list_files(fs, run_path)
    states = [o for o in objects if o.endswith("/state.pt")]
    assert states and all(o.startswith(f"{run_path}/checkpoint_") for o in states), objects
    assert f"{run_path}/checkpoint_manager_snapshot.json" in objects
    # Nothing of the run on local disk: the checkpoints live only in the bucket.
    assert not (session_home / "checkpoints" / run).exists()
    snapshot = json.loads(
        fs.open_input_stream(f"{run_path}/checkpoint_manager_snapshot.json").read())
    last_step = int(snapshot["latest_checkpoint_result"]["metrics"]["step"])
    assert last_step > 0

    second = _train(client, f"{args} --set epochs=2", env)
    # Resumed from the end of epoch 1 (read back from the bucket), not from step 0.
    assert second["resumed_from_step"] == last_step, second
    assert second["version"] != first["version"]
    assert second["metrics"]["val_auc"] > 0.6, second["metrics"]
