"""RLlib tuned-example YAML (and `rllib train` flags) → an RLTrainingJob document.

RLlib users keep experiments as `{name: {env, run, stop, config, checkpoint_freq…}}`. This module maps
every key of such a file to a kuberl field, or refuses it with the key and the reason. It is one table
(`CONFIG_RULES`, `STOP_RULES`, `EXPERIMENT_RULES`), rendered into docs/rllib.md by `mapping_markdown()`
(a test keeps the page and the table equal). Pure: no torch, no ray, no I/O.

Policy for keys kuberl has no use for (docs/rllib.md): a key that only tunes how RLlib itself runs
(logging, TF sessions, driver CPUs, failure tolerance that kuberl always has) is accepted with a
warning; a key that would change what is learned or measured, and that kuberl cannot honour, is refused.
Algorithm hyperparameters not in the table (`lr`, `clip_param`, `n_step`, …) go to `spec.config` when
the algorithm's config model has the field (under its own name or an RLlib alias); else they are
refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel

from kuberl.spec.algorithms import ALGORITHMS, CONFIG_MODELS, ModelConfig
from kuberl.spec.errors import SpecError
from kuberl.spec.job import API_VERSION, KIND, MAX_NAME_LENGTH

#: What a converter returns: (kuberl path relative to `spec`, value) pairs to set; may be empty.
Assignments = list[tuple[str, Any]]


class RefusedError(Exception):
    """A key kuberl cannot honour; the message says why (and what to use instead)."""


@dataclass(frozen=True)
class Rule:
    """How one RLlib key is handled. `target`: the kuberl field it sets (for the docs table); `convert`
    turns the value into assignments or raises RefusedError; `warn`: accepted without effect, and why."""

    keys: tuple[str, ...]
    target: str
    note: str
    convert: Callable[[Any, Context], Assignments] | None = None
    warn: bool = False


@dataclass
class Context:
    """What converters may need beyond the value: the algorithm, and the rest of the config."""

    algorithm: str
    config: Mapping[str, Any]


# -- converters ------------------------------------------------------------------------------------
def _to(path: str) -> Callable[[Any, Context], Assignments]:
    return lambda value, _ctx: [(path, value)]


def _refuse(reason: str) -> Callable[[Any, Context], Assignments]:
    def convert(_value: Any, _ctx: Context) -> Assignments:
        raise RefusedError(reason)

    return convert


def _only(expected: Any, reason: str) -> Callable[[Any, Context], Assignments]:
    """Accepted (no effect) when the value is kuberl's behaviour; refused otherwise."""

    def convert(value: Any, _ctx: Context) -> Assignments:
        if value != expected:
            raise RefusedError(f"{value!r}: {reason}")
        return []

    return convert


def _framework(value: Any, _ctx: Context) -> Assignments:
    if value != "torch":
        raise RefusedError(f"{value!r}: kuberl is PyTorch-only; use framework: torch (or leave it out)")
    return []


def _learners(value: Any, _ctx: Context) -> Assignments:
    # RLlib's 0 learners means "the learner runs in the driver", which is kuberl's learners: 1.
    if not isinstance(value, int) or value < 0:
        raise RefusedError(f"{value!r} is not a whole number of learners (0 or more)")
    return [("resources.learners", max(1, value))]


def _gpus_per_runner(value: Any, _ctx: Context) -> Assignments:
    if value:
        raise RefusedError(f"{value!r}: kuberl's env runners run on CPU; GPUs go to learners (num_gpus)")
    return []


def _per_learner_batch(value: Any, ctx: Context) -> Assignments:
    if not isinstance(value, int):
        raise RefusedError(f"{value!r} is not a whole number of steps")
    learners = ctx.config.get("num_learners", ctx.config.get("num_learner_workers", 0)) or 1
    return [("config.train_batch_size", value * learners)]


def _fragment(value: Any, ctx: Context) -> Assignments:
    if value == "auto" or not _accepts(ctx.algorithm, "rollout_fragment_length"):
        return []  # see the rule's note: kuberl sizes fragments from trainBatchSize
    return [("config.rollout_fragment_length", value)]


def _evaluation_interval(value: Any, _ctx: Context) -> Assignments:
    return [("evaluation.interval", value or 0)]  # RLlib's None: never


def _parallel_evaluation(value: Any, _ctx: Context) -> Assignments:
    if not isinstance(value, bool):
        raise RefusedError(f"{value!r}: give true or false")
    return [("evaluation.parallelToTraining", value)]


