"""The driver side that PPO, A2C and PG share: synchronous sampling with one set of weights, then one
pass of the learner over the joined batch.

`SyncSamplingAlgorithm` is that training step (PPO's too): sample T steps on every sub-environment →
`estimate_returns` → `learn` → broadcast the weights, each phase timed. `SyncActorCriticAlgorithm` sizes the fragments to the train batch, builds the learner and runs the
training step: sample T steps on every sub-environment → `estimate_returns` (each algorithm's returns or
advantages) → one update → broadcast the weights. The algorithm files keep what tells them apart — how
the returns are estimated, and A2C's minibatches — so each still reads like its paper.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar, TypeVar

import torch

from kuberl.algorithms.base import Algorithm, ConfigT, StepOutcome
from kuberl.algorithms.families.actor_critic import ActorCriticLearner
from kuberl.core.sample_batch import SampleBatch
from kuberl.spec.algorithms.a2c import A2CConfig
from kuberl.spec.algorithms.pg import PGConfig


class SyncSamplingAlgorithm(Algorithm[ConfigT]):
    """Subclasses set `returns_timer` (the name of the returns phase in `timers`) and implement
    `estimate_returns` and `learn`."""

    returns_timer: ClassVar[str]

    def estimate_returns(self, batch: SampleBatch) -> SampleBatch:
        """The sampled [T, N] batch → the batch the learner trains on, with advantages and value targets."""
        raise NotImplementedError

    def learn(self, train: SampleBatch) -> dict[str, float]:
        """One update of the learner on the whole batch; its stats."""
        raise NotImplementedError

    def training_step(self) -> StepOutcome:
        t0 = time.perf_counter()
        rollouts = self.sample()
        t1 = time.perf_counter()
        batch = SampleBatch.concat_envs([r.batch for r in rollouts])
        train = self.estimate_returns(batch)
        t2 = time.perf_counter()
        stats = self.learn(train)
        t3 = time.perf_counter()
        self.sync_weights()
        t4 = time.perf_counter()
        return StepOutcome(
            rollouts=rollouts,
            env_steps_trained=batch.env_steps,
            learner_stats=stats,
            timers={
                "sample": t1 - t0,
                self.returns_timer: t2 - t1,
                "learn": t3 - t2,
                "sync_weights": t4 - t3,
            },
        )


# The synchronous actor-critics' configs (A2C, PG).
ActorCriticConfigT = TypeVar("ActorCriticConfigT", bound=A2CConfig | PGConfig)


class SyncActorCriticAlgorithm(SyncSamplingAlgorithm[ActorCriticConfigT]):
    """A2C and PG: subclasses set `default_train_batch_size` (steps per update when the config leaves
    `train_batch_size` unset) and `returns_timer`, and implement `estimate_returns`."""

    learner: ActorCriticLearner

    default_train_batch_size: ClassVar[int]

    def rollout_length(self) -> int:
        """T: steps per sub-environment per update (the train batch spread over all sub-environments)."""
        cfg = self.config
        if cfg.rollout_fragment_length is not None:
            fragment: int = cfg.rollout_fragment_length
            return fragment
        res = self.spec.resources
        total_envs = max(res.env_runners, 1) * res.envs_per_runner
        return max(1, math.ceil((cfg.train_batch_size or self.default_train_batch_size) / total_envs))

    def setup(self) -> None:
        res = self.spec.resources
        self.learner = ActorCriticLearner.from_config(self.obs_space, self.action_space, self.config, res)
        self.torch_gen = torch.Generator().manual_seed(self.spec.seed or 0)

    def minibatching(self) -> tuple[int | None, int | None]:
        """(minibatch_size, microbatch_size) of the update; (None, None): one step on the whole batch."""
        return None, None

    def learn(self, train: SampleBatch) -> dict[str, float]:
        minibatch_size, microbatch_size = self.minibatching()
        stats: dict[str, float] = self.learner.update(
            train,
            timesteps=self.timesteps,
            minibatch_size=minibatch_size,
            microbatch_size=microbatch_size,
            generator=self.torch_gen,
        )
        return stats
