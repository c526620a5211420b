"""Runner-side policies: what an EnvRunner calls once per vector step.

An algorithm passes its runner policy class (or factory) in RunnerConfig; the runner builds it as
Policy(obs_space, action_space, model_config, options), so the runner never imports algorithm code. A policy returns the action plus any extra
columns its learner needs (log-probs, value predictions, …); those land in the SampleBatch as is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import torch
from torch import nn

from kuberl.core.models import ActorCritic, action_distribution, build_model
from kuberl.core.sample_batch import Columns
from kuberl.spec.algorithms import ModelConfig


class RunnerPolicy(Protocol):
    """Built in the runner as Policy(obs_space, action_space, model_config, options)."""

    module: nn.Module

    def act(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Columns for one vector step; must include Columns.ACTIONS."""
        ...

    def value(self, obs: torch.Tensor) -> torch.Tensor | None:
        """V(obs) for bootstrapping, or None when the algorithm bootstraps in its learner instead."""
        ...

    def set_options(self, options: dict[str, Any]) -> None:
        """Per-iteration knobs from the driver (e.g. DQN's epsilon)."""
        ...


# What RunnerConfig.policy holds: a RunnerPolicy class, or a function that picks one (e.g. by action space).
PolicyFactory = Callable[[gym.Space[Any], gym.Space[Any], ModelConfig, dict[str, Any]], RunnerPolicy]


class PolicyBase:
    """Base of the RunnerPolicy implementations built around one network.

    The runner builds every policy as Policy(obs_space, action_space, model, options); this keeps the
    action space, asks `build_module` for the network (a subclass sets up whatever else it keeps there)
    and puts it in inference mode. By default a policy has no V(obs) — its learner bootstraps on its own
    — and takes no per-iteration options.
    """

    def __init__(
        self,
        obs_space: gym.Space[Any],
        action_space: gym.Space[Any],
        model: ModelConfig,
        options: dict[str, Any],
    ) -> None:
        self.action_space = action_space
        self.module: nn.Module = self.build_module(obs_space, model, options)
        self.module.eval()

    def build_module(
        self, obs_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
    ) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must build its network")

    def value(self, obs: torch.Tensor) -> torch.Tensor | None:
        return None

    def set_options(self, options: dict[str, Any]) -> None:
        return None


class ActorCriticPolicy(PolicyBase):
    """A stochastic policy with a value head (PPO, A2C, PG, IMPALA): samples, and records log-probs,
    distribution inputs and value predictions."""

    def build_module(
        self, obs_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
    ) -> nn.Module:
        module = build_model(obs_space, self.action_space, model)
        self.dist = action_distribution(self.action_space)
        self.forward = _fast_forward(module)
        return module

    def __getstate__(self) -> dict[str, Any]:
        # `forward` is a closure over this module's parameter tensors: a copy (deepcopy, pickle) builds its
        # own over the copied module in __setstate__ instead of acting with the original's weights.
        state = self.__dict__.copy()
        state.pop("forward", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.forward = _fast_forward(self.module)

    def act(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        dist_in, value = self.forward(obs)
        action = self.dist.sample(dist_in, generator) if explore else self.dist.deterministic(dist_in)
        return {
            Columns.ACTIONS: action,
            Columns.ACTION_LOGP: self.dist.logp(dist_in, action),
            Columns.ACTION_DIST_INPUTS: dist_in,
            Columns.VF_PREDS: value,
        }

    def value(self, obs: torch.Tensor) -> torch.Tensor | None:
        return self.forward(obs)[1]


def _fast_forward(module: nn.Module) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The built-in MLP's per-step forward without nn.Module overhead (bit-identical); a subclass or a
    custom model runs its own forward."""
    return module.inference_forward() if type(module) is ActorCritic else module
