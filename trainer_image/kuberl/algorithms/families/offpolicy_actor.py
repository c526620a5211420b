"""What SAC, TD3 and DDPG share on the driver side: the replay training step's hooks (the step itself,
shared with DQN, is kuberl.algorithms.families.replay: sample → n-step transitions into replay → the
budgeted number of gradient updates → broadcast the actor), the actor as the runners' policy, and a
checkpoint of the learner, the update budget and (optionally) the replay buffer."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import numpy as np
import torch

from kuberl.algorithms.families.continuous import (
    DeterministicActorPolicy,
    UpdateBudget,
    make_replay,
    replay_batches,
)
from kuberl.algorithms.families.deterministic_actor_critic import DeterministicActorCriticLearner
from kuberl.algorithms.families.replay import ReplayAlgorithm
from kuberl.algorithms.families.soft_actor_critic import SoftActorCriticLearner
from kuberl.core.learner import select_device
from kuberl.core.models import weights_to_numpy
from kuberl.spec.algorithms.ddpg import DDPGConfig
from kuberl.spec.algorithms.offpolicy_actor_critic import OffPolicyActorCriticConfig
from kuberl.spec.algorithms.td3 import TD3Config

# The learners of this family: SAC's (soft) and TD3's and DDPG's (deterministic).
OffPolicyLearner = SoftActorCriticLearner[Any] | DeterministicActorCriticLearner[Any]
ActorConfigT = TypeVar("ActorConfigT", bound=OffPolicyActorCriticConfig)


class OffPolicyActorAlgorithm(ReplayAlgorithm[ActorConfigT]):
    """Subclasses build their learner in `build_learner` (with an `actor` module and
    `update(minibatch) -> terms` returning a `td_error` tensor and counting `num_updates`); `setup`
    adds the replay buffer and the update budget. Losses a learner reports only on some updates (TD3's
    delayed policy loss) average over those."""

    budget: UpdateBudget
    learner: OffPolicyLearner

    def setup(self) -> None:
        res = self.spec.resources
        device = select_device(res.gpus_per_learner, cpus_per_learner=res.cpus_per_learner)
        self.learner = self.build_learner(device)
        self.buffer = make_replay(self.config.replay_buffer_config, seed=self.spec.seed)
        self.budget = UpdateBudget(self.config.gradient_steps_per_env_step())

    def build_learner(self, device: torch.device) -> OffPolicyLearner:
        """The algorithm's learner on `device` (setup() keeps it as `self.learner`)."""
        raise NotImplementedError(f"{type(self).__name__} must build its learner")

    # -- the replay step's hooks (kuberl.algorithms.families.replay) --------------------------------------
    def updates_this_iteration(self, env_steps: int) -> int:
        return self.budget.take(env_steps)

    def minibatches(self, count: int) -> Iterator[dict[str, torch.Tensor]]:
        return replay_batches(
            self.buffer, count=count, size=self.config.train_batch_size, device=self.learner.device
        )

    def learn_on(self, minibatch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        terms: dict[str, torch.Tensor] = self.learner.update(minibatch)
        return terms, terms.pop("td_error")

    def progress_stats(self, updates: int) -> dict[str, float]:
        return {"num_updates": float(self.learner.num_updates), "replay_size": float(len(self.buffer))}

    def policy_module(self) -> torch.nn.Module:
        actor: torch.nn.Module = self.learner.actor
        return actor

    def get_weights(self) -> dict[str, np.ndarray]:
        return weights_to_numpy(self.learner.actor)

    def algorithm_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"learner": self.learner.get_state(), "update_credit": self.budget.credit}
        if self.config.store_buffer_in_checkpoints:
            state["replay"] = self.buffer.state()
        return state

    def set_algorithm_state(self, state: Mapping[str, Any]) -> None:
        self.learner.set_state(state["learner"])
        self.budget.credit = float(state["update_credit"])
        if "replay" in state:
            self.buffer.set_state(state["replay"])


# TD3's and DDPG's runner side, as functions each calls from its own `runner_overrides` and
# `runner_options` (not a class between them and OffPolicyActorAlgorithm: DDPG stays three bases deep,
# as in SB3).


def deterministic_runner_overrides(config: TD3Config | DDPGConfig) -> dict[str, Any]:
    """A deterministic actor explores with annealed action noise in the runners (after random warm-up
    actions); compute_actions acts with the same runner policy."""
    return {
        "store_next_obs": True,
        "policy": DeterministicActorPolicy,
        "policy_options": {"exploration": config.exploration_config.model_dump()},
    }


def deterministic_runner_options(config: TD3Config | DDPGConfig, timesteps: int) -> dict[str, Any]:
    """Random actions until learning starts, then the noise scale annealed linearly from
    initial_scale to final_scale over scale_timesteps."""
    start = config.num_steps_sampled_before_learning_starts
    expl = config.exploration_config
    frac = min(max(timesteps - start, 0) / expl.scale_timesteps, 1.0)
    return {
        "random_actions": config.random_warmup and timesteps < start,
        "noise_scale": expl.initial_scale + frac * (expl.final_scale - expl.initial_scale),
    }
