"""KubeRay resources (RayCluster, RayService, RayJob) and their pods, from platform.yaml.

Pods carry the local cluster's pool label and ``pool:<name>`` resource, select their EKS node
group by label, tolerate its taints, and take a whole node less the system's share.
"""

from __future__ import annotations

import ast
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlplat._pyast import parse_source
from mlplat.apps import apps_dir
from mlplat.cluster._local import pool_resource, pool_selector
from mlplat.config import NodePool, PlatformConfig, PoolName
from mlplat.errors import UserError

PLATFORM_K8S_NAMESPACE = "mlplat"
"""Kubernetes namespace of the shared RayCluster, the governance webhook and monitoring."""
RAY_CLUSTER_NAME = "mlplat"
ROLE_LABEL = "role"
"""Second node label (``role=training``) next to ``pool=<name>``: what EKS node groups are named by."""
NODE_GROUPS: dict[PoolName, tuple[str, str]] = {
    # pool → (EKS node group name, role label). Naming only; sizes come from platform.yaml.
    "training-spot": ("training", "training"),
    "serving-ondemand": ("serving", "serving"),
    "cpu": ("cpu-workers", "cpu"),
}
# What a Ray pod may request of its node: the kubelet, system reserve and DaemonSets (CNI,
# kube-proxy, device plugin) need the rest. Node-shape overhead, not platform policy.
SYSTEM_RESERVED_CPUS = 2
POD_MEMORY_FRACTION = 0.9
# AWS gives a spot instance a two-minute interruption notice. The pod's grace period fits inside
# it, and the preStop drain tells Ray (→ ray.train.get_preemption_info) the node goes away
# before the deadline so Train checkpoints and reschedules.
SPOT_NOTICE_S = 120
SPOT_GRACE_S = SPOT_NOTICE_S - 10
SPOT_DRAIN_DEADLINE_S = SPOT_GRACE_S - 20
# Jobs whose heavy work runs on the app's training pool; every other job runs on the cpu pool.
TRAINING_JOBS = frozenset({"train", "sweep"})
SECRETS_NAME = "mlplat-secrets"
SERVE_PORT = 8000
INGRESS_RETRY_TRIES = 3
"""Sends of one data-route request at most (the first included), by the NGINX ingress in front
of Serve: locally (``mlplat.deployment.ingress_up``) and on EKS (the rendered Ingresses)."""
INGRESS_REPLAYED_ON = "error timeout http_500 http_502 non_idempotent"
"""NGINX ``proxy_next_upstream`` of data routes. Serve's proxy answers 500 for a request in
flight at a replica that died; the router answers 500 itself only for a bug (bad input is a 4xx,
a failing store a 503), so a 500 there means the replica went away and the request can go again. ``non_idempotent``: predict and chat are POSTs
that change nothing. 503 (Serve's back-pressure) and 504 are not replayed. Admin routes are
never replayed."""
INGRESS_READ_TIMEOUT_S = 300
"""How long the ingress waits between two reads from Serve (a slow LLM generation included)."""
INGRESS_CLASS = "nginx"
SERVE_BUILDER = "mlplat.deployment.serve_app:build"
"""Fallback Serve import path when an app ships no serve_config.yaml (args: ``{"app": name}``)."""


@dataclass(frozen=True)
class Taint:
    """One ``pools.<pool>.taints`` entry, as a pod toleration or a Terraform node-group taint."""

    key: str
    value: str
    effect: str

    def toleration(self) -> dict[str, str]:
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}

    def terraform(self) -> dict[str, str]:
        effect = re.sub(r"(?<!^)(?=[A-Z])", "_", self.effect).upper()  # NoSchedule → NO_SCHEDULE
        return {"key": self.key, "value": self.value, "effect": effect}


class _View(BaseModel):
    # Only what the manifests need; each app kind's own model (mlplat.apps.AppConfig,
    # mlplat.llm's) validates the rest, so a new kind of app renders without changes here.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _ServingView(_View):
    pool: PoolName = "serving-ondemand"
    route_prefix: str = Field(pattern=r"^/")
    num_replicas: int = Field(1, ge=1)
    num_cpus_per_replica: float = Field(gt=0)


class _TrainingView(_View):
    pool: PoolName = "training-spot"
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)


