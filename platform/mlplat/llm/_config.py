"""apps/<llm>/app.yaml: the LLM app's config, validated before any cluster time is spent.

The engine is picked by one key (``engine: transformers | vllm``); each engine has its own
section. Pools, prices and GPU types are never repeated here: they come from platform.yaml
through the ``PlatformConfig`` the app is checked against.

Example:
    >>> from mlplat.config import load_config
    >>> from mlplat.llm import load_llm_app
    >>> app = load_llm_app("llm", load_config())
    >>> app.engine, app.serving.route_prefix
    ('transformers', '/llm')
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from mlplat.config import PlatformConfig, PoolName, StrictModel
from mlplat.errors import NotFoundError, UserError, did_you_mean

LLM_EXTRA_INSTALL = "pip install -e '.[llm]'"
"""The exact command that installs vLLM (the ``llm`` extra); every vLLM error names it."""

ModelName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]*$", max_length=100)]


class LocalSource(StrictModel):
    """Model files (config.json, safetensors, tokenizer.json) in a folder."""

    type: Literal["local"]
    path: str = Field(
        description="Folder; a relative path is under the storage root (.mlplat/ locally)."
    )


class RegistrySource(StrictModel):
    """A model version registered in the experiment plane's MLflow registry (an artifact folder)."""

    type: Literal["registry"]


ModelSource = Annotated[LocalSource | RegistrySource, Field(discriminator="type")]


class LLMModelConfig(StrictModel):
    name: ModelName = Field(description="Model name users send as `model` and the registry uses.")
    version: str = Field("1", pattern=r"^[0-9]+$", description="Version served by default.")
    source: ModelSource = Field(
        LocalSource(type="local", path="llm/models/{name}/{version}"),
        description="Where the weights are; `{name}`/`{version}` are filled in.",
    )


class LLMServingConfig(StrictModel):
    pool: PoolName = "serving-ondemand"
    route_prefix: str = Field(pattern=r"^/[a-z0-9/_-]*$", description="OpenAI base URL is <prefix>/v1.")
    num_replicas: int = Field(1, ge=1)
    num_cpus_per_replica: float = Field(0.5, gt=0)
    max_ongoing_requests: int = Field(8, ge=1, description="Per replica; excess requests queue in Serve.")
    placement: Literal["in_process", "deployments"] = Field(
        "in_process",
        description="`in_process`: each router replica loads its versions (CPU models); "
                    "`deployments`: each version is a Serve application of its own "
                    "(`<app>--v<N>`, its own CPUs/GPUs) that the router streams from through "
                    "a handle (GPU / large models).",
    )
    version_num_cpus: float = Field(
        1.0, gt=0, description="CPUs of one version replica (`placement: deployments`).")
    version_num_gpus: float = Field(
        0.0, ge=0, description="GPUs of one version replica (`placement: deployments`); the "
                               "transformers engine then runs on CUDA.")


class TransformersEngineConfig(StrictModel):
    """The embedded CPU engine: transformers + torch in the replica process."""

    max_tokens_limit: int = Field(
        256, ge=1, description="Largest `max_tokens` a request may ask for."
    )
    default_max_tokens: int = Field(32, ge=1, description="`max_tokens` when a request omits it.")
    torch_threads: int = Field(
        1, ge=1, description="torch intra-op threads per replica (replicas share a node's CPUs)."
    )
    max_concurrent_generations: int = Field(
        1, ge=1, description="Generations run at once per replica; the rest wait (queue time)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the weights run; `auto`: CUDA when the replica was given a "
                            "GPU, else CPU.")

    @model_validator(mode="after")
    def _defaults_within_limit(self) -> TransformersEngineConfig:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(
                f"default_max_tokens ({self.default_max_tokens}) > max_tokens_limit "
                f"({self.max_tokens_limit})"
            )
        return self