def _evaluation_duration(value: Any, ctx: Context) -> Assignments:
    if value == "auto":
        raise RefusedError(
            "'auto' sizes evaluation to the parallel training step, which kuberl does not run; give a number"
        )
    unit = ctx.config.get("evaluation_duration_unit", "episodes")
    if unit == "episodes":
        return [("evaluation.episodes", value)]
    if unit == "timesteps":
        return [("evaluation.timesteps", value)]
    raise RefusedError(f"evaluation_duration_unit {unit!r} is neither 'episodes' nor 'timesteps'")


def _evaluation_unit(value: Any, _ctx: Context) -> Assignments:
    if value not in ("episodes", "timesteps"):
        raise RefusedError(f"{value!r} is neither 'episodes' nor 'timesteps'")
    return []  # read by evaluation_duration


def _evaluation_runners(value: Any, ctx: Context) -> Assignments:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RefusedError(f"{value!r} is not a whole number of evaluation env runners (0 or more)")
    runner_keys = ("num_env_runners", "num_rollout_workers", "num_workers")
    runners = next((ctx.config[k] for k in runner_keys if k in ctx.config), None)
    if runners == 0:
        # RLlib would start evaluation actors beside a driver that samples alone; kuberl's envRunners: 0
        # runs without Ray at all, so evaluation stays in the driver (the same statistics, one process).
        return []
    return [("evaluation.numEnvRunners", value)]


EVALUATION_CONFIG_KEYS = {"explore": "evaluation.explore", "env_config": "evaluation.envConfig"}


def _evaluation_config(value: Any, _ctx: Context) -> Assignments:
    if not isinstance(value, Mapping):
        raise RefusedError(f"expected a mapping of config overrides, got {type(value).__name__}")
    out: Assignments = []
    for key, v in value.items():
        if key not in EVALUATION_CONFIG_KEYS:
            raise RefusedError(
                f"{key}: kuberl's evaluation overrides only {' and '.join(EVALUATION_CONFIG_KEYS)} "
                "(evaluation plays the trained policy; other settings would change what is measured)"
            )
        out.append((EVALUATION_CONFIG_KEYS[key], v))
    return out


def _explore(value: Any, _ctx: Context) -> Assignments:
    if value is not True:
        raise RefusedError(
            f"{value!r}: training always explores in kuberl; to evaluate greedily use "
            "evaluation_config: {explore: false}"
        )
    return []


def _exploration(value: Any, ctx: Context) -> Assignments:
    if not isinstance(value, Mapping):
        raise RefusedError(f"expected a mapping with a type, got {type(value).__name__}")
    kind = str(value.get("type", "")).rsplit(".", 1)[-1]
    rest = {k: v for k, v in value.items() if k != "type"}
    if kind == "StochasticSampling" and _stochastic(ctx.algorithm):
        return []  # what policy-gradient algorithms do already: sample from the action distribution
    if kind == "EpsilonGreedy" and _accepts(ctx.algorithm, "epsilon"):
        unknown = set(rest) - {"initial_epsilon", "final_epsilon", "epsilon_timesteps", "warmup_timesteps"}
        if unknown:
            raise RefusedError(f"EpsilonGreedy has no {', '.join(sorted(unknown))} in kuberl")
        start = rest.get("initial_epsilon", 1.0)
        end = rest.get("final_epsilon", 0.05)
        steps = rest.get("epsilon_timesteps", 10_000)
        warmup = rest.get("warmup_timesteps", 0)
        points = [[0, start], [warmup, start]] if warmup else [[0, start]]
        return [("config.epsilon", [*points, [warmup + steps, end]])]
    if kind in ("GaussianNoise", "OrnsteinUhlenbeckNoise") and _accepts(ctx.algorithm, "exploration_config"):
        if "random_timesteps" in rest:
            raise RefusedError(
                "random_timesteps: use num_steps_sampled_before_learning_starts with random_warmup "
                "(kuberl acts uniformly at random until learning starts)"
            )
        return [("config.exploration_config", {"type": kind, **rest})]
    raise RefusedError(
        f"type {kind or '(none)'!r} does not apply to {ctx.algorithm}: kuberl maps EpsilonGreedy (DQN family: "
        "config.epsilon), GaussianNoise and OrnsteinUhlenbeckNoise (DDPG, TD3: config.explorationConfig) and "
        "StochasticSampling (policy-gradient algorithms)"
    )


