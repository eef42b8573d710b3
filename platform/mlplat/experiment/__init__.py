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
from mlplat.experiment._guard import ADMISSION_PATH as ADMISSION_PATH
from mlplat.experiment._guard import PROTECTED_ALIASES as PROTECTED_ALIASES
from mlplat.experiment._guard import DeleteDecision as DeleteDecision
from mlplat.experiment._guard import VersionInUseError as VersionInUseError
from mlplat.experiment._guard import admission_review as admission_review
from mlplat.experiment._guard import check_delete as check_delete
from mlplat.experiment._guard import delete_model_card as delete_model_card
from mlplat.experiment._guard import delete_model_version as delete_model_version
from mlplat.experiment._guard import edit_model_card as edit_model_card
from mlplat.experiment._guard import governance_webhook_app as governance_webhook_app
from mlplat.experiment._logging import DRIFT_REFERENCE_FILE as DRIFT_REFERENCE_FILE
from mlplat.experiment._logging import RegisteredVersion as RegisteredVersion
from mlplat.experiment._logging import log_training_run as log_training_run
from mlplat.experiment._registry import CardIntegrityError as CardIntegrityError
from mlplat.experiment._registry import LoadedModel as LoadedModel
from mlplat.experiment._registry import card_revisions as card_revisions
from mlplat.experiment._registry import get_alias as get_alias
from mlplat.experiment._registry import get_model_card as get_model_card
from mlplat.experiment._registry import list_versions as list_versions
from mlplat.experiment._registry import load_model_version as load_model_version
from mlplat.experiment._registry import set_alias as set_alias
from mlplat.experiment._registry import version_folder as version_folder
from mlplat.experiment._store import artifact_root as artifact_root
from mlplat.experiment._store import ensure_experiment as ensure_experiment
from mlplat.experiment._store import tracking_uri as tracking_uri
from mlplat.experiment._tracker import RUN_TAG as RUN_TAG
from mlplat.experiment._tracker import BufferedTracker as BufferedTracker
from mlplat.experiment._tracker import CircuitBreaker as CircuitBreaker
from mlplat.experiment._tracker import TrackerStats as TrackerStats
from mlplat.experiment._tracker import open_tracker as open_tracker

__all__ = [
    "ADMISSION_PATH",
    "DRIFT_REFERENCE_FILE",
    "PROTECTED_ALIASES",
    "RUN_TAG",
    "BufferedTracker",
    "CardIntegrityError",
    "CircuitBreaker",
    "DeleteDecision",
    "LoadedModel",
    "RegisteredVersion",
    "TrackerStats",
    "VersionInUseError",
    "admission_review",
    "artifact_root",
    "build_card",
    "canonical_card_json",
    "card_revisions",
    "card_sha256",
    "check_delete",
    "delete_model_card",
    "delete_model_version",
    "edit_model_card",
    "ensure_experiment",
    "get_alias",
    "get_model_card",
    "governance_webhook_app",
    "list_versions",
    "load_model_version",
    "log_training_run",
    "open_tracker",
    "set_alias",
    "tracking_uri",
    "version_folder",
]