class VLLMEngineConfig(StrictModel):
    """Production engine: Ray Serve LLM (`ray.serve.llm.LLMConfig`) on the pool's GPUs."""

    model_source: str | None = Field(
        None,
        description="HF id, local folder or s3:// URI; default: the model's resolved source.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per replica (vLLM engine kwarg).")
    max_model_len: int | None = Field(None, ge=16, description="Context length (vLLM engine kwarg).")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    target_ongoing_requests: float = Field(16, gt=0, description="Autoscaling target per replica.")
    extra_engine_kwargs: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Passed verbatim to vLLM (e.g. enable_prefix_caching)."
    )

    @model_validator(mode="after")
    def _replica_bounds(self) -> VLLMEngineConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})"
            )
        clash = {"tensor_parallel_size", "max_model_len", "gpu_memory_utilization", "dtype"}
        clash &= set(self.extra_engine_kwargs)
        if clash:
            raise ValueError(
                f"extra_engine_kwargs repeats {sorted(clash)}; set them as fields of `vllm:`"
            )
        return self


class TinyModelSpec(StrictModel):
    """Dimensions of the tiny random-weight Llama that jobs/build_tiny_llm.py builds."""

    vocab_size: int = Field(512, ge=300, le=65536, description="BPE vocabulary (≥ 256 bytes + specials).")
    hidden_size: int = Field(64, ge=8)
    intermediate_size: int = Field(128, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int = Field(2, ge=1)
    context_length: int = Field(256, ge=32)
    train_steps: int = Field(
        60, ge=0, description="Warm-up steps on the generated corpus (0 = pure random weights)."
    )
    corpus_sentences: int = Field(2000, ge=10, description="Generated chat exchanges to train on.")

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelSpec:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be divisible by num_kv_heads ({self.num_kv_heads})"
            )
        return self


