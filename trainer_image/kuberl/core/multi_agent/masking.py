"""Action masks: observations that carry an `action_mask` key (PettingZoo classic games).

Masking happens inside the model, not in the runner: the single-agent learners recompute log-probs and
values from `module(obs)` alone, so a mask applied only at sampling time would make PPO's probability
ratio (and its entropy) disagree with what was sampled. A model that masks its own logits keeps every
learner correct unchanged.

Runners and learners only see flat observations; Gymnasium flattens a Dict in its (sorted) key order,
so `mask_slice` finds where `action_mask` sits in the flat vector. The value-based learners (DQN's
Q-network, discrete SAC's actor) mask their outputs with `mask_values` the same way, and draw their
random actions with `random_legal_actions`; s' carries its own mask, so a target's max over a' only
sees the actions legal in s'.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from torch import nn

from kuberl.core.models import ActorCritic
from kuberl.core.policy import PolicyBase
from kuberl.core.preprocess import flat_dim
from kuberl.core.sample_batch import Columns
from kuberl.spec.algorithms import ModelConfig

MASK_KEY = "action_mask"
MASKED_ACTOR_CRITIC = "kuberl.core.multi_agent.masking:MaskedActorCritic"
# Far below any real logit, yet finite: softmax gives exactly 0 and log-softmax stays finite, so
# entropy and KL terms (0 · log 0) never turn into NaN.
ILLEGAL_LOGIT = -1e8


def mask_slice(space: gym.Space[Any]) -> slice | None:
    """Where the action mask lies in the flattened observation, or None without one."""
    if not isinstance(space, gym.spaces.Dict) or MASK_KEY not in space.spaces:
        return None
    start = 0
    for key, sub in space.spaces.items():
        size = flat_dim(sub)
        if key == MASK_KEY:
            return slice(start, start + size)
        start += size
    return None  # unreachable: the key is in the space


def split_mask(obs: torch.Tensor, where: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """(observation without the mask, mask as bool) from flat observations [B, D]."""
    rest = torch.cat([obs[:, : where.start], obs[:, where.stop :]], dim=-1)
    return rest, obs[:, where] > 0.5


def legal_actions(obs: torch.Tensor, where: slice) -> torch.Tensor:
    """The legal actions [B, n] (bool) from flat observations [B, D]. A row without any legal action
    (PettingZoo's last observation of a finished game) counts every action as legal: masking them all
    would leave nothing to take a max or an argmax over."""
    legal = obs[:, where] > 0.5
    return legal | ~legal.any(dim=-1, keepdim=True)


def mask_values(values: torch.Tensor, obs: torch.Tensor, where: slice | None) -> torch.Tensor:
    """Per-action logits or Q-values [B, n] with illegal actions set to ILLEGAL_LOGIT (unchanged without
    a mask), so argmax, max and softmax only ever see legal actions."""
    if where is None:
        return values
    return values.masked_fill(~legal_actions(obs, where), ILLEGAL_LOGIT)


def random_legal_actions(legal: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One uniformly random legal action per row of `legal` [B, n]: the argmax of uniform noise restricted
    to the legal actions."""
    noise = torch.rand(legal.shape, generator=generator).masked_fill(~legal, -1.0)
    return noise.argmax(dim=-1)


class MaskedActorCritic(nn.Module):
    """The standard ActorCritic on the observation without its mask, with illegal actions' logits set
    to ILLEGAL_LOGIT. Built as MaskedActorCritic(obs_space, action_space, {"model": ModelConfig dump}).

    The inner network sees a flat Box: a board such as tic-tac-toe's 3×3×2 planes would otherwise be
    taken for an image and given a CNN."""

    def __init__(
        self, obs_space: gym.Space[Any], action_space: gym.Space[Any], config: dict[str, Any]
    ) -> None:
        super().__init__()
        where = mask_slice(obs_space)
        if where is None:
            raise ValueError(
                f"MaskedActorCritic needs a Dict observation space with {MASK_KEY!r}, got {obs_space}"
            )
        if not isinstance(action_space, gym.spaces.Discrete) or where.stop - where.start != int(
            action_space.n
        ):
            raise ValueError(
                f"{MASK_KEY!r} must have one entry per action of a Discrete space, got {action_space}"
            )
        self.where = where
        inner_dim = flat_dim(obs_space) - (where.stop - where.start)
        inner_space = gym.spaces.Box(-float("inf"), float("inf"), shape=(inner_dim,))
        self.inner = ActorCritic(
            inner_space, action_space, ModelConfig.model_validate(config.get("model", {}))
        )

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rest, legal = split_mask(obs, self.where)
        logits, value = self.inner(rest)
        return logits.masked_fill(~legal, ILLEGAL_LOGIT), value


def masked_model_config(model: ModelConfig) -> ModelConfig:
    """`model` turned into the masked actor-critic wrapping the same MLP settings."""
    inner = model.model_dump(exclude={"custom_model", "custom_model_config"})
    return ModelConfig.model_validate(
        {"custom_model": MASKED_ACTOR_CRITIC, "custom_model_config": {"model": inner}}
    )


class RandomPolicy(PolicyBase):
    """A RunnerPolicy acting uniformly at random: over the legal actions when the observation has an
    action mask, over the whole space otherwise. It has no weights."""

    def build_module(
        self, obs_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
    ) -> nn.Module:
        self.where = mask_slice(obs_space)
        return nn.Module()

    def act(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        n = obs.shape[0]
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            legal = (
                legal_actions(obs, self.where)
                if self.where is not None
                else torch.ones(n, int(space.n), dtype=torch.bool)
            )
            return {Columns.ACTIONS: random_legal_actions(legal, generator) + int(space.start)}
        if isinstance(space, gym.spaces.Box):
            low = torch.as_tensor(space.low, dtype=torch.float32)
            high = torch.as_tensor(space.high, dtype=torch.float32)
            u = torch.rand((n, *space.shape), generator=generator)
            return {Columns.ACTIONS: low + u * (high - low)}
        raise TypeError(f"RandomPolicy supports Discrete and Box actions, not {space}")
