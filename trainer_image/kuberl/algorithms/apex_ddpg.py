"""Ape-X DDPG: distributed prioritized experience replay for DDPG (Horgan et al. 2018,
https://arxiv.org/abs/1803.00933, §4.2; RLlib's APEX_DDPG). Continuous actions.

Reads top to bottom like the paper's Algorithms 1 (actor) and 2 (learner):
  config   → `APEX_DDPGConfig` (kuberl.spec.algorithms.apex_ddpg; DDPG's fields plus the ladder and the driver's)
  network  → DDPG's deterministic tanh actor, one critic and Polyak target copies (`DDPGLearner`,
             kuberl.algorithms.families.deterministic_actor_critic, which DDPG trains too)
  exploration → each sub-env of each runner adds explorationConfig's Gaussian or OU noise scaled by its
             own fixed rung base^(1 + α·i/(N−1)) of the ladder (Ape-X DQN's ε ladder, as RLlib's
             PerWorker*Noise; kuberl.algorithms.families.distributed_replay)
  actor    → `DeterministicActorPolicy` (the actor only) in a `LadderEnvRunner`: random actions until
             learning starts, then the actor plus its sub-env's noise
  priorities → on insert, by the learner: |n-step TD error| of each arriving transition under the current
             critic and target networks (`initial_priorities`); why here and not in the runners: the
             docs page (docs/algorithms/apex_ddpg.md)
  learner  → `APEX_DDPG.training_step` (the distributed replay driver shared with APEX): runners sample
             asynchronously; arriving fragments enter prioritized replay; the learner takes DDPG updates
             at a fixed replay ratio, writes back new priorities and broadcasts the actor every
             `broadcast_interval` updates without blocking
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from kuberl.algorithms.families.deterministic_actor_critic import DDPGLearner
from kuberl.algorithms.families.distributed_replay import (
    DistributedReplayAlgorithm,
    DriverSettings,
    ladder_options,
)
from kuberl.algorithms.families.offpolicy_actor import deterministic_runner_overrides
from kuberl.core.learner import select_device
from kuberl.core.models import weights_to_numpy
from kuberl.core.replay import PrioritizedReplayBuffer
from kuberl.spec.algorithms.apex_ddpg import APEX_DDPGConfig


class ApexDDPGLearner(DDPGLearner[APEX_DDPGConfig]):
    """DDPG's learner; the name in its errors is APEX_DDPG."""

    algorithm = "APEX_DDPG"


class APEX_DDPG(DistributedReplayAlgorithm[APEX_DDPGConfig]):  # noqa: N801 (RLlib's name)
    name = "APEX_DDPG"
    learner: ApexDDPGLearner

    # -- runners ------------------------------------------------------------------------------------
    def runner_overrides(self) -> dict[str, Any]:
        cfg = self.config
        overrides = deterministic_runner_overrides(cfg)
        overrides["policy_options"] = {
            **overrides["policy_options"],
            **ladder_options(
                option="noise_scale",
                base=cfg.noise_scale_base,
                alpha=cfg.noise_scale_alpha,
                num_runners=self.spec.resources.env_runners,
                prioritize=False,  # the learner prices new transitions (initial_priorities)
            ),
        }
        return overrides

    def runner_options(self) -> dict[str, Any]:
        """Sent with every sync and broadcast: uniform random actions until learning starts (the
        noise scales stay the runners' own rungs)."""
        cfg = self.config
        return {
            "random_actions": cfg.random_warmup
            and self.timesteps < cfg.num_steps_sampled_before_learning_starts
        }

    def inference_options(self) -> dict[str, Any]:
        # compute_actions(explore=True) explores at the ladder's first rung, not per runner sub-env.
        return {"random_actions": False, "noise_scale": self.config.noise_scale_base}

    # -- learner and replay -------------------------------------------------------------------------
    @property
    def settings(self) -> DriverSettings:
        return DriverSettings.from_config(self.config, buffer_size=self.config.replay_buffer_config.capacity)

    def setup_learner(self) -> None:
        cfg = self.config
        res = self.spec.resources
        device = select_device(res.gpus_per_learner, cpus_per_learner=res.cpus_per_learner)
        self.learner = ApexDDPGLearner(self.obs_space, self.action_space, cfg, device)

    def make_buffer(self) -> PrioritizedReplayBuffer:
        replay = self.config.replay_buffer_config
        return PrioritizedReplayBuffer(
            replay.capacity,
            alpha=replay.prioritized_replay_alpha,
            beta=replay.prioritized_replay_beta,
            eps=replay.prioritized_replay_eps,
            seed=int(self.np_rng.integers(2**63)),
        )

    def initial_priorities(
        self, transitions: Mapping[str, np.ndarray], from_runner: np.ndarray | None
    ) -> np.ndarray | None:
        """|n-step TD error| of each new transition under the learner's critic and targets: the same
        error its first update would see, so a surprising transition is replayed soon (instead of every
        new transition at the largest priority so far)."""
        return self.learner.td_errors(self._tensors(transitions)).cpu().numpy()

    def updates_owed(self, env_steps: int) -> float:
        return self.config.gradient_steps_per_env_step() * env_steps

    def learn_on(self, minibatch: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        terms = self.learner.update(self._tensors(minibatch))
        td_abs = terms.pop("td_error")
        return terms, td_abs.cpu().numpy()

    def _tensors(self, batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v, device=self.learner.device) for k, v in batch.items()}

    def extra_stats(self) -> dict[str, float]:
        return {"num_learner_updates": float(self.learner.num_updates)}

    # -- weights ------------------------------------------------------------------------------------
    def policy_module(self) -> torch.nn.Module:
        actor: torch.nn.Module = self.learner.actor
        return actor

    def get_weights(self) -> dict[str, np.ndarray]:
        return weights_to_numpy(self.learner.actor)
