"""Q-learning pieces shared by DQN and Ape-X (kuberl.algorithms.dqn, kuberl.algorithms.apex): the
Q-network (plain or dueling, scalar or distributional (C51), plain or noisy head, masked where the
observation carries an action mask), the runner's epsilon-greedy policy, the double-Q n-step loss (TD or,
for a distributional network, cross-entropy to the projected target) with its new priorities, and the
learner that owns the online and target networks.

Epsilon-greedy takes one epsilon for every sub-env (DQN's schedule, sent with each weight sync) or one
per sub-env (Ape-X's fixed ladder across runners, Horgan et al. 2018, https://arxiv.org/abs/1803.00933).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kuberl.core.distributional import categorical_projection, categorical_support
from kuberl.core.env_factory import import_object
from kuberl.core.learner import Learner, make_adam
from kuberl.core.models import mlp, obs_dim, run_layers
from kuberl.core.multi_agent.masking import legal_actions, mask_slice, mask_values, random_legal_actions
from kuberl.core.networks import NoisyLinear, reset_noise, set_noisy
from kuberl.core.policy import PolicyBase
from kuberl.core.replay import WEIGHTS
from kuberl.core.returns import DISCOUNTS
from kuberl.core.sample_batch import Columns
from kuberl.core.target import hard_update, polyak_update
from kuberl.spec.algorithms import ModelConfig


class QLossConfig(Protocol):
    """The fields of a config (DQNConfig, APEXConfig) the TD loss reads."""

    @property
    def double_q(self) -> bool: ...

    @property
    def td_error_loss_fn(self) -> Literal["huber", "mse"]: ...


class QLearnerConfig(QLossConfig, Protocol):
    """The fields of a config the Q learner reads."""

    @property
    def lr(self) -> float: ...

    @property
    def lr_schedule(self) -> list[tuple[int, float]] | None: ...

    @property
    def grad_clip(self) -> float | None: ...

    @property
    def tau(self) -> float: ...

    @property
    def noisy(self) -> bool: ...


class QHeadConfig(Protocol):
    """The fields of a config that shape the Q head (QLearningConfigBase's)."""

    @property
    def dueling(self) -> bool: ...
    @property
    def num_atoms(self) -> int: ...
    @property
    def v_min(self) -> float: ...
    @property
    def v_max(self) -> float: ...
    @property
    def noisy(self) -> bool: ...
    @property
    def sigma0(self) -> float: ...


def head_options(config: QHeadConfig) -> dict[str, Any]:
    """The Q head's settings as build_q_network's keyword arguments, which are also the runner policy's
    options (so the runners build the learner's network)."""
    return {
        "dueling": config.dueling,
        "num_atoms": config.num_atoms,
        "v_min": config.v_min,
        "v_max": config.v_max,
        "noisy": config.noisy,
        "sigma0": config.sigma0,
    }


# ---------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------


class QNetwork(nn.Module):
    """Q(s, ·) for every discrete action. Dueling: Q = V(s) + A(s, a) − mean_a A(s, a) on a shared trunk
    (Wang et al. 2016, eq. 9); the mean keeps V and A identifiable.

    With `mask` (where an `action_mask` lies in the flat observation) illegal actions get ILLEGAL_LOGIT,
    so the greedy action, the double-Q argmax and the target's max over s' all range over legal actions
    only. The mask is a slice, not a parameter: the state-dict keys are the same with and without it.

    Distributional (`num_atoms` > 1, C51): the heads give logits [B, actions, atoms] (dueling combines
    V and A per atom before the softmax, as Rainbow does); Q is the mean of each distribution on the
    support, so the policy, the argmax and the mask work on Q as before. Noisy: the output layers of
    the heads are NoisyLinear (kuberl.core.networks)."""

    support: torch.Tensor

    def __init__(
        self,
        n_in: int,
        n_actions: int,
        config: ModelConfig,
        *,
        dueling: bool,
        mask: slice | None = None,
        num_atoms: int = 1,
        v_min: float = -10.0,
        v_max: float = 10.0,
        noisy: bool = False,
        sigma0: float = 0.5,
    ) -> None:
        super().__init__()
        self.mask = mask
        hidden = list(config.fcnet_hiddens)
        act = config.fcnet_activation
        self.dueling = dueling
        self.n_actions = n_actions
        self.num_atoms = num_atoms
        self.trunk = mlp([n_in, *hidden], act)
        self.advantage: nn.Module
        self.value: nn.Module | None
        if noisy:
            self.advantage = noisy_head(hidden[-1], n_actions * num_atoms, sigma0=sigma0, gain=0.01)
            self.value = noisy_head(hidden[-1], num_atoms, sigma0=sigma0, gain=1.0) if dueling else None
        else:  # (built exactly as before C51 and noisy nets existed: same draws, same initial weights)
            self.advantage = mlp([hidden[-1]], act, out=n_actions * num_atoms, out_gain=0.01)
            self.value = mlp([hidden[-1]], act, out=num_atoms, out_gain=1.0) if dueling else None
        if num_atoms > 1:
            # Not persistent: computed from the config on every side, so weights and checkpoints stay
            # the learned parameters only.
            self.register_buffer("support", categorical_support(v_min, v_max, num_atoms), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.num_atoms > 1:
            return self.distribution(obs)[0]
        h = run_layers(self.trunk, obs)
        adv = run_layers(self.advantage, h)
        q = adv if self.value is None else run_layers(self.value, h) + adv - adv.mean(dim=-1, keepdim=True)
        return mask_values(q, obs, self.mask)

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q [B, actions], masked; log-probabilities [B, actions, atoms]) of a distributional network."""
        h = run_layers(self.trunk, obs)
        adv = run_layers(self.advantage, h).view(-1, self.n_actions, self.num_atoms)
        if self.value is not None:
            adv = run_layers(self.value, h).unsqueeze(1) + adv - adv.mean(dim=1, keepdim=True)
        log_p = adv.log_softmax(dim=-1)
        q = (log_p.exp() * self.support).sum(dim=-1)
        return mask_values(q, obs, self.mask), log_p


def noisy_head(n_in: int, n_out: int, *, sigma0: float, gain: float) -> NoisyLinear:
    """A NoisyLinear output layer whose means start as the plain head's weights do (orthogonal with
    `gain`, zero bias); σ keeps the paper's σ0/√fan_in. Why not the paper's μ ~ U(±1/√p): on the
    √2-gain ReLU trunk that gives each seed a fixed initial action preference several times the noise
    (on CartPole the noise changed the mean network's action on 2-5% of states for seeds 0-2, so seed 2
    always pushed one way and its episodes lasted ~9 steps for the first 10k steps). With advantage
    means near zero the noise alone picks the first actions, uniformly for every seed, as epsilon 1
    does for the plain head; the learned μ and σ then decide how much exploration remains."""
    layer = NoisyLinear(n_in, n_out, sigma0=sigma0)
    with torch.no_grad():
        nn.init.orthogonal_(layer.weight_mu, gain=gain)
        nn.init.zeros_(layer.bias_mu)
    return layer


class DistributionPass(nn.Module):
    """A distributional QNetwork's training pass as a module whose forward() returns
    `distribution(obs)`: DistributedDataParallel averages gradients only for passes through its wrapped
    module's forward(), so a data-parallel rank wraps this, not the QNetwork."""

    def __init__(self, inner: QNetwork) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner.distribution(obs)


