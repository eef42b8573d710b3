"""Experiment plane: MLflow tracking and the model registry (versions, aliases, model cards).

Example:
    >>> from mlplat.config import load_config
    >>> from mlplat.experiment import get_alias, load_model_version
    >>> cfg = load_config()
    >>> model = load_model_version(cfg, "fraud", get_alias(cfg, "fraud", "production"))
    >>> model.predict_proba([{"amount": 42.0, "merchant_category": "grocery"}])
"""

from mlplat.experiment._cards import build_card as build_card
from mlplat.experiment._cards import canonical_card_json as canonical_card_json
from mlplat.experiment._cards import card_sha256 as card_sha256
from mlplat.experiment._logging import RegisteredVersion as RegisteredVersion
from mlplat.experiment._logging import log_training_run as log_training_run
from mlplat.experiment._registry import CardIntegrityError as CardIntegrityError
from mlplat.experiment._registry import LoadedModel as LoadedModel
from mlplat.experiment._registry import get_alias as get_alias
from mlplat.experiment._registry import get_model_card as get_model_card
from mlplat.experiment._registry import list_versions as list_versions
from mlplat.experiment._registry import load_model_version as load_model_version
from mlplat.experiment._registry import set_alias as set_alias
from mlplat.experiment._store import artifact_root as artifact_root
from mlplat.experiment._store import ensure_experiment as ensure_experiment
from mlplat.experiment._store import tracking_uri as tracking_uri

__all__ = [
    "CardIntegrityError",
    "LoadedModel",
    "RegisteredVersion",
    "artifact_root",
    "build_card",
    "canonical_card_json",
    "card_sha256",
    "ensure_experiment",
    "get_alias",
    "get_model_card",
    "list_versions",
    "load_model_version",
    "log_training_run",
    "set_alias",
    "tracking_uri",
]
