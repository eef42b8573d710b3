"""Contract v1: the pydantic models one plane hands to another.

A plane imports another plane only through that plane's public API or through these models.
Fields are only ever added (with defaults) within v1; anything else is a v2.
"""

from mlplat.contracts.v1._data import DatasetManifest as DatasetManifest
from mlplat.contracts.v1._data import FeatureSpec as FeatureSpec
from mlplat.contracts.v1._data import FeatureViewRef as FeatureViewRef
from mlplat.contracts.v1._deployment import GateResult as GateResult
from mlplat.contracts.v1._deployment import PromotionRequest as PromotionRequest
from mlplat.contracts.v1._deployment import TrafficSplit as TrafficSplit
from mlplat.contracts.v1._governance import AuditEvent as AuditEvent
from mlplat.contracts.v1._governance import CostRecord as CostRecord
from mlplat.contracts.v1._governance import ModelCard as ModelCard
from mlplat.contracts.v1._model import FeatureAttribution as FeatureAttribution
from mlplat.contracts.v1._model import ModelVersionRef as ModelVersionRef
from mlplat.contracts.v1._model import PredictRequest as PredictRequest
from mlplat.contracts.v1._model import PredictResponse as PredictResponse
from mlplat.contracts.v1._model import Preprocessor as Preprocessor
from mlplat.contracts.v1._model import SliceMetrics as SliceMetrics
from mlplat.contracts.v1._monitoring import DriftReport as DriftReport
from mlplat.contracts.v1._monitoring import FeatureDrift as FeatureDrift

__all__ = [
    "AuditEvent",
    "CostRecord",
    "DatasetManifest",
    "DriftReport",
    "FeatureAttribution",
    "FeatureDrift",
    "FeatureSpec",
    "FeatureViewRef",
    "GateResult",
    "ModelCard",
    "ModelVersionRef",
    "PredictRequest",
    "PredictResponse",
    "Preprocessor",
    "PromotionRequest",
    "SliceMetrics",
    "TrafficSplit",
]
