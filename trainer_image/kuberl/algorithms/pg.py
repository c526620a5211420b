"""Policy gradient: REINFORCE with a value baseline (Williams 1992, https://doi.org/10.1007/BF00992696).

config  → `PGConfig` (kuberl.spec.algorithms.pg; every field documented there, RLlib names accepted)
network → `ActorCritic` (kuberl.core.models): the policy, and V(s) as the baseline
returns → G_t = Σ γ^k r_{t+k}, Monte-Carlo to the episode's end inside a fragment; bootstrapped with
          V only where the episode was cut (a time-limit truncation, or the fragment's end): DESIGN's
          "bootstrap on truncation". Terminations are worth 0.
loss    → `actor_critic_loss` (kuberl.core.actor_critic) with A = G − V(s):
          −log π(a|s)·A  +  c_v·½(V(s) − G)²  −  c_e·H, the baseline trained by regression on G
step    → `PG.training_step`: sample → returns → one gradient step → broadcast weights
"""

from __future__ import annotations

import math
import time

import torch

from kuberl.algorithm import Algorithm, StepOutcome
from kuberl.core.actor_critic import ActorCriticLearner, loss_batch
from kuberl.core.sample_batch import SampleBatch
from kuberl.spec.algorithms.pg import PGConfig

DEFAULT_BATCH = 2000


class PG(Algorithm):
    name = "PG"
    config: PGConfig

    def rollout_length(self) -> int:
        cfg = self.config
        if cfg.rollout_fragment_length is not None:
            return cfg.rollout_fragment_length
        res = self.spec.resources
        total_envs = max(res.env_runners, 1) * res.envs_per_runner
        return max(1, math.ceil((cfg.train_batch_size or DEFAULT_BATCH) / total_envs))

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
        # Monte-Carlo returns (λ = 1, no GAE); advantage = G − V(s).
        flat = loss_batch(batch, gamma=cfg.gamma, lambda_=1.0, use_gae=False)
        t2 = time.perf_counter()
        stats = self.learner.update(
            flat,
            timesteps=self.timesteps,
            minibatch_size=None,
            microbatch_size=None,
            generator=self.torch_gen,
        )
        t3 = time.perf_counter()
        self.sync_weights()
        t4 = time.perf_counter()
        return StepOutcome(
            rollouts=rollouts,
            env_steps_trained=batch.env_steps,
            learner_stats=stats,
            timers={"sample": t1 - t0, "returns": t2 - t1, "learn": t3 - t2, "sync_weights": t4 - t3},
        )
