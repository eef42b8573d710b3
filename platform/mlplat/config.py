"""platform.yaml: the single source of truth for teams, quotas, node pools, prices, SLOs and storage.

Everything else in mlplat reads these models; nothing repeats their values as literals.

Example:
    >>> from mlplat.config import load_config
    >>> cfg = load_config("platform.yaml")
    >>> cfg.pools["training-spot"].price_usd_per_hour
    11.57
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlplat.errors import NotFoundError, UserError, did_you_mean

PoolName = Literal["training-spot", "serving-ondemand", "cpu"]
POOL_LABEL = "pool"
"""Node label key (and custom-resource prefix ``pool:<name>``) that marks a node's pool."""


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, values are frozen after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- teams and pools


class PoolQuota(StrictModel):
    cpu: float = Field(ge=0, description="Logical CPUs the team may hold at once in this pool.")
    gpu: int = Field(0, ge=0, description="GPUs the team may hold at once in this pool.")
    memory_gib: float = Field(ge=0, description="Memory the team may hold at once in this pool.")
    max_concurrent_trials: int = Field(
        0, ge=0, description="Ray Tune trials the team may run at once in this pool."
    )


class Team(StrictModel):
    owners: list[str] = Field(min_length=1, description="People accountable for the team's models.")
    cost_center: str = Field(description="Where the team's spend is booked.")
    quotas: dict[PoolName, PoolQuota] = Field(description="Per-pool quotas.")
    budget_usd_per_week: float = Field(gt=0, description="Spend above this raises a cost alert.")


class LocalEmulation(StrictModel):
    """How a pool is emulated on one machine by `mlplat cluster up` and the test cluster."""

    nodes: int = Field(ge=0, description="Ray nodes started for this pool.")
    num_cpus: float = Field(gt=0, description="Logical CPUs each emulated node advertises.")
    object_store_mib: int = Field(256, ge=80, description="Object store size of each node.")


class LocalCluster(StrictModel):
    """Ports of the local cluster `mlplat cluster up` starts (KubeRay sets its own)."""

    gcs_port: int = Field(gt=0, lt=65536)
    dashboard_port: int = Field(gt=0, lt=65536)
    serve_http_port: int = Field(gt=0, lt=65536)
    ingress_port: int = Field(
        8080, gt=0, lt=65536,
        description="The local NGINX ingress in front of Serve (replays a request a dying "
        "replica dropped); `mlplat cluster up` starts it.")
    head_pool: PoolName = Field("cpu", description="The pool the head node belongs to.")


class NodePool(StrictModel):
    instance_type: str = Field(description="EC2 instance type, e.g. p4d.24xlarge.")
    capacity: Literal["spot", "on-demand"]
    price_usd_per_hour: float = Field(gt=0, description="Price of one node for one hour.")
    cpus_per_node: int = Field(gt=0)
    gpus_per_node: int = Field(0, ge=0)
    gpu_type: str | None = None
    memory_gib_per_node: float = Field(gt=0)
    min_nodes: int = Field(0, ge=0)
    max_nodes: int = Field(ge=1)
    taints: list[str] = Field(default_factory=list, description="Kubernetes taints key=value:Effect.")
    local: LocalEmulation

    @property
    def price_usd_per_cpu_second(self) -> float:
        """Price of one logical CPU for one second (nodes are billed whole, shared by CPU)."""
        return self.price_usd_per_hour / self.cpus_per_node / 3600.0

    @model_validator(mode="after")
    def _bounds(self) -> NodePool:
        if self.min_nodes > self.max_nodes:
            raise ValueError(f"min_nodes ({self.min_nodes}) > max_nodes ({self.max_nodes})")
        return self


# --------------------------------------------------------------------------- SLOs


class DataSLO(StrictModel):
    online_feature_p99_ms: float = Field(gt=0)
    dataset_ready_s: float = Field(gt=0)


class ExperimentSLO(StrictModel):
    metadata_write_success_pct: float = Field(gt=0, le=100)
    artifact_retrieval_s: float = Field(gt=0)


