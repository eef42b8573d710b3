"""The data plane: Feast feature definitions, online lookups and point-in-time datasets on Ray Data.

Example:
    >>> from mlplat.config import load_config
    >>> from mlplat import data
    >>> cfg = load_config()
    >>> data.apply_features(cfg, "fraud")
    ['account_profile', 'account_txn_stats']
    >>> manifest = data.build_dataset(cfg, "fraud", ".mlplat/raw/fraud/transactions.parquet")
    >>> data.OnlineFeatureClient(cfg, "fraud").get([{"account_id": 100001}])
    [{'account_age_days': 412, 'credit_limit': 1900.0, ...}]
"""

from mlplat.data._dataset import build_dataset as build_dataset
from mlplat.data._dataset import read_manifest as read_manifest
from mlplat.data._feast import apply_features as apply_features
from mlplat.data._feast import feast_env as feast_env
from mlplat.data._feast import feature_store as feature_store
from mlplat.data._feast import materialize as materialize
from mlplat.data._feast import raw_dir as raw_dir
from mlplat.data._online import OnlineFeatureClient as OnlineFeatureClient

__all__ = [
    "OnlineFeatureClient",
    "apply_features",
    "build_dataset",
    "feast_env",
    "feature_store",
    "materialize",
    "raw_dir",
    "read_manifest",
]
