"""Reading the model registry: versions, aliases, cards, and loading a version for inference.

Loaded versions are cached on local disk by (model, version): a registered version's files
never change (the card hash proves it), so a second load — another Serve replica on the same
node, a restart — skips the download.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplat.config import PlatformConfig
from mlplat.contracts.v1 import FeatureSpec, ModelCard, Preprocessor
from mlplat.errors import InfraError, NotFoundError, UserError, did_you_mean
from mlplat.experiment._card_store import (
    CARD_SHA_TAG,
    CardIntegrityError,
    has_registry_card,
    read_revisions,
)
from mlplat.experiment._cards import card_sha256
from mlplat.experiment._logging import CARD_FILE, FEATURE_SPEC_FILE
from mlplat.experiment._store import client, tracking_uri

MODEL_FILE = "model.pt"
PREPROCESSOR_FILE = "preprocessor.json"
CACHE_DIR = "mlflow/cache"


@dataclass
class LoadedModel:
    """A registered model version, loaded and ready to score rows in-process."""

    name: str
    version: str
    module: Any = field(repr=False)
    preprocessor: Preprocessor = field(repr=False)
    feature_spec: FeatureSpec = field(repr=False)
    card: ModelCard = field(repr=False)
    metrics: dict[str, float] = field(default_factory=dict)

    def predict_proba(self, rows: list[dict[str, Any]]) -> list[float]:
        """Fraud probability per feature row (feature name → value; missing → training mean).

        Args:
            rows: One dict per row keyed by ``feature_spec.feature_names()``.

        Returns:
            One probability in [0, 1] per row, in order.

        Example:
            >>> m = load_model_version(cfg, "fraud", "1")
            >>> m.predict_proba([{"amount": 12.5, "merchant_category": "grocery"}])
            [0.031...]
        """
        import torch

        if not rows:
            return []
        matrix = self.preprocessor.transform_rows(rows)
        with torch.inference_mode():
            logits = self.module(torch.tensor(matrix, dtype=torch.float32))
            return torch.sigmoid(logits).tolist()  # type: ignore[no-any-return]


def _known_models(c: Any) -> list[str]:
    return sorted(m.name for m in c.search_registered_models())


def _registered_model(cfg: PlatformConfig, model: str) -> Any:
    from mlflow.exceptions import MlflowException

    c = client(cfg)
    try:
        return c.get_registered_model(model)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            known = _known_models(c)
            raise NotFoundError(
                f"No registered model '{model}'.{did_you_mean(model, known)} "
                f"Registered models in {tracking_uri(cfg)}: {known}."
            ) from exc
        raise InfraError(f"MLflow at {tracking_uri(cfg)} failed: {exc}") from exc


def _model_version(cfg: PlatformConfig, model: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    _registered_model(cfg, model)
    c = client(cfg)
    try:
        return c.get_model_version(model, str(version))
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            known = sorted(
                (str(v.version) for v in c.search_model_versions(f"name='{model}'")), key=int
            )
            raise NotFoundError(
                f"Model '{model}' has no version '{version}'. Versions: {known}."
            ) from exc
        raise InfraError(f"MLflow at {tracking_uri(cfg)} failed: {exc}") from exc


def _cache_root(cfg: PlatformConfig) -> Path:
    root = cfg.root()
    if "://" in root:
        return Path(tempfile.gettempdir()) / "mlplat-model-cache"
    return Path(root) / CACHE_DIR


def _download(cfg: PlatformConfig, mv: Any) -> Path:
    """The version's folder on local disk, downloaded once (atomically) and then reused."""
    import mlflow.artifacts

    # The run id in the key keeps two tracking stores sharing one root from mixing versions.
    target = _cache_root(cfg) / mv.name / f"{mv.version}-{(mv.run_id or 'norun')[:12]}"
    if (target / MODEL_FILE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{mv.version}-{uuid.uuid4().hex[:8]}"
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=mv.source, dst_path=str(staging), tracking_uri=tracking_uri(cfg)
        )
        if target.exists() and not (target / MODEL_FILE).is_file():
            shutil.rmtree(target, ignore_errors=True)  # an incomplete copy from a crashed load
        try:
            os.replace(local, target)  # atomic: concurrent loaders never see half a folder
        except OSError:
            # Another loader won the race; its copy is complete (it was renamed whole).
            if not (target / MODEL_FILE).is_file():
                raise
    except Exception as exc:  # any storage failure is an infrastructure error
        raise InfraError(
            f"Could not download {mv.name} v{mv.version} from {mv.source}: {exc}"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _card_hash(mv: Any) -> str:
    expected = (mv.tags or {}).get(CARD_SHA_TAG)
    if expected is None:
        raise NotFoundError(
            f"{mv.name} v{mv.version} has no model card (its registration did not finish). "
            "Register a new version by re-running training."
        )
    return str(expected)


def _registry_card(mv: Any, revision: int | None = None) -> ModelCard | None:
    """The verified card from the version's registry tags (None for versions registered
    before cards moved into the registry: those keep theirs as an artifact)."""
    tags = dict(mv.tags or {})
    if not has_registry_card(tags):
        return None
    cards = read_revisions(mv.name, str(mv.version), tags)
    if revision is None:
        return cards[-1]
    if not 1 <= revision <= len(cards):
        raise NotFoundError(
            f"{mv.name} v{mv.version} has card revisions 1..{len(cards)}, not {revision}."
        )
    return cards[revision - 1]


def _verified_card(folder: Path, mv: Any) -> ModelCard:
    card = _registry_card(mv)
    if card is not None:
        return card
    expected = _card_hash(mv)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise NotFoundError(f"{mv.name} v{mv.version}: {CARD_FILE} is missing from its artifacts.")
    card = ModelCard.model_validate_json(card_path.read_text())
    if card_sha256(card) != expected:
        raise CardIntegrityError(
            f"Model card of {mv.name} v{mv.version} does not match its registered hash "
            f"({expected[:12]}…): the artifact was modified after registration. Treat the "
            "version as untrusted; re-register from its run."
        )
    return card


def version_folder(cfg: PlatformConfig, model: str, version: str) -> Path:
    """The version's model files on local disk (downloaded once, then reused).

    Raises:
        NotFoundError: unknown model or version.
        InfraError: the tracking store or artifact storage failed.

    Example:
        >>> (version_folder(cfg, "fraud", "3") / "model_card.json").is_file()   # doctest: +SKIP
        True
    """
    mv = _model_version(cfg, model, version)
    _card_hash(mv)  # an unfinished registration fails here, before any download
    return _download(cfg, mv)


def load_model_version(cfg: PlatformConfig, model: str, version: str) -> LoadedModel:
    """Download (or reuse the cached copy of) a version and load it for inference.

    Args:
        cfg: Platform config (tracking store, cache folder under the storage root).
        model: Registered model name (the app name).
        version: Version number as a string.

    Returns:
        The TorchScript module in eval mode, its preprocessor, feature spec, verified card
        and metrics.

    Raises:
        NotFoundError: unknown model or version (the message lists the known ones).
        CardIntegrityError: the card artifact no longer matches its registered hash.
        InfraError: the tracking store or artifact storage failed.

    Example:
        >>> m = load_model_version(load_config(), "fraud", "1")
        >>> m.card.team, 0.0 <= m.predict_proba([{}])[0] <= 1.0
        ('risk', True)
    """
    import torch

    mv = _model_version(cfg, model, version)
    _card_hash(mv)  # an unfinished registration fails here, before any download
    folder = _download(cfg, mv)
    card = _verified_card(folder, mv)
    module = torch.jit.load(str(folder / MODEL_FILE), map_location="cpu")
    module.eval()
    return LoadedModel(
        name=model,
        version=str(mv.version),
        module=module,
        preprocessor=Preprocessor.model_validate_json((folder / PREPROCESSOR_FILE).read_text()),
        feature_spec=FeatureSpec.model_validate_json((folder / FEATURE_SPEC_FILE).read_text()),
        card=card,
        metrics=dict(card.metrics),
    )


def get_model_card(
    cfg: PlatformConfig, model: str, version: str, revision: int | None = None
) -> ModelCard:
    """The verified model card of a version (its newest revision unless ``revision`` is given).

    The card is read from the registry (the version's tags); no artifact is downloaded.

    Raises:
        NotFoundError: unknown model/version/revision, or the version has no card.
        CardIntegrityError: the card was modified after registration.

    Example:
        >>> get_model_card(load_config(), "fraud", "1").training_dataset_sha256[:8]
        '3f2a9c1b'
        >>> get_model_card(load_config(), "fraud", "1", revision=1).revision
        1
    """
    mv = _model_version(cfg, model, version)
    _card_hash(mv)
    card = _registry_card(mv, revision)
    if card is not None:
        return card
    if revision not in (None, 1):
        raise NotFoundError(f"{model} v{version} has only card revision 1.")
    return _verified_card(_download(cfg, mv), mv)


def card_revisions(cfg: PlatformConfig, model: str, version: str) -> list[ModelCard]:
    """Every revision of a version's card, oldest first, each verified.

    Raises:
        NotFoundError: unknown model/version, or the version has no card.
        CardIntegrityError: any revision was modified.

    Example:
        >>> [c.revision for c in card_revisions(cfg, "fraud", "1")]
        [1, 2]
    """
    mv = _model_version(cfg, model, version)
    _card_hash(mv)
    tags = dict(mv.tags or {})
    if has_registry_card(tags):
        return read_revisions(model, str(mv.version), tags)
    return [_verified_card(_download(cfg, mv), mv)]


def set_alias(cfg: PlatformConfig, model: str, alias: str, version: str) -> None:
    """Point ``alias`` (e.g. ``staging``, ``production``) of ``model`` at ``version``.

    Raises:
        NotFoundError: unknown model or version.
        UserError: the alias is not a valid MLflow alias (letters, digits, ``_``, ``-``).

    Example:
        >>> set_alias(cfg, "fraud", "staging", "3")
    """
    from mlflow.exceptions import MlflowException

    _model_version(cfg, model, version)
    try:
        client(cfg).set_registered_model_alias(model, alias, str(version))
    except MlflowException as exc:
        if exc.error_code == "INVALID_PARAMETER_VALUE":
            raise UserError(f"Invalid alias '{alias}' for '{model}': {exc.message}") from exc
        raise InfraError(f"MLflow at {tracking_uri(cfg)} failed: {exc}") from exc


def get_alias(cfg: PlatformConfig, model: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None when the alias is not set.

    Raises:
        NotFoundError: unknown model.

    Example:
        >>> get_alias(cfg, "fraud", "staging")
        '3'
    """
    aliases = getattr(_registered_model(cfg, model), "aliases", None) or {}
    value = aliases.get(alias)
    return str(value) if value is not None else None


def list_versions(cfg: PlatformConfig, model: str) -> list[dict[str, Any]]:
    """Every version of ``model``, oldest first, with tags, aliases and run id.

    Each entry: ``version``, ``run_id``, ``source``, ``created_at_ms``, ``aliases`` (list),
    ``tags`` (dict, including ``dataset_sha256``, ``card_sha256``, ``team`` and the gate
    metric), ``complete`` (True once the card hash tag is set).

    Example:
        >>> [v["version"] for v in list_versions(cfg, "fraud")]
        ['1', '2']
    """
    registered = _registered_model(cfg, model)
    by_version: dict[str, list[str]] = {}
    for alias, v in (getattr(registered, "aliases", None) or {}).items():
        by_version.setdefault(str(v), []).append(alias)
    versions = client(cfg).search_model_versions(f"name='{model}'")
    out = [
        {
            "version": str(v.version),
            "run_id": v.run_id,
            "source": v.source,
            "created_at_ms": v.creation_timestamp,
            "aliases": sorted(by_version.get(str(v.version), [])),
            "tags": dict(v.tags or {}),
            "complete": CARD_SHA_TAG in (v.tags or {}),
        }
        for v in versions
    ]
    return sorted(out, key=lambda e: int(e["version"]))
