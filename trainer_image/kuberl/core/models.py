"""Policy/value networks: an MLP actor-critic, or a user's torch module named by import path.

A model maps a batch of flat observations to (action distribution inputs, value estimate).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kuberl.core.action_spaces import action_width
from kuberl.core.distributions import (
    ActionDistribution,
    Bernoulli,
    Categorical,
    Composite,
    DiagGaussian,
    MultiCategorical,
)
from kuberl.core.encoders import CNNEncoder
from kuberl.core.env_factory import import_object
from kuberl.core.preprocess import flat_dim, flatten_batch, image_layout
from kuberl.spec.algorithms import ModelConfig

_SUPPORTED = "Discrete, Box, MultiDiscrete, MultiBinary, and Tuple/Dict of those are"
_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


def obs_dim(space: gym.Space[Any]) -> int:
    """Size of the flattened observation (see kuberl.core.preprocess)."""
    return flat_dim(space)


def flatten_obs(space: gym.Space[Any], obs: Any) -> np.ndarray:
    """A batch [B, ...] of observations of any supported space → float32 [B, obs_dim]."""
    return flatten_batch(space, obs)


def action_distribution(space: gym.Space[Any]) -> ActionDistribution:
    """The distribution over this action space's flat actions (layout: kuberl.core.action_spaces)."""
    if isinstance(space, gym.spaces.Discrete):
        return Categorical()
    if isinstance(space, gym.spaces.Box):
        return DiagGaussian()
    if isinstance(space, gym.spaces.MultiDiscrete):
        return MultiCategorical([int(n) for n in np.asarray(space.nvec).ravel()])
    if isinstance(space, gym.spaces.MultiBinary):
        return Bernoulli()
    if isinstance(space, gym.spaces.Tuple | gym.spaces.Dict):
        subs = space.spaces if isinstance(space, gym.spaces.Tuple) else list(space.spaces.values())
        return Composite(
            [
                (
                    action_distribution(s),
                    dist_input_dim(s),
                    action_width(s),
                    isinstance(s, gym.spaces.Discrete),
                )
                for s in subs
            ]
        )
    raise TypeError(f"action space {space} is not supported ({_SUPPORTED})")


