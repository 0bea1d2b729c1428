"""The run config: one YAML file, validated before anything is written.

``extra="forbid"`` everywhere so a typo in a key is an error that names it
rather than a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from schemas.documents import MiB, SizeLimits, read_document
from schemas.errors import ConfigError
from schemas.hashing import content_hash


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepSpec(_Strict):
    """A registered step by name, with the parameters its own model validates."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class GeneratorSpec(StepSpec):
    weight: float = Field(default=1.0, gt=0)


class DomainConfig(_Strict):
    name: str = "store"
    db_seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)


class MixedDomainConfig(DomainConfig):
    """One domain of a run that mixes several (``domains``)."""

    weight: float = Field(default=1.0, gt=0, description="its share of the run's tasks, relative to the others'")


class ManagedVLLMConfig(_Strict):
    """How a run starts its own ``vllm serve`` (which may live in another virtual environment)."""

    executable: str = Field(default="vllm", description="the `vllm` command, e.g. /opt/vllm-env/bin/vllm")
    tool_call_parser: str = "hermes"
    port: int | None = Field(default=None, ge=1, le=65535, description="default: a free loopback port")
    args: list[str] = Field(default_factory=list, description="extra `vllm serve` arguments")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables for the server process "
                                "(e.g. VLLM_CPU_KVCACHE_SPACE); never secrets: the config is stored")
    startup_timeout_s: float = Field(default=900, gt=0)


class PriceConfig(_Strict):
    """What a backend costs: per million tokens (a hosted API), or per GPU-hour (a model you serve yourself).

    Prompt tokens the provider served from its prompt cache are charged at ``cached_prompt_per_1m`` (default:
    the prompt price). A reply from trajforge's own request cache costs nothing and is counted as a saving.
    """

    prompt_per_1m: float = Field(default=0.0, ge=0, description="per million prompt tokens")
    completion_per_1m: float = Field(default=0.0, ge=0, description="per million completion tokens")
    cached_prompt_per_1m: float | None = Field(default=None, ge=0, description="per million prompt tokens served "
                                               "from the provider's prompt cache (default: prompt_per_1m)")
    gpu_hour: float | None = Field(default=None, ge=0, description="self-served: per GPU-hour of the run's "
                                   "generation time (instead of token prices)")
    gpus: int = Field(default=1, ge=1, description="GPUs the self-served model occupies")
    currency: str = Field(default="USD", min_length=1, max_length=8)

    @model_validator(mode="after")
    def _one_kind(self) -> PriceConfig:
        tokens = self.prompt_per_1m or self.completion_per_1m or self.cached_prompt_per_1m
        if self.gpu_hour is not None and tokens:
            raise ValueError("give token prices or gpu_hour, not both")
        return self