class MaskedQ(nn.Module):
    """A custom Q model's outputs with illegal actions masked (as QNetwork masks its own)."""

    def __init__(self, inner: nn.Module, mask: slice) -> None:
        super().__init__()
        self.inner = inner
        self.mask = mask

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return mask_values(self.inner(obs), obs, self.mask)


def build_q_network(
    obs_space: gym.Space[Any],
    action_space: gym.Space[Any],
    config: ModelConfig,
    *,
    dueling: bool,
    **head: Any,
) -> nn.Module:
    """The Q-network: a custom model, or QNetwork with `head` (head_options: num_atoms, v_min, v_max,
    noisy, sigma0; the spec refuses a custom model with C51 or noisy nets)."""
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
    return QNetwork(obs_dim(obs_space), int(action_space.n), config, dueling=dueling, mask=mask, **head)


# ---------------------------------------------------------------------------------------------------
# Runner-side policy: epsilon-greedy
# ---------------------------------------------------------------------------------------------------


class QPolicy(PolicyBase):
    """Implements kuberl.core.policy.RunnerPolicy. With probability epsilon a uniformly random action
    (among the legal ones when the observation carries an action mask), else argmax Q. Options:
    `dueling` (fixed, to build the same network as the learner) and `epsilon`: one number for every
    sub-env (DQN: updated by the driver with every weight sync) or one per sub-env (Ape-X's ladder);
    and the Q head's (head_options). A noisy network draws new noise before every exploring action
    step (one draw for the step's sub-envs) and acts on its mean weights when not exploring.
    No V(obs): the learner bootstraps from the target network."""

    def build_module(
        self, obs_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
    ) -> nn.Module:
        assert isinstance(self.action_space, gym.spaces.Discrete)
        self.n_actions = int(self.action_space.n)
        self.mask = mask_slice(obs_space)
        self.epsilon: float | torch.Tensor = _epsilon(options.get("epsilon", 1.0))
        self.noisy = bool(options.get("noisy", False))
        head = {k: options[k] for k in ("num_atoms", "v_min", "v_max", "noisy", "sigma0") if k in options}
        return build_q_network(
            obs_space, self.action_space, model, dueling=bool(options.get("dueling")), **head
        )

    def act(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.noisy:
            set_noisy(self.module, explore)
            if explore:
                reset_noise(self.module, generator)
        greedy = self.module(obs).argmax(dim=-1)
        if not explore or (isinstance(self.epsilon, float) and self.epsilon <= 0.0):
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
            self.epsilon = _epsilon(options["epsilon"])


def _epsilon(value: float | Sequence[float] | np.ndarray) -> float | torch.Tensor:
    """A float for one epsilon everywhere; a float32 tensor [num_envs] for one per sub-env."""
    if isinstance(value, (int, float)):
        return float(value)
    return torch.as_tensor(np.asarray(value, dtype=np.float32))


# ---------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------


def dqn_loss(
    module: nn.Module,
    target: nn.Module,
    batch: Mapping[str, torch.Tensor],
    *,
    config: QLossConfig,
    train: nn.Module | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Importance-weighted TD loss as named terms, and |TD error| per sample (the new priorities).

    `train`: what the gradient pass calls instead of `module` (the learner's train_module: the module
    inside DistributedDataParallel on a data-parallel rank, whose forward() is where DDP hooks the
    gradient all-reduce; for a distributional network a DistributionPass of it). Default: `module`.

    y = R + γ^k (1 − terminated) Q_target(s', a*), with a* = argmax_a Q_online(s', a) (double Q) or
    argmax_a Q_target(s', a); R and γ^k come from the n-step transform. With an action mask the networks
    mask their own outputs, so a* ranges over the actions legal in s' (its mask is part of s').
    A distributional network (QNetwork with num_atoms > 1) takes `distributional_loss` instead.
    """
    if isinstance(module, QNetwork) and module.num_atoms > 1:
        return distributional_loss(module, target, batch, config=config, train=train)
    online = module if train is None else train
    obs, next_obs = batch[Columns.OBS], batch[Columns.NEXT_OBS]
    if config.double_q:  # one forward pass of the online network over s and s'
        q_both = online(torch.cat([obs, next_obs]))
        q, q_next_online = q_both[: len(obs)], q_both[len(obs) :].detach()
    else:
        q = online(obs)
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


def distributional_loss(
    module: QNetwork,
    target: nn.Module,
    batch: Mapping[str, torch.Tensor],
    *,
    config: QLossConfig,
    train: nn.Module | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """C51's loss (Bellemare et al. 2017, Algorithm 1), importance-weighted, and the new priorities.

    m = Φ(R + γ^k (1 − terminated) Z_target(s', a*)), a* as in dqn_loss (the double-Q argmax of the
    online network's mean Q, or the target's), projected onto the support (core.distributional); the loss
    is the cross-entropy −Σ_i m_i log p_i(s, a). The priority is that cross-entropy per sample, as in
    Rainbow (the KL divergence plus the target's entropy, which does not depend on the network).
    `td_error_abs` reports |E[Z(s, a)] − E[m]|, comparable with the scalar loss's TD error.
    `train` (as in dqn_loss) returns module.distribution's (Q, log-probabilities)."""
    assert isinstance(target, QNetwork)
    online = module.distribution if train is None else train
    obs, next_obs = batch[Columns.OBS], batch[Columns.NEXT_OBS]
    if config.double_q:  # one forward pass of the online network over s and s'
        q_both, log_p_both = online(torch.cat([obs, next_obs]))
        q, log_p = q_both[: len(obs)], log_p_both[: len(obs)]
        q_next_online = q_both[len(obs) :].detach()
    else:
        q, log_p = online(obs)
    actions = batch[Columns.ACTIONS].long()
    rows = torch.arange(len(obs), device=obs.device)
    log_p_taken = log_p[rows, actions]
    with torch.no_grad():
        q_next_target, log_p_next = target.distribution(next_obs)
        best = (q_next_online if config.double_q else q_next_target).argmax(dim=1)
        not_terminal = 1.0 - batch[Columns.TERMINATEDS].float()
        m = categorical_projection(
            log_p_next[rows, best].exp(),
            batch[Columns.REWARDS],
            batch[DISCOUNTS] * not_terminal,
            module.support,
        )
        y = (m * module.support).sum(dim=-1)
    cross_entropy = -(m * log_p_taken).sum(dim=-1)
    loss = (batch[WEIGHTS] * cross_entropy).mean()
    q_taken = q.detach()[rows, actions]
    terms = {
        "total_loss": loss,
        "cross_entropy": cross_entropy.detach().mean(),
        "td_error_abs": (q_taken - y).abs().mean(),
        "q_mean": q_taken.mean(),
        "target_q_mean": y.mean(),
    }
    return terms, cross_entropy.detach()


# ---------------------------------------------------------------------------------------------------
# Learner: one gradient step per replayed minibatch, and the target network
# ---------------------------------------------------------------------------------------------------


class QLearner(Learner):
    """The online network, its optimizer and the target network (DQN and Ape-X).

    As one rank of a data-parallel group (kuberl.core.learner_group) the gradient pass goes through
    `train_module` (DDP averages the gradients of the ranks' shards of each minibatch, so every rank
    takes the same step and the online networks stay identical); each rank copies its own online
    network into its target at the same iterations, so the targets stay identical too. The |TD errors|
    of the shards come back in rank order, which is the minibatch's order (the replay priorities)."""

    def __init__(self, module: nn.Module, config: QLearnerConfig, device: torch.device) -> None:
        super().__init__(
            module, lr=config.lr, grad_clip=config.grad_clip, device=device, lr_schedule=config.lr_schedule
        )
        self.config = config
        self.target = build_target(module).to(device)
        # Thousands of small steps per iteration: make_adam's fused kernel cuts the per-step overhead of
        # the default per-parameter loop. Same hyperparameters as the base class.
        self.optimizer = make_adam(self.module.parameters(), lr=config.lr, eps=1e-5)
        if isinstance(module, QNetwork) and module.num_atoms > 1:
            self.train_module = DistributionPass(module)

    def update(self, batch: Mapping[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        """One gradient step; returns the detached terms (plus grad_norm) and |TD errors| as numpy."""
        data = self.to_tensors(batch)
        if self.config.noisy:  # new noise for the online and the target network at every update
            reset_noise(self.module)
            reset_noise(self.target)
        terms, td_abs = dqn_loss(self.module, self.target, data, config=self.config, train=self.train_module)
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