_BUFFER_TYPES = {
    "ReplayBuffer": "ReplayBuffer",
    "MultiAgentReplayBuffer": "ReplayBuffer",
    "EpisodeReplayBuffer": "ReplayBuffer",
    "MultiAgentEpisodeReplayBuffer": "ReplayBuffer",
    "PrioritizedReplayBuffer": "PrioritizedReplayBuffer",
    "MultiAgentPrioritizedReplayBuffer": "PrioritizedReplayBuffer",
    "PrioritizedEpisodeReplayBuffer": "PrioritizedReplayBuffer",
    "MultiAgentPrioritizedEpisodeReplayBuffer": "PrioritizedReplayBuffer",
}
_BUFFER_KEYS = ("capacity", "prioritized_replay_alpha", "prioritized_replay_beta", "prioritized_replay_eps")
# Keys that only change how RLlib stores the buffer, not what is sampled from it.
_BUFFER_IGNORED = ("storage_unit", "replay_sequence_length", "worker_side_prioritization", "replay_mode")


def _replay_buffer(value: Any, ctx: Context) -> Assignments:
    if not isinstance(value, Mapping):
        raise RefusedError(f"expected a mapping, got {type(value).__name__}")
    kind = str(value.get("type", "ReplayBuffer")).rsplit(".", 1)[-1]
    if kind not in _BUFFER_TYPES:
        raise RefusedError(f"type {kind!r}: kuberl has {', '.join(sorted(_BUFFER_TYPES))}")
    unit = value.get("storage_unit", "timesteps")
    if unit not in ("timesteps", "episodes", "fragments"):
        raise RefusedError(f"storage_unit {unit!r}: kuberl stores transitions (timesteps)")
    unknown = set(value) - {"type", *_BUFFER_KEYS, *_BUFFER_IGNORED}
    if unknown:
        raise RefusedError(
            f"{', '.join(sorted(unknown))}: not a replay setting kuberl has ({', '.join(_BUFFER_KEYS)})"
        )
    kept = {k: value[k] for k in _BUFFER_KEYS if k in value}
    prioritized = _BUFFER_TYPES[kind] == "PrioritizedReplayBuffer"
    if _accepts(ctx.algorithm, "replay_buffer_config"):
        return [("config.replay_buffer_config", {"type": _BUFFER_TYPES[kind], **kept})]
    if _accepts(ctx.algorithm, "buffer_size"):  # the DQN family keeps replay settings flat
        out: Assignments = [("config.prioritized_replay", prioritized)]
        for key, v in kept.items():
            out.append(("config.buffer_size" if key == "capacity" else f"config.{key}", v))
        return out
    raise RefusedError(f"{ctx.algorithm} has no replay buffer")


def _vtrace(value: Any, ctx: Context) -> Assignments:
    if value is not True:
        raise RefusedError(
            f"{value!r}: {ctx.algorithm} in kuberl always corrects off-policy data with V-trace"
        )
    return []


_OPTIMIZATION = {
    "actor_learning_rate": "actor_lr",
    "critic_learning_rate": "critic_lr",
    "entropy_learning_rate": "alpha_lr",
}


def _optimization(value: Any, ctx: Context) -> Assignments:
    """Old-stack SAC/DDPG/TD3 learning rates, one per network."""
    if not isinstance(value, Mapping):
        raise RefusedError(f"expected a mapping, got {type(value).__name__}")
    out: Assignments = []
    for key, v in value.items():
        field = _OPTIMIZATION.get(key)
        if field is None or not _accepts(ctx.algorithm, field):
            raise RefusedError(f"{key}: {ctx.algorithm} in kuberl has no such learning rate")
        out.append((f"config.{field}", v))
    return out


def _sub_model(value: Any, ctx: Context) -> Assignments:
    """SAC's q_model_config / policy_model_config: kuberl builds the actor and critics from one
    config.model, so the two must agree (with each other and with `model`, when given)."""
    (_, model), *_ = _model(value, ctx)
    for other in ("q_model_config", "policy_model_config"):
        if other in ctx.config and ctx.config[other] != value:
            raise RefusedError(
                f"differs from {other}: kuberl's actor and critics share config.model; make them equal"
            )
    return [("config.model", model)]


