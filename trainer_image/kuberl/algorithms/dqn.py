"""Deep Q-Networks (Mnih et al. 2015, https://www.nature.com/articles/nature14236) with Rainbow's
parts (Hessel et al. 2018, https://arxiv.org/abs/1710.02298): double Q (van Hasselt et al. 2016),
dueling heads (Wang et al. 2016), prioritized replay (Schaul et al. 2016) and n-step returns.
Discrete actions.

Reads top to bottom like the paper's Algorithm 1:
  config  → `DQNConfig` (kuberl.spec.algorithms.dqn; every field documented there, RLlib names accepted)
  network → `QNetwork`: MLP trunk, plain or dueling head
  runner  → `QPolicy`: epsilon-greedy in the env runners; epsilon arrives with every weight sync
  loss    → `dqn_loss`: Huber TD error against a (double-)Q target, importance-weighted; new priorities
  step    → `DQN.learn`: K gradient steps → target update, inside the replay step shared with SAC/TD3/DDPG
            (kuberl.core.replay_algorithm: sample → n-step transitions → replay → `learn` → broadcast)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kuberl.core.env_factory import import_object
from kuberl.core.learner import Learner, select_device
from kuberl.core.models import flatten_obs, mlp, obs_dim
from kuberl.core.multi_agent.masking import legal_actions, mask_slice, mask_values, random_legal_actions
from kuberl.core.nstep import DISCOUNTS
from kuberl.core.policy import PolicyBase
from kuberl.core.replay import WEIGHTS, PrioritizedReplayBuffer, ReplayBuffer
from kuberl.core.replay_algorithm import ReplayAlgorithm
from kuberl.core.sample_batch import Columns
from kuberl.core.schedules import piecewise_linear
from kuberl.core.target import hard_update, polyak_update
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.dqn import DQNConfig

# ---------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------


class QNetwork(nn.Module):
    """Q(s, ·) for every discrete action. Dueling: Q = V(s) + A(s, a) − mean_a A(s, a) on a shared trunk
    (Wang et al. 2016, eq. 9); the mean keeps V and A identifiable.

    With `mask` (where an `action_mask` lies in the flat observation) illegal actions get ILLEGAL_LOGIT,
    so the greedy action, the double-Q argmax and the target's max over s' all range over legal actions
    only. The mask is a slice, not a parameter: the state-dict keys are the same with and without it."""

    def __init__(
        self, n_in: int, n_actions: int, config: ModelConfig, *, dueling: bool, mask: slice | None = None
    ) -> None:
        super().__init__()
        self.mask = mask
        hidden = list(config.fcnet_hiddens)
        act = config.fcnet_activation
        self.dueling = dueling
        self.trunk = mlp([n_in, *hidden], act)
        self.advantage = mlp([hidden[-1]], act, out=n_actions, out_gain=0.01)
        self.value = mlp([hidden[-1]], act, out=1, out_gain=1.0) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.trunk(obs)
        adv = self.advantage(h)
        q = adv if self.value is None else self.value(h) + adv - adv.mean(dim=-1, keepdim=True)
        return mask_values(q, obs, self.mask)


class MaskedQ(nn.Module):
    """A custom Q model's outputs with illegal actions masked (as QNetwork masks its own)."""

    def __init__(self, inner: nn.Module, mask: slice) -> None:
        super().__init__()
        self.inner = inner
        self.mask = mask

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return mask_values(self.inner(obs), obs, self.mask)


