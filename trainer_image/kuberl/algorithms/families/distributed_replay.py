"""What Ape-X DQN (kuberl.algorithms.apex) and Ape-X DDPG (kuberl.algorithms.apex_ddpg) share: the
paper's distributed prioritized replay (Horgan et al. 2018, https://arxiv.org/abs/1803.00933) around
whatever learner the algorithm brings.

  exploration → `exploration_ladder`: every sub-env of every runner explores with its own fixed rung
                base^(1 + α·i/(N−1)) of one ladder (Ape-X DQN's ε; Ape-X DDPG's action-noise scale),
                set once in the runner (`LadderEnvRunner`), never by the driver's weight syncs
  actor       → `LadderEnvRunner`: exploring fragments may come back with their transitions' initial
                priorities (`PRIORITIES`), when its policy prices them (`priorities(batch)`)
  learner     → `DistributedReplayAlgorithm.training_step`: runners sample asynchronously
                (kuberl.core.async_sampling); arriving fragments enter prioritized replay as n-step
                transitions with their priorities; the learner takes gradient steps at a fixed replay ratio,
                writes back new priorities and broadcasts weights every `broadcast_interval` updates,
                without blocking. Policy lag is reported as IMPALA reports it.

An algorithm brings its learner and four hooks: `learn_on` (one gradient step on a prioritized minibatch:
loss terms and |TD error|), `updates_owed` (the replay ratio in its config's units), `after_update`
(e.g. a hard target-network copy) and `initial_priorities` (when its runners do not price transitions).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from kuberl.algorithms.base import Algorithm, StepOutcome
from kuberl.core.async_sampling import AsyncSampler
from kuberl.core.env_runner import EnvRunner, Rollout, RunnerConfig
from kuberl.core.replay import INDICES, PrioritizedReplayBuffer
from kuberl.core.returns import nstep_transitions
from kuberl.core.runner_group import EnvRunnerGroup
from kuberl.core.sample_batch import SampleBatch
from kuberl.spec.algorithms.apex import APEXConfig
from kuberl.spec.algorithms.apex_ddpg import APEX_DDPGConfig

# The column a runner adds to each fragment: the initial priority of the n-step transition starting at
# each (t, sub-env), [T, N] in the order nstep_transitions flattens them.
PRIORITIES = "priorities"

# ---------------------------------------------------------------------------------------------------
# Exploration: the paper's per-actor ladder
# ---------------------------------------------------------------------------------------------------


def exploration_ladder(num_actors: int, *, base: float, alpha: float) -> np.ndarray:
    """base^(1 + α·i/(N−1)) for i = 0 … N−1 (Horgan et al. 2018, §4.1); one actor gets `base`."""
    if num_actors < 1:
        raise ValueError(f"need at least one actor, got {num_actors}")
    if num_actors == 1:
        return np.array([base], dtype=np.float64)
    i = np.arange(num_actors, dtype=np.float64)
    return np.power(base, 1.0 + alpha * i / (num_actors - 1))


def runner_rungs(
    worker_index: int, *, num_runners: int, envs_per_runner: int, base: float, alpha: float
) -> np.ndarray:
    """The ladder's rungs of one runner's sub-envs: the ladder spans every sub-env of every runner, runner
    1 taking the first `envs_per_runner` (the in-driver runner, index 0, stands for a single runner)."""
    runners = max(num_runners, 1)
    ladder = exploration_ladder(runners * envs_per_runner, base=base, alpha=alpha)
    start = (max(worker_index, 1) - 1) * envs_per_runner
    return ladder[start : start + envs_per_runner]


# ---------------------------------------------------------------------------------------------------
# Actor: sub-envs on fixed rungs, and (optionally) initial priorities for every fragment
# ---------------------------------------------------------------------------------------------------


def ladder_options(
    *, option: str, base: float, alpha: float, num_runners: int, prioritize: bool
) -> dict[str, Any]:
    """The policy_options a `LadderEnvRunner` reads: which policy option the rungs set (`option`), the
    ladder, and whether the runner prices its fragments."""
    return {
        "ladder_option": option,
        "ladder_base": base,
        "ladder_alpha": alpha,
        "num_runners": num_runners,
        "worker_side_prioritization": prioritize,
    }


class LadderEnvRunner(EnvRunner):
    """An EnvRunner whose sub-envs sit on fixed rungs of the ladder (its policy's `ladder_option`, one
    value per sub-env) and whose exploring fragments carry initial priorities from its policy's
    `priorities(batch)` (with `worker_side_prioritization`)."""

    def __init__(self, config: RunnerConfig) -> None:
        super().__init__(config)
        opts = config.policy_options
        self.prioritize = bool(opts["worker_side_prioritization"])
        self.rungs = runner_rungs(
            config.worker_index,
            num_runners=int(opts["num_runners"]),
            envs_per_runner=config.num_envs,
            base=float(opts["ladder_base"]),
            alpha=float(opts["ladder_alpha"]),
        )
        self.policy.set_options({str(opts["ladder_option"]): self.rungs})

    def sample(self, *, explore: bool = True) -> Rollout:
        rollout = super().sample(explore=explore)
        if explore and self.prioritize:
            rollout.batch[PRIORITIES] = self.policy.priorities(rollout.batch)  # type: ignore[attr-defined]
        return rollout


class LadderRunnerGroup(EnvRunnerGroup):
    runner_cls = LadderEnvRunner


# ---------------------------------------------------------------------------------------------------
# Learner: prioritized replay at a fixed replay ratio, asynchronous sampling, periodic broadcast
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriverSettings:
    """The driver loop's knobs, read from each algorithm's config (their field sets differ)."""

    train_batch_size: int
    n_step: int
    gamma: float
    learning_starts: int
    buffer_size: int
    broadcast_interval: int
    requests_in_flight: int
    min_sample_timesteps: int
    store_buffer: bool

    @classmethod
    def from_config(cls, cfg: APEXConfig | APEX_DDPGConfig, *, buffer_size: int) -> DriverSettings:
        """The knobs both configs name alike; `buffer_size` is passed in because the configs keep the
        replay capacity in different places (APEX's buffer_size, APEX_DDPG's replay_buffer_config)."""
        return cls(
            train_batch_size=cfg.train_batch_size,
            n_step=cfg.n_step,
            gamma=cfg.gamma,
            learning_starts=cfg.num_steps_sampled_before_learning_starts,
            buffer_size=buffer_size,
            broadcast_interval=cfg.broadcast_interval,
            requests_in_flight=cfg.max_requests_in_flight_per_env_runner,
            min_sample_timesteps=cfg.min_sample_timesteps_per_iteration,
            store_buffer=cfg.store_buffer_in_checkpoints,
        )


# The configs of the algorithms on this driver.
ConfigT = TypeVar("ConfigT", bound=APEXConfig | APEX_DDPGConfig)


class DistributedReplayAlgorithm(Algorithm[ConfigT]):
    """The driver is the paper's learner: it adds arriving fragments to replay and trains in between,
    never waiting for a runner unless it is ahead of the replay ratio. Subclasses define `settings`, build
    `learner` in `setup_learner` and `buffer` in `make_buffer`, and define the hooks."""

    buffer: PrioritizedReplayBuffer
    replays_observations = True

    # -- hooks ------------------------------------------------------------------------------------
    @property
    def settings(self) -> DriverSettings:
        """The driver's knobs, read from the config each time (a config changed mid-run applies)."""
        raise NotImplementedError(f"{type(self).__name__} must map its config to DriverSettings")

    def setup_learner(self) -> None:
        """Build `self.learner` (before the buffer: its seed is drawn after the networks initialise)."""
        raise NotImplementedError(f"{type(self).__name__} must build its learner")

    def make_buffer(self) -> PrioritizedReplayBuffer:
        raise NotImplementedError(f"{type(self).__name__} must build its replay buffer")

    def learn_on(self, minibatch: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """One gradient step on a prioritized minibatch (numpy, with importance WEIGHTS): the detached
        loss terms and |TD error| per sample (the new priorities)."""
        raise NotImplementedError(f"{type(self).__name__} must define its gradient step")

    def updates_owed(self, env_steps: int) -> float:
        """Gradient steps that `env_steps` newly stored steps earn (the replay ratio)."""
        raise NotImplementedError(f"{type(self).__name__} must define its replay ratio")

    def after_update(self) -> None:
        """Once after every gradient step (after `num_updates` counted it)."""

    def initial_priorities(
        self, transitions: Mapping[str, np.ndarray], from_runner: np.ndarray | None
    ) -> np.ndarray | None:
        """New transitions' priorities: the runner's by default (None: the largest so far)."""
        return from_runner

    def extra_stats(self) -> dict[str, float]:
        return {}

    def extra_state(self) -> dict[str, Any]:
        return {}

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        return None

    # -- setup ------------------------------------------------------------------------------------
    def rollout_length(self) -> int:
        fragment: int = self.config.rollout_fragment_length
        return fragment

    def make_runner_group(self) -> EnvRunnerGroup:
        res = self.spec.resources
        return LadderRunnerGroup(
            self.runner_config, num_runners=res.env_runners, cpus_per_runner=res.cpus_per_runner
        )

    def setup(self) -> None:
        self.setup_learner()
        self.buffer = self.make_buffer()
        # Asynchronous sampling keeps requests in flight on env runners (make_runner_group's).
        assert isinstance(self.runners, EnvRunnerGroup)
        self.sampler = AsyncSampler(self.runners, requests_per_runner=self.settings.requests_in_flight)
        self.num_updates = 0  # gradient steps so far: the weights version runners sample with
        self.broadcast_version = 0
        self.update_credit = 0.0  # gradient steps owed to the replay ratio (fractions carry over)

    # -- replay ------------------------------------------------------------------------------------
    def learning_started(self) -> bool:
        s = self.settings
        return self.timesteps >= s.learning_starts and len(self.buffer) >= min(
            s.train_batch_size, s.buffer_size
        )

    def owes_updates(self) -> bool:
        return self.update_credit >= 1.0 and self.learning_started()

    def add_to_replay(self, batch: SampleBatch, priorities: np.ndarray | None) -> None:
        """The fragment's n-step transitions, at the runner's priorities (or the learner's, or the
        largest so far)."""
        s = self.settings
        transitions = nstep_transitions(batch, n=s.n_step, gamma=s.gamma)
        given = None if priorities is None else np.asarray(priorities).reshape(-1)
        initial = self.initial_priorities(transitions, given)
        self.buffer.add(transitions, priorities=initial)
        if self.learning_started():
            self.update_credit += self.updates_owed(batch.env_steps)

    def learn_once(self) -> dict[str, torch.Tensor]:
        """One gradient step on a prioritized minibatch, and its new priorities."""
        minibatch = self.buffer.sample(self.settings.train_batch_size)
        indices = minibatch.pop(INDICES)
        terms, td_abs = self.learn_on(minibatch)
        self.buffer.update_priorities(indices, td_abs)
        self.num_updates += 1
        self.update_credit -= 1.0
        self.after_update()
        return terms

    # -- the step ----------------------------------------------------------------------------------
    def training_step(self) -> StepOutcome:
        s = self.settings
        start_steps = self.timesteps
        rollouts: list[Rollout] = []
        lags: list[int] = []
        sums: dict[str, torch.Tensor] = {}
        updates = 0
        timers = {"sample_wait": 0.0, "replay_add": 0.0, "learn": 0.0, "broadcast": 0.0}
        # Sample until the iteration has its steps, and pay the gradient steps they are owed.
        while self.timesteps - start_steps < s.min_sample_timesteps or self.owes_updates():
            if self.owes_updates():
                # The learner owes gradient steps: pay them before taking more data, a broadcast interval
                # at a time. Meanwhile each runner works off its queued requests, then idles, which
                # holds the replay ratio without starving the learner.
                t0 = time.perf_counter()
                for _ in range(min(s.broadcast_interval, math.floor(self.update_credit))):
                    for key, v in self.learn_once().items():
                        sums[key] = sums[key] + v if key in sums else v
                    updates += 1
                t1 = time.perf_counter()
                if self.num_updates - self.broadcast_version >= s.broadcast_interval:
                    self.broadcast()
                timers["learn"] += t1 - t0
                timers["broadcast"] += time.perf_counter() - t1
                continue
            t0 = time.perf_counter()
            items = self.sampler.poll()  # waits for the first fragment, takes every one that is ready
            t1 = time.perf_counter()
            for item in items:
                priorities = item.rollout.batch.pop(PRIORITIES, None)
                self.record_rollout(item.rollout)
                rollouts.append(item.rollout)
                lags.append(self.num_updates - item.weights_version)
                self.add_to_replay(item.rollout.batch, priorities)
            timers["sample_wait"] += t1 - t0
            timers["replay_add"] += time.perf_counter() - t1
        stats = {key: float(v) / updates for key, v in sums.items()} if updates else {}
        stats.update(
            policy_lag_mean=float(np.mean(lags)) if lags else 0.0,
            policy_lag_max=float(np.max(lags)) if lags else 0.0,
            weights_version=float(self.num_updates),
            num_updates=float(updates),
            buffer_size=float(len(self.buffer)),
            requests_in_flight=float(self.sampler.in_flight),
            **self.extra_stats(),
        )
        return StepOutcome(
            rollouts=rollouts,
            env_steps_trained=updates * s.train_batch_size,
            learner_stats=stats,
            timers=timers,
        )

    def broadcast(self) -> None:
        """New weights (and the driver's runner options) for each runner's next request (non-blocking)."""
        self.sampler.set_weights(self.get_weights(), None, self.runner_options(), version=self.num_updates)
        self.broadcast_version = self.num_updates

    def sync_weights(self) -> None:
        # Blocking sync of every runner (at start and after a restore); requests in flight were sampled
        # with weights that no longer exist and are dropped.
        super().sync_weights()
        self.sampler.mark_synced(self.num_updates)
        self.broadcast_version = self.num_updates

    # -- checkpoints -------------------------------------------------------------------------------
    def algorithm_state(self) -> dict[str, Any]:
        return {
            "learner": self.learner.get_state(),
            "num_updates": self.num_updates,
            **self.extra_state(),
            "update_credit": self.update_credit,
            "buffer": self.buffer.state() if self.settings.store_buffer else None,
        }

    def set_algorithm_state(self, state: Mapping[str, Any]) -> None:
        self.learner.set_state(state["learner"])
        self.num_updates = int(state["num_updates"])
        self.set_extra_state(state)
        self.update_credit = float(state["update_credit"])
        if state.get("buffer") is not None:
            self.buffer.set_state(state["buffer"])