class AdaptiveConcurrencyConfig(_Strict):
    """AIMD on the requests in flight: the limit starts at ``initial_concurrency`` and doubles per round trip up
    to ``max_concurrency`` (the ceiling), backs off when the server says it is overloaded (429, 5xx) or its
    latency grows (unless the client's own loop was busy), then creeps back up one slot per round trip; never
    below ``min_concurrency``."""

    enabled: bool = True
    min_concurrency: int = Field(default=1, ge=1)
    initial_concurrency: int | None = Field(default=None, ge=1, description="the first round trip's limit (TCP's "
                                            "initial window); none: an eighth of max_concurrency, at least 8 (8 at "
                                            "once loads no model server, and starting at 1 idled the first three "
                                            "round trips; at 256 starting at 8 idled a fifth of the first second)")
    decrease: float = Field(default=0.9, gt=0, lt=1, description="on overload: the limit becomes this share of "
                            "the requests that were in flight when the rejected one was sent")
    latency_factor: float | None = Field(default=3.0, gt=1, description="back off when the recent latency exceeds "
                                         "this multiple of the lowest seen; none: ignore latency")
    client_busy: float = Field(default=0.5, gt=0, le=1, description="ignore latency growth while the client's own "
                               "event loop was busy (running or waiting for a CPU) this share of the time or more; 1: never")

    def initial_for(self, ceiling: int) -> int:
        """The slow start's first limit for ``ceiling`` (AIMD caps it there): a server sized for 256 in flight is
        not loaded by 32, and each doubling from 8 to there was a round trip with most of its slots idle."""
        return self.initial_concurrency or max(8, ceiling // 8)


class BackendHealthConfig(_Strict):
    """When a run stops early because its backend keeps failing (``simulators.backends.health``).

    Counted per attempt (retries included); only failures a healthy server does
    not produce count: refused or dropped connections, timeouts and 5xx (a 429
    rate limit is the server working as meant, and is retried, not counted).
    """

    window: int = Field(default=20, ge=1, description="judge the error rate over the last this many attempts")
    max_error_rate: float = Field(default=0.5, gt=0, le=1,
                                  description="stop when more than this share of the window failed")
    max_consecutive_failures: int = Field(default=10, ge=1,
                                          description="stop after this many failed attempts in a row")


class BackendConfig(_Strict):
    """One inference endpoint. The API key is named by its environment variable, never written here."""

    kind: Literal["openai", "vllm"] = "openai"
    model: str
    base_url: str | None = Field(default=None, description="openai: the server's /v1 URL; vllm: set by the run")
    api_key_env: str | None = Field(default=None, description="environment variable that holds the API key")
    max_concurrency: int = Field(default=64, ge=1, description="requests in flight at once, for the whole run "
                                 "(the ceiling of the adaptive limit)")
    adaptive: AdaptiveConcurrencyConfig = Field(default_factory=AdaptiveConcurrencyConfig)
    price: PriceConfig | None = Field(default=None, description="what requests cost (cost accounting, max_cost)")
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=120, gt=0, description="per request")
    max_retries: int = Field(default=6, ge=0)
    backoff_s: float = Field(default=0.5, ge=0, description="first retry waits up to this; doubles each time")
    backoff_max_s: float = Field(default=30, ge=0)
    vllm: ManagedVLLMConfig | None = None
    health: BackendHealthConfig = Field(default_factory=BackendHealthConfig)

    @model_validator(mode="after")
    def _check_kind(self) -> BackendConfig:
        if self.kind == "openai" and not self.base_url:
            raise ValueError("base_url is required for kind 'openai'")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: must start with http:// or https://, got {self.base_url!r}")
        if self.kind == "vllm" and self.base_url:
            raise ValueError("base_url is set by the run for kind 'vllm'; leave it out")
        if self.kind == "vllm" and self.vllm is None:
            self.vllm = ManagedVLLMConfig()
        return self


class RoleConfig(_Strict):
    """Which backend plays a role, and its sampling parameters (left out: the server's default)."""

    backend: str
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict, description="server-specific request fields")


class UserRoleConfig(RoleConfig):
    reminder_every: int = Field(default=0, ge=0, description="remind the user simulator of its goal every N turns")


class AssistantRoleConfig(RoleConfig):
    parallel_tool_calls: bool = False


class RefineConfig(RoleConfig):
    """skeleton_refine: how much of the scripted skeleton a model rewrites, in one request per dialogue.

    Rates are per dialogue and seeded, so the same config masks the same turns.
    Tool calls and tool results are never model-written.
    """

    mask_rate: float = Field(default=0.5, ge=0.0, le=1.0,
                             description="share of user turns rewritten (at least one per dialogue)")
    assistant_mask_rate: float = Field(default=0.0, ge=0.0, le=1.0,
                                       description="share of assistant text turns rewritten")
    clarify_rate: float = Field(default=0.3, ge=0.0, le=1.0,
                                description="chance of one inserted clarification (assistant asks, user answers)")
    correction_rate: float = Field(default=0.2, ge=0.0, le=1.0,
                                   description="chance of one user correction (a detail stated wrongly, then fixed)")
    retry_max_tokens: int | None = Field(default=None, ge=1, description="a reply cut off at max_tokens is asked "
                                         "once more with this budget (default: twice max_tokens)")


