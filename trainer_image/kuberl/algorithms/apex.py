"""Ape-X DQN: distributed prioritized experience replay (Horgan et al. 2018,
https://arxiv.org/abs/1803.00933). Discrete actions.

Reads top to bottom like the paper's Algorithms 1 (actor) and 2 (learner):
  config   → `APEXConfig` (kuberl.spec.algorithms.apex; every field documented there, RLlib's APEX names)
  network  → `QNetwork` and the double-Q n-step TD loss `dqn_loss`, shared with DQN (kuberl.algorithms.families.q_learning)
  exploration → `epsilon_ladder`: every sub-env of every runner explores with its own fixed
             ε_i = ε^(1 + α·i/(N−1)) (ε = 0.4, α = 7 in the paper)
  actor    → `ApexEnvRunner` + `ApexPolicy`: epsilon-greedy on the ladder; each fragment comes back with
             the initial priority of each of its n-step transitions, |TD error| under the runner's own copy
             of the network (which bootstraps from itself: actors hold no target network)
  learner  → `APEX.training_step`: runners sample asynchronously (kuberl.core.async_sampling); arriving
             fragments enter prioritized replay with their priorities; the learner takes gradient steps at
             a fixed replay ratio (`training_intensity`), writes back new priorities, updates the target
             network every `target_network_update_freq` updates and broadcasts weights every
             `broadcast_interval` updates. Policy lag is reported as IMPALA reports it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from kuberl.algorithms.base import Algorithm, StepOutcome
from kuberl.algorithms.families.q_learning import QLearner, QPolicy, build_q_network, dqn_loss, head_options
from kuberl.core.async_sampling import AsyncSampler
from kuberl.core.env_runner import EnvRunner, Rollout, RunnerConfig
from kuberl.core.learner import select_device
from kuberl.core.replay import INDICES, WEIGHTS, PrioritizedReplayBuffer
from kuberl.core.returns import nstep_transitions
from kuberl.core.runner_group import EnvRunnerGroup
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.apex import APEXConfig

# The column a runner adds to each fragment: the initial priority of the n-step transition starting at
# each (t, sub-env), [T, N] in the order nstep_transitions flattens them.
PRIORITIES = "priorities"

# ---------------------------------------------------------------------------------------------------
# Exploration: the paper's per-actor epsilon ladder
# ---------------------------------------------------------------------------------------------------


def epsilon_ladder(num_actors: int, *, base: float, alpha: float) -> np.ndarray:
    """ε_i = base^(1 + α·i/(N−1)) for i = 0 … N−1 (Horgan et al. 2018, §4.1); one actor gets `base`."""
    if num_actors < 1:
        raise ValueError(f"need at least one actor, got {num_actors}")
    if num_actors == 1:
        return np.array([base], dtype=np.float64)
    i = np.arange(num_actors, dtype=np.float64)
    return np.power(base, 1.0 + alpha * i / (num_actors - 1))


def runner_epsilons(
    worker_index: int, *, num_runners: int, envs_per_runner: int, base: float, alpha: float
) -> np.ndarray:
    """The ladder's rungs of one runner's sub-envs: the ladder spans every sub-env of every runner, runner
    1 taking the first `envs_per_runner` (the in-driver runner, index 0, stands for a single runner)."""
    runners = max(num_runners, 1)
    ladder = epsilon_ladder(runners * envs_per_runner, base=base, alpha=alpha)
    start = (max(worker_index, 1) - 1) * envs_per_runner
    return ladder[start : start + envs_per_runner]


# ---------------------------------------------------------------------------------------------------
# Actor: epsilon-greedy on the ladder, and initial priorities for every fragment
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TDSettings:
    """What the runner's TD error needs of the config (kuberl.algorithms.families.q_learning.QLossConfig)."""

    double_q: bool
    td_error_loss_fn: Literal["huber", "mse"]


