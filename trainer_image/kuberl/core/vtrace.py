"""V-trace off-policy targets (Espeholt et al. 2018, https://arxiv.org/abs/1802.01561, section 4.1).

A pure function over time-major [T, N] tensors, used by IMPALA and APPO. It works on whatever
device its inputs are on and never tracks gradients: the targets are constants for the loss.

Episode ends inside a fragment follow the convention of `kuberl.core.returns`: `next_values[t]` is
V(s_{t+1}) — at a truncated step V(final observation), after the last step the bootstrap value —
and is zeroed only where `terminateds[t]`; the V-trace recursion is cut at every episode end
(terminated or truncated), so corrections never leak from one episode into the previous one.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

TensorLike = torch.Tensor | np.ndarray


class VTraceReturns(NamedTuple):
    vs: torch.Tensor
    """V-trace value targets v_s, [T, N]."""
    pg_advantages: torch.Tensor
    """ρ̄-clipped policy-gradient advantages ρ_s (r_s + γ v_{s+1} − V(x_s)), [T, N]."""
    rhos: torch.Tensor
    """Unclipped importance ratios π(a|x) / μ(a|x), [T, N] (for logging)."""


def _tensor(x: TensorLike, like: torch.Tensor | None = None) -> torch.Tensor:
    t = torch.as_tensor(x)
    if like is not None:
        t = t.to(like.device)
    return t


@torch.no_grad()
def vtrace(
    behaviour_logp: TensorLike,
    target_logp: TensorLike,
    rewards: TensorLike,
    values: TensorLike,
    next_values: TensorLike,
    terminateds: TensorLike,
    truncateds: TensorLike,
    *,
    gamma: float,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    lambda_: float = 1.0,
) -> VTraceReturns:
    """V-trace targets and policy-gradient advantages.

    With δ_t = ρ̄_t (r_t + γ V(x_{t+1}) − V(x_t)), ρ̄_t = min(ρ̄, π/μ) and c_t = λ min(c̄, π/μ):

        v_t − V(x_t) = δ_t + γ c_t (v_{t+1} − V(x_{t+1}))           (paper, eq. 1, recursive form)
        A_t          = min(ρ̄_pg, π/μ) (r_t + γ v_{t+1} − V(x_t))     (paper, section 4.2)

    where v_{t+1} is the bootstrap `next_values[t]` at the end of the fragment and of a truncated
    episode, and 0 after a terminal step. A threshold of None disables that clip. With π = μ and
    λ = 1, v_t is the n-step (Monte-Carlo, bootstrapped) return and A_t that return minus V(x_t).

    Args are [T, N] (rewards, values, next values, log-probs) and boolean [T, N] (episode ends).
    """
    target = _tensor(target_logp).float()
    behaviour = _tensor(behaviour_logp, target).float()
    r = _tensor(rewards, target).float()
    v = _tensor(values, target).float()
    nv = _tensor(next_values, target).float()
    term = _tensor(terminateds, target).bool()
    trunc = _tensor(truncateds, target).bool()

    rhos = torch.exp(target - behaviour)
    clipped_rhos = rhos if clip_rho_threshold is None else rhos.clamp(max=clip_rho_threshold)
    cs = lambda_ * (rhos if clip_c_threshold is None else rhos.clamp(max=clip_c_threshold))
    not_terminal = (~term).float()
    not_done = (~(term | trunc)).float()

    deltas = clipped_rhos * (r + gamma * not_terminal * nv - v)
    # vs − V, backwards; the correction after the fragment's last step is 0 (v_T = V(x_T)).
    vs_minus_v = torch.zeros_like(deltas)
    acc = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        acc = deltas[t] + gamma * cs[t] * not_done[t] * acc
        vs_minus_v[t] = acc
    vs = v + vs_minus_v

    # v_{t+1}: the next step's target inside an episode, the bootstrap value at its end.
    next_correction = torch.zeros_like(vs_minus_v)
    next_correction[:-1] = vs_minus_v[1:]
    next_vs = nv + not_done * next_correction
    pg_rhos = rhos if clip_pg_rho_threshold is None else rhos.clamp(max=clip_pg_rho_threshold)
    pg_advantages = pg_rhos * (r + gamma * not_terminal * next_vs - v)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages, rhos=rhos)