def build_q_network(
    obs_space: gym.Space[Any], action_space: gym.Space[Any], config: ModelConfig, *, dueling: bool
) -> nn.Module:
    if not isinstance(action_space, gym.spaces.Discrete):
        raise TypeError(f"DQN needs a Discrete action space, got {action_space}")
    mask = mask_slice(
        obs_space
    )  # an `action_mask` key in a Dict observation (kuberl.core.multi_agent.masking)
    if mask is not None and mask.stop - mask.start != int(action_space.n):
        raise ValueError(f"'action_mask' must have one entry per action of {action_space}")
    if config.custom_model:
        model = import_object(config.custom_model)(obs_space, action_space, dict(config.custom_model_config))
        if not isinstance(model, nn.Module):
            raise TypeError(f"custom_model {config.custom_model!r} did not build a torch.nn.Module")
        return model if mask is None else MaskedQ(model, mask)
    return QNetwork(obs_dim(obs_space), int(action_space.n), config, dueling=dueling, mask=mask)


# ---------------------------------------------------------------------------------------------------
# Runner-side policy: epsilon-greedy
# ---------------------------------------------------------------------------------------------------


class QPolicy(PolicyBase):
    """Implements kuberl.core.policy.RunnerPolicy. With probability epsilon a uniformly random action
    (among the legal ones when the observation carries an action mask), else argmax Q. Options:
    `dueling` (fixed, to build the same network as the learner) and `epsilon` (updated by the driver
    with every weight sync). No V(obs): the learner bootstraps from the target network."""

    def build_module(
        self, obs_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
    ) -> nn.Module:
        assert isinstance(self.action_space, gym.spaces.Discrete)
        self.n_actions = int(self.action_space.n)
        self.mask = mask_slice(obs_space)
        self.epsilon = float(options.get("epsilon", 1.0))
        return build_q_network(obs_space, self.action_space, model, dueling=bool(options.get("dueling")))

    def act(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        greedy = self.module(obs).argmax(dim=-1)
        if not explore or self.epsilon <= 0.0:
            return {Columns.ACTIONS: greedy}
        n = obs.shape[0]
        if self.mask is None:
            random_actions = torch.randint(self.n_actions, (n,), generator=generator)
        else:
            random_actions = random_legal_actions(legal_actions(obs, self.mask), generator)
        take_random = torch.rand(n, generator=generator) < self.epsilon
        return {Columns.ACTIONS: torch.where(take_random, random_actions, greedy)}

    def set_options(self, options: dict[str, Any]) -> None:
        if "epsilon" in options:
            self.epsilon = float(options["epsilon"])


# ---------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------


def dqn_loss(
    module: nn.Module, target: nn.Module, batch: Mapping[str, torch.Tensor], *, config: DQNConfig
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Importance-weighted TD loss as named terms, and |TD error| per sample (the new priorities).

    y = R + γ^k (1 − terminated) Q_target(s', a*), with a* = argmax_a Q_online(s', a) (double Q) or
    argmax_a Q_target(s', a); R and γ^k come from the n-step transform. With an action mask the networks
    mask their own outputs, so a* ranges over the actions legal in s' (its mask is part of s').
    """
    obs, next_obs = batch[Columns.OBS], batch[Columns.NEXT_OBS]
    if config.double_q:  # one forward pass of the online network over s and s'
        q_both = module(torch.cat([obs, next_obs]))
        q, q_next_online = q_both[: len(obs)], q_both[len(obs) :].detach()
    else:
        q = module(obs)
    q_taken = q.gather(1, batch[Columns.ACTIONS].long().unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        q_next_target = target(next_obs)
        if config.double_q:
            best = q_next_online.argmax(dim=1, keepdim=True)
        else:
            best = q_next_target.argmax(dim=1, keepdim=True)
        q_next = q_next_target.gather(1, best).squeeze(1)
        not_terminal = 1.0 - batch[Columns.TERMINATEDS].float()
        y = batch[Columns.REWARDS] + batch[DISCOUNTS] * not_terminal * q_next
    td = q_taken - y
    if config.td_error_loss_fn == "huber":
        per_sample = F.smooth_l1_loss(q_taken, y, reduction="none", beta=1.0)
    else:
        per_sample = 0.5 * td.pow(2)
    loss = (batch[WEIGHTS] * per_sample).mean()
    terms = {
        "total_loss": loss,
        "td_error_abs": td.detach().abs().mean(),
        "q_mean": q_taken.detach().mean(),
        "target_q_mean": y.mean(),
    }
    return terms, td.detach().abs()


# ---------------------------------------------------------------------------------------------------
# Learner: one gradient step per replayed minibatch, and the target network
# ---------------------------------------------------------------------------------------------------


class DQNLearner(Learner):
    def __init__(self, module: nn.Module, config: DQNConfig, device: torch.device) -> None:
        super().__init__(
            module, lr=config.lr, grad_clip=config.grad_clip, device=device, lr_schedule=config.lr_schedule
        )
        self.config = config
        self.target = build_target(module).to(device)
        # Thousands of small steps per iteration: the fused (CPU and CUDA) Adam kernel cuts the
        # per-step overhead of the default per-parameter loop. Same hyperparameters as the base class.
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=config.lr, eps=1e-5, fused=True)

    def update(self, batch: Mapping[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """One gradient step; returns the detached terms (plus grad_norm) and |TD errors| as numpy."""
        data = self.to_tensors(batch)
        terms, td_abs = dqn_loss(self.module, self.target, data, config=self.config)
        grad_norm = self.apply_gradients(terms["total_loss"])
        out = {k: v.detach() for k, v in terms.items()}
        out["grad_norm"] = torch.tensor(grad_norm)
        return out, td_abs.cpu().numpy()

    def update_target(self) -> None:
        if self.config.tau >= 1.0:
            hard_update(self.target, self.module)
        else:
            polyak_update(self.target, self.module, self.config.tau)

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "target": self.target.state_dict()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.target.load_state_dict(state["target"])


def build_target(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


# ---------------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------------


class DQN(ReplayAlgorithm):
    """The replay step itself (sample → n-step transitions → replay → K gradient steps → broadcast) is
    kuberl.core.replay_algorithm's, shared with SAC, TD3 and DDPG; DQN adds its replay ratio, its
    epsilon and β schedules, the learning-rate schedule and the target network's update rule."""

    name = "DQN"
    config: DQNConfig

    def runner_overrides(self) -> dict[str, Any]:
        return {
            "policy": "kuberl.algorithms.dqn:QPolicy",
            "policy_options": {"dueling": self.config.dueling, "epsilon": self.epsilon()},
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
        module = build_q_network(self.obs_space, self.action_space, cfg.model, dueling=cfg.dueling)
        res = self.spec.resources
        device = select_device(res.gpus_per_learner, cpus_per_learner=res.cpus_per_learner)
        self.learner = DQNLearner(module, cfg, device)
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

    # -- the replay step's hooks (kuberl.core.replay_algorithm) --------------------------------------
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

    # -- inference -------------------------------------------------------------------------------
    def compute_actions(self, obs: np.ndarray, *, explore: bool = False) -> np.ndarray:
        """Greedy argmax Q (or epsilon-greedy at the current epsilon with `explore`)."""
        raw = np.asarray(obs)
        single = raw.shape == (self.obs_space.shape or ())
        if single:
            raw = raw[None]
        flat = flatten_obs(self.obs_space, raw)
        module = self.learner.module
        with torch.inference_mode():
            q = module(torch.as_tensor(flat, device=self.learner.device))
        actions = q.argmax(dim=-1).cpu().numpy()
        if explore:
            assert isinstance(self.action_space, gym.spaces.Discrete)
            take_random = self.np_rng.random(len(actions)) < self.epsilon()
            mask = mask_slice(self.obs_space)
            if mask is None:
                random_actions = self.np_rng.integers(int(self.action_space.n), size=len(actions))
            else:  # uniform over the legal actions: argmax of noise restricted to them
                legal = legal_actions(torch.as_tensor(flat), mask).numpy()
                random_actions = np.where(legal, self.np_rng.random(legal.shape), -1.0).argmax(axis=-1)
            actions = np.where(take_random, random_actions, actions)
        return actions[0] if single else actions

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