class TrainingSLO(StrictModel):
    launch_s: float = Field(gt=0)
    preempted_resume_s: float = Field(gt=0)


class DeploymentSLO(StrictModel):
    deploy_after_approval_s: float = Field(gt=0)
    rollback_after_breach_s: float = Field(gt=0)


class MonitoringSLO(StrictModel):
    drift_report_after_window_s: float = Field(gt=0)
    critical_alert_s: float = Field(gt=0)


class GovernanceSLO(StrictModel):
    audit_retention_days: int = Field(gt=0)


class LLMServingSLO(StrictModel):
    """Per-version SLOs of LLM apps, judged over ``promotion_timing.evaluation_window_s``."""

    ttft_p99_ms: float = Field(gt=0, description="p99 time to first token (router-measured).")
    inter_token_p99_ms: float = Field(gt=0, description="p99 gap between streamed tokens.")
    max_error_rate: float = Field(ge=0, le=1, description="Share of failed generations.")
    min_samples: int = Field(
        ge=1, description="Fewest generations in a window before its p99s are judged.")
    min_shadow_similarity: float = Field(
        0.5, ge=0, le=1, description="Text gate of a promotion's shadow stage: the shadow's "
        "answers must be at least this similar to production's (mean difflib word ratio).")


class SLOs(StrictModel):
    data: DataSLO
    experiment: ExperimentSLO
    training: TrainingSLO
    deployment: DeploymentSLO
    monitoring: MonitoringSLO
    governance: GovernanceSLO
    llm: LLMServingSLO


# --------------------------------------------------------------------------- storage backends


class SqliteOnlineStore(StrictModel):
    type: Literal["sqlite"]
    path: str = Field(description="SQLite file, relative to the profile root.")


class RedisOnlineStore(StrictModel):
    type: Literal["redis"]
    connection_string: str = Field(description="host:port[,db=N] as Feast expects it.")


OnlineStore = Annotated[SqliteOnlineStore | RedisOnlineStore, Field(discriminator="type")]


class SqliteTracking(StrictModel):
    type: Literal["sqlite"]
    path: str = Field(description="MLflow SQLite store, relative to the profile root.")


class MlflowServerTracking(StrictModel):
    type: Literal["mlflow_server"]
    uri: str = Field(description="http(s) URI of `mlflow server`.")


Tracking = Annotated[SqliteTracking | MlflowServerTracking, Field(discriminator="type")]


class SqliteAudit(StrictModel):
    type: Literal["sqlite"]
    path: str = Field(description="SQLite file, relative to the profile root.")
    checkpoint_every: int = Field(
        1000, ge=1, description="Write a signed checkpoint of the head every this many records."
    )


class PostgresAudit(StrictModel):
    type: Literal["postgres"]
    dsn: str = Field(description="libpq DSN without password.")
    password_env: str = Field(description="Environment variable holding the password.")
    checkpoint_every: int = Field(
        1000, ge=1, description="Write a signed checkpoint of the head every this many records."
    )


AuditStore = Annotated[SqliteAudit | PostgresAudit, Field(discriminator="type")]


class PromotionTiming(StrictModel):
    shadow_min_s: float = Field(ge=0, description="Mandatory minimum time in shadow.")
    canary_step_s: float = Field(ge=0, description="Time spent at each canary weight.")
    evaluation_window_s: float = Field(gt=0, description="Live-SLO window for gates and rollback.")


class MonitoringTiming(StrictModel):
    drift_window_s: float = Field(gt=0, description="Tumbling window of served traffic per drift report.")
    retrain_cooldown_s: float = Field(ge=0, description="One drift episode → at most one retrain job.")
    cost_sample_s: float = Field(gt=0, description="How often the cost meter samples Ray's state API.")
    drift_gate_lookback_s: float = Field(
        default=7 * 86_400, gt=0,
        description="Served traffic the promotion drift gate compares a candidate's training "
                    "sample with (the issue's 7 days in prod).")


