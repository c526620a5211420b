"""Deep Q-Networks (Mnih et al. 2015, https://www.nature.com/articles/nature14236) with Rainbow's
parts (Hessel et al. 2018, https://arxiv.org/abs/1710.02298): double Q (van Hasselt et al. 2016),
dueling heads (Wang et al. 2016), prioritized replay (Schaul et al. 2016) and n-step returns.
Discrete actions.

Reads top to bottom like the paper's Algorithm 1:
  config  → `DQNConfig` (kuberl.spec.algorithms.dqn; every field documented there, RLlib names accepted)
  network → `QNetwork` (kuberl.algorithms.families.q_learning, shared with Ape-X): MLP trunk, plain or dueling head
  runner  → `QPolicy` (same module): epsilon-greedy in the env runners; epsilon arrives with every sync
  loss    → `dqn_loss` (same module): Huber TD error against a (double-)Q target, importance-weighted;
            new priorities. `QLearner` (same module) owns the online and target networks.
  step    → `DQN.learn`: K gradient steps → target update, inside the replay step shared with SAC/TD3/DDPG
            (kuberl.algorithms.families.replay: sample → n-step transitions → replay → `learn` → broadcast)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from kuberl.algorithms.families.q_learning import (
    QLearner,
    QNetwork,
    QPolicy,
    build_q_network,
    dqn_loss,
    head_options,
)
from kuberl.algorithms.families.replay import ReplayAlgorithm
from kuberl.core.learner import driver_learner_device
from kuberl.core.replay import PrioritizedReplayBuffer, ReplayBuffer
from kuberl.core.schedules import piecewise_linear
from kuberl.spec.algorithms.dqn import DQNConfig

# The network, runner policy, loss and learner are shared with Ape-X, so they live in
# kuberl.algorithms.families.q_learning; re-exported here because DQN's readers look for them in this file.
__all__ = ["DQN", "QLearner", "QNetwork", "QPolicy", "build_q_network", "dqn_loss"]

# ---------------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------------


class DQN(ReplayAlgorithm[DQNConfig]):
    """The replay step itself (sample → n-step transitions → replay → K gradient steps → broadcast) is
    kuberl.algorithms.families.replay's, shared with SAC, TD3 and DDPG; DQN adds its replay ratio, its
    epsilon and β schedules, the learning-rate schedule and the target network's update rule."""

    learner: QLearner

    name = "DQN"

    def runner_overrides(self) -> dict[str, Any]:
        return {
            "policy": QPolicy,
            "policy_options": {**head_options(self.config), "epsilon": self.epsilon()},
            "store_next_obs": True,
        }

    def runner_options(self) -> dict[str, Any] | None:
        return {"epsilon": self.epsilon()}

    def epsilon(self) -> float:
        # `timesteps` does not exist yet while the base class builds the runners.
        return piecewise_linear(self.config.epsilon, getattr(self, "timesteps", 0))

    def beta(self) -> float:
        cfg = self.config
        if cfg.prioritized_replay_beta_annealing_timesteps is None:
            return cfg.prioritized_replay_beta
        frac = min(1.0, self.timesteps / cfg.prioritized_replay_beta_annealing_timesteps)
        return cfg.prioritized_replay_beta + frac * (1.0 - cfg.prioritized_replay_beta)

    def setup(self) -> None:
        cfg = self.config
        module = build_q_network(self.obs_space, self.action_space, cfg.model, **head_options(cfg))
        # With learners > 1 this copy stays on CPU: the data-parallel ranks train on their own devices.
        self.learner = QLearner(module, cfg, driver_learner_device(self.spec.resources))
        buffer_seed = int(self.np_rng.integers(2**63))
        self.buffer = (
            PrioritizedReplayBuffer(
                cfg.buffer_size,
                alpha=cfg.prioritized_replay_alpha,
                beta=cfg.prioritized_replay_beta,
                eps=cfg.prioritized_replay_eps,
                seed=buffer_seed,
            )
            if cfg.prioritized_replay
            else ReplayBuffer(cfg.buffer_size, seed=buffer_seed)
        )
        self.last_target_update = 0
        self.num_updates = 0
        self.num_target_updates = 0
        self.update_credit = 0.0  # fractional gradient steps carried over (training_intensity)

    # -- the replay step's hooks (kuberl.algorithms.families.replay) --------------------------------------
    def updates_this_iteration(self, env_steps: int) -> int:
        cfg = self.config
        if cfg.training_intensity is None:
            return cfg.num_updates_per_iteration
        self.update_credit += cfg.training_intensity * env_steps / cfg.train_batch_size
        k = math.floor(self.update_credit)
        self.update_credit -= k
        return k

    def minibatches(self, count: int) -> Iterator[dict[str, np.ndarray]]:
        """One draw per step, so prioritized replay samples after the previous step's priorities,
        with importance weights at the current β."""
        beta = self.beta()
        for _ in range(count):
            if isinstance(self.buffer, PrioritizedReplayBuffer):
                yield self.buffer.sample(self.config.train_batch_size, beta=beta)
            else:
                yield self.buffer.sample(self.config.train_batch_size)

    def learn_on(self, minibatch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        return self.learner.update(minibatch)

    def learn(self, count: int) -> dict[str, float]:
        """The K gradient steps at the scheduled learning rate, then the target network: copied (or
        Polyak-averaged) every `target_network_update_freq` env steps."""
        cfg = self.config
        self.learner.update_lr(self.timesteps)
        stats = super().learn(count)
        self.num_updates += count
        if self.timesteps - self.last_target_update >= cfg.target_network_update_freq:
            self.learner.update_target()
            self.last_target_update = self.timesteps
            self.num_target_updates += 1
        if isinstance(self.buffer, PrioritizedReplayBuffer):
            stats["prioritized_replay_beta"] = self.beta()
        return stats

    def progress_stats(self, updates: int) -> dict[str, float]:
        return {
            "epsilon": self.epsilon(),
            "buffer_size": float(len(self.buffer)),
            "lr": self.learner.lr,
            "num_updates": float(updates),
            "num_updates_lifetime": float(self.num_updates),
            "num_target_updates": float(self.num_target_updates),
        }

    # -- checkpoints -----------------------------------------------------------------------------
    def algorithm_state(self) -> dict[str, Any]:
        return {
            "learner": self.learner.get_state(),
            "last_target_update": self.last_target_update,
            "num_updates": self.num_updates,
            "num_target_updates": self.num_target_updates,
            "update_credit": self.update_credit,
            "buffer": self.buffer.state() if self.config.store_buffer_in_checkpoints else None,
        }

    def set_algorithm_state(self, state: Mapping[str, Any]) -> None:
        self.learner.set_state(state["learner"])
        self.last_target_update = int(state["last_target_update"])
        self.num_updates = int(state["num_updates"])
        self.num_target_updates = int(state["num_target_updates"])
        self.update_credit = float(state["update_credit"])
        if state.get("buffer") is not None:
            self.buffer.set_state(state["buffer"])