class SimulationConfig(_Strict):
    mode: Literal["offline", "model"] = "offline"
    strategy: Literal["simulate", "skeleton_refine"] = Field(
        default="simulate",
        description="model mode: 'simulate' runs model agents turn by turn; 'skeleton_refine' builds the "
        "scripted skeleton and has one model request per dialogue rewrite masked turns")
    refine: RefineConfig | None = Field(default=None, description="the refining model (strategy skeleton_refine)")
    max_turns: int = Field(default=40, ge=2)
    concurrency: int = Field(default=64, ge=1, description="items in flight per shard, in each stage: tasks being "
                             "synthesized, then dialogues being rolled out and verified")
    dialogue_timeout_s: float = Field(default=900, gt=0, description="a dialogue's time budget")
    user: UserRoleConfig | None = Field(default=None, description="model mode: none means the scripted user")
    assistant: AssistantRoleConfig | None = None
    tool: RoleConfig | None = Field(default=None, description="simulates tools that only have a schema")
    perturb_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="offline only: share of dialogues given a typical assistant mistake, "
        "so the verification funnel is exercised without a model",
    )


class NearDedupConfig(_Strict):
    """MinHash + LSH over the user turns (dedup/near.py)."""

    enabled: bool = True
    ngram: int = Field(default=3, ge=1, description="word n-gram shingles")
    num_perm: int = Field(default=128, ge=8, le=1024)
    bands: int | None = Field(default=None, ge=1, description="LSH bands; with rows, or neither (derived)")
    rows: int | None = Field(default=None, ge=1)
    threshold: float = Field(default=0.8, gt=0.0, le=1.0, description="estimated Jaccard that makes a duplicate")
    cluster_threshold: float | None = Field(
        default=0.5, gt=0.0, le=1.0,
        description="kept rows at least this similar to an earlier kept row share its cluster_id (split by cluster)")
    bucket_cap: int = Field(
        default=32, ge=1,
        description="an LSH bucket's first this many rows are the ones its later rows are compared with: candidate "
                    "pairs stay at most rows x bands x bucket_cap however similar (templated) the dialogues are")
    seed: int = 1

    @model_validator(mode="after")
    def _banding(self) -> NearDedupConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class SemanticDedupConfig(_Strict):
    """all-MiniLM-L6-v2 embeddings of the user turns; needs the optional extra ``semantic``."""

    enabled: bool = False
    threshold: float = Field(default=0.95, gt=0.0, le=1.0, description="cosine similarity that makes a duplicate")
    batch_size: int = Field(default=64, ge=1)


class DedupConfig(_Strict):
    exact: bool = True
    against_previous_versions: bool = True
    near: NearDedupConfig = Field(default_factory=NearDedupConfig)
    semantic: SemanticDedupConfig = Field(default_factory=SemanticDedupConfig)


class CacheConfig(_Strict):
    """The request cache: a re-run or resumed run never pays for the same request twice."""

    enabled: bool = True
    path: str | None = Field(default=None, description="SQLite file; default OUTPUT_DIR/_cache/requests.sqlite")


class PublishConfig(_Strict):
    """Push each new version to the Hub after its commit (the token comes from the environment, never from here)."""

    repo: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$",
                             description="ORG/NAME of a Hugging Face dataset repo; unset: no push")
    private: bool = False
    test_ratio: float = Field(default=0.1, ge=0, lt=1)
    license: str = "other"
    rejects: bool = False
    json_as_text: bool = False  # trajforge export --json-as-text: JSON columns as strings, for datasets 4.0 to 4.6


class BudgetConfig(_Strict):
    """Limits that stop a run early; it then commits what it has as a normal version, the reason in its manifest.

    ``max_tasks`` is exact and deterministic; the others are checked before each task starts, so the dialogues
    already in flight when a limit is reached still finish (and are paid for).
    """

    max_tasks: int | None = Field(default=None, ge=1, description="tasks synthesized at most")
    max_requests: int | None = Field(default=None, ge=1, description="model requests sent at most (cache hits are free)")
    max_tokens: int | None = Field(default=None, ge=1, description="prompt + completion tokens at most")
    max_cost: float | None = Field(default=None, gt=0, description="cost at most, in the backends' price unit")

    def is_set(self) -> bool:
        return any(v is not None for v in self.model_dump().values())


class RunnerConfig(_Strict):
    kind: Literal["thread", "process", "ray"] = "thread"
    workers: int | None = Field(default=None, ge=1)
    shards_in_flight: int | None = Field(
        default=None, ge=1, description="shards synthesized or rolled out at once (default: workers, 4 for threads); "
        "more than one keeps a model endpoint busy across shard boundaries")
    address: str | None = Field(
        default=None,
        description="ray: a running cluster, e.g. ray://head:10001; none starts a local Ray instance "
        "with `workers` CPUs (default 2)")

    @model_validator(mode="after")
    def _address_needs_ray(self) -> RunnerConfig:
        if self.address is not None and self.kind != "ray":
            raise ValueError("address: only for kind 'ray'")
        return self


