"""The training step every replay-based algorithm (DQN, SAC, TD3, DDPG) runs on the driver:

    sample → n-step transitions into replay → K gradient steps on replayed minibatches → broadcast weights

with the learning-starts gate, the replay ratio (how many gradient steps K this iteration), the new
priorities written back to a prioritized buffer after each step, the averaged learner terms and a timer
for every phase. What differs between the algorithms is a hook each: how K is counted
(`updates_this_iteration`), how minibatches are drawn (`minibatches`), one gradient step (`learn_on`) and
the stats they add (`progress_stats`); an algorithm that does more once per iteration (DQN's target
network) extends `learn`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np
import torch

from kuberl.algorithms.base import Algorithm, StepOutcome
from kuberl.core.replay import INDICES, PrioritizedReplayBuffer, ReplayBuffer
from kuberl.core.returns import nstep_transitions
from kuberl.core.sample_batch import SampleBatch
from kuberl.spec.algorithms.dqn import DQNConfig
from kuberl.spec.algorithms.offpolicy_actor_critic import OffPolicyActorCriticConfig

# One gradient step's detached loss terms, and |TD error| per sample (the new replay priorities).
Terms = dict[str, torch.Tensor]
TDErrors = torch.Tensor | np.ndarray


# Replay algorithms' configs: DQN's, and the off-policy actor-critics' (SAC, TD3, DDPG).
ReplayConfigT = TypeVar("ReplayConfigT", bound=DQNConfig | OffPolicyActorCriticConfig)


class ReplayAlgorithm(Algorithm[ReplayConfigT]):
    """Subclasses keep a `buffer` (built in their `setup`) and a `config` with `n_step`, `gamma`,
    `train_batch_size` and `num_steps_sampled_before_learning_starts`."""

    buffer: ReplayBuffer
    replays_observations = True

    def rollout_length(self) -> int:
        fragment: int = self.config.rollout_fragment_length
        return fragment

    # -- hooks ------------------------------------------------------------------------------------
    def updates_this_iteration(self, env_steps: int) -> int:
        """How many gradient steps to take for `env_steps` newly sampled steps (the replay ratio)."""
        raise NotImplementedError(f"{type(self).__name__} must count its updates")

    def minibatches(self, count: int) -> Iterable[dict[str, Any]]:
        """`count` replayed minibatches of `train_batch_size`, each with its buffer INDICES; drawn
        lazily, so a prioritized buffer samples each after the previous step wrote its priorities."""
        raise NotImplementedError(f"{type(self).__name__} must draw its minibatches")

    def learn_on(self, minibatch: dict[str, Any]) -> tuple[Terms, TDErrors]:
        """One gradient step: the detached loss terms and |TD error| per sample."""
        raise NotImplementedError(f"{type(self).__name__} must define its gradient step")

    def progress_stats(self, updates: int) -> dict[str, float]:
        """Stats reported every iteration, learning or not (buffer size, update counters)."""
        return {}

    # -- the step ---------------------------------------------------------------------------------
    def sync_weights(self) -> None:
        super().sync_weights()
        self._synced_options = self.runner_options()

    def _runner_state_changed(self) -> bool:
        """Whether a sync now would send the runners anything new, with no gradient step taken: the
        weights are the ones sent last, so only the runner options (an epsilon, a noise scale, the
        end of random warm-up) can differ. Skipping the copy saved ~0.2 ms of a one-step iteration
        (weights to numpy and back into the runner's module) during SAC/TD3's 10,000 random steps.
        Filters are refused for replay algorithms; should one exist, it is sent every time."""
        if self.obs_filter is not None or self.reward_filter is not None:
            return True
        return self.runner_options() != getattr(self, "_synced_options", object())

    def learning_started(self) -> bool:
        cfg = self.config
        return self.timesteps >= cfg.num_steps_sampled_before_learning_starts and len(self.buffer) > 0

    def learn(self, count: int) -> dict[str, float]:
        """`count` gradient steps; each term averaged over the steps that report it (TD3's delayed
        actor loss appears only on some), with one host sync per iteration, not per step."""
        prioritized = isinstance(self.buffer, PrioritizedReplayBuffer)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        for mb in self.minibatches(count):
            indices = mb.pop(INDICES)
            terms, td_abs = self.learn_on(mb)
            if prioritized:
                assert isinstance(self.buffer, PrioritizedReplayBuffer)
                self.buffer.update_priorities(_numpy(indices), _numpy(td_abs))
            for key, v in terms.items():
                sums[key] = sums[key] + v if key in sums else v
                counts[key] = counts.get(key, 0) + 1
        return {key: float(v) / counts[key] for key, v in sums.items()}

    def training_step(self) -> StepOutcome:
        cfg = self.config
        t0 = time.perf_counter()
        rollouts = self.sample()
        t1 = time.perf_counter()
        batch = SampleBatch.concat_envs([r.batch for r in rollouts])
        self.buffer.add(nstep_transitions(batch, n=cfg.n_step, gamma=cfg.gamma))
        t2 = time.perf_counter()
        updates = 0
        stats: dict[str, float] = {}
        if self.learning_started():
            updates = self.updates_this_iteration(batch.env_steps)
            stats = self.learn(updates)
        stats.update(self.progress_stats(updates))
        t3 = time.perf_counter()
        if updates or self._runner_state_changed():
            self.sync_weights()
        t4 = time.perf_counter()
        return StepOutcome(
            rollouts=rollouts,
            env_steps_trained=updates * cfg.train_batch_size,
            learner_stats=stats,
            timers={"sample": t1 - t0, "replay_add": t2 - t1, "learn": t3 - t2, "sync_weights": t4 - t3},
        )


def _numpy(x: TDErrors) -> np.ndarray:
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