class Profile(StrictModel):
    root: str = Field(description="Local folder (relative to platform.yaml) or s3:// URI.")
    checkpoints: str | None = Field(
        None,
        description="Where Ray Train writes checkpoints: local folder (relative to platform.yaml)"
        " or s3:// URI. Default <root>/checkpoints; set it to keep spot-training checkpoints in"
        " a bucket while tracking stays local.",
    )
    online_store: OnlineStore
    tracking: Tracking
    audit: AuditStore
    promotion_timing: PromotionTiming
    monitoring_timing: MonitoringTiming


# --------------------------------------------------------------------------- promotion policy


class PromotionPolicy(StrictModel):
    max_reference_drift: float = Field(ge=0, le=1, description="Gate: drift share ≤ this.")
    canary_steps_pct: list[int] = Field(min_length=1, description="Canary weights, ending at 100.")
    rollback_max_error_rate: float = Field(gt=0, le=1)
    rollback_max_p99_ms: float = Field(gt=0)
    min_stage_requests: int = Field(
        10, ge=0,
        description="A rollout stage passes only once the candidate has served this many "
        "requests in it (live or shadow); with less traffic the stage waits. 0: no minimum.",
    )

    @field_validator("canary_steps_pct")
    @classmethod
    def _ascending_to_100(cls, v: list[int]) -> list[int]:
        if v != sorted(v) or v[-1] != 100 or v[0] <= 0:
            raise ValueError(f"must be ascending, > 0 and end at 100, got {v}")
        return v


class MonitoringPolicy(StrictModel):
    sample_rate: float = Field(gt=0, le=1, description="Share of served requests sent to the drift monitor.")
    drift_share_warning: float = Field(gt=0, le=1, description="Share of drifted features → warning.")
    drift_share_critical: float = Field(gt=0, le=1, description="Share of drifted features → critical (retrain).")
    psi_threshold: float = Field(gt=0, description="A numeric feature drifts when PSI exceeds this.")
    p_value: float = Field(gt=0, lt=1, description="KS / chi-square drift test significance.")
    distance_threshold: float = Field(
        0.1, gt=0, description="Wasserstein (normed) / Jensen-Shannon distance at which a feature drifts."
    )
    drift_metrics_port: int = Field(
        9464, ge=0, lt=65536, description="Prometheus /metrics port of the drift monitor (0 = off)."
    )
    cost_metrics_port: int = Field(
        9465, ge=0, lt=65536, description="Prometheus /metrics port of the cost meter (0 = off)."
    )
    alertmanager_url: str | None = Field(
        None, description="Alertmanager base URL for direct alerts; $MLPLAT_ALERTMANAGER_URL overrides."
    )
    decision_threshold: float = Field(
        0.5, ge=0, le=1, description="Score at or above which a prediction is acted on (KPI)."
    )
    review_cost_usd: float = Field(
        0, ge=0, description="Cost of one manual review of a legitimate case (false-positive KPI)."
    )
    min_window_rows: int = Field(
        500, ge=1, description="Fewest served rows a drift window is judged on; a due window with "
        "fewer stays open. Distance tests on ~100 rows flag noise (normed Wasserstein ~0.1).",
    )


class DataPolicy(StrictModel):
    feature_retention_days: int = Field(gt=0, description="Offline feature data kept at least this long.")
    feature_log_sample_rate: float = Field(
        0.1, ge=0, le=1, description="Share of served feature vectors logged for skew detection."
    )


class PriorityClass(StrictModel):
    value: int = Field(description="Kubernetes PriorityClass value; higher runs first.")
    preempts: bool = Field(description="May this class preempt lower ones?")
    description: str


class Scheduling(StrictModel):
    priority_classes: dict[str, PriorityClass] = Field(min_length=1)
    default_priority: str


Role = Literal["viewer", "deployer", "incident-commander", "platform-admin"]
"""What a person may do: ``viewer`` reads; ``deployer`` promotes, sets traffic, rolls back;
``incident-commander`` may also override a gate or the shadow minimum; ``platform-admin``
may do everything."""


