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
  learner  → `APEX.training_step` (kuberl.algorithms.families.distributed_replay, shared with APEX_DDPG):
             runners sample asynchronously; arriving fragments enter prioritized replay with their
             priorities; the learner takes gradient steps at a fixed replay ratio (`training_intensity`),
             writes back new priorities, updates the target network every `target_network_update_freq`
             updates (`after_update`) and broadcasts weights every `broadcast_interval` updates. Policy
             lag is reported as IMPALA reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from kuberl.algorithms.families.distributed_replay import (
    PRIORITIES,
    DistributedReplayAlgorithm,
    DriverSettings,
    LadderEnvRunner,
    exploration_ladder,
    ladder_options,
    runner_rungs,
)
from kuberl.algorithms.families.q_learning import QLearner, QPolicy, build_q_network, dqn_loss, head_options
from kuberl.core.learner import select_device
from kuberl.core.replay import WEIGHTS, PrioritizedReplayBuffer
from kuberl.core.returns import nstep_transitions
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.apex import APEXConfig

# The ladder's names in Ape-X DQN: a runner's rungs are its sub-envs' epsilons.
epsilon_ladder = exploration_ladder
runner_epsilons = runner_rungs
ApexEnvRunner = LadderEnvRunner

__all__ = ["APEX", "PRIORITIES", "ApexEnvRunner", "ApexPolicy", "epsilon_ladder", "runner_epsilons"]

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


# ---------------------------------------------------------------------------------------------------
# Learner: DQN's, on the shared distributed replay driver, with a hard target-network schedule
# ---------------------------------------------------------------------------------------------------


class APEX(DistributedReplayAlgorithm[APEXConfig]):
    name = "APEX"
    learner: QLearner

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
                **ladder_options(
                    option="epsilon",
                    base=cfg.epsilon_base,
                    alpha=cfg.epsilon_alpha,
                    num_runners=self.spec.resources.env_runners,
                    prioritize=cfg.worker_side_prioritization,
                ),
            },
            "store_next_obs": True,
        }

    @property
    def settings(self) -> DriverSettings:
        return DriverSettings.from_config(self.config, buffer_size=self.config.buffer_size)

    def setup_learner(self) -> None:
        cfg = self.config
        res = self.spec.resources
        module = build_q_network(self.obs_space, self.action_space, cfg.model, **head_options(cfg))
        device = select_device(res.gpus_per_learner, cpus_per_learner=res.cpus_per_learner)
        self.learner = QLearner(module, cfg, device)
        self.num_target_updates = 0
        self.last_target_update = 0

    def make_buffer(self) -> PrioritizedReplayBuffer:
        cfg = self.config
        return PrioritizedReplayBuffer(
            cfg.buffer_size,
            alpha=cfg.prioritized_replay_alpha,
            beta=cfg.prioritized_replay_beta,
            eps=cfg.prioritized_replay_eps,
            seed=int(self.np_rng.integers(2**63)),
        )

    def updates_owed(self, env_steps: int) -> float:
        cfg = self.config
        return cfg.training_intensity * env_steps / cfg.train_batch_size

    def learn_on(self, minibatch: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        self.learner.update_lr(self.timesteps)
        terms, td_abs = self.learner.update(minibatch)
        return terms, td_abs

    def after_update(self) -> None:
        """The target network on schedule: every `target_network_update_freq` learner updates."""
        if self.num_updates - self.last_target_update >= self.config.target_network_update_freq:
            self.learner.update_target()
            self.last_target_update = self.num_updates
            self.num_target_updates += 1

    def extra_stats(self) -> dict[str, float]:
        return {"num_target_updates": float(self.num_target_updates), "lr": self.learner.lr}

    def extra_state(self) -> dict[str, Any]:
        return {"num_target_updates": self.num_target_updates, "last_target_update": self.last_target_update}

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        self.num_target_updates = int(state["num_target_updates"])
        self.last_target_update = int(state["last_target_update"])