class AppView(_View):
    """The deployable view of ``apps/<name>/app.yaml``, whatever the app's kind."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    team: str
    kind: str = "tabular"
    serving: _ServingView
    training: _TrainingView | None = None
    path: Path


def load_app_view(cfg: PlatformConfig, name: str) -> AppView:
    """Read the fields the manifests need from an app.yaml; UserError naming file and key."""
    path = apps_dir(cfg) / name / "app.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        view = AppView.model_validate({**raw, "path": path.parent})
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"{path}: cannot render it: {problems}") from exc
    cfg.team(view.team)
    return view


@dataclass
class RenderContext:
    """Everything one render reads: config, repository, profile, Ray pin, image, apps."""

    cfg: PlatformConfig
    repo: Path
    profile: str
    ray_version: str
    python_tag: str
    image_repository: str
    apps: list[AppView] = field(default_factory=list)


def team_namespace(team: str) -> str:
    """Kubernetes namespace of a team's RayJobs and RayServices. Example: ``team-risk``."""
    return f"team-{team}"


def parse_taint(pool: str, spec: str) -> Taint:
    """``key=value:Effect`` from ``pools.<pool>.taints`` → Taint, or a UserError naming it."""
    match = re.fullmatch(r"([\w./-]+)=([\w.-]*):(NoSchedule|PreferNoSchedule|NoExecute)", spec)
    if match is None:
        raise UserError(
            f"pools.{pool}.taints: '{spec}' is not a Kubernetes taint; write key=value:Effect "
            "with Effect one of NoSchedule, PreferNoSchedule, NoExecute."
        )
    return Taint(*match.groups())


def ray_pin(repo: Path) -> tuple[str, str]:
    """(Ray version, image Python tag) from pyproject.toml, e.g. ``("2.58.0", "py311")``."""
    path = repo / "pyproject.toml"
    project = tomllib.loads(path.read_text())["project"]
    ray = [d for d in project["dependencies"] if re.match(r"ray(\[|=)", d)]
    pin = re.search(r"==\s*([\w.]+)", ray[0]) if ray else None
    py = re.search(r">=\s*3\.(\d+)", project.get("requires-python", ""))
    if pin is None or py is None:
        raise UserError(f"{path}: needs `ray[...]==X.Y.Z` and requires-python '>=3.N' to pick the image.")
    return pin.group(1), f"py3{py.group(1)}"


def node_labels(pool: PoolName) -> dict[str, str]:
    """Kubernetes node labels of a pool's nodes (also its pods' nodeSelector)."""
    return {**pool_selector(pool), ROLE_LABEL: NODE_GROUPS[pool][1]}


def pod_size(pool: NodePool) -> tuple[int, int]:
    """(CPUs, GiB) one Ray pod takes: a whole node less the system's share."""
    return (max(pool.cpus_per_node - SYSTEM_RESERVED_CPUS, 1),
            int(pool.memory_gib_per_node * POD_MEMORY_FRACTION))


