"""Deployment plane: a Ray Serve router per app with weighted canary split and shadow
mirroring, promotion gates and the promotion schedule.

Example:
    >>> from mlplat.deployment import promote, set_traffic, TrafficSplit   # doctest: +SKIP
    >>> promote(cfg, "fraud", "1", token=alice, reason="first release", override=True)
    >>> promote(cfg, "fraud", "2", token=alice, reason="retrain")   # shadow → canary → prod
    >>> set_traffic(cfg, "fraud", TrafficSplit(weights={"1": 75, "2": 25}), token=alice,
    ...             reason="hold the canary at 25 %")
"""

from mlplat.contracts.v1 import GateResult as GateResult
from mlplat.contracts.v1 import TrafficSplit as TrafficSplit
from mlplat.deployment._admin import first_release as first_release
from mlplat.deployment._admin import override as override
from mlplat.deployment._admin import promote as promote
from mlplat.deployment._admin import promotion_status as promotion_status
from mlplat.deployment._admin import rollback as rollback
from mlplat.deployment._admin import set_traffic as set_traffic
from mlplat.deployment._api import current_split as current_split
from mlplat.deployment._api import endpoint_url as endpoint_url
from mlplat.deployment._api import router_stats as router_stats
from mlplat.deployment._api import undeploy as undeploy
from mlplat.deployment._contract import ServingContract as ServingContract
from mlplat.deployment._contract import contract_gate as contract_gate
from mlplat.deployment._contract import load_contract as load_contract
from mlplat.deployment._controller import ControllerPort as ControllerPort
from mlplat.deployment._controller import PromotionController as PromotionController
from mlplat.deployment._controller_actor import ControllerCommands as ControllerCommands
from mlplat.deployment._controller_actor import ServePort as ServePort
from mlplat.deployment._controller_actor import get_controller as get_controller
from mlplat.deployment._controller_actor import post_alert as post_alert
from mlplat.deployment._features import features_gate as features_gate
from mlplat.deployment._features import missing_features as missing_features
from mlplat.deployment._gates import evaluate_gates as evaluate_gates
from mlplat.deployment._gates import gates_passed as gates_passed
from mlplat.deployment._gates import schema_differences as schema_differences
from mlplat.deployment._ingress import Ingress as Ingress
from mlplat.deployment._ingress import ingress_down as ingress_down
from mlplat.deployment._ingress import ingress_up as ingress_up
from mlplat.deployment._ingress import ingress_url as ingress_url
from mlplat.deployment._ingress import render_ingress_conf as render_ingress_conf
from mlplat.deployment._local import InMemoryFeatureLookup as InMemoryFeatureLookup
from mlplat.deployment._local import LocalModel as LocalModel
from mlplat.deployment._local import LocalModelLoader as LocalModelLoader
from mlplat.deployment._local import save_local_model as save_local_model
from mlplat.deployment._promotion import SHADOW_STAGE as SHADOW_STAGE
from mlplat.deployment._promotion import PromotionStep as PromotionStep
from mlplat.deployment._promotion import promotion_plan as promotion_plan
from mlplat.deployment._reconfigure import wait_for_user_config as wait_for_user_config
from mlplat.deployment._router import DriftSampler as DriftSampler
from mlplat.deployment._router import RouterCore as RouterCore
from mlplat.deployment._router import ShadowComparison as ShadowComparison
from mlplat.deployment._routing import InjectedFault as InjectedFault
from mlplat.deployment._routing import SplitRouter as SplitRouter
from mlplat.deployment._routing import split_versions as split_versions
from mlplat.deployment._serve_apps import call_app as call_app
from mlplat.deployment._serve_apps import read_user_config as read_user_config
from mlplat.deployment._serve_apps import start_serve as start_serve
from mlplat.deployment._serve_apps import wait_app_running as wait_app_running
from mlplat.deployment._slo import LATENCY_BUCKETS_MS as LATENCY_BUCKETS_MS
from mlplat.deployment._slo import SloWindows as SloWindows
from mlplat.deployment._slo import VersionCounters as VersionCounters
from mlplat.deployment._slo import WindowStats as WindowStats
from mlplat.deployment._slo import breach as breach
from mlplat.deployment._slo import p99_of as p99_of
from mlplat.deployment._split import SplitPicker as SplitPicker
from mlplat.deployment._split import bucket_of as bucket_of
from mlplat.deployment._split import request_key as request_key
from mlplat.deployment._store import PromotionStore as PromotionStore
from mlplat.deployment._types import ExperimentPlaneLoader as ExperimentPlaneLoader
from mlplat.deployment._types import FeatureLookup as FeatureLookup
from mlplat.deployment._types import FeatureLookupFactory as FeatureLookupFactory
from mlplat.deployment._types import ModelLoader as ModelLoader
from mlplat.deployment._types import RouterTuning as RouterTuning
from mlplat.deployment._types import RouterUserConfig as RouterUserConfig
from mlplat.deployment._types import ServedModel as ServedModel
from mlplat.deployment._types import VersionFault as VersionFault
from mlplat.deployment._validate import RequestError as RequestError
from mlplat.deployment._validate import parse_predict_request as parse_predict_request
from mlplat.deployment._version_apps import ensure_version_apps as ensure_version_apps
from mlplat.deployment._version_apps import prune_version_apps as prune_version_apps
from mlplat.deployment._version_apps import router_app_of as router_app_of
from mlplat.deployment._version_apps import version_app_name as version_app_name
from mlplat.deployment._webhook import sign as sign_webhook
from mlplat.deployment._webhook import verify_mlflow_webhook as verify_mlflow_webhook

__all__ = [
    "LATENCY_BUCKETS_MS",
    "SHADOW_STAGE",
    "ControllerCommands",
    "ControllerPort",
    "DriftSampler",
    "ExperimentPlaneLoader",
    "FeatureLookup",
    "FeatureLookupFactory",
    "GateResult",
    "InMemoryFeatureLookup",
    "Ingress",
    "InjectedFault",
    "LocalModel",
    "LocalModelLoader",
    "ModelLoader",
    "PromotionController",
    "PromotionStep",
    "PromotionStore",
    "RequestError",
    "RouterCore",
    "RouterTuning",
    "RouterUserConfig",
    "ServePort",
    "ServedModel",
    "ServingContract",
    "ShadowComparison",
    "SloWindows",
    "SplitPicker",
    "SplitRouter",
    "TrafficSplit",
    "VersionCounters",
    "VersionFault",
    "WindowStats",
    "breach",
    "bucket_of",
    "call_app",
    "contract_gate",
    "current_split",
    "endpoint_url",
    "ensure_version_apps",
    "evaluate_gates",
    "features_gate",
    "first_release",
    "gates_passed",
    "get_controller",
    "ingress_down",
    "ingress_up",
    "ingress_url",
    "load_contract",
    "missing_features",
    "override",
    "p99_of",
    "parse_predict_request",
    "post_alert",
    "promote",
    "promotion_plan",
    "promotion_status",
    "prune_version_apps",
    "read_user_config",
    "render_ingress_conf",
    "request_key",
    "rollback",
    "router_app_of",
    "router_stats",
    "save_local_model",
    "schema_differences",
    "set_traffic",
    "sign_webhook",
    "split_versions",
    "start_serve",
    "undeploy",
    "verify_mlflow_webhook",
    "version_app_name",
    "wait_app_running",
    "wait_for_user_config",
]
