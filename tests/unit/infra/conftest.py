"""Shared fixtures of the infrastructure-as-code tests: one render, the committed files, schemas."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplat.cluster import Rendered, render_all
from mlplat.config import PlatformConfig, load_config

REPO = Path(__file__).resolve().parents[3]
CLUSTER = REPO / "cluster"
TFVARS = REPO / "terraform" / "environments" / "prod" / "platform.auto.tfvars.json"
KUBERAY_KINDS = {"RayCluster": "rayclusters", "RayJob": "rayjobs", "RayService": "rayservices"}


@pytest.fixture(scope="session")
def cfg() -> PlatformConfig:
    return load_config(REPO / "platform.yaml")


@pytest.fixture(scope="session")
def rendered(cfg: PlatformConfig) -> Rendered:
    return render_all(cfg, REPO)


def load_docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d]


def pod_templates(resources: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod template) for every Ray head and worker group in the manifests."""
    out = []
    for doc in resources:
        spec = doc.get("spec", {})
        cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec") or (
            spec if doc["kind"] == "RayCluster" else None)
        if not cluster:
            continue
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        out.append((f"{where}/head", cluster["headGroupSpec"]["template"]))
        out += [(f"{where}/{g['groupName']}", g["template"]) for g in cluster["workerGroupSpecs"]]
    return out


@pytest.fixture(scope="session")
def committed() -> dict[str, list[dict[str, Any]]]:
    """Every committed manifest under cluster/ (not the monitoring sources), by relative path."""
    return {str(p.relative_to(CLUSTER)): load_docs(p.read_text())
            for p in sorted(CLUSTER.rglob("*.yaml"))
            if p.relative_to(CLUSTER).parts[0] != "monitoring" and p.name != "kustomization.yaml"}


@pytest.fixture(scope="session")
def resources(committed: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [doc for docs in committed.values() for doc in docs]


def _closed(schema: Any) -> Any:
    """The CRD schema with unknown fields forbidden wherever the API server would prune them.

    A structural CRD schema drops unknown fields silently (a typo like ``minReplica`` would
    vanish on apply); ``kubectl apply --validate=strict`` rejects them. Closing every object
    that lists its properties (and does not preserve unknown fields) gives jsonschema the
    same strictness.
    """
    if isinstance(schema, list):
        return [_closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _closed(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _crd_schema(path: Path, cache: Any) -> dict[str, Any]:
    # Parsing 3 MB of CRD YAML takes seconds; the extracted schema is cached as JSON.
    stat = path.stat()
    key = f"mlplat/kuberay-crd/{path.name}-{stat.st_size}-{stat.st_mtime_ns}"
    schema = cache.get(key, None) if cache is not None else None
    if schema is None:
        crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        schema = version["schema"]["openAPIV3Schema"]
        if cache is not None:  # None under `-p no:cacheprovider`
            cache.set(key, schema)
    return dict(schema)


@pytest.fixture(scope="session")
def crd_validators(request: pytest.FixtureRequest
                   ) -> dict[str, Callable[[dict[str, Any]], list[str]]]:
    """kind → function returning the schema errors of a KubeRay resource (ray.io/v1)."""
    import jsonschema

    crd_dir = os.environ.get("KUBERAY_CRD_DIR")
    if not crd_dir:
        pytest.skip("KUBERAY_CRD_DIR is unset: point it at the KubeRay v1.7.0 CRDs "
                    "(../shared/kuberay-crds; .ci/run sets it) to validate cluster/")
    validators = {}
    for kind, plural in KUBERAY_KINDS.items():
        path = Path(crd_dir) / f"ray.io_{plural}.yaml"
        schema = _closed(_crd_schema(path, getattr(request.config, "cache", None)))
        validator = jsonschema.Draft7Validator(schema)

        def errors(doc: dict[str, Any], _v: Any = validator) -> list[str]:
            return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                    for e in _v.iter_errors(doc)]

        validators[kind] = errors
    return validators
