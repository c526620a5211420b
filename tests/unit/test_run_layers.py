"""kuberl.core.models.run_layers: the training forward of the built-in networks (ActorCritic, QNetwork)
without nn.Module.__call__ per layer is the module-call forward bit for bit, gradients included, and
still runs hooks wherever they are registered."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from torch import nn

from kuberl.algorithms.families.q_learning import QNetwork
from kuberl.core import models
from kuberl.core.models import build_model, run_layers
from kuberl.spec.algorithms import ModelConfig


def _forward_and_grads(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    net.zero_grad(set_to_none=True)
    out = net(x)
    outs = list(out) if isinstance(out, tuple) else [out]
    sum(o.pow(2).sum() for o in outs).backward()
    return [o.detach() for o in outs] + [p.grad.clone() for p in net.parameters() if p.grad is not None]


NETWORKS = {
    "actor-critic, separate": lambda: build_model(
        gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3), ModelConfig(vf_share_layers=False)
    ),
    "actor-critic, shared, gaussian": lambda: build_model(
        gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2,)), ModelConfig(vf_share_layers=True)
    ),
    "q-network, dueling": lambda: QNetwork(4, 3, ModelConfig(fcnet_activation="relu"), dueling=True),
    "q-network, noisy c51": lambda: QNetwork(4, 3, ModelConfig(), dueling=True, noisy=True, num_atoms=11),
}


@pytest.mark.parametrize("make", NETWORKS.values(), ids=NETWORKS.keys())
def test_direct_layer_calls_equal_module_calls(make: object, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    net = make()  # type: ignore[operator]
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    direct = _forward_and_grads(net, x)
    monkeypatch.setattr(models, "_global_module_hooks", lambda: True)
    called = _forward_and_grads(net, x)
    assert len(direct) == len(called)
    assert all(torch.equal(a, b) for a, b in zip(direct, called, strict=True))


def test_hooks_still_run() -> None:
    seq = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(5, 3)
    seen: list[str] = []
    handle = seq[1].register_forward_hook(lambda *_: seen.append("layer"))
    run_layers(seq, x)
    handle.remove()
    handle = seq.register_forward_pre_hook(lambda *_: seen.append("sequential"))
    run_layers(seq, x)
    handle.remove()
    handle = nn.modules.module.register_module_forward_hook(lambda *_: seen.append("global"))
    try:
        run_layers(seq, x)
    finally:
        handle.remove()
    assert seen[:2] == ["layer", "sequential"]
    assert seen.count("global") == 4  # the Sequential and its three layers
    assert torch.equal(run_layers(seq, x), seq(x))