DEFAULT_FILTERS = ["format", "execution", "policy", "outcome", "required_outputs"]


class RunConfig(_Strict):
    name: str = "run"
    seed: int = 0
    num_tasks: int | None = Field(default=None, ge=1, description="tasks to run (or target_accepted)")
    target_accepted: int | None = Field(
        default=None, ge=1, description="instead of num_tasks: run shards until this many rows are accepted after "
        "every filter and dedup, and commit exactly that many")
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    shard_size: int = Field(default=500, ge=1)
    domain: DomainConfig = Field(default_factory=DomainConfig)
    domains: list[MixedDomainConfig] | None = Field(
        default=None, min_length=1, description="a run that mixes domains, each drawing a share of the tasks by "
        "weight; instead of `domain`")
    generators: list[GeneratorSpec] = Field(
        default_factory=lambda: [GeneratorSpec(name="blueprint")], min_length=1
    )
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    filters: list[StepSpec] = Field(
        default_factory=lambda: [StepSpec(name=n) for n in DEFAULT_FILTERS]
    )
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)
    output_dir: str | None = None

    @model_validator(mode="after")
    def _check_size(self) -> RunConfig:
        if (self.num_tasks is None) == (self.target_accepted is None):
            raise ValueError("num_tasks: give num_tasks (a fixed run) or target_accepted (run until that many are "
                             "accepted), exactly one of them" if self.num_tasks is None else
                             "target_accepted: give num_tasks or target_accepted, not both")
        if self.budget.max_cost is not None:
            unpriced = sorted({b for b in self.model_users().values() if b in self.backends and self.backends[b].price is None})
            if unpriced:
                raise ValueError(f"budget.max_cost: backend {unpriced[0]!r} has no price; add backends."
                                 f"{unpriced[0]}.price")
        currencies = sorted({b.price.currency for b in self.backends.values() if b.price is not None})
        if len(currencies) > 1:
            raise ValueError(f"backends: prices in more than one currency ({', '.join(currencies)}); use one")
        return self

    @model_validator(mode="after")
    def _check_domains(self) -> RunConfig:
        if self.domains is None:
            return self
        if "domain" in self.model_fields_set:
            raise ValueError("domain: give either `domain` or `domains`, not both")
        seen: set[str] = set()
        for i, d in enumerate(self.domains):  # a task names its domain: two entries of one name would be ambiguous
            if d.name in seen:
                raise ValueError(f"domains[{i}].name: {d.name!r} is listed twice")
            seen.add(d.name)
        return self

    @model_serializer(mode="wrap")
    def _one_domain_key(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """One of ``domain`` / ``domains`` is stored: a mixed run's config (manifest, card) parses again, and a
        single-domain config is stored, and hashed, exactly as before mixing existed."""
        data = handler(self)
        if isinstance(data, dict):
            data.pop("domain" if self.domains is not None else "domains", None)
        return data

    def mixed_domains(self) -> list[MixedDomainConfig]:
        """The run's domains with their weights: ``domains``, or ``domain`` alone (weight 1)."""
        if self.domains is not None:
            return list(self.domains)
        return [MixedDomainConfig(**self.domain.model_dump())]

    @model_validator(mode="after")
    def _check_roles(self) -> RunConfig:
        sim = self.simulation
        refining = sim.mode == "model" and sim.strategy == "skeleton_refine"
        if refining:
            if sim.refine is None:
                raise ValueError("simulation.refine: required when simulation.strategy is 'skeleton_refine'")
            for role in ("user", "assistant", "tool"):  # the skeleton is scripted: a model role here would be unused
                if getattr(sim, role) is not None:
                    raise ValueError(f"simulation.{role}: not used when simulation.strategy is 'skeleton_refine'; "
                                     "remove it")
        elif sim.mode == "model" and sim.assistant is None:
            raise ValueError("simulation.assistant: required when simulation.mode is 'model'")
        known = ", ".join(sorted(self.backends)) or "none defined under `backends`"
        for role in ("user", "assistant", "tool", "refine"):
            spec = getattr(sim, role)
            if spec is not None and spec.backend not in self.backends:
                raise ValueError(f"simulation.{role}.backend: unknown backend {spec.backend!r}; known: {known}")
        for section in ("generators", "filters"):
            for i, step in enumerate(getattr(self, section)):
                for path, backend in _backends_in(step.params):
                    if backend not in self.backends:
                        where = ".".join(["params", *path, "backend"])
                        raise ValueError(f"{section}[{i}].{where}: unknown backend {backend!r}; known: {known}")
        return self

    def config_hash(self) -> str:
        """Hash of what shapes the data: where it is written, how it is run and where a model is served do not."""
        data = self.model_dump(mode="json", exclude={"output_dir", "runner", "cache", "backends", "publish"})
        if data["simulation"]["strategy"] == "simulate" and data["simulation"]["refine"] is None:
            del data["simulation"]["strategy"], data["simulation"]["refine"]  # configs written before them keep their hash
        refine = data["simulation"].get("refine")
        if refine is not None and refine.get("retry_max_tokens") is None:
            del refine["retry_max_tokens"]  # likewise
        for key in ("num_tasks", "target_accepted"):
            if data[key] is None:
                del data[key]  # configs written before target_accepted keep their hash
        data["budget"] = {k: v for k, v in data["budget"].items() if v is not None}
        if not data["budget"]:
            del data["budget"]
        if self.backends:
            data["models"] = {name: b.model for name, b in sorted(self.backends.items())}
        return content_hash(data)

    def roles(self) -> dict[str, RoleConfig]:
        """The model-played roles of this run (none offline)."""
        if self.simulation.mode != "model":
            return {}
        if self.simulation.strategy == "skeleton_refine":
            return {"refine": self.simulation.refine} if self.simulation.refine is not None else {}
        return {r: s for r in ("user", "assistant", "tool") if (s := getattr(self.simulation, r)) is not None}

    def model_users(self) -> dict[str, str]:
        """Everything that calls a model, role or filter, with the backend it calls: the keys of usage accounting."""
        out = {role: spec.backend for role, spec in self.roles().items()}
        for step in [*self.generators, *self.filters]:
            for path, backend in _backends_in(step.params):
                out[".".join([step.name, *path])] = backend
        return out

    def generator_backends(self) -> set[str]:
        """The backends task synthesis calls."""
        return {backend for step in self.generators for _, backend in _backends_in(step.params)}

    @property
    def task_limit(self) -> int | None:
        """Tasks this run may synthesize at most: ``num_tasks`` (and ``budget.max_tasks``); none for an
        open-ended target run."""
        bounds = [n for n in (self.num_tasks, self.budget.max_tasks) if n is not None]
        return min(bounds) if bounds else None

    @property
    def num_shards(self) -> int | None:
        """Shards of the run at most; none for an open-ended target run."""
        limit = self.task_limit
        return None if limit is None else -(-limit // self.shard_size)


def _backends_in(params: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """Every ``backend`` a step's params name, with where: a step may call several models (a writer and
    its reviewers), each charged under ``step.path`` (``model_blueprint.committee.reviewers.0``)."""
    found: list[tuple[tuple[str, ...], str]] = []
    if isinstance(params, dict):
        for key, value in params.items():
            if key == "backend" and isinstance(value, str):
                found.append((path, value))
            else:
                found += _backends_in(value, (*path, str(key)))
    elif isinstance(params, list):
        for n, value in enumerate(params):
            found += _backends_in(value, (*path, str(n)))
    return found


def _format_errors(source: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        parts.append(f"{loc}: {e['msg']}")
    return f"{source}: " + "; ".join(parts)


def parse_config(data: Any, source: str = "config") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None


CONFIG_LIMITS = SizeLimits(max_bytes=16 * MiB)  # a run config is a few kilobytes; more is a wrong file


def load_config(path: str | Path, **overrides: Any) -> RunConfig:
    """Read and validate a YAML run config; ``overrides`` replace top-level keys."""
    data = read_document(path, "config", ConfigError, CONFIG_LIMITS)
    if isinstance(data, dict):
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
        if overrides.get("target_accepted") is not None:
            data.pop("num_tasks", None)  # a target replaces the run's size
    return parse_config(data, str(path))