class ApexPolicy(QPolicy):
    """QPolicy (epsilon-greedy, one epsilon per sub-env here) that also prices its own transitions."""

    def build_module(
        self, obs_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
    ) -> torch.nn.Module:
        self.n_step = int(options["n_step"])
        self.gamma = float(options["gamma"])
        self.td = TDSettings(bool(options["double_q"]), options["td_error_loss_fn"])
        return super().build_module(obs_space, model, options)

    def priorities(self, batch: SampleBatch) -> np.ndarray:
        """|n-step TD error| [T, N] of the fragment's transitions under this network, which also
        bootstraps (the learner's loss with target = online; the paper's actors hold no target net)."""
        T, N = np.shape(batch[Columns.REWARDS])[:2]
        transitions = nstep_transitions(batch, n=self.n_step, gamma=self.gamma)
        data = {k: torch.from_numpy(np.asarray(v)) for k, v in transitions.items()}
        data[WEIGHTS] = torch.ones(T * N)
        with torch.inference_mode():
            _, td_abs = dqn_loss(self.module, self.module, data, config=self.td)
        return td_abs.numpy().reshape(T, N)


class ApexEnvRunner(EnvRunner):
    """An EnvRunner whose sub-envs sit on fixed rungs of the epsilon ladder and whose exploring
    fragments carry initial priorities (with `worker_side_prioritization`)."""

    def __init__(self, config: RunnerConfig) -> None:
        super().__init__(config)
        opts = config.policy_options
        self.prioritize = bool(opts["worker_side_prioritization"])
        self.epsilons = runner_epsilons(
            config.worker_index,
            num_runners=int(opts["num_runners"]),
            envs_per_runner=config.num_envs,
            base=float(opts["epsilon_base"]),
            alpha=float(opts["epsilon_alpha"]),
        )
        self.policy.set_options({"epsilon": self.epsilons})

    def sample(self, *, explore: bool = True) -> Rollout:
        rollout = super().sample(explore=explore)
        if explore and self.prioritize:
            policy = self.policy
            assert isinstance(policy, ApexPolicy)
            rollout.batch[PRIORITIES] = policy.priorities(rollout.batch)
        return rollout


class ApexRunnerGroup(EnvRunnerGroup):
    runner_cls = ApexEnvRunner


# ---------------------------------------------------------------------------------------------------
# Learner: prioritized replay at a fixed replay ratio, asynchronous sampling, periodic broadcast
# ---------------------------------------------------------------------------------------------------