class Person(StrictModel):
    """Someone (a person or a service such as CI) who acts on the platform with their own token.

    The token itself lives in the environment variable ``token_env`` where the platform runs
    (a Kubernetes Secret in production; in the local profile it is generated once into
    ``<root>/secrets/token-<name>``). Whoever's token a call carries is who the audit log names.
    """

    token_env: str = Field(description="Environment variable holding this person's API token.")
    roles: list[Role] = Field(min_length=1, description="What this person may do.")


class RequestLimits(StrictModel):
    """What any HTTP body may be, on every route (predict, OpenAI, admin, webhook) and at the
    ingress: one limit, enforced by NGINX (``client_max_body_size``) and again by each app."""

    max_body_bytes: int = Field(
        default=1_048_576, ge=1024,
        description="Largest request body in bytes; a larger one is a 413 before it is parsed.")
    max_json_depth: int = Field(
        default=32, ge=2, le=500, description="Deepest nesting of objects/arrays a JSON body may have.")


class Security(StrictModel):
    """Names of the environment variables holding secrets — never the secrets themselves.

    In the local profile a missing secret is generated once into ``<root>/secrets/`` (mode 0600);
    in any other profile it must be set (see mlplat.secrets).
    """

    webhook_secret_env: str = Field(description="HMAC secret of the MLflow registry webhook.")
    audit_signing_key_env: str = Field(description="HMAC key signing audit-log head checkpoints.")
    token_env: str = Field(
        "MLPLAT_TOKEN", description="Environment variable the `mlplat` CLI reads the caller's "
        "own token from (sent with every privileged command; the platform resolves who it is).")
    people: dict[str, Person] = Field(
        min_length=1, description="Everyone who may act, by name: identity comes from the token "
        "used, never from a free-text flag.")

    @model_validator(mode="after")
    def _distinct_token_vars(self) -> Security:
        seen: dict[str, str] = {}
        for name, person in self.people.items():
            if person.token_env in seen:
                raise ValueError(f"security.people.{name}.token_env '{person.token_env}' is also "
                                 f"{seen[person.token_env]}'s: give each person their own variable")
            seen[person.token_env] = name
        return self


# --------------------------------------------------------------------------- the whole file