def meta(name: str, namespace: str | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/part-of": "mlplat", **labels}}
    if namespace:
        meta["namespace"] = namespace
    return meta


# --------------------------------------------------------------------------- pods


def image_for(ctx: RenderContext, pool: NodePool) -> str:
    suffix = "-gpu" if pool.gpus_per_node else ""
    return f"{ctx.image_repository}:{ctx.ray_version}-{ctx.python_tag}{suffix}"


def pod_env(ctx: RenderContext) -> list[dict[str, Any]]:
    sec = ctx.cfg.security
    # Every person's token variable: the platform checks tokens, so it needs them all.
    names = sorted({sec.webhook_secret_env, sec.audit_signing_key_env}
                   | {p.token_env for p in sec.people.values()}
                   | ({a.password_env} if (a := ctx.cfg.profiles[ctx.profile].audit).type == "postgres"
                      else set()))
    return [{"name": "MLPLAT_PROFILE", "value": ctx.profile}] + [
        {"name": n, "valueFrom": {"secretKeyRef": {"name": SECRETS_NAME, "key": n, "optional": True}}}
        for n in names
    ]


def _pod(ctx: RenderContext, pool_name: PoolName, priority: str, *, head: bool) -> dict[str, Any]:
    pool = ctx.cfg.pools[pool_name]
    cpus, mem = pod_size(pool)
    limits = {"cpu": str(cpus), "memory": f"{mem}Gi"}
    if pool.gpus_per_node:
        limits["nvidia.com/gpu"] = str(pool.gpus_per_node)
    container: dict[str, Any] = {
        "name": "ray-head" if head else "ray-worker",
        "image": image_for(ctx, pool),
        "env": pod_env(ctx),
        "resources": {"limits": limits, "requests": dict(limits)},
    }
    if head:
        container["ports"] = [{"containerPort": p, "name": n} for n, p in
                              [("gcs", 6379), ("dashboard", 8265), ("client", 10001), ("serve", SERVE_PORT)]]
    spec: dict[str, Any] = {
        "containers": [container],
        "nodeSelector": node_labels(pool_name),
        "priorityClassName": priority,
    }
    taints = [parse_taint(pool_name, t) for t in pool.taints]
    if taints:
        spec["tolerations"] = [t.toleration() for t in taints]
    if pool.capacity == "spot":
        container["lifecycle"] = {"preStop": {"exec": {"command": [
            "/bin/sh", "-c",
            "ray drain-node --reason DRAIN_NODE_REASON_PREEMPTION --reason-message "
            f"spot-interruption --deadline-remaining-seconds {SPOT_DRAIN_DEADLINE_S} || true; "
            f"sleep {SPOT_DRAIN_DEADLINE_S}",
        ]}}}
        spec["terminationGracePeriodSeconds"] = SPOT_GRACE_S
    return {"metadata": {"labels": {"mlplat.io/pool": pool_name}}, "spec": spec}


def _group_labels_resources(ctx: RenderContext, pool_name: PoolName) -> dict[str, Any]:
    cpus, _ = pod_size(ctx.cfg.pools[pool_name])
    # One unit of pool:<name> per logical CPU, exactly like `mlplat cluster up`'s nodes.
    return {"labels": pool_selector(pool_name), "resources": {pool_resource(pool_name): str(cpus)}}


def _head(ctx: RenderContext, priority: str) -> dict[str, Any]:
    head_pool = ctx.cfg.local_cluster.head_pool
    return {"rayStartParams": {"dashboard-host": "0.0.0.0"},
            "template": _pod(ctx, head_pool, priority, head=True),
            **_group_labels_resources(ctx, head_pool)}


def _worker_group(ctx: RenderContext, pool_name: PoolName, priority: str, lo: int, hi: int) -> dict[str, Any]:
    return {"groupName": pool_name, "minReplicas": lo, "maxReplicas": hi, "replicas": lo,
            "rayStartParams": {}, "template": _pod(ctx, pool_name, priority, head=False),
            **_group_labels_resources(ctx, pool_name)}


def _autoscaling() -> dict[str, Any]:
    return {"enableInTreeAutoscaling": True,
            "autoscalerOptions": {"version": "v2", "upscalingMode": "Default",
                                  "idleTimeoutSeconds": 60}}


def _gcs_ft(ctx: RenderContext) -> dict[str, Any]:
    store = ctx.cfg.profiles[ctx.profile].online_store
    if store.type != "redis":
        raise UserError(
            f"profiles.{ctx.profile}.online_store is '{store.type}'; GCS fault tolerance of the "
            "KubeRay clusters uses that Redis. Set it to {type: redis, connection_string: host:port}."
        )
    return {"redisAddress": f"redis://{store.connection_string.split(',')[0]}"}


# --------------------------------------------------------------------------- resources


def serving_priority(cfg: PlatformConfig) -> str:
    """The PriorityClass of serving pods: the highest-valued class that may preempt."""
    classes = cfg.scheduling.priority_classes
    preempting = [n for n, pc in classes.items() if pc.preempts]
    if not preempting:
        raise UserError("scheduling.priority_classes: no class has preempts: true; serving pods "
                        "need one (e.g. serving-critical) so training can never starve them.")
    return max(preempting, key=lambda n: classes[n].value)


def raycluster(ctx: RenderContext) -> dict[str, Any]:
    cfg = ctx.cfg
    top = serving_priority(cfg)
    default = cfg.scheduling.default_priority
    groups = []
    for name, pool in cfg.pools.items():
        # The head is one node of its pool: the group holds the rest.
        head = name == cfg.local_cluster.head_pool
        lo, hi = (max(pool.min_nodes - 1, 0), max(pool.max_nodes - 1, 0)) if head else (
            pool.min_nodes, pool.max_nodes)
        prio = top if name == "serving-ondemand" else default
        groups.append(_worker_group(ctx, name, prio, lo, hi))
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": meta(RAY_CLUSTER_NAME, PLATFORM_K8S_NAMESPACE),
            "spec": {"rayVersion": ctx.ray_version, **_autoscaling(),
                     "gcsFaultToleranceOptions": _gcs_ft(ctx),
                     "headGroupSpec": _head(ctx, top), "workerGroupSpecs": groups}}


