"""Return estimators: every way the trainer turns rewards into learning targets, as pure functions
over time-major [T, N] rollouts (no state, no I/O; numpy in, numpy out, except V-trace which works on
tensors on whatever device its inputs are on).

- `gae`, `discounted_returns`: on-policy advantages and Monte-Carlo returns (PG, A2C, A3C, PPO).
- `vtrace`: off-policy corrected targets for a lagging behaviour policy (IMPALA, APPO).
- `nstep_transitions`: n-step transitions for replay (DQN, Ape-X, SAC, TD3, DDPG).

Episode ends follow one convention everywhere: `next_values[t]` is V(s_{t+1}), at a truncated step
V(final observation) (the time-limited episode bootstraps), after the fragment's last step the
bootstrap value; it is zeroed only where `terminateds[t]`, and every recursion is cut at each
episode end (terminated or truncated), so nothing leaks from one episode into another.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from kuberl.core.sample_batch import Columns, SampleBatch

# ---------------------------------------------------------------------------------------------------
# On-policy: GAE and Monte-Carlo returns
# ---------------------------------------------------------------------------------------------------


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray,
    *,
    gamma: float,
    lambda_: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalized Advantage Estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438).

    `next_values[t]` is V(s_{t+1}): at a truncated step it must be V(final observation), so the
    time-limited episode bootstraps; at a terminated step it is ignored (the future is worth 0).
    The recursion stops at every episode end (terminated or truncated) so advantages never leak
    across episodes. Returns (advantages, value_targets), both float32 [T, N].
    """
    not_terminal = 1.0 - terminateds.astype(np.float32)
    not_done = 1.0 - np.logical_or(terminateds, truncateds).astype(np.float32)
    deltas = rewards + gamma * next_values * not_terminal - values
    advantages = np.zeros_like(deltas, dtype=np.float32)
    running = np.zeros(deltas.shape[1:], dtype=np.float32)
    decay = gamma * lambda_
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + decay * not_done[t] * running
        advantages[t] = running
    return advantages, (advantages + values).astype(np.float32)


def discounted_returns(
    rewards: np.ndarray,
    next_values: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray,
    *,
    gamma: float,
) -> np.ndarray:
    """Monte-Carlo returns G_t = r_t + γ·G_{t+1} inside an episode, bootstrapped with `next_values`
    only where the recursion is cut: at a truncation (V(final observation)) and after the fragment's
    last step. A terminated step's future is worth 0. (The λ = 1 case of GAE, without a baseline.)"""
    not_terminal = 1.0 - terminateds.astype(np.float32)
    done = np.logical_or(terminateds, truncateds)
    returns = np.zeros_like(rewards, dtype=np.float32)
    running = next_values[-1].astype(np.float32)
    for t in range(rewards.shape[0] - 1, -1, -1):
        tail = np.where(done[t], next_values[t] * not_terminal[t], running)
        running = (rewards[t] + gamma * tail).astype(np.float32)
        returns[t] = running
    return returns


# ---------------------------------------------------------------------------------------------------
# V-trace (Espeholt et al. 2018, https://arxiv.org/abs/1802.01561, section 4.1): targets are constants
# for the loss, so no gradient is tracked.
# ---------------------------------------------------------------------------------------------------

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
    # vs − V, backwards; the correction after the fragment's last step is 0 (v_T = V(x_T)). The
    # per-step factors are taken once and the rows unbound once, so each step is two ops (a GPU learner
    # is bound by kernel launches here: indexing inside the loop made this 9 ops per step and 60% of an
    # APPO update's dispatches). Same products in the same order as term by term: bit-identical.
    discounts = (gamma * cs * not_done).unbind(0)
    delta_rows = deltas.unbind(0)
    acc = torch.zeros_like(deltas[0])
    rows: list[torch.Tensor] = []
    for t in range(deltas.shape[0] - 1, -1, -1):
        acc = delta_rows[t] + discounts[t] * acc
        rows.append(acc)
    rows.reverse()
    vs_minus_v = torch.stack(rows) if rows else torch.zeros_like(deltas)
    vs = v + vs_minus_v

    # v_{t+1}: the next step's target inside an episode, the bootstrap value at its end.
    next_correction = torch.zeros_like(vs_minus_v)
    next_correction[:-1] = vs_minus_v[1:]
    next_vs = nv + not_done * next_correction
    pg_rhos = rhos if clip_pg_rho_threshold is None else rhos.clamp(max=clip_pg_rho_threshold)
    pg_advantages = pg_rhos * (r + gamma * not_terminal * next_vs - v)
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages, rhos=rhos)