class PlatformConfig(StrictModel):
    version: Literal[1]
    profile: str = Field(description="Active profile; $MLPLAT_PROFILE overrides it.")
    teams: dict[str, Team] = Field(min_length=1)
    pools: dict[PoolName, NodePool]
    slos: SLOs
    profiles: dict[str, Profile] = Field(min_length=1)
    promotion: PromotionPolicy
    monitoring: MonitoringPolicy
    data: DataPolicy
    scheduling: Scheduling
    security: Security
    requests: RequestLimits = Field(default_factory=RequestLimits)
    local_cluster: LocalCluster
    source_path: Path | None = Field(None, exclude=True, description="Where it was loaded from.")

    @model_validator(mode="after")
    def _consistent(self) -> PlatformConfig:
        missing_pools = {"training-spot", "serving-ondemand", "cpu"} - set(self.pools)
        if missing_pools:
            raise ValueError(f"pools must define {sorted(missing_pools)}")
        if self.scheduling.default_priority not in self.scheduling.priority_classes:
            raise ValueError(
                f"scheduling.default_priority '{self.scheduling.default_priority}' is not one of "
                f"scheduling.priority_classes {sorted(self.scheduling.priority_classes)}"
            )
        if self.profile not in self.profiles:
            raise ValueError(
                f"profile '{self.profile}' is not defined under profiles "
                f"({sorted(self.profiles)})"
            )
        return self

    # ---- lookups with actionable errors

    def team(self, name: str) -> Team:
        """Return team ``name`` or raise ``NotFoundError`` naming the known teams."""
        if name not in self.teams:
            raise NotFoundError(
                f"Unknown team '{name}'.{did_you_mean(name, self.teams)} "
                f"Teams are defined in platform.yaml under 'teams': {sorted(self.teams)}."
            )
        return self.teams[name]

    def pool(self, name: str) -> NodePool:
        """Return node pool ``name`` or raise ``NotFoundError``."""
        if name not in self.pools:
            raise NotFoundError(
                f"Unknown node pool '{name}'.{did_you_mean(name, self.pools)} "
                f"Pools: {sorted(self.pools)}."
            )
        return self.pools[name]  # type: ignore[index]

    def active_profile_name(self) -> str:
        """The profile in force: ``$MLPLAT_PROFILE`` if set, else the file's ``profile`` key."""
        name = os.environ.get("MLPLAT_PROFILE", self.profile)
        if name not in self.profiles:
            raise UserError(
                f"MLPLAT_PROFILE='{name}' is not a profile in {self.source_path or 'platform.yaml'}."
                f"{did_you_mean(name, self.profiles)} Profiles: {sorted(self.profiles)}."
            )
        return name

    def active_profile(self) -> Profile:
        return self.profiles[self.active_profile_name()]

    @property
    def base_dir(self) -> Path:
        return self.source_path.parent if self.source_path else Path.cwd()

    def root(self) -> str:
        """Absolute storage root of the active profile (``$MLPLAT_HOME`` overrides it).

        Local roots are resolved against the folder holding platform.yaml, so a job that runs
        from a copied working directory still writes to the same place.
        """
        root = os.environ.get("MLPLAT_HOME") or self.active_profile().root
        if "://" in root:
            return root.rstrip("/")
        path = Path(root)
        if not path.is_absolute():
            path = self.base_dir / path
        return str(path.resolve())

    def checkpoint_root(self) -> str:
        """Where Ray Train writes checkpoints: the active profile's ``checkpoints``, else
        ``<root>/checkpoints``. Local folders resolve against platform.yaml's folder.

        Example:
            >>> load_config().checkpoint_root()
            '/repo/.mlplat/checkpoints'
        """
        target = self.active_profile().checkpoints
        if not target:
            return f"{self.root()}/checkpoints"
        if "://" in target:
            return target.rstrip("/")
        path = Path(target)
        return str((path if path.is_absolute() else self.base_dir / path).resolve())

    def local_path(self, relative: str) -> Path:
        """A path under a local storage root (SQLite files and the like), created on demand."""
        root = self.root()
        if "://" in root:
            raise UserError(
                f"'{relative}' needs a local root but profile '{self.active_profile_name()}' "
                f"has root '{root}'. Use a server-backed store in that profile."
            )
        path = Path(root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def _key_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def load_config(path: str | os.PathLike[str] | None = None) -> PlatformConfig:
    """Load and validate platform.yaml.

    Args:
        path: File to read. Defaults to ``$MLPLAT_CONFIG``, else ``./platform.yaml``.

    Returns:
        The validated, frozen ``PlatformConfig``.

    Raises:
        UserError: the file is missing, is not YAML, or breaks the schema; the message names
            the file, the key path and the reason.

    Example:
        >>> cfg = load_config()
        >>> sorted(cfg.teams)
        ['recommendations', 'risk', 'search']
    """
    resolved = Path(path or os.environ.get("MLPLAT_CONFIG") or "platform.yaml").resolve()
    if not resolved.is_file():
        raise UserError(
            f"Platform config not found: {resolved}. Pass a path, set MLPLAT_CONFIG, "
            "or run from the repository root."
        )
    try:
        raw = yaml.safe_load(resolved.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{resolved}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise UserError(f"{resolved}: expected a mapping at the top level, got {type(raw).__name__}.")
    try:
        return PlatformConfig.model_validate({**raw, "source_path": resolved})
    except ValidationError as exc:
        problems = "; ".join(
            f"{_key_path(err['loc'])}: {err['msg']}"
            + (f" (got {err['input']!r})" if err["type"] != "missing" and not isinstance(err["input"], dict) else "")
            for err in exc.errors()
        )
        raise UserError(f"{resolved}: invalid platform config: {problems}") from exc
