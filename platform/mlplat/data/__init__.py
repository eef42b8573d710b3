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
    >>> data.skew_report(cfg, "fraud").rows_with_mismatch     # served vs offline, as of request
    0
    >>> data.check_features(cfg, "fraud", "3").missing         # rollback / promotion gate
    []
"""

from mlplat.data._availability import FeatureAvailability as FeatureAvailability
from mlplat.data._availability import check_feature_spec as check_feature_spec
from mlplat.data._availability import check_features as check_features
from mlplat.data._dataset import build_dataset as build_dataset
from mlplat.data._dataset import latest_dataset as latest_dataset
from mlplat.data._dataset import read_manifest as read_manifest
from mlplat.data._feast import apply_features as apply_features
from mlplat.data._feast import check_views as check_views
from mlplat.data._feast import feast_env as feast_env
from mlplat.data._feast import feature_store as feature_store
from mlplat.data._feast import load_definitions as load_definitions
from mlplat.data._feast import materialize as materialize
from mlplat.data._feast import raw_dir as raw_dir
from mlplat.data._featurelog import FeatureLogger as FeatureLogger
from mlplat.data._featurelog import log_uri as feature_log_uri
from mlplat.data._online import OnlineFeatureClient as OnlineFeatureClient
from mlplat.data._serving import ServingFeatureClient as ServingFeatureClient
from mlplat.data._serving import serving_feature_client as serving_feature_client
from mlplat.data._skew import FeatureSkew as FeatureSkew
from mlplat.data._skew import SkewExample as SkewExample
from mlplat.data._skew import SkewReport as SkewReport
from mlplat.data._skew import skew_report as skew_report

__all__ = [
    "FeatureAvailability",
    "FeatureLogger",
    "FeatureSkew",
    "OnlineFeatureClient",
    "ServingFeatureClient",
    "SkewExample",
    "SkewReport",
    "apply_features",
    "build_dataset",
    "check_feature_spec",
    "check_features",
    "check_views",
    "feast_env",
    "feature_log_uri",
    "feature_store",
    "latest_dataset",
    "load_definitions",
    "materialize",
    "raw_dir",
    "read_manifest",
    "serving_feature_client",
    "skew_report",
]
