"""Advantage Actor-Critic, synchronous (A2C; Mnih et al. 2016, https://arxiv.org/abs/1602.01783).

The synchronous form of A3C that OpenAI Baselines and SB3 popularised: every runner samples a fixed
fragment with the same weights, and one gradient step is taken on the joined batch.

  config  → `A2CConfig` (kuberl.spec.algorithms.a2c; every field documented there, RLlib names accepted)
  network → `ActorCritic` (kuberl.core.models): MLP policy and value heads
  loss    → `actor_critic_loss` (kuberl.core.actor_critic): −log π·A + c_v·½(V − R)² − c_e·H
  step    → `A2C.training_step`: sample T steps on every sub-env → GAE or n-step returns →
            one gradient step (or one pass of minibatches) → broadcast weights
"""

from __future__ import annotations

import math
import time

import torch

from kuberl.algorithm import Algorithm, StepOutcome
from kuberl.core.actor_critic import ActorCriticLearner, loss_batch
from kuberl.core.sample_batch import SampleBatch
from kuberl.spec.algorithms.a2c import A2CConfig


class A2C(Algorithm):
    name = "A2C"
    config: A2CConfig

    def rollout_length(self) -> int:
        """T: steps per sub-environment per update."""
        cfg = self.config
        if cfg.rollout_fragment_length is not None:
            return cfg.rollout_fragment_length
        res = self.spec.resources
        total_envs = max(res.env_runners, 1) * res.envs_per_runner
        return max(1, math.ceil((cfg.train_batch_size or 500) / total_envs))

    def setup(self) -> None:
        cfg = self.config
        res = self.spec.resources
        self.learner = ActorCriticLearner.from_config(self.obs_space, self.action_space, cfg, res)
        self.torch_gen = torch.Generator().manual_seed(self.spec.seed or 0)

    def training_step(self) -> StepOutcome:
        cfg = self.config
        t0 = time.perf_counter()
        rollouts = self.sample()
        t1 = time.perf_counter()
        batch = SampleBatch.concat_envs([r.batch for r in rollouts])
        flat = loss_batch(batch, gamma=cfg.gamma, lambda_=cfg.lambda_, use_gae=cfg.use_gae)
        t2 = time.perf_counter()
        stats = self.learner.update(
            flat,
            timesteps=self.timesteps,
            minibatch_size=cfg.minibatch_size,
            microbatch_size=cfg.microbatch_size,
            generator=self.torch_gen,
        )
        t3 = time.perf_counter()
        self.sync_weights()
        t4 = time.perf_counter()
        return StepOutcome(
            rollouts=rollouts,
            env_steps_trained=batch.env_steps,
            learner_stats=stats,
            timers={"sample": t1 - t0, "advantages": t2 - t1, "learn": t3 - t2, "sync_weights": t4 - t3},
        )
