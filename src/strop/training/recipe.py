"""Training recipes: a YAML file mapped onto frozen, validated dataclasses.

A recipe names the model, the problems, the curriculum, the reward and the
GRPO settings. The ``grpo`` section is passed to TRL's ``GRPOConfig`` as is
(any of its fields; strop only fills defaults that suit a small model), so
TRL's documentation is the reference for it. Unknown keys anywhere are errors
that list the valid ones, because a typo in a training recipe silently costs
hours.

>>> r = recipe_from_dict({"data": {"task": "arithmetic"}, "output": "runs/x"})
>>> (r.curriculum.kind, r.curriculum.tau, r.grpo["num_generations"])
('sec', 0.4, 8)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strop.errors import ConfigError

if TYPE_CHECKING:
    from strop.methods.rc_prompts import RCPrompts

# Defaults strop applies on top of TRL's for a CPU-sized model; every one can
# be overridden in the recipe's grpo section. n = 8 and temperature 1.0 are the
# SEC paper's; beta 0.04 (DeepSeekMath's GRPO) keeps a KL term, so KL is logged.
GRPO_DEFAULTS: dict[str, Any] = {
    "num_generations": 8,
    "per_device_train_batch_size": 64,
    "gradient_accumulation_steps": 1,
    "max_completion_length": 64,
    "temperature": 1.0,
    "learning_rate": 1e-5,
    "beta": 0.04,
    "max_steps": 50,
    "logging_steps": 1,
    "save_steps": 10,
    "save_total_limit": 2,
    "report_to": "none",
    "seed": 0,
}


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapter settings passed to ``peft.LoraConfig``."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1 or not 0 <= self.dropout < 1:
            raise ConfigError(f"lora needs r >= 1, alpha >= 1, 0 <= dropout < 1; got {self}")


@dataclass(frozen=True)
class ModelSpec:
    """The policy: ``name`` is a GGUF file, HF folder or hub id; None = the embedded SmolLM2-135M-Instruct.

    ``chat_template_kwargs`` are chat-template variables every training prompt
    (and RC rollout) is rendered with, e.g. ``{enable_thinking: false}``: evaluate
    with the same ``--chat-template-kwarg`` so the prompts match.
    """

    name: str | None = None
    dtype: str | None = None  # torch dtype name; default float32 on CPU, bfloat16 on GPU
    lora: LoraSpec | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.chat_template_kwargs is not None:
            from strop.backends.chat import check_template_kwargs

            if not isinstance(self.chat_template_kwargs, Mapping):
                raise ConfigError(f"model.chat_template_kwargs must be a mapping, got {self.chat_template_kwargs!r}")
            check_template_kwargs(self.chat_template_kwargs)


@dataclass(frozen=True)
class DataSpec:
    """Training problems: a strop task, its data, and what to hold out.

    ``task: jsonl`` reads ``data`` with ``fields`` (question/answer/id/category
    -> column names) and ``verifier`` (math | exact | number; default math), as ``strop eval``
    does; for the integrals tasks ``verifier`` picks the numerical check (strop | ladder | ttrl).
    ``categories`` keeps only problems of those categories (they become the
    curriculum's arms, in this order). ``holdout_seed`` / ``holdout_data``
    name an evaluation set of the same task whose questions are removed from
    training, so a later ``strop eval`` on it measures held-out problems.
    """

    task: str
    data: str | None = None
    seed: int = 1
    limit: int | None = None
    categories: list[str] | None = None
    holdout_seed: int | None = None
    holdout_data: str | None = None
    system: str | None = None
    fields: dict[str, str] | None = None
    verifier: str | None = None


@dataclass(frozen=True)
class CurriculumSpec:
    """A registered curriculum (``sec``, ``random``, ``schedule``, or one of your own) or ``none`` (TRL's shuffling).

    ``sec``: tau, lr, q0 (initial Q), update (``drawn``: only the arms drawn
    this step learn, strop's default; ``all``: the others decay, as the SEC
    reference does). ``schedule``: steps_per_arm (arms in order). Every kind:
    sampling (``with_replacement``, strop's default, or
    ``without_replacement``, per-arm passes as the SEC reference) and options
    (keyword arguments for a curriculum of your own).
    """

    kind: str = "sec"
    tau: float = 0.4
    lr: float = 0.5
    q0: float = 0.0
    update: str = "drawn"
    sampling: str = "with_replacement"
    steps_per_arm: int | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from strop.training.curriculum import SAMPLING, SEC_UPDATES, curriculum_class

        if self.kind != "none":
            curriculum_class(self.kind)  # an unknown name is one error naming the registered ones
        if self.tau <= 0 or not 0 < self.lr <= 1:
            raise ConfigError(f"curriculum needs tau > 0 and 0 < lr <= 1; got tau={self.tau}, lr={self.lr}")
        if self.update not in SEC_UPDATES or self.sampling not in SAMPLING:
            raise ConfigError(f"curriculum.update must be one of {', '.join(SEC_UPDATES)} and curriculum.sampling one of "
                              f"{', '.join(SAMPLING)}; got update={self.update!r}, sampling={self.sampling!r}")
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"curriculum.options must be a mapping of keyword arguments, got {self.options!r}")


@dataclass(frozen=True)
class RewardSpec:
    """Reward = verifier (1 correct, 0 otherwise) + ``format_weight`` * (an answer could be extracted)."""

    format_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.format_weight < 0:
            raise ConfigError(f"reward.format_weight must be >= 0, got {self.format_weight}")


@dataclass(frozen=True)
class RCSpec:
    """RC training (Wu et al., arXiv 2602.03773; docs/training.md "RC training").

    Per problem, RC runs ``turns`` (T_train) turns with the current policy;
    ``states`` (N_summ) of its summaries are drawn, the empty start summary
    among the candidates; from each, ``grpo.num_generations`` (K) reasoning
    traces are trained on, GRPO advantages within each group of K. The
    reasoning budget H_R is ``grpo.max_completion_length`` (the traces trained
    on and the rollouts' reasoning turns alike); ``summary_tokens`` is H_S.
    ``buffer`` keeps the newest state per problem so later epochs start RC
    from where the last one stopped. Options of the RC reference code:
    ``candidates: reference`` draws from the empty start and s_1 .. s_{T-1}
    (strop: also s_T and the buffered start); ``keep: all`` keeps every
    summary of a problem's latest rollout and starts the next rollout from
    one drawn uniformly (strop: the newest); ``seed_buffer`` is a JSONL file
    of {problem_id, summary, turn} states to start from. ``prompts`` is a folder of RC templates
    (``strop.methods.rc_prompts``; default: strop's own); the run folder keeps
    a copy in ``rc_prompts/``, which ``strop eval --rc-prompts`` takes.
    """

    turns: int = 3
    states: int = 2
    summary_tokens: int = 64
    buffer: bool = True
    prompts: str | None = None
    candidates: str = "strop"
    keep: str = "newest"
    seed_buffer: str | None = None

    def __post_init__(self) -> None:
        for name in ("turns", "states", "summary_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"rc.{name} must be an integer >= 1, got {v!r}")
        if self.candidates not in ("strop", "reference") or self.keep not in ("newest", "all"):
            raise ConfigError(f"rc.candidates must be strop or reference and rc.keep newest or all; "
                              f"got candidates={self.candidates!r}, keep={self.keep!r}")
        most = self.turns if self.candidates == "reference" else self.turns + 1
        if self.states > most:
            raise ConfigError(f"rc.states ({self.states}) cannot exceed {most}: a rollout of T = {self.turns} turns offers "
                              + ("the empty start and s_1 .. s_{T-1}" if self.candidates == "reference" else "T summaries plus the empty start"))
        if self.prompts is not None:
            self.templates()  # a bad folder fails when the recipe is read, not at the first step

    def templates(self) -> RCPrompts:
        """The RC templates this recipe trains on."""
        from strop.methods.rc_prompts import RCPrompts, load_prompts

        return load_prompts(self.prompts) if self.prompts is not None else RCPrompts()


@dataclass(frozen=True)
class DynamicSamplingSpec:
    """DAPO-style dynamic sampling (recipe key ``dynamic_sampling``; off when absent).

    Prompt groups whose rewards all agree (zero variance: no advantage, no
    gradient) are dropped and replaced by groups drawn afresh from the
    curriculum (or, in an RC recipe, from fresh RC rollouts of the next
    problems), for up to ``max_rounds`` extra generation rounds per step; a
    batch still short after them is filled with the dropped groups (which
    contribute no gradient, as without the option). Every drawn group still
    teaches the source (SEC's Q; RC's buffer and state log).
    """

    max_rounds: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.max_rounds, int) or isinstance(self.max_rounds, bool) or self.max_rounds < 1:
            raise ConfigError(f"dynamic_sampling.max_rounds must be an integer >= 1, got {self.max_rounds!r}")


@dataclass(frozen=True)
class ValidationSpec:
    """Held-out evaluation during training (recipe key ``eval``), run by strop's eval harness on the current policy.

    Every ``every`` steps (and at the last step) the policy answers ``limit``
    problems of ``task`` (default: the training task) from ``data`` or the
    built-in generator ``seed`` (default 0: what ``strop eval`` uses, and what
    ``data.holdout_seed: 0`` keeps out of training), with ``method``. Accuracy
    and its 95% interval go to metrics.jsonl (``eval/accuracy``,
    ``eval/ci95_lo``, ``eval/ci95_hi``) and each evaluation's records to
    ``OUTPUT/validation/step-N``. The method's other settings are keys of the
    section too, by option name (``alpha: 4``, ``block_size: 16``: the names of
    ``strop.methods.options``, the flags of ``strop eval``); they land in ``settings``.
    """

    every: int = 10
    task: str | None = None
    data: str | None = None
    seed: int = 0
    limit: int | None = 50
    categories: list[str] | None = None
    method: str = "greedy"
    samples: int = 1
    max_tokens: int = 64
    temperature: float = 1.0
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.every < 1 or self.samples < 1 or self.max_tokens < 1 or (self.limit is not None and self.limit < 1):
            raise ConfigError(f"eval needs every, samples, max_tokens (and limit, if set) >= 1; got every={self.every}, "
                              f"samples={self.samples}, max_tokens={self.max_tokens}, limit={self.limit}")
        self.method_kwargs()  # an unknown method, setting or value is one error here, before any training

    def method_kwargs(self) -> dict[str, Any]:
        """The method's keyword arguments for these settings (validated by the method)."""
        from strop.methods import method_settings

        return method_settings(self.method, **{"temperature": self.temperature, "max_tokens": self.max_tokens, **self.settings})


@dataclass(frozen=True)
class TrainRecipe:
    data: DataSpec
    output: str
    model: ModelSpec = field(default_factory=ModelSpec)
    curriculum: CurriculumSpec = field(default_factory=CurriculumSpec)
    reward: RewardSpec = field(default_factory=RewardSpec)
    grpo: Mapping[str, Any] = field(default_factory=dict)
    tensorboard: bool = False
    rc: RCSpec | None = None
    eval: ValidationSpec | None = None
    dynamic_sampling: DynamicSamplingSpec | None = None
    # A wall-clock budget (seconds of training as metrics.jsonl counts them: the sum of seconds per step, validation
    # included, across resumes): training stops at the end of the first step past it. May change between resumes.
    max_wall_s: float | None = None

    def __post_init__(self) -> None:
        w = self.max_wall_s
        if w is not None and (isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0):
            raise ConfigError(f"max_wall_s must be a number of seconds > 0, got {w!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"grpo": dict(self.grpo)}


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {sorted(unknown)}; valid: {sorted(names)}")
    try:
        return cls(**raw)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where}: {e}") from e


def _validation(raw: Any) -> ValidationSpec:
    """The ``eval`` section: ValidationSpec's keys, and the method's settings by option name (into ``settings``)."""
    from strop.methods import load_plugins
    from strop.methods.options import options, parsed

    load_plugins()  # a plugin's method brings its settings
    if not isinstance(raw, Mapping):
        raise ConfigError(f"eval must be a mapping, got {type(raw).__name__}")
    own = {f.name for f in dataclasses.fields(ValidationSpec)} - {"settings"}
    known = options()
    unknown = sorted(set(raw) - own - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) in eval: {unknown}; valid: {sorted(own)} and the method settings {sorted(set(known) - own)}")
    settings = parsed({k: v for k, v in raw.items() if k not in own})
    return _build(ValidationSpec, {**{k: v for k, v in raw.items() if k in own}, "settings": settings}, "eval")


def _grpo_fields() -> set[str]:
    try:
        from trl import GRPOConfig
    except ImportError as e:
        raise ConfigError("training needs TRL: pip install 'strop[train]'") from e
    return {f.name for f in dataclasses.fields(GRPOConfig)}


def recipe_from_dict(raw: Mapping[str, Any]) -> TrainRecipe:
    """Validate a parsed recipe. Top-level keys: model, data, curriculum, reward, grpo, output, tensorboard, rc, eval, dynamic_sampling,
    max_wall_s."""
    if not isinstance(raw, Mapping):
        raise ConfigError("a recipe must be a YAML mapping")
    top = {f.name for f in dataclasses.fields(TrainRecipe)}
    unknown = set(raw) - top
    if unknown:
        raise ConfigError(f"unknown top-level key(s) in recipe: {sorted(unknown)}; valid: {sorted(top)}")
    if "data" not in raw or "output" not in raw:
        raise ConfigError("a recipe needs 'data' (at least data.task) and 'output' (a run folder)")
    model_raw = dict(raw.get("model") or {})
    lora = model_raw.pop("lora", None)
    model = _build(ModelSpec, model_raw, "model")
    if lora is not None and lora is not False:
        model = dataclasses.replace(model, lora=_build(LoraSpec, {} if lora is True else lora, "model.lora"))
    grpo_raw = raw.get("grpo") or {}
    if not isinstance(grpo_raw, Mapping):
        raise ConfigError("grpo must be a mapping of TRL GRPOConfig fields")
    bad = set(grpo_raw) - _grpo_fields()
    if bad:
        raise ConfigError(f"unknown GRPOConfig field(s) in grpo: {sorted(bad)} (see TRL's GRPOConfig documentation)")
    if "output_dir" in grpo_raw:
        raise ConfigError("set the run folder with the top-level 'output', not grpo.output_dir")
    rc = None
    if raw.get("rc") not in (None, False):
        rc = _build(RCSpec, {} if raw["rc"] is True else raw["rc"], "rc")
    curriculum_raw = raw.get("curriculum")
    if rc is not None:
        # RC training draws its own problems (an epoch order and the replay
        # buffer); a curriculum choosing them as well would be silently ignored.
        if curriculum_raw is not None and not (isinstance(curriculum_raw, Mapping) and curriculum_raw.get("kind", "sec") == "none"):
            raise ConfigError("an rc recipe draws its own problems: leave out 'curriculum' or set curriculum.kind: none")
        curriculum_raw = {"kind": "none"}
    dynamic = None
    if raw.get("dynamic_sampling") not in (None, False):
        dynamic = _build(DynamicSamplingSpec, {} if raw["dynamic_sampling"] is True else raw["dynamic_sampling"], "dynamic_sampling")
        kind = curriculum_raw.get("kind", "sec") if isinstance(curriculum_raw, Mapping) else "sec"
        if rc is None and kind == "none":
            raise ConfigError("dynamic_sampling draws replacement groups from the curriculum or from RC: it needs "
                              "curriculum.kind sec, random, schedule or your own (not none), or an rc section")
    return TrainRecipe(
        data=_build(DataSpec, raw["data"], "data"),
        output=str(raw["output"]),
        model=model,
        rc=rc,
        curriculum=_build(CurriculumSpec, curriculum_raw, "curriculum"),
        reward=_build(RewardSpec, raw.get("reward"), "reward"),
        grpo={**GRPO_DEFAULTS, **grpo_raw},
        tensorboard=bool(raw.get("tensorboard", False)),
        eval=None if raw.get("eval") in (None, False) else _validation(raw["eval"]),
        dynamic_sampling=dynamic,
        max_wall_s=raw.get("max_wall_s"),
    )


def load_recipe(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainRecipe:
    """Read a YAML recipe; ``overrides`` maps dotted keys (``grpo.max_steps``) to values."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"recipe not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {p} is not valid YAML: {str(e).splitlines()[0]}") from e
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"recipe {p} must be a YAML mapping (model:, data:, ...), got a {type(raw).__name__}")
    raw = dict(raw)
    for key, value in (overrides or {}).items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"cannot set {key}: {part} is not a section")
        node[leaf] = value
    return recipe_from_dict(raw)