class LLMAppConfig(StrictModel):
    """An LLM app: the model it serves, where, and with which engine."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    kind: Literal["llm"] = Field(description="Marks the app as an LLM app (vs a tabular model).")
    team: str
    owner: str
    description: str
    intended_use: str
    limitations: str
    model: LLMModelConfig
    serving: LLMServingConfig
    engine: Literal["transformers", "vllm"] = "transformers"
    transformers: TransformersEngineConfig = Field(
        default_factory=lambda: TransformersEngineConfig.model_validate({}))
    vllm: VLLMEngineConfig | None = None
    builder: TinyModelSpec = Field(default_factory=lambda: TinyModelSpec.model_validate({}))
    path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _engine_section(self) -> LLMAppConfig:
        if self.engine == "vllm" and self.vllm is None:
            raise ValueError("engine 'vllm' needs a `vllm:` section (at least `vllm: {}`)")
        return self

    def check_against(self, cfg: PlatformConfig) -> LLMAppConfig:
        """Checks that need platform.yaml: team, pool, and GPUs for the vLLM engine.

        Raises:
            NotFoundError: unknown team or pool.
            UserError: vLLM on a pool without GPUs, or more tensor-parallel GPUs than a node has.
        """
        cfg.team(self.team)
        pool = cfg.pool(self.serving.pool)
        if self.serving.version_num_gpus > 0:
            if self.serving.placement != "deployments":
                raise UserError(
                    f"serving.version_num_gpus: {self.serving.version_num_gpus} GPUs go to "
                    "version replicas, which exist only with `serving.placement: deployments`. "
                    "Set the placement, or version_num_gpus: 0."
                )
            if self.serving.version_num_gpus > pool.gpus_per_node:
                raise UserError(
                    f"serving.version_num_gpus: {self.serving.version_num_gpus} GPUs per version "
                    f"replica, but pool '{self.serving.pool}' nodes have {pool.gpus_per_node} "
                    "(platform.yaml). Use a GPU pool such as 'serving-ondemand', or 0."
                )
        if self.engine == "vllm" and self.serving.placement == "deployments":
            raise UserError(
                "serving.placement: 'deployments' runs each version with mlplat's engine "
                "interface, which has no vLLM adapter yet; `engine: vllm` serves one version "
                "through Ray Serve LLM's own app. Use `placement: in_process` with vLLM, or "
                "`engine: transformers` (which runs on the version replica's GPU) to get "
                "canary, shadow and staged promotion."
            )
        if self.engine == "vllm":
            assert self.vllm is not None  # guaranteed by _engine_section
            if pool.gpus_per_node == 0 or not pool.gpu_type:
                raise UserError(
                    f"serving.pool: engine 'vllm' needs GPUs but pool '{self.serving.pool}' has "
                    f"gpus_per_node={pool.gpus_per_node}, gpu_type={pool.gpu_type!r} in "
                    "platform.yaml. Use pool 'serving-ondemand' or `engine: transformers`."
                )
            if self.vllm.tensor_parallel_size > pool.gpus_per_node:
                raise UserError(
                    f"vllm.tensor_parallel_size: {self.vllm.tensor_parallel_size} GPUs per "
                    f"replica, but pool '{self.serving.pool}' nodes have {pool.gpus_per_node}. "
                    f"Use at most {pool.gpus_per_node}."
                )
        return self


def _problems(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        got = "" if err["type"] == "missing" or isinstance(err["input"], dict) else (
            f" (got {err['input']!r})"
        )
        parts.append(f"{loc}: {err['msg']}{got}")
    return "; ".join(parts)


def parse_llm_app(raw: dict[str, object], cfg: PlatformConfig, *, where: str = "app.yaml",
                  path: Path | None = None) -> LLMAppConfig:
    """Validate an LLM app config given as a mapping (app.yaml content, a REST body).

    Raises:
        UserError: the message names the file, the key path and the problem.

    Example:
        >>> parse_llm_app({"name": "x", "kind": "llm", ...}, cfg)   # doctest: +SKIP
    """
    try:
        app = LLMAppConfig.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise UserError(f"{where}: invalid LLM app config: {_problems(exc)}") from exc
    return app.check_against(cfg)


def load_llm_app(name_or_path: str | Path, cfg: PlatformConfig) -> LLMAppConfig:
    """Load ``apps/<name>/app.yaml`` (or an app folder / yaml file) as an LLM app.

    Raises:
        NotFoundError: no such app folder.
        UserError: the file breaks the schema or names an unknown team/pool.

    Example:
        >>> load_llm_app("llm", cfg).model.name   # doctest: +SKIP
        'tiny-chat'
    """
    candidate = Path(name_or_path)
    if candidate.is_file():
        manifest = candidate
    elif (candidate / "app.yaml").is_file():
        manifest = candidate / "app.yaml"
    else:
        manifest = cfg.base_dir / "apps" / str(name_or_path) / "app.yaml"
    if not manifest.is_file():
        root = cfg.base_dir / "apps"
        known = sorted(p.parent.name for p in root.glob("*/app.yaml")) if root.is_dir() else []
        raise NotFoundError(
            f"Unknown app '{name_or_path}'.{did_you_mean(candidate.name, known)} "
            f"Apps are folders with an app.yaml under {root}: {known}."
        )
    try:
        raw = yaml.safe_load(manifest.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{manifest}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise UserError(f"{manifest}: expected a mapping at the top level.")
    return parse_llm_app(raw, cfg, where=str(manifest), path=manifest.parent.resolve())


def resolve_local_source(cfg: PlatformConfig, app: LLMAppConfig, version: str | None = None) -> Path:
    """The folder a ``local`` model source points at for ``version`` (default: the app's).

    Raises:
        UserError: the source is not ``local``.
    """
    source = app.model.source
    if not isinstance(source, LocalSource):
        raise UserError(
            f"model.source: type '{source.type}' has no local folder; use "
            "mlplat.llm.materialize_model to download a registered version."
        )
    rel = source.path.format(name=app.model.name, version=version or app.model.version)
    path = Path(rel)
    return path if path.is_absolute() else cfg.local_path(rel)
