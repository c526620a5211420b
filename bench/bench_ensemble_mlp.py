"""PPO's separate policy and value MLPs against the same MLPs as one batched ensemble, forward and
backward on one minibatch: what stacking them would save per gradient step, and whether it is
bit-identical.

The separate form is what kuberl trains (bench/jobs/ppo-acrobot-zoo.yaml: 64×64 tanh policy and value
nets on Acrobot's 6 observations, minibatch 64). The ensemble runs both hidden layers as one `baddbmm`
over [2, in, out] weights stacked from the same initial values, the heads apart. Each form is timed over
`--steps` steps, alternated `--rounds` times in one process, one torch thread.

    python bench/bench_ensemble_mlp.py [--batch 64] [--steps 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn

OBS, HIDDEN, ACTIONS = 6, 64, 3


def stacked(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.stack([a.detach(), b.detach()]).contiguous().requires_grad_()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    obs = torch.randn(args.batch, OBS)
    pi = [nn.Linear(OBS, HIDDEN), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, ACTIONS)]
    vf = [nn.Linear(OBS, HIDDEN), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, 1)]
    separate_params = [p for layer in pi + vf for p in layer.parameters()]

    def separate() -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(pi[1](torch.tanh(pi[0](obs))))
        g = torch.tanh(vf[1](torch.tanh(vf[0](obs))))
        return pi[2](h), vf[2](g)

    w1 = stacked(pi[0].weight.t(), vf[0].weight.t())  # [2, OBS, HIDDEN]
    b1 = stacked(pi[0].bias[None], vf[0].bias[None])  # [2, 1, HIDDEN]
    w2 = stacked(pi[1].weight.t(), vf[1].weight.t())
    b2 = stacked(pi[1].bias[None], vf[1].bias[None])
    heads = [p.detach().clone().requires_grad_() for p in (*pi[2].parameters(), *vf[2].parameters())]
    ensemble_params = [w1, b1, w2, b2, *heads]

    def ensemble() -> tuple[torch.Tensor, torch.Tensor]:
        x = obs.expand(2, *obs.shape)
        h = torch.tanh(torch.baddbmm(b2, torch.tanh(torch.baddbmm(b1, x, w1)), w2))
        return nn.functional.linear(h[0], heads[0], heads[1]), nn.functional.linear(h[1], heads[2], heads[3])

    def step(
        forward: Callable[[], tuple[torch.Tensor, torch.Tensor]], params: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, value = forward()
        for p in params:
            p.grad = None
        (logits.logsumexp(-1).sum() + value.square().sum()).backward()
        return logits, value

    (l1, v1), (l2, v2) = step(separate, separate_params), step(ensemble, ensemble_params)
    same = {
        "forward": torch.equal(l1, l2) and torch.equal(v1, v2),
        "layer-1 weight grads": all(
            torch.equal(n.weight.grad, w1.grad[i].t()) for i, n in enumerate((pi[0], vf[0]))
        ),
        "layer-2 weight grads": all(
            torch.equal(n.weight.grad, w2.grad[i].t()) for i, n in enumerate((pi[1], vf[1]))
        ),
    }
    print("bit-identical:", ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in same.items()))
    times: dict[str, list[float]] = {"separate": [], "ensemble": []}
    for _ in range(args.rounds):
        for name, forward, params in (
            ("separate", separate, separate_params),
            ("ensemble", ensemble, ensemble_params),
        ):
            for _ in range(200):
                step(forward, params)
            t = time.perf_counter()
            for _ in range(args.steps):
                step(forward, params)
            times[name].append((time.perf_counter() - t) / args.steps * 1e6)
    for name, ts in times.items():
        print(f"{name}: " + " / ".join(f"{t:.1f}" for t in ts) + " µs per forward+backward")


if __name__ == "__main__":
    main()
