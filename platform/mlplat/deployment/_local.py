"""Stand-ins for the experiment and data planes: a folder of TorchScript models and an
in-memory feature table. For tests and laptop experiments; production uses the registry and the
online store.

Both are picklable dataclasses, so they can be handed to ``deploy`` and travel to replicas.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat.contracts.v1 import FeatureSpec, ModelCard, Preprocessor
from mlplat.errors import NotFoundError

if TYPE_CHECKING:
    from mlplat.apps import AppConfig
    from mlplat.config import PlatformConfig

_MODULE_FILE = "model.pt"
_META_FILE = "meta.json"


@dataclass
class LocalModel:
    """A TorchScript module returning one logit per row, with its preprocessor and card."""

    name: str
    version: str
    module: Any
    preprocessor: Preprocessor
    feature_spec: FeatureSpec
    card: ModelCard | None
    metrics: dict[str, float] = field(default_factory=dict)

    def predict_proba(self, rows: list[dict[str, Any]]) -> list[float]:
        """Scores in [0, 1], one per row (sigmoid of the module's logits)."""
        import torch

        x = torch.tensor(self.preprocessor.transform_rows(rows), dtype=torch.float32)
        with torch.no_grad():
            logits = self.module(x).reshape(-1)
        return [1.0 / (1.0 + math.exp(-float(v))) for v in logits]


def save_local_model(
    root: str | Path,
    name: str,
    version: str,
    module: Any,
    preprocessor: Preprocessor,
    feature_spec: FeatureSpec,
    card: ModelCard | None = None,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write a TorchScript module and its metadata where ``LocalModelLoader(root)`` finds it.

    Example:
        >>> save_local_model(tmp, "fraud", "1", torch.jit.script(net), pre, spec)  # doctest: +SKIP
    """
    import torch

    folder = Path(root) / name / version
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.save(module, str(folder / _MODULE_FILE))
    meta = {
        "preprocessor": preprocessor.model_dump(mode="json"),
        "feature_spec": feature_spec.model_dump(mode="json"),
        "card": card.model_dump(mode="json") if card else None,
        "metrics": metrics or {},
    }
    (folder / _META_FILE).write_text(json.dumps(meta))
    return folder


@dataclass(frozen=True)
class LocalModelLoader:
    """``ModelLoader`` over ``<root>/<model>/<version>/{model.pt,meta.json}``.

    Example:
        >>> loader = LocalModelLoader("/tmp/models")
        >>> model = loader("fraud", "1")            # doctest: +SKIP
        >>> model.predict_proba([{"amount": 12.0}])  # doctest: +SKIP
        [0.31]
    """

    root: str

    def __call__(self, model: str, version: str) -> LocalModel:
        import torch

        folder = Path(self.root) / model / version
        if not (folder / _MODULE_FILE).is_file():
            known = sorted(p.name for p in (Path(self.root) / model).glob("*")) if (
                Path(self.root) / model).is_dir() else []
            raise NotFoundError(
                f"no local model {model} version {version} under {self.root}; versions there: "
                f"{known}. Write one with save_local_model()."
            )
        # Fractional-CPU replicas: one intra-op thread avoids oversubscribing the node.
        torch.set_num_threads(1)
        meta = json.loads((folder / _META_FILE).read_text())
        return LocalModel(
            name=model,
            version=version,
            module=torch.jit.load(str(folder / _MODULE_FILE)),
            preprocessor=Preprocessor.model_validate(meta["preprocessor"]),
            feature_spec=FeatureSpec.model_validate(meta["feature_spec"]),
            card=ModelCard.model_validate(meta["card"]) if meta.get("card") else None,
            metrics=dict(meta.get("metrics") or {}),
        )


@dataclass(frozen=True)
class InMemoryFeatureLookup:
    """``FeatureLookup`` over a fixed table; an instance is also its own lookup factory.

    Args:
        entity_keys: The app's entity key names, in order.
        rows: Feature rows, each holding the entity key values and feature values.

    Example:
        >>> lookup = InMemoryFeatureLookup(("account_id",),
        ...                                ({"account_id": 1, "credit_limit": 500.0},))
        >>> lookup.get([{"account_id": 1}, {"account_id": 2}])
        [{'credit_limit': 500.0}, {}]
    """

    entity_keys: tuple[str, ...]
    rows: tuple[dict[str, Any], ...]

    def _index(self) -> dict[tuple[Any, ...], dict[str, Any]]:
        index = self.__dict__.get("_idx")
        if index is None:
            index = {
                tuple(r.get(k) for k in self.entity_keys):
                    {n: v for n, v in r.items() if n not in self.entity_keys}
                for r in self.rows
            }
            object.__setattr__(self, "_idx", index)
        return index

    def get(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Features per entity; an unknown entity gets ``{}`` (every feature missing)."""
        index = self._index()
        return [dict(index.get(tuple(e.get(k) for k in self.entity_keys), {})) for e in entities]

    def __call__(self, cfg: PlatformConfig, app: AppConfig) -> InMemoryFeatureLookup:
        return self
