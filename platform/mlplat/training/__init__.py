"""Training plane: Ray Train ``TorchTrainer`` on the training pool, checkpoints, resume, export.

Example:
    >>> from mlplat.apps import load_app
    >>> from mlplat.config import load_config
    >>> from mlplat.training import train
    >>> cfg = load_config()
    >>> result = train(cfg, load_app("fraud", cfg), ".mlplat/datasets/fraud", run_name="nightly")
    >>> result.version, result.metrics["val_auc"]
"""

from mlplat.training._dataset import fit_preprocessor as fit_preprocessor
from mlplat.training._dataset import split_indices as split_indices
from mlplat.training._dataset import transform_frame as transform_frame
from mlplat.training._loop import read_step_log as read_step_log
from mlplat.training._sweep import SweepResult as SweepResult
from mlplat.training._sweep import sweep as sweep
from mlplat.training._sweep import sweep_progress as sweep_progress
from mlplat.training._sweep import trial_concurrency as trial_concurrency
from mlplat.training._train import TrainResult as TrainResult
from mlplat.training._train import apply_overrides as apply_overrides
from mlplat.training._train import default_run_name as default_run_name
from mlplat.training._train import load_model_builder as load_model_builder
from mlplat.training._train import run_progress as run_progress
from mlplat.training._train import train as train

__all__ = [
    "SweepResult",
    "TrainResult",
    "apply_overrides",
    "default_run_name",
    "fit_preprocessor",
    "load_model_builder",
    "read_step_log",
    "run_progress",
    "split_indices",
    "sweep",
    "sweep_progress",
    "train",
    "transform_frame",
    "trial_concurrency",
]