# ---------------------------------------------------------------------------------------------------
# n-step transitions (Sutton & Barto §7.1; Rainbow, Hessel et al. 2018, https://arxiv.org/abs/1710.02298).
# A [T, N] rollout becomes flat transitions (s_t, a_t, R_t, s_{t+k}, terminated, γ^k) with
# R_t = Σ_{j<k} γ^j r_{t+j}, k ≤ n stopping early at an episode end or the end of the fragment. The
# learner's target is R_t + discounts · (1 − terminateds) · Q(s_{t+k}): a terminated episode never
# bootstraps, a truncated one bootstraps from its final observation (the runner stores it in next_obs).
# ---------------------------------------------------------------------------------------------------

DISCOUNTS = "discounts"


def _one_step_transitions(batch: SampleBatch, *, gamma: float) -> dict[str, np.ndarray]:
    """nstep_transitions for n = 1, without the n-step bookkeeping: the columns themselves, flattened
    (the same arrays and dtypes the general path makes; it cost ~60 µs per call, as much as the env
    step of an off-policy iteration of one step)."""
    rewards = np.asarray(batch[Columns.REWARDS])
    T, N = rewards.shape

    def flat(x: Any) -> np.ndarray:
        a = np.asarray(x)
        return a.reshape(T * N, *a.shape[2:])

    return {
        Columns.OBS: flat(batch[Columns.OBS]),
        Columns.ACTIONS: flat(batch[Columns.ACTIONS]),
        Columns.REWARDS: flat(rewards.astype(np.float32)),
        Columns.NEXT_OBS: flat(batch[Columns.NEXT_OBS]),
        Columns.TERMINATEDS: flat(np.asarray(batch[Columns.TERMINATEDS], dtype=bool)),
        DISCOUNTS: np.full(T * N, gamma, dtype=np.float32),
    }


def nstep_transitions(batch: SampleBatch, *, n: int, gamma: float) -> dict[str, np.ndarray]:
    """Flat n-step transitions from a [T, N] rollout with obs, actions, rewards, terminateds,
    truncateds and next_obs. Returns obs, actions, rewards (float32), next_obs, terminateds (bool) and
    discounts (float32, γ^k for the k steps actually summed), each [T·N, ...] in time-major order."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if n == 1:
        return _one_step_transitions(batch, gamma=gamma)
    return _nstep_transitions(batch, n=n, gamma=gamma)


def _nstep_transitions(batch: SampleBatch, *, n: int, gamma: float) -> dict[str, np.ndarray]:
    """The general case of nstep_transitions (any n ≥ 1)."""
    rewards = np.asarray(batch[Columns.REWARDS], dtype=np.float64)
    terms = np.asarray(batch[Columns.TERMINATEDS], dtype=bool)
    dones = np.logical_or(terms, np.asarray(batch[Columns.TRUNCATEDS], dtype=bool))
    T, N = rewards.shape
    t_idx = np.arange(T)[:, None].repeat(N, axis=1)

    ret = np.zeros((T, N), dtype=np.float64)
    last = t_idx.copy()  # index of the last step summed into each transition
    steps = np.zeros((T, N), dtype=np.int64)
    terminated = np.zeros((T, N), dtype=bool)
    active = np.ones((T, N), dtype=bool)
    cols = np.arange(N)[None, :]
    for j in range(n):  # n is small; every (t, env) pair advances at once
        idx = t_idx + j
        valid = active & (idx < T)
        safe = np.minimum(idx, T - 1)
        ret += np.where(valid, gamma**j * rewards[safe, cols], 0.0)
        last = np.where(valid, safe, last)
        steps += valid
        terminated |= valid & terms[safe, cols]
        active = valid & ~dones[safe, cols]

    def flat(x: np.ndarray) -> np.ndarray:
        return x.reshape(T * N, *x.shape[2:])

    next_obs = np.asarray(batch[Columns.NEXT_OBS])[last, cols]
    return {
        Columns.OBS: flat(np.asarray(batch[Columns.OBS])),
        Columns.ACTIONS: flat(np.asarray(batch[Columns.ACTIONS])),
        Columns.REWARDS: flat(ret.astype(np.float32)),
        Columns.NEXT_OBS: flat(next_obs),
        Columns.TERMINATEDS: flat(terminated),
        DISCOUNTS: flat((gamma**steps).astype(np.float32)),
    }