class APEX(Algorithm[APEXConfig]):
    """The driver is the paper's learner: it adds arriving fragments to replay and trains in between,
    never waiting for a runner unless it is ahead of the replay ratio."""

    name = "APEX"
    learner: QLearner
    replays_observations = True

    def rollout_length(self) -> int:
        return self.config.rollout_fragment_length

    def inference_options(self) -> dict[str, Any]:
        # compute_actions explores at the ladder's first rung, not per runner sub-env.
        return {"epsilon": self.config.epsilon_base}

    def runner_overrides(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "policy": ApexPolicy,
            "policy_options": {
                **head_options(cfg),
                "n_step": cfg.n_step,
                "gamma": cfg.gamma,
                "double_q": cfg.double_q,
                "td_error_loss_fn": cfg.td_error_loss_fn,
                "epsilon_base": cfg.epsilon_base,
                "epsilon_alpha": cfg.epsilon_alpha,
                "num_runners": self.spec.resources.env_runners,
                "worker_side_prioritization": cfg.worker_side_prioritization,
            },
            "store_next_obs": True,
        }

    def make_runner_group(self) -> EnvRunnerGroup:
        res = self.spec.resources
        return ApexRunnerGroup(
            self.runner_config, num_runners=res.env_runners, cpus_per_runner=res.cpus_per_runner
        )

    def setup(self) -> None:
        cfg = self.config
        res = self.spec.resources
        module = build_q_network(self.obs_space, self.action_space, cfg.model, **head_options(cfg))
        device = select_device(res.gpus_per_learner, cpus_per_learner=res.cpus_per_learner)
        self.learner = QLearner(module, cfg, device)
        self.buffer = PrioritizedReplayBuffer(
            cfg.buffer_size,
            alpha=cfg.prioritized_replay_alpha,
            beta=cfg.prioritized_replay_beta,
            eps=cfg.prioritized_replay_eps,
            seed=int(self.np_rng.integers(2**63)),
        )
        # Asynchronous sampling keeps requests in flight on env runners (make_runner_group's).
        assert isinstance(self.runners, EnvRunnerGroup)
        self.sampler = AsyncSampler(
            self.runners, requests_per_runner=cfg.max_requests_in_flight_per_env_runner
        )
        self.num_updates = 0  # gradient steps so far: the weights version runners sample with
        self.num_target_updates = 0
        self.last_target_update = 0
        self.broadcast_version = 0
        self.update_credit = 0.0  # gradient steps owed to the replay ratio (fractions carry over)

    # -- replay ------------------------------------------------------------------------------------
    def learning_started(self) -> bool:
        cfg = self.config
        return self.timesteps >= cfg.num_steps_sampled_before_learning_starts and len(self.buffer) >= min(
            cfg.train_batch_size, cfg.buffer_size
        )

    def owes_updates(self) -> bool:
        return self.update_credit >= 1.0 and self.learning_started()

    def add_to_replay(self, batch: SampleBatch, priorities: np.ndarray | None) -> None:
        """The fragment's n-step transitions, at the runner's priorities (or the largest so far)."""
        cfg = self.config
        transitions = nstep_transitions(batch, n=cfg.n_step, gamma=cfg.gamma)
        self.buffer.add(
            transitions, priorities=None if priorities is None else np.asarray(priorities).reshape(-1)
        )
        if self.learning_started():
            self.update_credit += cfg.training_intensity * batch.env_steps / cfg.train_batch_size

    def learn_once(self) -> dict[str, torch.Tensor]:
        """One gradient step on a prioritized minibatch; new priorities; the target network on schedule."""
        cfg = self.config
        self.learner.update_lr(self.timesteps)
        minibatch = self.buffer.sample(cfg.train_batch_size, beta=cfg.prioritized_replay_beta)
        indices = minibatch.pop(INDICES)
        terms, td_abs = self.learner.update(minibatch)
        self.buffer.update_priorities(indices, td_abs)
        self.num_updates += 1
        self.update_credit -= 1.0
        if self.num_updates - self.last_target_update >= cfg.target_network_update_freq:
            self.learner.update_target()
            self.last_target_update = self.num_updates
            self.num_target_updates += 1
        return terms

    # -- the step ----------------------------------------------------------------------------------
    def training_step(self) -> StepOutcome:
        cfg = self.config
        start_steps = self.timesteps
        rollouts: list[Rollout] = []
        lags: list[int] = []
        sums: dict[str, torch.Tensor] = {}
        updates = 0
        timers = {"sample_wait": 0.0, "replay_add": 0.0, "learn": 0.0, "broadcast": 0.0}
        # Sample until the iteration has its steps, and pay the gradient steps they are owed.
        while self.timesteps - start_steps < cfg.min_sample_timesteps_per_iteration or self.owes_updates():
            if self.owes_updates():
                # The learner owes gradient steps: pay them before taking more data, a broadcast interval
                # at a time. Meanwhile each runner works off its queued requests, then idles, which
                # holds the replay ratio at trainingIntensity without starving the learner.
                t0 = time.perf_counter()
                for _ in range(min(cfg.broadcast_interval, math.floor(self.update_credit))):
                    for key, v in self.learn_once().items():
                        sums[key] = sums[key] + v if key in sums else v
                    updates += 1
                t1 = time.perf_counter()
                if self.num_updates - self.broadcast_version >= cfg.broadcast_interval:
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
            num_target_updates=float(self.num_target_updates),
            buffer_size=float(len(self.buffer)),
            lr=self.learner.lr,
            requests_in_flight=float(self.sampler.in_flight),
        )
        return StepOutcome(
            rollouts=rollouts,
            env_steps_trained=updates * cfg.train_batch_size,
            learner_stats=stats,
            timers=timers,
        )

    def broadcast(self) -> None:
        """New weights for each runner's next request (non-blocking)."""
        self.sampler.set_weights(self.get_weights(), None, None, version=self.num_updates)
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
            "num_target_updates": self.num_target_updates,
            "last_target_update": self.last_target_update,
            "update_credit": self.update_credit,
            "buffer": self.buffer.state() if self.config.store_buffer_in_checkpoints else None,
        }

    def set_algorithm_state(self, state: Mapping[str, Any]) -> None:
        self.learner.set_state(state["learner"])
        self.num_updates = int(state["num_updates"])
        self.num_target_updates = int(state["num_target_updates"])
        self.last_target_update = int(state["last_target_update"])
        self.update_credit = float(state["update_credit"])
        if state.get("buffer") is not None:
            self.buffer.set_state(state["buffer"])