def _model(value: Any, _ctx: Context) -> Assignments:
    if not isinstance(value, Mapping):
        raise RefusedError(f"expected a mapping, got {type(value).__name__}")
    known = _names(ModelConfig)
    out: dict[str, Any] = {}
    for key, v in value.items():
        if key in MODEL_REFUSED:
            raise RefusedError(f"{key}: {MODEL_REFUSED[key]}")
        if key in MODEL_IGNORED:
            continue
        if key not in known:
            raise RefusedError(f"{key}: not a model setting kuberl has (see docs/models.md)")
        out[key] = v
    return [("config.model", out)]


#: RLlib `model` keys kuberl refuses, and why.
MODEL_REFUSED: dict[str, str] = {
    "use_attention": "attention (GTrXL) policies are not in kuberl; use use_lstm",
    "post_fcnet_hiddens": "kuberl's heads are linear on fcnet_hiddens; add the layers to fcnet_hiddens",
    "dim": "kuberl does not resize images; resize in the env (gymnasium.wrappers.ResizeObservation)",
    "grayscale": "kuberl does not preprocess images; use gymnasium.wrappers.GrayscaleObservation in the env",
    "zero_mean": "kuberl does not preprocess images; normalize in the env",
    "framestack": "kuberl does not stack frames; use gymnasium.wrappers.FrameStackObservation in the env",
    "custom_action_dist": "custom action distributions are not in kuberl",
}
#: RLlib `model` keys accepted without effect: RLlib-internal switches.
MODEL_IGNORED = ("_disable_preprocessor_api", "_disable_action_flattening", "_use_default_native_models")


_INFRA = (
    "RLlib-internal: tunes how RLlib runs, not what is learned (kuberl always recreates failed runners, "
    "logs with -v, reports the mean over the last 100 episodes and clips actions to the space)"
)


