"""The Algorithm API RLlib users know: build from a spec, `train()`, `save()`, `restore()`,
`compute_actions()`, `evaluate()`.

This base class owns what every algorithm shares: the env runners, counters, the episode window,
result assembly, observation-filter sync, checkpoint state and evaluation. An algorithm subclass
adds its learner and `training_step()`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

import gymnasium as gym
import numpy as np
import torch

from kuberl.checkpoint.errors import CheckpointMismatchError
from kuberl.core.action_spaces import action_space_problem
from kuberl.core.background import BackgroundEvaluation
from kuberl.core.callbacks import EpisodeMetrics, Hooks, hist_stats, summarize
from kuberl.core.env_runner import Rollout, RunnerConfig
from kuberl.core.evaluation import EpisodeStats, evaluation_seed, play, policy_input, policy_output
from kuberl.core.learner import Learner
from kuberl.core.models import load_numpy_weights
from kuberl.core.multi_agent.agent_q import TeamState
from kuberl.core.normalizer import RunningStats, filters_state
from kuberl.core.policy import PolicyFactory, RunnerPolicy
from kuberl.core.recurrent import (
    RecurrentActorCritic,
    RecurrentActorCriticPolicy,
    RecurrentState,
    is_recurrent,
)
from kuberl.core.runner_group import ActorEvaluation, EnvRunnerGroup, EvaluationRunnerGroup, RunnerGroup
from kuberl.core.sample_batch import Columns
from kuberl.core.state_io import dumps_state, loads_state
from kuberl.results import TrainResult
from kuberl.spec import RLTrainingJob, RLTrainingJobSpec, SpecError
from kuberl.spec.algorithms import AlgorithmConfigBase
from kuberl.spec.capabilities import ActionSpaceKind
from kuberl.spec.combinations import capability_problems

if TYPE_CHECKING:  # pyarrow, behind the writer, is imported only by jobs with spec.output
    from kuberl.core.offline.writer import Writer

log = logging.getLogger(__name__)

STATE_FILE = "algorithm_state.pt"
SPEC_FILE = "job.json"
EPISODE_WINDOW = 100  # episodes in episode_return_mean, as RLlib's metrics window and SB3's ep_info_buffer
# hist_stats lists hold at most this many of the iteration's episodes (the last ones to end), so a
# result.json line stays small when episodes are very short.
HIST_STATS_MAX = 1000


def seed_all(seed: int | None) -> np.random.Generator:
    """Seed Python's, NumPy's and torch's global generators (when a seed is given) and return the
    driver's own NumPy generator."""
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
    return np.random.default_rng(seed)