def dist_input_dim(space: gym.Space[Any]) -> int:
    """Width of the network output the space's distribution reads."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.Box):
        return 2 * int(np.prod(space.shape))
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    if isinstance(space, gym.spaces.MultiBinary):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Tuple | gym.spaces.Dict):
        subs = space.spaces if isinstance(space, gym.spaces.Tuple) else list(space.spaces.values())
        return sum(dist_input_dim(s) for s in subs)
    raise TypeError(f"action space {space} is not supported ({_SUPPORTED})")


def mlp(sizes: list[int], activation: str, *, out: int | None = None, out_gain: float = 1.0) -> nn.Sequential:
    """Orthogonal init (√2 hidden gain) as in the PPO implementation-details study (Huang et al. 2022)."""
    layers: list[nn.Module] = []
    act = _ACTIVATIONS[activation]
    for a, b in itertools.pairwise(sizes):
        lin = nn.Linear(a, b)
        nn.init.orthogonal_(lin.weight, gain=float(np.sqrt(2.0)))
        nn.init.zeros_(lin.bias)
        layers += [lin, act()]
    if out is not None:
        head = nn.Linear(sizes[-1], out)
        nn.init.orthogonal_(head.weight, gain=out_gain)
        nn.init.zeros_(head.bias)
        layers.append(head)
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Policy and value heads on an MLP, shared or separate (``vf_share_layers``). Image observations
    first pass a CNN encoder shared by both heads (``conv_filters``; a default by image size)."""

    def __init__(self, obs_space: gym.Space[Any], action_space: gym.Space[Any], config: ModelConfig) -> None:
        super().__init__()
        use_cnn = config.conv_filters is not None or image_layout(obs_space) is not None
        self.encoder: nn.Module | None = None
        if use_cnn:
            filters = [tuple(f) for f in config.conv_filters] if config.conv_filters else None
            self.encoder = CNNEncoder(obs_space, filters, config.conv_activation)  # type: ignore[arg-type]
            n_in = self.encoder.out_dim
        else:
            n_in = obs_dim(obs_space)
        hidden = list(config.fcnet_hiddens)
        n_out = dist_input_dim(action_space)
        self.continuous = isinstance(action_space, gym.spaces.Box)
        self.free_log_std = self.continuous and config.free_log_std
        pi_out = n_out // 2 if self.free_log_std else n_out
        self.shared = config.vf_share_layers
        if self.shared:
            self.trunk = mlp([n_in, *hidden], config.fcnet_activation)
            self.pi_head = mlp([hidden[-1]], config.fcnet_activation, out=pi_out, out_gain=0.01)
            self.vf_head = mlp([hidden[-1]], config.fcnet_activation, out=1, out_gain=1.0)
        else:
            self.pi = mlp([n_in, *hidden], config.fcnet_activation, out=pi_out, out_gain=0.01)
            self.vf = mlp([n_in, *hidden], config.fcnet_activation, out=1, out_gain=1.0)
        if self.free_log_std:
            self.log_std = nn.Parameter(torch.zeros(n_out // 2))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.encoder is not None:
            obs = self.encoder(obs)
        if self.shared:
            h = run_layers(self.trunk, obs)
            dist_in, value = run_layers(self.pi_head, h), run_layers(self.vf_head, h)
        else:
            dist_in, value = run_layers(self.pi, obs), run_layers(self.vf, obs)
        if self.free_log_std:
            dist_in = torch.cat([dist_in, self.log_std.expand_as(dist_in)], dim=-1)
        return dist_in, value.squeeze(-1)

    def inference_forward(self) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """`forward` for the runners' per-step inference: the same ops on the same parameter tensors
        (bit-identical), without nn.Module.__call__ and a parameter lookup per layer, which cost as much as
        the arithmetic of a 64x64 MLP on 16 observations (about 40% of the forward). The parameters
        are updated in place (load_numpy_weights, load_state_dict), so the closure stays current;
        hooks registered on the layers are not run. A CNN encoder keeps the module's own forward."""
        if self.encoder is not None:
            return self.forward
        trunk = _layer_calls(self.trunk) if self.shared else []
        pi = _layer_calls(self.pi_head if self.shared else self.pi)
        vf = _layer_calls(self.vf_head if self.shared else self.vf)
        log_std = self.log_std if self.free_log_std else None

        def forward(obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = _chain(trunk, obs)
            dist_in, value = _chain(pi, h), _chain(vf, h)
            if log_std is not None:
                dist_in = torch.cat([dist_in, log_std.expand_as(dist_in)], dim=-1)
            return dist_in, value.squeeze(-1)

        return forward


Layer = Callable[[torch.Tensor], torch.Tensor]


def _layer_calls(seq: nn.Sequential) -> list[Layer]:
    """Each layer of `seq` as a plain call: F.linear bound to a Linear's own weight and bias tensors
    (what Linear.forward computes), the layer's forward method otherwise."""
    return [
        partial(F.linear, weight=layer.weight, bias=layer.bias) if type(layer) is nn.Linear else layer.forward
        for layer in seq
    ]


def run_layers(seq: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`seq(x)`, for an nn.Sequential with each hook-free layer's forward called directly: nn.Module.__call__
    costs about as much per layer as a 64x64 tanh layer's arithmetic at minibatch 64 (15% of the MLP's
    training forward). Any other module, a layer with hooks, or any layer while global module hooks are
    registered, goes through its __call__."""
    if type(seq) is not nn.Sequential or _global_module_hooks() or _has_hooks(seq):
        return seq(x)
    for layer in seq._modules.values():
        if _has_hooks(layer):
            x = layer(x)
        elif type(layer) is nn.Linear:
            x = F.linear(x, layer.weight, layer.bias)
        else:
            x = layer.forward(x)
    return x


def _has_hooks(module: nn.Module | None) -> bool:
    return module is not None and bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
    )


def _global_module_hooks() -> bool:
    hooks = nn.modules.module
    return bool(
        hooks._global_forward_hooks
        or hooks._global_forward_pre_hooks
        or hooks._global_backward_hooks
        or hooks._global_backward_pre_hooks
    )


def _chain(layers: list[Layer], x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


def build_model(obs_space: gym.Space[Any], action_space: gym.Space[Any], config: ModelConfig) -> nn.Module:
    """The configured model. A custom one is `Class(obs_space, action_space, custom_model_config)` and must
    return (distribution inputs, values) from forward(obs) like ActorCritic. `use_lstm` builds a
    kuberl.core.recurrent.RecurrentActorCritic, whose forward also takes and returns a state."""
    if config.custom_model:
        cls = import_object(config.custom_model)
        model = cls(obs_space, action_space, dict(config.custom_model_config))
        if not isinstance(model, nn.Module):
            raise TypeError(f"custom_model {config.custom_model!r} did not build a torch.nn.Module")
        return model
    if config.use_lstm:
        from kuberl.core.recurrent import RecurrentActorCritic  # imports this module: late

        return RecurrentActorCritic(obs_space, action_space, config)
    return ActorCritic(obs_space, action_space, config)


def weights_to_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """CPU numpy copies of the state dict: cheap to ship through Ray's object store (zero-copy reads)."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


@torch.no_grad()
def load_numpy_weights(module: nn.Module, weights: Mapping[str, np.ndarray]) -> None:
    """Copy `weights` into the module's parameters and buffers in place. Runs after every iteration (a
    runner in the driver with a one-step fragment: every env step), so it copies each array once straight
    into its tensor instead of going through `load_state_dict`'s per-module walk; a read-only array (a
    view of Ray's object store, which torch cannot wrap) is first copied to a writeable one. Keys or
    shapes that do not match fall back to `load_state_dict`, for its error message."""
    targets = module.state_dict()  # detached tensors sharing the parameters' storage
    if targets.keys() != weights.keys() or any(t.shape != np.shape(weights[k]) for k, t in targets.items()):
        module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        return
    for key, target in targets.items():
        value = np.asarray(weights[key])
        target.copy_(torch.from_numpy(value if value.flags.writeable else np.array(value)))