# -- the table -------------------------------------------------------------------------------------
#: Keys of an experiment's `config` (and of `rllib train --config`), RLlib's old and new API stack.
CONFIG_RULES: tuple[Rule, ...] = (
    Rule(("env",), "env", "a Gymnasium id or `module:factory`", _to("env")),
    Rule(("env_config",), "envConfig", "keyword arguments of the env", _to("envConfig")),
    Rule(("seed",), "seed", "base seed", _to("seed")),
    Rule(
        ("framework",),
        "—",
        "`torch` accepted; `tf`, `tf2`, `jax` refused: kuberl is PyTorch-only",
        _framework,
    ),
    Rule(
        ("num_workers", "num_rollout_workers", "num_env_runners"),
        "resources.envRunners",
        "0 samples in the driver without Ray, as in RLlib",
        _to("resources.envRunners"),
    ),
    Rule(
        ("num_envs_per_worker", "num_envs_per_env_runner"),
        "resources.envsPerRunner",
        "sub-environments per runner",
        _to("resources.envsPerRunner"),
    ),
    Rule(
        ("num_cpus_per_worker", "num_cpus_per_env_runner"),
        "resources.cpusPerRunner",
        "",
        _to("resources.cpusPerRunner"),
    ),
    Rule(
        ("num_gpus_per_worker", "num_gpus_per_env_runner"),
        "—",
        "0 accepted; more refused: env runners run on CPU",
        _gpus_per_runner,
    ),
    Rule(
        ("num_gpus", "num_gpus_per_learner", "num_gpus_per_learner_worker"),
        "resources.gpusPerLearner",
        "GPUs of each learner",
        _to("resources.gpusPerLearner"),
    ),
    Rule(
        ("num_learners", "num_learner_workers"),
        "resources.learners",
        "RLlib's 0 (learner in the driver) is kuberl's 1",
        _learners,
    ),
    Rule(
        ("num_cpus_per_learner", "num_cpus_per_learner_worker"),
        "resources.cpusPerLearner",
        "",
        _to("resources.cpusPerLearner"),
    ),
    Rule(
        ("train_batch_size_per_learner",),
        "config.trainBatchSize",
        "times the number of learners",
        _per_learner_batch,
    ),
    Rule(
        ("rollout_fragment_length",),
        "config.rolloutFragmentLength",
        "where the algorithm has it; `auto`, and PPO (which splits trainBatchSize over all sub-envs), "
        "accepted without effect",
        _fragment,
    ),
    Rule(
        ("batch_mode",),
        "—",
        "`truncate_episodes` accepted (kuberl's behaviour); `complete_episodes` refused",
        _only("truncate_episodes", "kuberl samples fixed-length fragments (truncate_episodes)"),
    ),
    Rule(
        ("model",),
        "config.model",
        f"model keys as in docs/models.md; refused: {', '.join(MODEL_REFUSED)}",
        _model,
    ),
    Rule(
        ("q_model_config", "policy_model_config"),
        "config.model",
        "SAC's networks: both must be equal (kuberl's actor and critics share one model config)",
        _sub_model,
    ),
    Rule(
        ("optimization",),
        "config.actorLr, criticLr, alphaLr",
        "actor_learning_rate, critic_learning_rate, entropy_learning_rate",
        _optimization,
    ),
    Rule(
        ("evaluation_interval",),
        "evaluation.interval",
        "null: never",
        _evaluation_interval,
    ),
    Rule(
        ("evaluation_duration",),
        "evaluation.episodes / evaluation.timesteps",
        "by evaluation_duration_unit; `auto` refused",
        _evaluation_duration,
    ),
    Rule(("evaluation_duration_unit",), "—", "`episodes` or `timesteps`", _evaluation_unit),
    Rule(
        ("evaluation_config",),
        "evaluation.explore, evaluation.envConfig",
        "overrides `explore` and `env_config`; other overrides refused",
        _evaluation_config,
    ),
    Rule(
        ("evaluation_parallel_to_training",),
        "evaluation.parallelToTraining",
        "evaluates on a trainer thread with a weights snapshot while training goes on (not multi-agent)",
        _parallel_evaluation,
    ),
    Rule(
        ("evaluation_num_workers", "evaluation_num_env_runners"),
        "evaluation.numEnvRunners",
        "evaluation actors; with num_env_runners: 0 (no Ray) evaluation runs in the driver instead",
        _evaluation_runners,
    ),
    Rule(("explore",), "—", "`true` accepted; `false` refused (use evaluation_config)", _explore),
    Rule(
        ("exploration_config",),
        "config.epsilon / config.explorationConfig",
        "EpsilonGreedy → epsilon schedule; GaussianNoise, OrnsteinUhlenbeckNoise → explorationConfig; "
        "StochasticSampling accepted for policy-gradient algorithms; others refused",
        _exploration,
    ),
    Rule(
        ("replay_buffer_config",),
        "config.replayBufferConfig / config.bufferSize, prioritizedReplay…",
        "MultiAgent/Episode buffer types map to ReplayBuffer or PrioritizedReplayBuffer",
        _replay_buffer,
    ),
    Rule(("vtrace",), "—", "`true` accepted (IMPALA/APPO always use V-trace); `false` refused", _vtrace),
    Rule(
        ("hiddens",),
        "—",
        "refused: kuberl's Q head is linear on model.fcnetHiddens; add these layers there",
        _refuse("kuberl's Q head is linear on model.fcnet_hiddens; add these layers there"),
    ),
    Rule(
        ("horizon", "soft_horizon", "no_done_at_end"),
        "—",
        "refused: set the time limit in the env (env_config max_episode_steps for Gymnasium ids)",
        _refuse("set the time limit in the env (env_config: {max_episode_steps: N} for Gymnasium ids)"),
    ),
    Rule(
        ("clip_rewards",),
        "—",
        "refused: clip rewards in the env (a gymnasium wrapper)",
        _refuse("kuberl does not clip rewards; clip them in the env (a gymnasium RewardWrapper)"),
    ),
    Rule(
        ("multiagent", "policies", "policy_mapping_fn"),
        "—",
        "refused: write spec.multiAgent (docs/multi-agent.md)",
        _refuse("functions cannot be converted; write spec.multiAgent (docs/multi-agent.md)"),
    ),
    Rule(
        ("input", "output"),
        "—",
        "refused: write spec.input / spec.output (docs/offline.md)",
        _refuse("write spec.input / spec.output (docs/offline.md)"),
    ),
    Rule(
        (
            "log_level",
            "eager_tracing",
            "tf_session_args",
            "local_tf_session_args",
            "num_cpus_for_driver",
            "num_cpus_for_main_process",
            "enable_rl_module_and_learner",
            "enable_env_runner_and_connector_v2",
            "_enable_new_api_stack",
            "_enable_learner_api",
            "api_stack",
            "preprocessor_pref",
            "disable_env_checking",
            "recreate_failed_workers",
            "recreate_failed_env_runners",
            "restart_failed_env_runners",
            "ignore_worker_failures",
            "ignore_env_runner_failures",
            "compress_observations",
            "simple_optimizer",
            "_fake_gpus",
            "create_env_on_driver",
            "remote_worker_envs",
            "placement_strategy",
            "normalize_actions",
            "clip_actions",
            "sample_async",
            "num_multi_gpu_tower_stacks",
            "learner_queue_size",
            "learner_queue_timeout",
            "num_aggregation_workers",
            "min_time_s_per_iteration",
            "min_train_timesteps_per_iteration",
            "metrics_num_episodes_for_smoothing",
            "keep_per_episode_custom_metrics",
            "always_attach_evaluation_results",
            "evaluation_sample_timeout_s",
            "evaluation_force_reset_envs_before_iteration",
            "worker_side_prioritization",
        ),
        "—",
        _INFRA,
        warn=True,
    ),
)