def serve_config(ctx: RenderContext, app: AppView) -> dict[str, Any]:
    """The app's Serve config for ``serveConfigV2``.

    The ``applications`` of the app's serve_config.yaml when it has one (a full Serve config or
    a single application), else one built from app.yaml like ``mlplat deploy`` builds it. The
    cluster-level options are the Kubernetes ones: a proxy on every node on 0.0.0.0:8000, the
    port of the ``<name>-serve-svc`` Service KubeRay creates (a local serve_config.yaml binds
    127.0.0.1, which no Service could reach).
    """
    path = app.path / "serve_config.yaml"
    if path.is_file():
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a Serve config mapping, got {type(raw).__name__}.")
        applications = raw["applications"] if "applications" in raw else [raw]
    else:
        s = app.serving
        applications = [{
            "name": app.name, "route_prefix": s.route_prefix, "import_path": SERVE_BUILDER,
            "args": {"app": app.name},
            "deployments": [{"name": "router", "num_replicas": s.num_replicas,
                             "ray_actor_options": {"num_cpus": s.num_cpus_per_replica,
                                                   "label_selector": pool_selector(s.pool)}}],
        }]
    return {"proxy_location": "EveryNode", "http_options": {"host": "0.0.0.0", "port": SERVE_PORT},
            "applications": applications}


def ingresses(ctx: RenderContext, app: AppView) -> list[dict[str, Any]]:
    """The app's two Ingresses on the ingress-nginx controller (terraform installs it), to the
    ``<app>-serve-svc`` Service KubeRay creates: data routes replayed as the local ingress does
    (``INGRESS_REPLAYED_ON``), admin routes never."""
    prefix = app.serving.route_prefix.rstrip("/")
    annotation = "nginx.ingress.kubernetes.io/"
    common = {f"{annotation}proxy-buffering": "off",
              f"{annotation}proxy-read-timeout": str(INGRESS_READ_TIMEOUT_S),
              f"{annotation}proxy-body-size": str(ctx.cfg.requests.max_body_bytes)}
    data = {f"{annotation}proxy-next-upstream": INGRESS_REPLAYED_ON,
            f"{annotation}proxy-next-upstream-tries": str(INGRESS_RETRY_TRIES)}
    admin = {f"{annotation}proxy-next-upstream": "off"}
    out = []
    for suffix, path, extra in (("", prefix or "/", data),
                                ("-admin", f"{prefix}/admin", admin)):
        metadata = meta(f"{app.name}{suffix}", team_namespace(app.team),
                        **{"mlplat.io/team": app.team, "mlplat.io/app": app.name})
        metadata["annotations"] = {**common, **extra}
        backend = {"service": {"name": f"{app.name}-serve-svc", "port": {"number": SERVE_PORT}}}
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata,
                    "spec": {"ingressClassName": INGRESS_CLASS, "rules": [{"http": {"paths": [
                        {"path": path, "pathType": "Prefix", "backend": backend}]}}]}})
    return out


def rayservice(ctx: RenderContext, app: AppView) -> dict[str, Any]:
    cfg = ctx.cfg
    top = serving_priority(cfg)
    pool = cfg.pools[app.serving.pool]
    cpus, _ = pod_size(pool)
    need = math.ceil(app.serving.num_replicas * app.serving.num_cpus_per_replica / cpus)
    labels = {"mlplat.io/team": app.team, "mlplat.io/app": app.name}
    return {"apiVersion": "ray.io/v1", "kind": "RayService",
            "metadata": meta(app.name, team_namespace(app.team), **labels),
            "spec": {
                "serveConfigV2": yaml.safe_dump(serve_config(ctx, app), sort_keys=True),
                "rayClusterConfig": {
                    "rayVersion": ctx.ray_version, **_autoscaling(),
                    "gcsFaultToleranceOptions": _gcs_ft(ctx),
                    "headGroupSpec": _head(ctx, top),
                    "workerGroupSpecs": [_worker_group(ctx, app.serving.pool, top,
                                                       min(need, pool.max_nodes), pool.max_nodes)],
                }}}