def rng_state(np_rng: np.random.Generator) -> dict[str, Any]:
    """Every random generator a driver draws from, for its checkpoint."""
    return {
        "numpy": np_rng.bit_generator.state,
        "numpy_global": np.random.get_state(),
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(np_rng: np.random.Generator, rng: Mapping[str, Any]) -> None:
    """The inverse of rng_state()."""
    np_rng.bit_generator.state = rng["numpy"]
    np.random.set_state(rng["numpy_global"])
    random.setstate(rng["python"])
    torch.set_rng_state(rng["torch"])


def check_action_space(name: str, kinds: frozenset[ActionSpaceKind], space: gym.Space[Any]) -> None:
    """A SpecError naming spec.env when the env's action space is not one the algorithm trains
    (its capabilities.action_spaces)."""
    problem = action_space_problem(name, kinds, space)
    if problem is not None:
        raise SpecError([("spec.env", f"the env {problem}")])


@dataclass(frozen=True)
class Parts:
    """What kuberl.build injects into an Algorithm, so the base class knows no special case: where the
    experience comes from, where it is recorded, who learns, and how many CPUs of Ray actors they need."""

    # The runner group, given the algorithm (its runner_config is set). None: make_runner_group().
    runner_group: Callable[[Algorithm], RunnerGroup] | None = None
    # The spec.output writer, given the algorithm (spaces, filter set). None: nothing recorded.
    writer: Callable[[Algorithm], Writer] | None = None
    # Wraps the learner setup() built (data-parallel learners). None: that learner trains alone.
    learner_group: Callable[[Any], Any] | None = None
    # CPUs the Ray actors (runners, learners) reserve: Ray is started or joined before they are built.
    # None: no Ray actors.
    ray_cpus: float | None = None
    # Evaluation actors (evaluation.numEnvRunners, counted in ray_cpus); 0: evaluate in the driver.
    evaluation_runners: int = 0


DEFAULT_POLICY = "default_policy"

# What a recurrent policy carries between compute_actions_with_state calls: an LSTM policy's
# RecurrentState, or a recurrent QMIX/VDN team's GRU states (one per agent).
PolicyState = RecurrentState | TeamState


class Policy:
    """One policy of an algorithm, as RLlib's `algo.get_policy()` gives it: its network (`model`), its
    weights, and inference. A view: it acts with, and writes weights into, the algorithm it came from."""

    def __init__(self, algorithm: Algorithm, policy_id: str = DEFAULT_POLICY) -> None:
        self.algorithm = algorithm
        self.policy_id = policy_id
        self.observation_space = algorithm.obs_space
        self.action_space = algorithm.action_space

    @property
    def model(self) -> torch.nn.Module:
        return self.algorithm.policy_module()

    def get_weights(self) -> dict[str, np.ndarray]:
        return self.algorithm.get_weights()

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        self.algorithm.set_weights(weights)

    def compute_actions(self, obs: Any, *, explore: bool = False) -> np.ndarray:
        return self.algorithm.compute_actions(obs, explore=explore)

    def compute_single_action(
        self, obs: Any, state: PolicyState | None = None, *, explore: bool = False
    ) -> tuple[Any, PolicyState | None, dict[str, Any]]:
        """(action, next state, extras) for one observation, as RLlib's Policy.compute_single_action.
        A recurrent policy starts from `state=None` and takes back the state it returned."""
        initial = self.algorithm.initial_state(1)
        if initial is not None:  # a recurrent policy (an LSTM, or a QMIX/VDN team's GRUs)
            state = state if state is not None else initial
            action, next_state = self.algorithm.compute_actions_with_state(obs, state, explore=explore)
            return action, next_state, {}
        return self.algorithm.compute_actions(obs, explore=explore), None, {}


@dataclass
class StepOutcome:
    """What a training step reports back to the base class."""

    rollouts: list[Rollout]
    env_steps_trained: int
    learner_stats: dict[str, float]
    timers: dict[str, float] = field(default_factory=dict)


class TrainingRun:
    """What every trainable run shares, single- or multi-agent: the job and its seeded generators, the
    user's driver-side callbacks, the progress counters and episode windows, the iteration's episode
    metrics, and checkpoints as files (save, restore, metadata). `Algorithm` adds runners, a learner and
    a training step; `kuberl.multi_agent.algorithm.MultiAgentAlgorithm` composes one Algorithm per
    policy. Callers use either through `kuberl.algorithms.api.AlgorithmAPI`."""

    name: str  # checkpoints record it: the algorithm's name

    def bind_job(self, job: RLTrainingJob, run_dir: Path | None) -> None:
        """The job, its spec and config, the run directory, and every random generator seeded from the job."""
        self.job = job
        self.spec: RLTrainingJobSpec = job.spec
        self.run_dir = Path(run_dir or self.spec.run_dir or Path("runs") / job.metadata.name)
        self.np_rng = seed_all(self.spec.seed)
        # The user's callbacks (config.callbacks), driver side; the runners build their own.
        self.hooks = Hooks(job.spec.config.callbacks)
        self.reset_iteration_episodes()

    def reset_iteration_episodes(self) -> None:
        """The episodes that end during the next iteration: hist_stats and custom_metrics cover these."""
        self.iter_returns: list[float] = []
        self.iter_lengths: list[int] = []
        self.iter_metrics = EpisodeMetrics()

    def reset_progress(self) -> None:
        """Counters and episode windows of a run that has not trained yet (restored from checkpoints)."""
        self.iteration = 0
        self.timesteps = 0
        self.timesteps_trained = 0
        self.episodes_total = 0
        self.time_total = 0.0
        self.env_restarts = 0
        self.returns: deque[float] = deque(maxlen=EPISODE_WINDOW)
        self.lengths: deque[int] = deque(maxlen=EPISODE_WINDOW)
        self._window_stats: tuple[int, dict[str, float | None]] | None = None
        self.last_checkpoint: str | None = None
        # The run this algorithm's checkpoints belong to: a fresh one unless the trainer continues a run
        # (`resume: auto`); retention and `latest` compare iterations only within a run (checkpoint/store.py).
        self.run_id = uuid.uuid4().hex[:12]

    def restore_progress(self, state: Mapping[str, Any]) -> None:
        """The progress counters and the episode windows of a checkpoint's state (single- and multi-agent
        checkpoints write them alike)."""
        c = state["counters"]
        self.iteration = int(c["iteration"])
        self.timesteps = int(c["timesteps"])
        self.timesteps_trained = int(c["timesteps_trained"])
        self.episodes_total = int(c["episodes_total"])
        self.time_total = float(c["time_total"])
        self.returns.clear()
        self.returns.extend(state["episodes"]["returns"])
        self.lengths.clear()
        self.lengths.extend(state["episodes"]["lengths"])
        self._window_stats = None

    def window_stats(self) -> dict[str, float | None]:
        """Return mean/min/max and mean length over the episode window, recomputed only when episodes
        have ended since (record_experience counts them): SAC/TD3 iterate once per env step during
        their random warm-up, and four numpy reductions per iteration cost a tenth of such a step."""
        cached = self._window_stats
        if cached is not None and cached[0] == self.episodes_total:
            return cached[1]
        returns = list(self.returns)
        stats: dict[str, float | None] = {
            "episode_return_mean": float(np.mean(returns)) if returns else None,
            "episode_return_min": float(np.min(returns)) if returns else None,
            "episode_return_max": float(np.max(returns)) if returns else None,
            "episode_len_mean": float(np.mean(self.lengths)) if returns else None,
        }
        self._window_stats = (self.episodes_total, stats)
        return stats

    def add_episode_metrics(self, result: TrainResult) -> None:
        """custom_metrics (name_mean/_min/_max over this iteration's ended episodes) and hist_stats."""
        result["custom_metrics"] = summarize(self.iter_metrics.custom_metrics)
        result["hist_stats"] = {
            k: v[-HIST_STATS_MAX:]
            for k, v in hist_stats(self.iter_returns, self.iter_lengths, self.iter_metrics.hist_data).items()
        }

    # -- each kind of run has its own state and policies --------------------------------------------
    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_state(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def get_policy(self, policy_id: str = DEFAULT_POLICY) -> Policy:
        raise NotImplementedError

    def compute_single_action(
        self,
        obs: Any,
        state: PolicyState | None = None,
        *,
        explore: bool = False,
        policy_id: str = DEFAULT_POLICY,
    ) -> Any:
        """RLlib's shape: the action for one observation; with a recurrent policy (or a `state`
        given) the tuple (action, next state, {})."""
        policy = self.get_policy(policy_id)
        action, next_state, extras = policy.compute_single_action(obs, state, explore=explore)
        return (action, next_state, extras) if next_state is not None else action

    def checkpoint_files(self) -> dict[str, bytes]:
        self.hooks("on_save", algorithm=self, checkpoint_name=self.checkpoint_name())
        state = dumps_state(self.get_state())
        # Only the fields the user set: defaults may change between versions, and a checkpoint must
        # stay loadable when they do.
        doc = self.job.model_dump(mode="json", by_alias=True, exclude_unset=True)
        spec = json.dumps(doc, indent=2).encode()
        return {STATE_FILE: state, SPEC_FILE: spec}

    def load_checkpoint_files(self, files: Mapping[str, bytes], *, where: str = "checkpoint") -> None:
        # Never unpickles code: the store is a trust boundary (core/state_io.py, docs/reliability.md).
        state = loads_state(files[STATE_FILE], where=f"{where}/{STATE_FILE}")
        try:
            self.set_state(state)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            # Another algorithm's or network shape's state, or a hand-made file: say so, no traceback.
            raise CheckpointMismatchError(f"{where}: cannot restore it into this job: {exc}") from None
        self.hooks("on_checkpoint_loaded", algorithm=self)

    def default_checkpoint_uri(self) -> str:
        return self.spec.checkpoint.uri or str(self.run_dir / "checkpoints")

    def progress(self) -> TrainResult:
        """The counters a stop criterion reads, under the result dict's keys (as restored, before training)."""
        return {
            "training_iteration": self.iteration,
            "timesteps_total": self.timesteps,
            "time_total_s": self.time_total,
            "episode_return_mean": self.window_stats()["episode_return_mean"],
        }

    def checkpoint_metadata(self) -> dict[str, Any]:
        """The manifest metadata of a checkpoint of the current state (what listings order by)."""
        return {
            "iteration": self.iteration,
            "timesteps": self.timesteps,
            "algorithm": self.name,
            "episode_return_mean": self.window_stats()["episode_return_mean"],
            "run": self.run_id,
        }

    def checkpoint_name(self) -> str:
        return f"checkpoint_{self.iteration:06d}"

    def save(self, uri: str | None = None) -> str:
        """Write a complete checkpoint (manifest last) to `uri` or the spec's checkpoint location."""
        from kuberl.checkpoint import open_store

        store = open_store(uri or self.default_checkpoint_uri())
        info = store.save(
            self.checkpoint_name(), self.checkpoint_files(), metadata=self.checkpoint_metadata()
        )
        store.prune(self.spec.checkpoint.keep, run=self.run_id)
        self.last_checkpoint = info.uri
        return info.uri

    def restore(self, uri: str) -> None:
        """Load a checkpoint URI (one checkpoint, or a store root → its newest complete checkpoint)."""
        from kuberl.checkpoint import load_checkpoint

        loaded = load_checkpoint(uri)
        self.load_checkpoint_files(loaded.files, where=loaded.info.uri)
        self.last_checkpoint = loaded.info.uri


# The algorithm's config model (kuberl.spec.algorithms): `Algorithm[PPOConfig]` makes `self.config` a
# PPOConfig for mypy; the registry pairs each algorithm with its config class, so the cast holds.
ConfigT = TypeVar("ConfigT", bound=AlgorithmConfigBase)


class Algorithm(TrainingRun, Generic[ConfigT]):
    """Base class. Subclasses build their learner in `setup()` and implement `training_step()`."""

    name = "base"
    # A custom algorithm (`spec.algorithm: pkg.mod:Class`, kuberl.spec.custom) names its config model here;
    # the built-ins are paired with theirs by the model's `implementation`.
    config_class: ClassVar[type[AlgorithmConfigBase] | None] = None
    # What the training step does with experience, so a job whose spec.input, spec.output or
    # MeanStdFilter it would silently ignore or get wrong is refused here too, not only by the spec's
    # capabilities (tests/contract runs every job with those lifted): the offline family reads spec.input
    # and never samples the env; replay algorithms store filtered observations, whose statistics drift.
    reads_input: ClassVar[bool] = False
    samples_env: ClassVar[bool] = True
    replays_observations: ClassVar[bool] = False
    learner: Learner  # set by setup() in algorithms with one learner (see the defaults below)
    torch_gen: torch.Generator  # optional: a learner-side minibatch generator, checkpointed when present
    # config.normalizeRewards' merged statistics; None also for the algorithms whose own __init__ builds
    # no single-agent runners (QMIX/VDN).
    reward_filter: RunningStats | None = None

    def bind_job(self, job: RLTrainingJob, run_dir: Path | None) -> None:
        super().bind_job(job, run_dir)
        self.config: ConfigT = cast(ConfigT, job.spec.config)

    def reset_progress(self) -> None:
        super().reset_progress()
        # compute_actions' policy, rebuilt when weights_version moves (training, weight syncs, restores).
        self.weights_version = 0
        self._inference: tuple[tuple[int, int], RunnerPolicy] | None = None
        self.background_evaluation: BackgroundEvaluation | None = None  # evaluation.parallelToTraining

    def __init__(
        self, job: RLTrainingJob, *, run_dir: Path | None = None, parts: Parts | None = None
    ) -> None:
        """`parts`: what kuberl.build picked for this job (runners, writer, learner group, Ray); without
        them the algorithm samples with its own runner group and records nothing."""
        parts = parts or Parts()
        self.bind_job(job, run_dir)
        self.check_experience_features()
        seed = self.spec.seed
        res = self.spec.resources
        if parts.ray_cpus is not None:
            from kuberl.core.ray_init import ensure_ray

            ensure_ray(parts.ray_cpus)
        self.runner_config = RunnerConfig(
            env=self.spec.env,
            env_config=dict(self.spec.env_config),
            num_envs=res.envs_per_runner,
            rollout_length=self.rollout_length(),
            model=self.config.model,
            seed=seed,
            use_filter=self.config.observation_filter == "MeanStdFilter",
            reward_norm_gamma=self.config.gamma if self.config.normalize_rewards else None,
            reward_norm_clip=self.config.normalized_reward_clip,
            callbacks=self.config.callbacks,
            # spec.output records s' for every transition, whatever the algorithm needs itself.
            **{**self.runner_overrides(), **({"store_next_obs": True} if self.spec.output else {})},
        )
        self.runners: RunnerGroup = (
            parts.runner_group(self) if parts.runner_group is not None else self.make_runner_group()
        )
        self.obs_space, self.action_space = self.runners.spaces()
        check_action_space(self.name, self.config.capabilities.action_spaces, self.action_space)
        self.obs_filter: RunningStats | None = (
            RunningStats(shape=(gym.spaces.flatdim(self.obs_space),))
            if self.runner_config.use_filter
            else None
        )
        # config.normalizeRewards: the merged statistics of the discounted returns (kuberl.core.normalizer).
        self.reward_filter = RunningStats(shape=(1,)) if self.config.normalize_rewards else None
        self.reset_progress()
        self.setup()
        if self.config.model.use_lstm and not is_recurrent(self.policy_module()):
            raise SpecError(
                [
                    (
                        "spec.config.model.useLstm",
                        f"{self.name} builds a feed-forward network; it has no LSTM policy",
                    )
                ]
            )
        if parts.learner_group is not None:
            self.learner = parts.learner_group(self.learner)
        self.evaluation_runners: EvaluationRunnerGroup | None = (
            self.make_evaluation_runners(parts.evaluation_runners) if parts.evaluation_runners else None
        )
        self.writer: Writer | None = parts.writer(self) if parts.writer is not None else None
        self.sync_weights()
        self.hooks("on_algorithm_init", algorithm=self)

    def make_evaluation_runners(self, n: int) -> EvaluationRunnerGroup:
        """`n` evaluation actors acting as compute_actions does: the inference policy with its options,
        on envs with spec.evaluation.envConfig over spec.envConfig."""
        config = dataclasses.replace(
            self.runner_config,
            env_config={**self.spec.env_config, **self.spec.evaluation.env_config},
            policy=self.inference_policy_factory(),
            callbacks=None,  # evaluation episodes are not training episodes: no user hooks
            reward_norm_gamma=None,  # evaluation reports raw returns and trains nothing
        )
        return EvaluationRunnerGroup(
            config, num_runners=n, cpus_per_runner=self.spec.resources.cpus_per_runner
        )

    def check_experience_features(self) -> None:
        """Refuse (naming every field) what this algorithm's training step would ignore or get wrong: what
        the class says of its training step, which holds even where the capabilities claim more, and the
        config's capability rules in validation's words (a custom algorithm's job is refused alike)."""
        spec = self.spec
        problems: list[tuple[str, str]] = []
        if spec.input_ is not None and not self.reads_input:
            problems.append(("spec.input", f"{self.name} learns from the env and never reads spec.input"))
        if spec.output is not None and not self.samples_env:
            problems.append(("spec.output", f"{self.name} never samples the env: nothing to record"))
        # Validation's fields are relative to spec; SpecError paths here start at spec.
        problems += [
            (f"spec.{path}", reason) for path, reason in capability_problems(self.config, spec.algorithm)
        ]
        if self.config.observation_filter != "NoFilter" and self.replays_observations:
            problems.append(
                (
                    "spec.config.observationFilter",
                    f"{self.name} replays observations filtered with the statistics of when they were "
                    "sampled, which keep drifting",
                )
            )
        first: dict[str, str] = {}
        for path, reason in problems:  # one reason per field, as validation gives: the capability's
            first.setdefault(path, reason)
        if first:
            raise SpecError(list(first.items()))

    # -- to implement ------------------------------------------------------------------------------
    def rollout_length(self) -> int:
        """Vector steps per runner per sample() call."""
        return 1

    def runner_overrides(self) -> dict[str, Any]:
        """RunnerConfig fields this algorithm sets: `policy` (import path of its RunnerPolicy),
        `policy_options`, `store_next_obs`. Default: the actor-critic policy."""
        return {}

    def make_runner_group(self) -> RunnerGroup:
        """The env runners. Default: EnvRunner actors; an algorithm whose runners do more than sample
        (A3C's runners also compute gradients) returns a subclass."""
        res = self.spec.resources
        return EnvRunnerGroup(
            self.runner_config, num_runners=res.env_runners, cpus_per_runner=res.cpus_per_runner
        )

    def runner_options(self) -> dict[str, Any] | None:
        """Options sent to the runner policies with every weight sync (e.g. the current epsilon)."""
        return None

    def setup(self) -> None:
        raise NotImplementedError

    def training_step(self) -> StepOutcome:
        raise NotImplementedError

    # Defaults for algorithms with one `self.learner` (a kuberl.core.learner.Learner) and optionally a
    # `self.torch_gen` minibatch generator; algorithms with other state override them.
    def policy_module(self) -> torch.nn.Module:
        module: torch.nn.Module = self.learner.module
        return module

    def get_weights(self) -> dict[str, np.ndarray]:
        weights: dict[str, np.ndarray] = self.learner.get_weights()
        return weights

    def algorithm_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"learner": self.learner.get_state()}
        if hasattr(self, "torch_gen"):
            state["torch_gen"] = self.torch_gen.get_state()
        return state

    def set_algorithm_state(self, state: Mapping[str, Any]) -> None:
        self.learner.set_state(state["learner"])
        if "torch_gen" in state:
            self.torch_gen.set_state(state["torch_gen"])

    # -- shared machinery --------------------------------------------------------------------------
    def sync_weights(self) -> None:
        self.weights_version += 1
        self.runners.sync(
            self.get_weights(), filters_state(self.obs_filter, self.reward_filter), self.runner_options()
        )

    def sample(self) -> list[Rollout]:
        rollouts = self.runners.sample()
        for r in rollouts:
            self.record_rollout(r)
        return rollouts

    def record_rollout(self, r: Rollout) -> None:
        """Episode, step and observation-filter bookkeeping for experience that arrived from a runner."""
        if self.writer is not None:
            self.writer.add(r)
        if r.episode_metrics is not None:
            self.iter_metrics.extend(r.episode_metrics)
        self.record_experience(
            episode_returns=r.episode_returns,
            episode_lengths=r.episode_lengths,
            env_steps=r.batch.env_steps,
            env_restarts=r.env_restarts,
            filter_delta=r.filter_delta,
            reward_delta=r.reward_delta,
        )

    def record_experience(
        self,
        *,
        episode_returns: list[float],
        episode_lengths: list[int],
        env_steps: int,
        env_restarts: int,
        filter_delta: RunningStats | None,
        reward_delta: RunningStats | None = None,
    ) -> None:
        self.returns.extend(episode_returns)
        self.lengths.extend(episode_lengths)
        self.iter_returns.extend(episode_returns)
        self.iter_lengths.extend(episode_lengths)
        self.episodes_total += len(episode_returns)
        self.env_restarts += env_restarts
        self.timesteps += env_steps
        if self.obs_filter is not None and filter_delta is not None:
            self.obs_filter.merge(filter_delta)
        if self.reward_filter is not None and reward_delta is not None:
            self.reward_filter.merge(reward_delta)

    def train(self) -> TrainResult:
        """Run one training iteration and return its result dict."""
        start = time.perf_counter()
        steps_before, episodes_before = self.timesteps, self.episodes_total
        self.reset_iteration_episodes()
        outcome = self.training_step()
        self.hooks(
            "on_learn_on_batch", algorithm=self, samples=outcome.rollouts, result=outcome.learner_stats
        )
        self.weights_version += 1
        self.timesteps_trained += outcome.env_steps_trained
        self.iteration += 1
        elapsed = time.perf_counter() - start
        self.time_total += elapsed
        result = self._result(
            outcome, elapsed, self.timesteps - steps_before, self.episodes_total - episodes_before
        )
        result.update(self.runners.report())  # e.g. the policy server's counters (docs/external.md)
        self.evaluate_into(result)
        self.add_episode_metrics(result)
        self.hooks("on_train_result", algorithm=self, result=result)
        return result

    def evaluate_into(self, result: TrainResult) -> None:
        """result["evaluation"] every evaluation.interval iterations; with parallelToTraining, the
        statistics of the evaluation a previous iteration launched, whenever it has finished."""
        ev = self.spec.evaluation
        due = bool(ev.interval) and self.iteration % ev.interval == 0
        if not ev.parallel_to_training:
            if due:
                result["evaluation"] = self.evaluate()
            return
        if self.background_evaluation is None:
            self.background_evaluation = BackgroundEvaluation()
        done = self.background_evaluation.collect()
        if done is not None:
            result["evaluation"] = done
        if due and self.evaluation_runners is not None:
            # The actors get this iteration's weights now, before the next iteration changes them.
            self.background_evaluation.launch_with(self.iteration, self.start_evaluation)
        elif due:
            self.background_evaluation.launch(self.iteration, self.frozen().evaluate)

    def frozen(self) -> Algorithm[Any]:
        """A view of this algorithm that acts with this moment's weights and observation filter, for an
        evaluation on another thread while training goes on: compute_actions and
        compute_actions_with_state act through the inference policy, which training replaces (never
        changes) when the weights change — the view keeps this one —, and the filter is copied."""
        view = copy.copy(self)
        view.obs_filter = copy.deepcopy(self.obs_filter)
        view._inference = ((self.weights_version, self.timesteps), self.inference_policy())
        return view

    def _result(self, outcome: StepOutcome, elapsed: float, sampled: int, episodes: int) -> TrainResult:
        window = self.window_stats()
        return {
            "training_iteration": self.iteration,
            "timesteps_total": self.timesteps,
            "num_env_steps_sampled": sampled,
            "num_env_steps_sampled_lifetime": self.timesteps,
            "num_env_steps_trained": outcome.env_steps_trained,
            "num_env_steps_trained_lifetime": self.timesteps_trained,
            "episodes_total": self.episodes_total,
            "episodes_this_iter": episodes,
            "episode_return_mean": window["episode_return_mean"],
            "episode_return_min": window["episode_return_min"],
            "episode_return_max": window["episode_return_max"],
            "episode_len_mean": window["episode_len_mean"],
            "time_this_iter_s": elapsed,
            "time_total_s": self.time_total,
            "env_steps_per_s": sampled / max(outcome.timers.get("sample", elapsed), 1e-9),
            "timers": outcome.timers,
            "learner": {"default_policy": outcome.learner_stats},
            "env_runners": {
                "num_healthy": self.runners.num_healthy,
                "restarts_total": self.runners.restarts,
                "env_restarts_total": self.env_restarts,
            },
        }

    # -- the policy API ----------------------------------------------------------------------------
    def get_policy(self, policy_id: str = DEFAULT_POLICY) -> Policy:
        """The policy `policy_id` (a single-agent algorithm has one: "default_policy")."""
        if policy_id != DEFAULT_POLICY:
            raise KeyError(f"{policy_id!r}: a single-agent algorithm has one policy, {DEFAULT_POLICY!r}")
        return Policy(self, policy_id)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load `weights` (as get_weights() returns them) into the policy network and send them to the
        runners. Target networks (DQN, SAC, …) catch up at their next scheduled update."""
        load_numpy_weights(self.policy_module(), dict(weights))
        self.sync_weights()

    # -- inference ---------------------------------------------------------------------------------
    def inference_policy_factory(self) -> PolicyFactory:
        """The RunnerPolicy compute_actions acts with: the runners' own. An algorithm whose runners never
        act (CQL samples no env) names the one its policy network belongs to."""
        return self.runner_config.policy

    def inference_options(self) -> dict[str, Any]:
        """The policy's per-iteration options for compute_actions: the runners' current ones."""
        return dict(self.runner_options() or {})

    def inference_policy(self) -> RunnerPolicy:
        """A CPU RunnerPolicy with the current weights and options: the one inference path, the same
        act() the runners sample with. Rebuilt only when the weights may have changed."""
        version = (self.weights_version, self.timesteps)
        if self._inference is None or self._inference[0] != version:
            rc = self.runner_config
            factory = self.inference_policy_factory()
            policy = factory(self.obs_space, self.action_space, rc.model, dict(rc.policy_options))
            load_numpy_weights(policy.module, self.get_weights())
            policy.set_options(self.inference_options())
            policy.module.eval()
            self._inference = (version, policy)
        return self._inference[1]

    def compute_actions(self, obs: np.ndarray, *, explore: bool = False) -> np.ndarray:
        """Actions for a batch of raw observations [B, ...] (or one observation): the runner policy's
        deterministic action, or (explore) what a runner would sample."""
        if is_recurrent(self.policy_module()):
            raise ValueError(
                "this policy is recurrent (model.use_lstm): use compute_actions_with_state(obs, state) "
                "with state = initial_state(batch_size)"
            )
        policy = self.inference_policy()
        single, flat = policy_input(self.obs_space, obs, self.obs_filter)
        with torch.inference_mode():
            # The global generator: exploring draws from torch's global stream, which seed_all seeds.
            out = policy.act(torch.as_tensor(flat), explore=explore, generator=torch.default_generator)
        return policy_output(self.action_space, out[Columns.ACTIONS], single)

    def initial_state(self, batch_size: int = 1) -> PolicyState | None:
        """A recurrent policy's state at the start of `batch_size` episodes; None for feed-forward ones."""
        module = self.policy_module()
        return module.initial_state(batch_size) if isinstance(module, RecurrentActorCritic) else None

    def compute_actions_with_state(
        self, obs: Any, state: PolicyState, *, explore: bool = False
    ) -> tuple[Any, PolicyState]:
        """A recurrent policy's actions and next state (RLlib's compute_single_action(obs, state)).

        `state` holds one row per observation (one row for a single observation). After stepping the
        env, call `state.after_step(rewards, dones)` on the returned state: it records the rewards (for
        lstm_use_prev_reward) and resets the rows whose episode ended."""
        policy = self.inference_policy()
        if not isinstance(policy, RecurrentActorCriticPolicy):
            raise ValueError("this policy is not recurrent: use compute_actions(obs)")
        if not isinstance(state, RecurrentState):
            raise ValueError(
                f"an LSTM policy's state is a RecurrentState (initial_state()), not {type(state).__name__}"
            )
        single, flat = policy_input(self.obs_space, obs, self.obs_filter)
        with torch.inference_mode():
            # The runner policy's act(), from the caller's state: the same step the runners sample with.
            out, next_state = policy.act_from(
                torch.as_tensor(flat), state, explore=explore, generator=torch.default_generator
            )
        return policy_output(self.action_space, out[Columns.ACTIONS], single), next_state

    def evaluate(
        self, episodes: int | None = None, *, explore: bool | None = None, timesteps: int | None = None
    ) -> dict[str, Any]:
        """Play episodes on fresh environments; returns return/length statistics. On the evaluation
        actors when the job has them (evaluation.numEnvRunners, with `num_env_runners`: how many played),
        else in the driver.

        `episodes` (default spec.evaluation.episodes) full episodes, or, with `timesteps` (default
        spec.evaluation.timesteps when no `episodes` are asked for), that many env steps: the statistics
        then cover the episodes completed within them (none: the returns are None), as RLlib's
        evaluation_duration_unit: timesteps does. The evaluation envs get spec.envConfig updated with
        spec.evaluation.envConfig."""
        n, explore, timesteps = self._evaluation_duration(episodes, explore, timesteps)
        if self.evaluation_runners is not None:
            return self.start_evaluation(n, explore=explore, timesteps=timesteps).result()
        returns, lengths, steps = self.play_episodes(n, explore=explore, timesteps=timesteps)
        return EpisodeStats(returns, lengths, steps).summary()

    def _evaluation_duration(
        self, episodes: int | None, explore: bool | None, timesteps: int | None
    ) -> tuple[int | None, bool, int | None]:
        """(episodes, explore, timesteps) of an evaluation, the spec's where the caller gives none."""
        ev = self.spec.evaluation
        if timesteps is None and episodes is None:
            timesteps = ev.timesteps
        n = None if timesteps is not None and episodes is None else episodes or ev.episodes
        return n, ev.explore if explore is None else explore, timesteps

    def start_evaluation(
        self, episodes: int | None = None, *, explore: bool | None = None, timesteps: int | None = None
    ) -> ActorEvaluation:
        """Start an evaluation on the evaluation actors with the current weights, observation filter and
        inference options; returns at once (the statistics: .result())."""
        assert self.evaluation_runners is not None, "the job has no evaluation actors"
        n, explore, timesteps = self._evaluation_duration(episodes, explore, timesteps)
        return self.evaluation_runners.start(
            self.get_weights(),
            self.obs_filter.state() if self.obs_filter is not None else None,
            self.inference_options(),
            episodes=n,
            timesteps=timesteps,
            explore=explore,
        )

    def play_episodes(
        self, n: int | None, *, explore: bool, timesteps: int | None = None
    ) -> tuple[list[float], list[int], int]:
        """(returns, lengths, env steps) of the episodes played with this policy on evaluation
        environments in the driver until `n` episodes are complete or `timesteps` env steps are taken,
        whichever comes first (None: no such limit; one of the two must be given)."""

        def act(obs: Any, state: PolicyState | None) -> tuple[Any, PolicyState | None]:
            if state is None:
                return self.compute_actions(obs, explore=explore), None
            return self.compute_actions_with_state(obs, state, explore=explore)

        stats = play(
            self.spec.env,
            {**self.spec.env_config, **self.spec.evaluation.env_config},
            act=act,
            initial_state=self.initial_state,  # recurrent policies: one LSTM state per sub-env
            n=n,
            timesteps=timesteps,
            seed=evaluation_seed(self.spec.seed),
        )
        return stats.returns, stats.lengths, stats.steps

    # -- checkpoints -------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = {
            "algorithm": self.name,
            "counters": {
                "iteration": self.iteration,
                "timesteps": self.timesteps,
                "timesteps_trained": self.timesteps_trained,
                "episodes_total": self.episodes_total,
                "time_total": self.time_total,
                "env_restarts": self.env_restarts,
                "runner_restarts": self.runners.restarts,
            },
            "episodes": {"returns": list(self.returns), "lengths": list(self.lengths)},
            "filter": self.obs_filter.state() if self.obs_filter is not None else None,
            "rng": rng_state(self.np_rng),
            "algo": self.algorithm_state(),
        }
        if self.reward_filter is not None:  # only then: every other checkpoint stays as it was
            state["reward_filter"] = self.reward_filter.state()
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        if state.get("algorithm") != self.name:
            raise ValueError(f"checkpoint is for algorithm {state.get('algorithm')!r}, not {self.name!r}")
        self.restore_progress(state)
        c = state["counters"]
        self.env_restarts = int(c.get("env_restarts", 0))
        self.runners.restarts = int(c.get("runner_restarts", 0))
        if state.get("filter") is not None:
            self.obs_filter = RunningStats.from_state(state["filter"])
        if self.reward_filter is not None and state.get("reward_filter") is not None:
            self.reward_filter = RunningStats.from_state(state["reward_filter"])
        set_rng_state(self.np_rng, state["rng"])
        self.set_algorithm_state(state["algo"])
        self.sync_weights()

    def interrupt(self) -> None:
        """A stop signal arrived (called from its handler): a sample() that waits for experience (the
        policy server's) raises InterruptedError now instead of at the next batch. Env runners sample in
        bounded time and need nothing."""
        if hasattr(self, "runners"):  # a signal can arrive while __init__ still builds them
            self.runners.interrupt()

    def stop(self) -> None:
        background = getattr(self, "background_evaluation", None)  # None too when __init__ failed early
        if background is not None:
            background.close()
        evaluation_runners = getattr(self, "evaluation_runners", None)
        if evaluation_runners is not None:
            evaluation_runners.stop()
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
        self.runners.stop()
        if self.spec.resources.learners > 1 and hasattr(self, "learner"):
            self.learner.shutdown()


def is_finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