#: Keys of `stop` (RLlib result names, old and new) → `spec.stop`.
STOP_RULES: dict[str, str] = {
    "episode_reward_mean": "episodeReturnMean",
    "episode_return_mean": "episodeReturnMean",
    "sampler_results/episode_reward_mean": "episodeReturnMean",
    "env_runners/episode_reward_mean": "episodeReturnMean",
    "env_runners/episode_return_mean": "episodeReturnMean",
    "timesteps_total": "timesteps",
    "num_env_steps_sampled": "timesteps",
    "num_env_steps_sampled_lifetime": "timesteps",
    "env_runners/num_env_steps_sampled_lifetime": "timesteps",
    "training_iteration": "iterations",
    "time_total_s": "timeSeconds",
}

#: Keys of one experiment (beside `config`) → the job.
EXPERIMENT_RULES: dict[str, str] = {
    "run": "algorithm",
    "env": "env",
    "stop": "stop (table below)",
    "config": "config keys (table above)",
    "checkpoint_freq": "checkpoint.everyIterations",
    "checkpoint_at_end": "checkpoint.atEnd",
    "keep_checkpoints_num": "checkpoint.keep",
    "checkpoint_config": "checkpoint_frequency, checkpoint_at_end, num_to_keep → checkpoint.everyIterations, atEnd, keep",
    "num_samples": "1 accepted; more refused: write spec.tune (docs/tune.md)",
    "local_dir": "runDir = local_dir/name",
    "storage_path": "runDir = storage_path/name",
}

_RULES: dict[str, Rule] = {key: rule for rule in CONFIG_RULES for key in rule.keys}


# -- helpers ---------------------------------------------------------------------------------------
def _names(model: Any) -> set[str]:
    """Every name a pydantic model accepts for its fields: snake, camel and validation aliases."""
    out: set[str] = set()
    for name, field in model.model_fields.items():
        out |= {name, to_camel(name)}
        if field.alias:
            out.add(field.alias)
        choices = getattr(field.validation_alias, "choices", None)
        if choices:
            out |= {c for c in choices if isinstance(c, str)}
    return out - {"algorithm"}


def _accepts(algorithm: str, field: str) -> bool:
    model = CONFIG_MODELS.get(algorithm)
    return model is not None and field in _names(model)


def _stochastic(algorithm: str) -> bool:
    """Whether the algorithm samples actions from its policy's distribution (the policy-gradient ones)."""
    return not any(_accepts(algorithm, f) for f in ("epsilon", "exploration_config", "buffer_size"))


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    node = doc
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if isinstance(value, Mapping) and isinstance(node.get(last), Mapping):
        node[last] = {**node[last], **value}
    else:
        node[last] = value