@dataclass(frozen=True)
class JobEntrypoint:
    """A ``jobs/<name>.py`` entrypoint: its required flags and its ``--app`` flag, if any.

    A job with ``--app`` is rendered once per app it applies to: the app its ``--app`` default
    names, else every app with a ``training`` section. Other jobs are platform jobs.
    """

    name: str
    required: tuple[str, ...]
    takes_app: bool = False
    app_default: str | None = None

    @property
    def per_app(self) -> bool:
        return self.takes_app

    def applies_to(self, app: AppView) -> bool:
        return app.name == self.app_default if self.app_default else app.training is not None


def _flag_calls(tree: ast.AST) -> list[tuple[str, dict[str, Any]]]:
    calls = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
                and node.args and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).startswith("--")):
            kwargs = {k.arg: k.value.value for k in node.keywords
                      if k.arg and isinstance(k.value, ast.Constant)}
            calls.append((str(node.args[0].value), kwargs))
    return calls


def job_entrypoints(repo: Path) -> list[JobEntrypoint]:
    """Every ``jobs/*.py``, read from its argparse calls (never imported)."""
    out = []
    for path in sorted((repo / "jobs").glob("*.py")):
        if path.name.startswith("_"):
            continue
        calls = _flag_calls(parse_source(path.read_text(), str(path)))
        required = tuple(flag for flag, kw in calls if kw.get("required") is True and flag != "--app")
        app = [kw for flag, kw in calls if flag == "--app"]
        default = app[0].get("default") if app else None
        out.append(JobEntrypoint(path.stem, required, bool(app),
                                 str(default) if default else None))
    return out


def rayjob(ctx: RenderContext, job: JobEntrypoint, app: AppView | None) -> dict[str, Any]:
    cfg = ctx.cfg
    args = [f"--app {app.name}"] if app else []
    args += [f"{flag} ${{{flag.lstrip('-').replace('-', '_').upper()}}}" for flag in job.required]
    entrypoint = " ".join([f"python jobs/{job.name}.py", *args])
    runtime_env = yaml.safe_dump({"env_vars": {"MLPLAT_PROFILE": ctx.profile}}, sort_keys=True)
    spec: dict[str, Any] = {"entrypoint": entrypoint, "runtimeEnvYAML": runtime_env}
    if app is None:
        # Platform jobs talk to the platform actors: they run in the shared cluster.
        return {"apiVersion": "ray.io/v1", "kind": "RayJob",
                "metadata": meta(f"platform-{job.name.replace('_', '-')}", PLATFORM_K8S_NAMESPACE),
                "spec": {**spec, "clusterSelector": {"ray.io/cluster": RAY_CLUSTER_NAME}}}
    training = app.training if job.name in TRAINING_JOBS else None
    pool: PoolName = training.pool if training else "cpu"
    cpus = (training.num_workers * training.cpus_per_worker if training
            else pod_size(cfg.pools[pool])[0])
    prio = cfg.scheduling.default_priority
    labels = {"mlplat.io/team": app.team, "mlplat.io/app": app.name}
    groups = [_worker_group(ctx, pool, prio, 0, cfg.pools[pool].max_nodes)]
    return {"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": meta(f"{app.name}-{job.name.replace('_', '-')}", team_namespace(app.team),
                              **labels),
            "spec": {**spec,
                     # The cost meter's submission metadata, as `mlplat jobs submit` sets it.
                     "metadata": {"team": app.team, "model": app.name, "pool": pool,
                                  "cpus": f"{cpus:g}"},
                     "shutdownAfterJobFinishes": True, "ttlSecondsAfterFinished": 600,
                     "rayClusterSpec": {"rayVersion": ctx.ray_version, **_autoscaling(),
                                        "headGroupSpec": _head(ctx, prio),
                                        "workerGroupSpecs": groups}}}