def _job_name(name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return slug[:MAX_NAME_LENGTH].strip("-") or "rllib-experiment"


def _grid_search(value: Any, path: str) -> str | None:
    """The path of the first Tune search space in `value`, if any."""
    if isinstance(value, Mapping):
        if any(k in value for k in ("grid_search", "choice", "uniform", "loguniform")) and len(value) == 1:
            return path
        for k, v in value.items():
            found = _grid_search(v, f"{path}.{k}")
            if found:
                return found
    return None


# -- conversion ------------------------------------------------------------------------------------
def is_rllib_experiment(doc: Any) -> bool:
    """An RLlib tuned-example file: top-level keys are experiment names, each a mapping with `run`."""
    return (
        isinstance(doc, Mapping)
        and bool(doc)
        and "kind" not in doc
        and "apiVersion" not in doc
        and all(isinstance(v, Mapping) and "run" in v for v in doc.values())
    )


def convert_config(
    config: Mapping[str, Any], algorithm: str, *, where: str = "config"
) -> tuple[dict[str, Any], list[str], list[tuple[str, str]]]:
    """An RLlib config dict → (spec fragment, warnings, problems). Problems are (key path, reason)."""
    spec: dict[str, Any] = {}
    warnings: list[str] = []
    problems: list[tuple[str, str]] = []
    ctx = Context(algorithm, config)
    for key, value in config.items():
        path = f"{where}.{key}"
        searched = _grid_search(value, path)
        if searched:
            problems.append(
                (searched, "Tune search spaces are written as spec.tune in kuberl (docs/tune.md)")
            )
            continue
        rule = _RULES.get(key)
        if rule is not None:
            if rule.warn:
                warnings.append(f"{path}: ignored ({rule.note.split(' (')[0]})")
                continue
            assert rule.convert is not None
            try:
                for target, v in rule.convert(value, ctx):
                    _set(spec, target, v)
            except RefusedError as exc:
                problems.append((path, str(exc)))
            continue
        if _accepts(algorithm, key):
            _set(spec, f"config.{key}", value)
            continue
        problems.append(
            (
                path,
                f"not a setting kuberl's {algorithm} has (its fields: docs/spec.md; RLlib keys: docs/rllib.md)",
            )
        )
    return spec, warnings, problems


def convert_stop(
    stop: Mapping[str, Any], *, where: str = "stop"
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    out: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, value in stop.items():
        target = STOP_RULES.get(key)
        if target is None:
            problems.append(
                (
                    f"{where}.{key}",
                    f"kuberl stops on {', '.join(sorted(set(STOP_RULES.values())))}; RLlib names for them: "
                    f"{', '.join(STOP_RULES)}",
                )
            )
        elif target in out and out[target] != value:
            problems.append(
                (f"{where}.{key}", f"sets {target} a second time ({out[target]!r} and {value!r})")
            )
        else:
            out[target] = value
    return out, problems


# -- one experiment, step by step: each step adds its part of the job to `spec` and returns its problems,
# so one SpecError names every bad key at once.
Problems = list[tuple[str, str]]
CHECKPOINT_CONFIG_KEYS = {
    "checkpoint_frequency": "everyIterations",
    "checkpoint_at_end": "atEnd",
    "num_to_keep": "keep",
}
CHECKPOINT_KEYS = {
    "checkpoint_freq": "everyIterations",
    "checkpoint_at_end": "atEnd",
    "keep_checkpoints_num": "keep",
}


def _unknown_keys(name: str, exp: Mapping[str, Any]) -> Problems:
    known = ", ".join(EXPERIMENT_RULES)
    return [
        (f"{name}.{key}", f"not an experiment key kuberl knows ({known})")
        for key in exp
        if key not in EXPERIMENT_RULES
    ]


def _algorithm(name: str, exp: Mapping[str, Any]) -> tuple[str, Problems]:
    run = exp.get("run")
    algorithm = str(run).upper() if isinstance(run, str) else ""
    if algorithm in ALGORITHMS:
        return algorithm, []
    return algorithm, [
        (f"{name}.run", f"{run!r} is not a kuberl algorithm; choose one of {', '.join(ALGORITHMS)}")
    ]


def _config(name: str, exp: Mapping[str, Any]) -> tuple[Mapping[str, Any], Problems]:
    config = exp.get("config") or {}
    if isinstance(config, Mapping):
        return config, []
    return {}, [(f"{name}.config", f"expected a mapping, got {type(config).__name__}")]


def _env(name: str, exp: Mapping[str, Any], config: Mapping[str, Any], spec: dict[str, Any]) -> Problems:
    """`env` beside `run` (it must agree with config.env when both are given) or config.env."""
    problems: Problems = []
    if "env" in exp:
        if "env" in config and config["env"] != exp["env"]:
            problems.append((f"{name}.env", f"{exp['env']!r} differs from config.env {config['env']!r}"))
        spec["env"] = exp["env"]
    if "env" not in spec:
        problems.append((f"{name}.env", "missing: give env beside run, or config.env"))
    return problems


def _stop(name: str, exp: Mapping[str, Any], spec: dict[str, Any]) -> Problems:
    stop = exp.get("stop") or {}
    if not isinstance(stop, Mapping):
        return [(f"{name}.stop", f"expected a mapping, got {type(stop).__name__}")]
    spec["stop"], problems = convert_stop(stop, where=f"{name}.stop")
    return problems


def _checkpoint(name: str, exp: Mapping[str, Any], spec: dict[str, Any]) -> Problems:
    """The old top-level checkpoint keys, then Tune's checkpoint_config (which wins where both are set)."""
    checkpoint = {CHECKPOINT_KEYS[key]: exp[key] for key in CHECKPOINT_KEYS if key in exp}
    problems: Problems = []
    cc = exp.get("checkpoint_config") or {}
    for key, value in cc.items() if isinstance(cc, Mapping) else ():
        if key in CHECKPOINT_CONFIG_KEYS:
            checkpoint[CHECKPOINT_CONFIG_KEYS[key]] = value
        else:
            problems.append(
                (f"{name}.checkpoint_config.{key}", f"kuberl has {', '.join(CHECKPOINT_CONFIG_KEYS)}")
            )
    if checkpoint:
        spec["checkpoint"] = checkpoint
    return problems


def _trials_and_storage(name: str, exp: Mapping[str, Any], spec: dict[str, Any]) -> Problems:
    """num_samples (only 1: repeated trials are spec.tune) and the storage folder (→ runDir)."""
    for key in ("storage_path", "local_dir"):
        if key in exp:
            spec["runDir"] = f"{str(exp[key]).rstrip('/')}/{name}"
    samples = exp.get("num_samples", 1)
    if samples == 1:
        return []
    return [(f"{name}.num_samples", f"{samples!r}: repeated trials are spec.tune in kuberl (docs/tune.md)")]


def convert_experiment(
    name: str, exp: Mapping[str, Any], *, source: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """One experiment → (an RLTrainingJob document, warnings). Raises SpecError naming every bad key."""
    problems = _unknown_keys(name, exp)
    algorithm, algorithm_problems = _algorithm(name, exp)
    config, config_type_problems = _config(name, exp)
    spec, warnings, config_problems = convert_config(config, algorithm, where=f"{name}.config")
    problems += algorithm_problems + config_type_problems + config_problems
    problems += _env(name, exp, config, spec)
    problems += _stop(name, exp, spec)
    problems += _checkpoint(name, exp, spec)
    problems += _trials_and_storage(name, exp, spec)
    if problems:
        raise SpecError(problems, source=source)
    spec["algorithm"] = algorithm
    doc = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": _job_name(name)}, "spec": spec}
    return doc, warnings


def convert_document(
    doc: Mapping[str, Any], *, source: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """A whole tuned-example file (exactly one experiment) → (RLTrainingJob document, warnings)."""
    if len(doc) != 1:
        raise SpecError(
            [
                (
                    "",
                    f"holds {len(doc)} experiments ({', '.join(map(str, doc))}); kuberl runs one job per file",
                )
            ],
            source=source,
        )
    ((name, exp),) = doc.items()
    return convert_experiment(str(name), exp, source=source)


# -- the docs table --------------------------------------------------------------------------------
def mapping_markdown() -> str:
    """The mapping tables of docs/rllib.md, generated from the rules above."""
    lines = ["### Experiment keys", "", "| RLlib key | kuberl |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in EXPERIMENT_RULES.items()]
    lines += ["", "### `stop` keys", "", "| RLlib result name | kuberl `spec.stop` field |", "|---|---|"]
    lines += [f"| `{k}` | `{v}` |" for k, v in STOP_RULES.items()]
    lines += ["", "### `config` keys", "", "| RLlib key(s) | kuberl field | how |", "|---|---|---|"]
    for rule in CONFIG_RULES:
        keys = ", ".join(f"`{k}`" for k in rule.keys)
        target = rule.target if rule.target == "—" else f"`{rule.target}`"
        note = (
            "accepted with a warning: " if rule.warn and not rule.note.startswith("accepted") else ""
        ) + rule.note
        lines.append(f"| {keys} | {target} | {note} |")
    lines.append(
        "| any other key | `config.<key>` | when the algorithm's config has that field (by its name or an "
        "RLlib alias such as `sgd_minibatch_size`, `num_sgd_iter`, `learning_starts`); else refused |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m kuberl.spec.rllib: print the docs tables
    print(mapping_markdown(), end="")
